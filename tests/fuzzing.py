"""Hypothesis settings shared by the fuzz suite (tests/test_fuzz_*.py).

Two profiles: "default" (what `make test` runs: a few hundred examples a property, a few
seconds a file) and "long" (HYPOTHESIS_PROFILE=long; the runs marked `fuzz`, about 20 times
more examples). Both are seeded from SEED (the project's seed variable, printed by `fuzz_seed`)
and keep no example database, so a run is repeatable and writes nothing into the tree; a
failure prints the falsifying example and the reproduction blob.
"""

import os
from pathlib import Path

import hypothesis
import pytest
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps caches (constants found in the source, Unicode tables) in a folder of its
# own: under build/, not at the top of the working tree.
set_hypothesis_home_dir(str(Path(__file__).resolve().parents[1] / "build" / "hypothesis"))

SEED = int(os.environ.get("SEED", "20261129"))
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"

_COMMON = dict(database=None, deadline=None, print_blob=True,
               suppress_health_check=[hypothesis.HealthCheck.too_slow,
                                      hypothesis.HealthCheck.data_too_large])
hypothesis.settings.register_profile("default", max_examples=200, **_COMMON)
hypothesis.settings.register_profile("long", max_examples=4000, **_COMMON)
hypothesis.settings.load_profile("long" if LONG else "default")


def examples(default, long=None, *, fixtures=False):
    """A per-test example budget: `default` normally, `long` (else 20×) with the long
    profile. `fixtures`: the test uses function-scoped fixtures (capsys, monkeypatch) that
    are meant to serve every example."""
    checks = list(_COMMON["suppress_health_check"])
    if fixtures:
        checks.append(hypothesis.HealthCheck.function_scoped_fixture)
    return hypothesis.settings(max_examples=(long or 20 * default) if LONG else default,
                               suppress_health_check=checks)


def seeded(test):
    """Seed Hypothesis's generator from SEED (printed by the `fuzz_seed` fixture)."""
    return hypothesis.seed(SEED)(test)


@pytest.fixture(autouse=True, scope="module")
def fuzz_seed():
    profile = "long" if LONG else "default"
    print(f"hypothesis seed={SEED} profile={profile} (replay with SEED={SEED}"
          f"{' HYPOTHESIS_PROFILE=long' if LONG else ''})")
    return SEED
