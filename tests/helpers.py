"""Helpers shared by the test files (`from helpers import ...`: pytest's default "prepend"
import mode puts tests/ on sys.path)."""

import re

import numpy as np
import pytest


def assert_rejects(error, message, build):
    """`build()` raises `error` with exactly `message` (anchored, escaped).

    A constructor that rejects its parameters leaves a half-made component behind; the
    "never used" warning Amaranth gives when it is collected is ignored suite-wide
    (pyproject.toml `filterwarnings`), so nothing needs collecting here."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        build()


def random_trits(rng, shape, sparsity=None):
    """Trits (int8, -1/0/+1) of `shape` drawn from `rng`, `sparsity` being the fraction of
    zeros: a number, or None for a random density per row (some rows nearly empty, some
    dense). Nonzero trits are ±1 with equal odds."""
    shape = tuple(np.atleast_1d(shape))
    if sparsity is None:
        sparsity = rng.random(shape[:-1] + (1,))
    nonzero = rng.random(shape) >= sparsity
    return (np.where(rng.random(shape) < 0.5, -1, 1) * nonzero).astype(np.int8)
