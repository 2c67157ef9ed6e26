import os

import numpy as np
import pytest


@pytest.fixture
def seed(request):
    """The test's seed: SEED from the environment, else a fixed default. Always printed."""
    value = int(os.environ.get("SEED", "20261129"))
    print(f"seed={value} (replay with SEED={value})")
    return value


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)
