"""The flow retries a failed nextpnr route once at another seed (nextpnr.route_retrying), with a
fake nextpnr: a script that fails or routes depending on its --seed."""

import json
import stat
import sys

import pytest

from rtn_hw.flow import nextpnr, synth
from rtn_hw.flow.devices import TARGETS
from rtn_hw.flow.plan import Run

FAKE = """\
import json, pathlib, sys
args = sys.argv[1:]
seed = int(args[args.index("--seed") + 1])
log = pathlib.Path(args[args.index("-l") + 1])
errors = json.loads({errors!r})
if str(seed) in errors:
    log.write_text("Info: routing\\nERROR: " + errors[str(seed)] + "\\n")
    sys.exit(1)
log.write_text("Info: routed\\n")
report = {{"fmax": {{"clk": {{"achieved": 50.0 + seed, "constraint": 200.0}}}},
          "utilization": {{"TRELLIS_SLICE": {{"used": 10, "available": 41820}}}}}}
pathlib.Path(args[args.index("--report") + 1]).write_text(json.dumps(report))
"""

CLOCK = "Failed to route arc 0.0 of net 'clk$TRELLIS_IO_IN', from X0/Y0 to X0/Y0/G_CLKI_TDCC0."


@pytest.fixture
def fake_nextpnr(tmp_path, monkeypatch):
    """fake(errors): install a nextpnr that fails with errors[seed] (seed → message)."""
    def install(errors):
        script = tmp_path / "fake-nextpnr"
        script.write_text(f"#!{sys.executable}\n" + FAKE.format(errors=json.dumps(
            {str(k): v for k, v in errors.items()})))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setattr(nextpnr.tools, "nextpnr", lambda family: str(script))
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        return work
    return install


def test_a_failed_route_is_retried_at_the_next_seed(fake_nextpnr):
    work = fake_nextpnr({1: CLOCK})
    result = nextpnr.route_retrying("ecp5", work, [], seed=1, freq_mhz=200,
                                    report="report-1.json", log="nextpnr-1.log")
    assert result.ok and result.seed == 1 + nextpnr.RETRY_SEED_OFFSET
    assert result.fmax_mhz == 50.0 + 101
    assert result.retried == f"ERROR: {CLOCK}"
    assert (work / "nextpnr-1.log").read_text().startswith("Info: routing")
    assert (work / "nextpnr-1-retry.log").exists()


def test_a_route_that_works_is_not_retried(fake_nextpnr):
    work = fake_nextpnr({})
    result = nextpnr.route_retrying("ecp5", work, [], seed=3, freq_mhz=200)
    assert result.ok and result.seed == 3 and result.retried is None
    assert not (work / "nextpnr-retry.log").exists()


def test_capacity_and_a_second_failure_are_not_retried_again(fake_nextpnr):
    work = fake_nextpnr({1: "Unable to place cell 'x'", 2: CLOCK, 102: CLOCK})
    full = nextpnr.route_retrying("ecp5", work, [], seed=1, freq_mhz=200)
    assert not full.ok and full.capacity and full.seed == 1 and full.retried is None
    twice = nextpnr.route_retrying("ecp5", work, [], seed=2, freq_mhz=200)
    assert not twice.ok and not twice.capacity and twice.seed == 102
    assert twice.retried == f"ERROR: {CLOCK}"


def test_the_sweep_records_the_seed_that_routed(fake_nextpnr):
    work = fake_nextpnr({1: CLOCK})
    run = Run("fp32_dot", 16, "ecp5-85k", "dsp", (1, 2))
    outcomes = [synth._route_one(run, TARGETS["ecp5-85k"], work, seed) for seed in run.seeds]
    assert [(o["seed"], o["routed_seed"]) for o in outcomes] == [(1, 101), (2, 2)]
    result = synth._merge_routes({"fits": True, "notes": [], "seconds": {}}, outcomes)
    assert result["fmax_by_seed"] == {"101": 151.0, "2": 52.0}
    assert result["fmax_mhz"] == (151.0 + 52.0) / 2
    assert result["notes"] == [f"seed 1 failed to route (ERROR: {CLOCK}); retried at seed 101"]
