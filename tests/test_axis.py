"""Units behind their AXI4-Stream wrapper (rtn_hw.ip), checked with third-party verification
IP: cocotbext-axi's source, sink and monitor on Icarus and Verilator (sim/axis/bench.py),
every result against the golden model, with tvalid gaps, tready backpressure, tlast framing
(the network engine), loads on side streams (thresholds, weights) and a reset mid-stream.
Launched through sim/runner.py like the native benches; a few small configurations in
`make test`, the rest in `make sim`."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import runner  # noqa: E402

# (unit, parameters, simulator, transfers): make test ...
QUICK = [
    ("ternary_dot", {"lanes": 8}, "icarus", 300),
    ("int_dot", {"lanes": 5, "width": 16}, "icarus", 200),   # signed result, sign-extended
    ("network_engine", {}, "icarus", 12),                     # 8 beats per image, tlast
    ("ternary_encoder", {"lanes": 8}, "icarus", 200),          # thresholds on s_axis_t
    ("ternary_dot", {"lanes": 13, "pipeline": 2}, "verilator", 300),
]

# ... and make sim, on both simulators.
FULL = [
    ("network_engine", {}, 200),
    ("network_engine", {"lanes": 64, "channels": 8}, 200),
    ("fp32_dot", {"lanes": 4}, 2000),
    ("rtn_mac_array", {"lanes": 16, "channels": 4, "thresholds": "random"}, 5000),
    ("rtn_mac_array", {"lanes": 9, "channels": 3, "weights": "load"}, 3000),
    ("ternary_dot", {"lanes": 64}, 5000),
    ("ternary_dot", {"lanes": 6, "pipeline": 0}, 2000),       # combinational: latency 0
    ("ternary_encoder", {"lanes": 8, "thresholds": "random"}, 5000),
    ("ternary_decoder", {"lanes": 8, "values": "random"}, 5000),
    ("int_dot", {"lanes": 16, "width": 8}, 5000),
]


def _id(unit, params, simulator):
    return f"{runner.config_id(unit, params)}-axis-{simulator}"


def _run(unit, params, simulator, vectors, record_property):
    row = runner.run(unit, params, simulator, vectors=vectors, interface="axis")
    record_property("sim_row", json.dumps(row))
    print(json.dumps(row))
    assert row["mismatches"] == 0
    assert row["measured_latency"] == row["latency"]


@pytest.mark.cocotb
@pytest.mark.parametrize("unit, params, simulator, vectors",
                         [pytest.param(*case, id=_id(*case[:3])) for case in QUICK])
def test_axis_quick(unit, params, simulator, vectors, record_property):
    _run(unit, params, simulator, vectors, record_property)


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("unit, params, simulator, vectors", [
    pytest.param(unit, params, sim, vectors, id=_id(unit, params, sim))
    for unit, params, vectors in FULL for sim in runner.SIMULATORS])
def test_axis_full(unit, params, simulator, vectors, record_property):
    _run(unit, params, simulator, vectors, record_property)


@pytest.mark.cocotb
@pytest.mark.parametrize("unit, params, fault, message", [
    ("int_dot", {"lanes": 2}, "corrupt:20", "vector 20 (seed"),
    ("int_dot", {"lanes": 2}, "drop:40", "expected output: reordered, lost or duplicated?"),
    pytest.param("network_engine", {}, "corrupt:3", "vector 3 (seed", marks=pytest.mark.slow),
])
def test_axis_bench_reports_faults(unit, params, fault, message, monkeypatch):
    """A sabotaged input frame (every bit flipped, or never sent) fails the bench with the
    vector, its inputs, the expected and actual results and the seed."""
    monkeypatch.delenv("NUM_VECTORS", raising=False)
    with pytest.raises(runner.SimulationFailed) as failure:
        runner.run(unit, params, "icarus", vectors=4 if unit == "network_engine" else 64,
                   interface="axis", extra_env={"RTN_SIM_FAULT": fault})
    text = str(failure.value)
    assert message in text
    assert "expected: " in text and "actual: " in text
