"""`python -m rtn_hw.demo` on a subset of the digits test images: the engine agrees with the
golden network, the JSON report holds what the issue asks for, a disagreement exits 1, and bad
command lines exit 2 with one line. The shipped network's own accuracy figures are checked once,
in test_weights.py."""

import json

import pytest

from rtn_hw import demo, weights
from rtn_hw.gateware.engine import ENGINE_CONFIGS, cycles_per_image

NETWORK = weights.load()


def test_demo_subset_agrees_and_reports(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert demo.main(["--images", "50", "--seed", "7", "--simulator", "amaranth",
                      "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    config = ENGINE_CONFIGS["ecp5-85k"]
    images, labels = weights.load_digits_test()
    _, classes = NETWORK.forward(images[:50])
    assert report["samples"] == 50
    assert report["hw_golden_agreement"] == 1.0 and report["mismatches"] == []
    assert report["accuracy_hw"] == report["accuracy_golden"] == float(
        (classes == labels[:50]).mean())
    assert report["accuracy_float"] == NETWORK.manifest["training"]["accuracy"]["float"]
    assert (report["lanes"], report["channels"]) == (config["lanes"], config["channels"])
    assert report["cycles_per_image"] == cycles_per_image(NETWORK, **config)
    assert report["cycles_measured"] == [report["cycles_per_image"]]
    mhz = report["clock"]["mhz"]
    assert report["images_per_second_at_fmax"] == pytest.approx(
        mhz * 1e6 / report["cycles_per_image"])
    assert report["clock"]["source"]
    assert report["seed"] == 7 and report["wall_seconds"] > 0
    assert set(report["tool_versions"]) >= {"python", "amaranth", "numpy"}
    assert not list(tmp_path.glob(".demo.json.*"))       # written via a temporary file
    text = capsys.readouterr().out
    assert "agreement 1.0000" in text and "engine (simulated)" in text


def test_demo_exits_1_on_disagreement(tmp_path, monkeypatch):
    real = demo.run_demo

    def corrupt(*args, **kwargs):
        dut, logits, classes, latencies, seconds = real(*args, **kwargs)
        logits = logits.copy()
        logits[1, 0] += 1
        return dut, logits, classes, latencies, seconds
    monkeypatch.setattr(demo, "run_demo", corrupt)
    out = tmp_path / "demo.json"
    assert demo.main(["--images", "2", "--simulator", "amaranth", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["hw_golden_agreement"] == 0.5 and report["mismatches"] == [1]


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "argument --images: '0': expected a positive integer"),
    (["--lanes", "x"], "argument --lanes: 'x': expected a positive integer"),
    (["--seed", "-1"], "argument --seed: '-1': expected a non-negative integer"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--simulator", "icarus"],
     "argument --simulator: invalid choice: 'icarus' (choose from 'amaranth', 'verilator')"),
])
def test_demo_usage_errors(argv, message, capsys):
    assert demo.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"python -m rtn_hw.demo: error: {message}\n"


@pytest.mark.slow
def test_demo_on_verilator(tmp_path):
    """The exported Verilog on Verilator: the same agreement and exact cycle counts."""
    out = tmp_path / "demo.json"
    assert demo.main(["--images", "40", "--lanes", "32", "--channels", "2",
                      "--simulator", "verilator", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["hw_golden_agreement"] == 1.0 and report["samples"] == 40
    assert report["cycles_measured"] == [cycles_per_image(NETWORK, 32, 2)]
    assert report["simulator"].startswith("verilator")


def test_fmax_clock_prefers_the_matching_engine_run(tmp_path):
    report = tmp_path / "synth.json"
    runs = [{"id": "ice40-up5k/network_engine/32/dsp", "unit": "network_engine",
             "target": "ice40-up5k", "fmax_mhz": 30.0, "params": {"lanes": 32, "channels": 2}},
            {"id": "a", "unit": "network_engine", "target": "ecp5-85k", "fmax_mhz": 70.0,
             "params": {"lanes": 32, "channels": 2}},
            {"id": "b", "unit": "network_engine", "target": "ecp5-85k", "fmax_mhz": 60.0,
             "params": {"lanes": 64, "channels": 8}},
            {"id": "c", "unit": "ternary_dot", "target": "ecp5-85k", "fmax_mhz": 200.0}]
    report.write_text(json.dumps({"runs": runs}))
    mhz, source = demo.fmax_clock(64, 8, report)
    assert mhz == 60.0 and "run b" in source
    mhz, source = demo.fmax_clock(16, 1, report)
    assert mhz == 70.0 and "run a" in source
    report.write_text(json.dumps({"runs": [runs[0], runs[3]]}))
    no_board = tmp_path / "no_board.json"
    mhz, source = demo.fmax_clock(64, 8, report, no_board)
    assert mhz == demo.BOARD_CLOCK_MHZ and source.startswith("board clock")
    mhz, source = demo.fmax_clock(64, 8, tmp_path / "missing.json", no_board)
    assert mhz == demo.BOARD_CLOCK_MHZ
    # Next in line: the ULX3S bitstream report, if it has the same engine configuration.
    board = tmp_path / "ulx3s" / "report.json"
    board.parent.mkdir()
    board.write_text(json.dumps({"engine": {"lanes": 64, "channels": 8},
                                 "fmax": {"clk": {"achieved_mhz": 45.4, "constraint_mhz": 25}}}))
    mhz, source = demo.fmax_clock(64, 8, report, board)
    assert mhz == 45.4 and "ULX3S board top" in source
    mhz, source = demo.fmax_clock(32, 2, report, board)
    assert mhz == demo.BOARD_CLOCK_MHZ

