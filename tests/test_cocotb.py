"""cocotb benches (sim/) on the exported Verilog of every unit, on Icarus and Verilator.

Each case exports one configuration, builds it once per simulator and streams many vectors
through it (sim/bench.py: corners + random with gaps and backpressure, throughput and
latency, reset mid-stream). The small cases (marker `cocotb`) run on Icarus in `make test`;
the long ones (`slow`) run at full scale in `make sim`. NUM_VECTORS, SEED, SPARSITY, IDLE,
STALL and WAVES=1 tune a run (docs/sim.md). Each case adds a row to build/sim/summary.json and
to the table printed at the end of the session.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cnn import random_cnn

from rtn_hw import weights

# The launcher and the benches live in sim/ (the cocotb test directory), not in a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import runner  # noqa: E402
import volume  # noqa: E402

FULL = 20_000
SMALL = 300

# (unit, parameters): small configurations for make test (Icarus only) ...
QUICK = [
    ("ternary_dot", {"lanes": 8}),
    ("ternary_dot", {"lanes": 13, "pipeline": 2}),
    ("ternary_encoder", {"lanes": 8}),
    ("ternary_decoder", {"lanes": 8, "values": "random"}),
    ("rtn_mac_array", {"lanes": 16, "channels": 4}),
    ("fp32_dot", {"lanes": 4}),
    ("int_dot", {"lanes": 5, "width": 16}),
    ("rtn_mac_array", {"lanes": 9, "channels": 3, "weights": "load", "levels_per_stage": 1}),
    ("ternary_encoder", {"lanes": 6, "thresholds": "random"}),
]

# ... and the full-scale ones for make sim, on both simulators. Slowest first, so that
# pytest-xdist starts them early (fp32 at 64 lanes runs at tens of vectors per second on Icarus).
FULL_SCALE = [
    ("fp32_dot", {"lanes": 64}),
    ("fp32_dot", {"lanes": 16}),
    ("rtn_mac_array", {"lanes": 256, "channels": 4, "thresholds": "random"}),
    ("rtn_mac_array", {"lanes": 64, "channels": 8, "levels_per_stage": 2}),
    ("ternary_dot", {"lanes": 256, "pipeline": 3}),
    ("ternary_dot", {"lanes": 64}),
    ("ternary_encoder", {"lanes": 256, "thresholds": "random"}),
    ("ternary_encoder", {"lanes": 64}),
    ("ternary_decoder", {"lanes": 64, "values": "random"}),
    ("ternary_decoder", {"lanes": 16, "values": "random"}),
    ("int_dot", {"lanes": 64, "width": 16}),
    ("int_dot", {"lanes": 16, "width": 8}),
]


# The dataflow engine (sim/units/dataflow_engine.py): one image per II cycles, so its runs count
# images, not vectors: corners and the shipped digits test images first, then random images.
# (parameters, images). Quick: a small folding (II 8) that Icarus runs fast; full scale: every
# test image (359 + 8 corners) and random ones at II 32 (block RAM), 8 and 2 (weights in logic).
DATAFLOW_QUICK = [({"folding": "64x16:logic,128x16:logic,32x5:logic"}, {"icarus": 24}),
                  ({"folding": "64x16:logic,128x16:logic,32x5:logic", "buffers": "bram"},
                   {"icarus": 24})]
# Icarus runs these designs at a few images a second (docs/sim.md), so it gets fewer images
# and not the II-2 folding (0.4 images/s: 22 minutes for 400); Verilator runs them all.
DATAFLOW_FULL = [
    ({"folding": "64x4,128x4,8x5"}, {"verilator": 400, "icarus": 48}),
    ({"folding": "64x16:logic,128x16:logic,32x5:logic"}, {"verilator": 400, "icarus": 48}),
    ({"folding": "64x64:logic,128x64:logic,128x5:logic"}, {"verilator": 400}),
    # Block-RAM buffers (the UP5K's): the board top's II 1,024 and the report's II 512.
    ({"folding": "16x1,32x1,3x1", "buffers": "bram"}, {"verilator": 400}),
    ({"folding": "8x1,16x1,2x1", "buffers": "bram"}, {"verilator": 400}),
]


# The dataflow engine on a CNN: one pixel position per input handshake, so an image is H·W
# handshakes. Quick: a small seeded random CNN (QUICK_CNN_SHAPE: a 4x4 map, a 3x3 padding-1
# convolution to 3 channels, a 2x2 pool, the flatten, a hidden linear layer of 5, 4 classes;
# tests/test_cnn.py's `random_cnn`) written under build/sim by the test; weights baked, in
# logic and in block RAM, the hidden layer's 5 channels ragged (II 25, generator-bound): its 10
# corner images and 14 random ones with gaps and backpressure take about 10 s on Icarus, where
# the digits CNN's 3 (II 81, 2,585 cycles in all) took 60–150 s. Full scale: Verilator on the
# digits CNN, every test image. (The weights parameter is a path; the case ids name its file.)
DIGITS_CNN = str(Path(__file__).resolve().parents[1] / "weights" / "rtn_digits_cnn.json")
QUICK_CNN = str(runner.BUILD / "weights" / "quick_cnn.json")
QUICK_CNN_SHAPE = ((4, 4), [(3, 3, 1, 1, (2, 2))], (5,))
CNN_QUICK = [({"folding": "9x3:baked,6x2:logic,5x2", "weights": QUICK_CNN}, {"icarus": 24})]
CNN_FULL = [({"folding": "9x16:baked,29x32,16x1", "weights": DIGITS_CNN}, {"verilator": 370}),
            ({"folding": "9x4,48x8,32x5:logic", "weights": DIGITS_CNN}, {"verilator": 370})]


def _cases(configs, simulators, marks):
    return [pytest.param(unit, params, sim, marks=marks,
                         id=f"{runner.config_id(unit, params)}-{sim}")
            for unit, params in configs for sim in simulators]


def _run(unit, params, simulator, vectors, record_property):
    row = runner.run(unit, params, simulator, vectors=vectors)
    record_property("sim_row", json.dumps(row))
    print(json.dumps(row))
    assert row["mismatches"] == 0
    assert row["measured_latency"] == row["latency"]
    assert row["measured_ii"] == row["ii"]


@pytest.mark.cocotb
@pytest.mark.parametrize("unit, params, simulator", _cases(QUICK, ["icarus"], []))
def test_bench_quick(unit, params, simulator, record_property):
    _run(unit, params, simulator, SMALL, record_property)


@pytest.mark.cocotb
@pytest.mark.parametrize("unit, params, simulator",
                         _cases(FULL_SCALE, runner.SIMULATORS, [pytest.mark.slow]))
def test_bench_full(unit, params, simulator, record_property):
    _run(unit, params, simulator, FULL, record_property)


def _dataflow_cases(configs, marks):
    def named(params):
        return {k: Path(v).stem if k == "weights" else v for k, v in params.items()}
    return [pytest.param(params, images, sim, marks=marks,
                         id=f"{runner.config_id('dataflow_engine', named(params))}-{sim}")
            for params, per_simulator in configs for sim, images in per_simulator.items()]


@pytest.mark.cocotb
@pytest.mark.parametrize("params, images, simulator",
                         _dataflow_cases(DATAFLOW_QUICK, []))
def test_dataflow_quick(params, images, simulator, record_property):
    _run("dataflow_engine", params, simulator, images, record_property)


@pytest.mark.cocotb
@pytest.mark.parametrize("params, images, simulator",
                         _dataflow_cases(DATAFLOW_FULL + CNN_FULL, [pytest.mark.slow]))
def test_dataflow_full(params, images, simulator, record_property):
    _run("dataflow_engine", params, simulator, images, record_property)


@pytest.mark.cocotb
@pytest.mark.parametrize("params, images, simulator", _dataflow_cases(CNN_QUICK, []))
def test_dataflow_cnn_quick(params, images, simulator, seed, record_property):
    _, manifest, arrays = random_cnn(np.random.default_rng(seed), *QUICK_CNN_SHAPE,
                                     classes=4)
    path = Path(params["weights"])
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest["arrays"]["file"] = path.with_suffix(".npz").name
    # Untrained: the record only carries the seed the loader requires.
    manifest["training"] = {"seed": seed, "accuracy": {
        "float": 0.0, "torch": 0.0, "golden": 0.0, "golden_correct": 0, "test_size": 1}}
    weights.save(path, manifest, arrays)
    record_property("network_seed", seed)
    _run("dataflow_engine", params, simulator, images, record_property)


@pytest.mark.cocotb
@pytest.mark.parametrize("fault, message", [
    ("corrupt:1", "vector 1 (seed"),
    ("drop:3", "expected output: reordered, lost or duplicated?"),
    ("drop:255", "lost: only 255 of 256 outputs arrived"),
    ("repeat:255", "duplicated or spurious: 1 outputs beyond the 256 inputs"),
])
def test_bench_reports_faults(fault, message, monkeypatch):
    """A sabotaged input (flipped, dropped, sent twice) fails the bench with a readable report:
    the vector, its inputs in trit notation, expected and actual values, and the seed.
    Lanes 8 has 256 corner vectors, so index 255 is the last vector sent."""
    monkeypatch.delenv("NUM_VECTORS", raising=False)
    with pytest.raises(runner.SimulationFailed) as failure:
        runner.run("ternary_dot", {"lanes": 8}, "icarus", vectors=64,
                   extra_env={"RTN_SIM_FAULT": fault})
    text = str(failure.value)
    assert message in text
    if fault.startswith("corrupt"):
        assert "inputs:   w=" in text and "expected: d=" in text and "actual:   d=" in text


# The high-volume mode (sim/volume.py): the plain $readmemh testbench, stimulus and checks in
# bulk. `make sim VECTORS=1000000` runs every full-scale configuration without side-stream
# loads on Verilator; without VECTORS those cases are skipped (each needs a Verilator build of
# its own, which would double make sim's build time).
VOLUME_QUICK = [("ternary_dot", {"lanes": 8}), ("fp32_dot", {"lanes": 4}),
                ("ternary_decoder", {"lanes": 8, "values": "random"})]


def _volume(unit, params, simulator, vectors, seed, record_property):
    try:
        row = volume.run(unit, params, vectors=vectors, seed=seed, simulator=simulator)
    except volume.Unsupported as reason:
        pytest.skip(str(reason))
    record_property("sim_row", json.dumps(row))
    print(json.dumps(row))
    assert row["mismatches"] == 0
    assert row["vectors"] >= vectors


@pytest.mark.cocotb
@pytest.mark.parametrize("unit, params, simulator", _cases(VOLUME_QUICK, ["icarus"], []))
def test_volume_quick(unit, params, simulator, seed, record_property):
    _volume(unit, params, simulator, 2_000, seed, record_property)


@pytest.mark.cocotb
@pytest.mark.parametrize("unit, params, simulator",
                         _cases(FULL_SCALE, ["verilator"], [pytest.mark.slow]))
def test_volume_full(unit, params, simulator, seed, record_property):
    vectors = os.environ.get("VECTORS", "")
    if not vectors:
        pytest.skip("high-volume mode: set VECTORS (make sim VECTORS=1000000)")
    if not vectors.isdigit() or int(vectors) < 1:
        raise ValueError(f"VECTORS={vectors}: expected a positive integer")
    _volume(unit, params, simulator, int(vectors), seed, record_property)


@pytest.mark.cocotb
def test_volume_reports_faults(seed):
    """A corrupted input fails the high-volume check with the scoreboard's description."""
    with pytest.raises(runner.SimulationFailed) as failure:
        volume.run("ternary_dot", {"lanes": 8}, vectors=500, seed=seed, simulator="icarus",
                   fault="corrupt:3")
    text = str(failure.value)
    assert f"vector 3 (chunk 0, seed {seed}" in text
    assert "inputs:   w=" in text and "expected: d=" in text and "actual:   d=" in text
