import os

import numpy as np
import pytest

from rtn_hw import tools

# The project's Icarus (.venv/icarus) for cocotb's runner too, as under make.
tools.icarus_first_on_path()


@pytest.fixture
def seed(request):
    """The test's seed: SEED from the environment, else a fixed default. Always printed."""
    value = int(os.environ.get("SEED", "20261129"))
    print(f"seed={value} (replay with SEED={value})")
    return value


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


def pytest_terminal_summary(terminalreporter):
    """The cocotb benches' summary table and build/sim/summary.json (sim/summary.py). A hook
    here because with pytest-xdist only the controller sees every worker's rows."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "sim" / "summary.py"
    spec = importlib.util.spec_from_file_location("sim_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.report(terminalreporter)
