"""`python -m rtn_hw.demo` on a subset of the digits test images, on both engines, and on the
digits CNN (`--network`, the dataflow engine one pixel position per handshake): the engine
agrees with the golden network, its II and latency are as predicted, the JSON report holds what
the issue asks for, a disagreement or a wrong II exits 1, and bad command lines exit 2 with one
line. The shipped network's own accuracy figures are checked once, in test_weights.py; every
digits-CNN and MNIST-CNN test image on Verilator behind `slow`."""

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest

from rtn_hw import demo, weights
from rtn_hw.fold import fewest_lanes
from rtn_hw.gateware.dataflow import (Folding, latency, layer_ii, parse_foldings,
                                      predicted_ii, unfolded)
from rtn_hw.gateware.engine import ENGINE_CONFIGS, cycles_per_image

NETWORK = weights.load()
DIGITS_CNN = weights.load(weights.WEIGHTS_DIR / "rtn_digits_cnn.json")
# A folding that the Amaranth simulator runs quickly (few cycles per image, small design).
FAST_FOLDING = "64x16:logic,128x16:logic,32x5:logic"


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
    assert report["engine"] == "network" and report["foldings"] is None
    assert report["cycles_per_image"] == cycles_per_image(NETWORK, **config)
    assert report["cycles_measured"] == [report["cycles_per_image"]]
    assert report["latency_cycles"] == report["cycles_per_image"]
    # The next image is taken the cycle after a result is read.
    assert report["ii_cycles_predicted"] == report["ii_cycles_measured"] == (
        report["cycles_per_image"] + 1)
    mhz = report["clock"]["mhz"]
    assert report["images_per_second_at_fmax"] == pytest.approx(
        mhz * 1e6 / report["ii_cycles_predicted"])
    assert report["clock"]["source"]
    assert report["seed"] == 7 and report["wall_seconds"] > 0
    assert set(report["tool_versions"]) >= {"python", "amaranth", "numpy"}
    assert not list(tmp_path.glob(".demo.json.*"))       # written via a temporary file
    text = capsys.readouterr().out
    assert "agreement 1.0000" in text and "engine (simulated)" in text


def test_dataflow_demo_agrees_and_reports(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert demo.main(["--engine", "dataflow", "--folding", FAST_FOLDING, "--images", "12",
                      "--simulator", "amaranth", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    foldings = parse_foldings(FAST_FOLDING, NETWORK)
    ii = predicted_ii(NETWORK, foldings)
    assert report["engine"] == "dataflow" and report["samples"] == 12
    assert report["hw_golden_agreement"] == 1.0 and report["mismatches"] == []
    assert report["foldings"] == [dataclasses.asdict(f) for f in foldings]
    assert report["ii_cycles_predicted"] == report["ii_cycles_measured"] == ii == 8
    assert report["latency_cycles"] == latency(NETWORK, foldings)
    assert report["cycles_measured"] == [report["latency_cycles"]]
    assert report["lanes"] is None and report["channels"] is None
    assert report["images_per_second_at_fmax"] == pytest.approx(
        report["clock"]["mhz"] * 1e6 / ii)
    text = capsys.readouterr().out
    assert "agreement 1.0000" in text and "DataflowEngine(64x16:logic," in text


def test_run_demo_dataflow_default_folding():
    """The reusable entry point: the default folding is fewest_lanes(network, 32); one image
    gives no spacing to measure."""
    images, _ = weights.load_digits_test()
    run = demo.run_demo(images[:1], NETWORK, engine="dataflow", simulator="amaranth")
    assert run.dut.foldings == fewest_lanes(NETWORK, demo.DATAFLOW_II)
    assert run.agreement == 1.0 and run.ii_predicted == 32 and run.ii_measured is None
    assert run.latencies == [run.dut.latency] and run.timing_ok


def _sabotaged(monkeypatch, change):
    real = demo.run_demo
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: change(real(*a, **k)))


def test_demo_exits_1_on_disagreement(tmp_path, monkeypatch):
    def corrupt(run):
        logits = run.logits.copy()
        logits[1, 0] += 1
        return dataclasses.replace(run, logits=logits)
    _sabotaged(monkeypatch, corrupt)
    out = tmp_path / "demo.json"
    assert demo.main(["--images", "2", "--simulator", "amaranth", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["hw_golden_agreement"] == 0.5 and report["mismatches"] == [1]


def test_demo_exits_1_when_ii_differs(tmp_path, monkeypatch, capsys):
    """A result one cycle late: the measured II is not the predicted one."""
    _sabotaged(monkeypatch, lambda run: dataclasses.replace(
        run, out_cycles=run.out_cycles[:-1] + [run.out_cycles[-1] + 1]))
    out = tmp_path / "demo.json"
    assert demo.main(["--engine", "dataflow", "--folding", FAST_FOLDING, "--images", "3",
                      "--simulator", "amaranth", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["hw_golden_agreement"] == 1.0
    assert report["ii_cycles_measured"] == report["ii_cycles_predicted"] + 1
    assert "TIMING differs from the prediction: II [8, 9]" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "argument --images: '0': expected a positive integer"),
    (["--lanes", "x"], "argument --lanes: 'x': expected a positive integer"),
    (["--seed", "-1"], "argument --seed: '-1': expected a non-negative integer"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--simulator", "icarus"],
     "argument --simulator: invalid choice: 'icarus' (choose from 'amaranth', 'verilator')"),
    (["--engine", "finn"],
     "argument --engine: invalid choice: 'finn' (choose from 'network', 'dataflow')"),
    (["--folding", "unfolded"], "argument --folding: applies to --engine dataflow only"),
    (["--engine", "dataflow", "--lanes", "8"], "argument --lanes: applies to --engine network "
     "only (the dataflow engine takes --folding)"),
    (["--engine", "dataflow", "--folding", "64x4"], "argument --folding: '64x4': Foldings must "
     "give one Folding per layer (3), not 1"),
    (["--engine", "dataflow", "--folding", "64x4,128x4,8y5"], "argument --folding: "
     "'64x4,128x4,8y5': expected unfolded, smallest or LANESxCHANNELS[:STORAGE] per layer, "
     "not '8y5'"),
    (["--engine", "dataflow", "--folding", "65x4,128x4,8x5"], "argument --folding: "
     "'65x4,128x4,8x5': Layer 0 (fc1, 64→128): lanes must be at most 64, not 65"),
    # CNNs
    (["--network", "rtn_digits_cnn", "--engine", "network"], "argument --engine: network runs "
     "MLPs only; rtn_digits_cnn.json is a CNN (--engine dataflow, the default for a CNN, runs "
     "it)"),
    (["--network", "rtn_digits_cnn", "--weights", "w.json"], "argument --network: not allowed "
     "with argument --weights (both name the network)"),
    (["--network", "rtn_digits_cnn", "--folding", "9x4,48x8"], "argument --folding: "
     "'9x4,48x8': Foldings must give one Folding per conv or linear layer (3; max-pool layers "
     "take none), not 2"),
    (["--network", "rtn_digits_cnn", "--lanes", "4"], "argument --lanes: applies to --engine "
     "network only (the dataflow engine takes --folding)"),
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
    assert report["ii_cycles_measured"] == cycles_per_image(NETWORK, 32, 2) + 1
    assert report["simulator"].startswith("verilator")


@pytest.mark.slow
@pytest.mark.parametrize("folding", ["64x4,128x4,8x5", "64x32:logic,128x32:logic,64x5:logic"])
def test_dataflow_demo_on_verilator(folding, tmp_path):
    """Every test image through the exported dataflow engine: II and latency as predicted."""
    out = tmp_path / "demo.json"
    assert demo.main(["--engine", "dataflow", "--folding", folding, "--simulator", "verilator",
                      "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    foldings = parse_foldings(folding, NETWORK)
    assert report["hw_golden_agreement"] == 1.0 and report["samples"] == 359
    assert report["ii_cycles_measured"] == predicted_ii(NETWORK, foldings)
    assert report["cycles_measured"] == [latency(NETWORK, foldings)]


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



def test_dataflow_clock_takes_the_same_folding_only(tmp_path):
    foldings = parse_foldings("64x4,128x4,8x5", NETWORK)
    synth, pareto = tmp_path / "synth.json", tmp_path / "dataflow.json"
    board = tmp_path / "ulx3s-dataflow" / "report.json"

    def clock():
        return demo.dataflow_clock(NETWORK, foldings, synth, pareto, board)
    runs = [{"id": "x", "unit": "dataflow_engine", "target": "ecp5-85k", "fmax_mhz": 80.0,
             "params": {"folding": "64x2,128x2,4x5", "weights": "shipped"}},
            {"id": "y", "unit": "dataflow_engine", "target": "ice40-up5k", "fmax_mhz": 20.0,
             "params": {"folding": "64x4,128x4,8x5", "weights": "shipped"}},
            {"id": "w", "unit": "dataflow_engine", "target": "ecp5-85k", "fmax_mhz": 90.0,
             "params": {"folding": "64x4,128x4,8x5", "weights": "other.json"}}]
    synth.write_text(json.dumps({"runs": runs}))
    mhz, source = clock()
    assert mhz == demo.BOARD_CLOCK_MHZ and source.startswith("board clock")
    # Next: the ULX3S board top with the same folding ...
    board.parent.mkdir()
    board.write_text(json.dumps({"engine": {"kind": "dataflow", "foldings": [
        "64x4:bram", "128x4:bram", "8x5:bram"]}, "fmax": {"clk": {"achieved_mhz": 41.0}}}))
    mhz, source = clock()
    assert mhz == 41.0 and "ULX3S board top" in source
    # ... before it the Pareto report, whose rows name their foldings per layer ...
    rows = [{"foldings": [{"lanes": 64, "channels": 4, "storage": "bram"},
                          {"lanes": 128, "channels": 4, "storage": "bram"},
                          {"lanes": 8, "channels": 5, "storage": "bram"}], "fmax_mhz": 61.5},
            {"foldings": "64x2,128x2,4x5", "fmax_mhz": 70.0}]
    pareto.write_text(json.dumps({"rows": rows}))
    mhz, source = clock()
    assert mhz == 61.5 and source.startswith("dataflow.json")
    # ... and first a synth run of the same folding and weights.
    runs.append({"id": "z", "unit": "dataflow_engine", "target": "ecp5-85k", "fmax_mhz": 55.0,
                 "params": {"folding": "64x4:bram,128x4,8x5:bram", "weights": "shipped"}})
    synth.write_text(json.dumps({"runs": runs}))
    mhz, source = clock()
    assert mhz == 55.0 and "run z" in source


# --- CNNs: one pixel position per handshake ----------------------------------------------------

def test_stimulus_is_raster_order_one_position_per_handshake():
    """An MLP's handshake is its image; a CNN's are its pixel positions, rows top to bottom,
    columns left to right, each the C input pixels, image after image."""
    images = np.arange(2 * 64).reshape(2, 64) % 17
    handshakes, per_image = demo.stimulus(NETWORK, images)
    assert per_image == 1 and handshakes == images.tolist()
    handshakes, per_image = demo.stimulus(DIGITS_CNN, images)
    assert per_image == 64 and len(handshakes) == 128
    assert handshakes[9] == [int(images[0, 9])]            # row 1, column 1 of image 0
    assert handshakes[64 + 63] == [int(images[1, 63])]
    # Three input channels: (C, H, W) pixels, a handshake is one position's C pixels.
    cnn = types.SimpleNamespace(convolutional=True, layers=[types.SimpleNamespace(
        in_shape=(3, 2, 2))])
    image = np.arange(12)[None]                              # c·4 + y·2 + x
    assert demo.stimulus(cnn, image) == ([[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]], 4)


def test_default_cnn_folding_keeps_up_with_the_input():
    """A CNN's default folding: per conv or linear layer the fewest lanes × channels whose
    stage is not slower than the unfolded engine (the input's II), pools None."""
    mnist = weights.load(weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json")
    # II 841 = conv1's generator; fc1 15x16: ⌈1568 / 15⌉ · ⌈128 / 16⌉ = 840 cycles, 240 MACs.
    foldings = demo.default_foldings(mnist)
    assert foldings == parse_foldings("9x16:baked,144x8,15x16,2x1", mnist)
    assert predicted_ii(mnist, foldings) == predicted_ii(mnist, unfolded(mnist))
    # II 81: conv2 at 29x32 takes 16 positions · 5 chunks = 80 cycles.
    foldings = demo.default_foldings(DIGITS_CNN)
    assert foldings == parse_foldings("9x16:baked,29x32,16x1", DIGITS_CNN)
    assert predicted_ii(DIGITS_CNN, foldings) == predicted_ii(DIGITS_CNN, unfolded(DIGITS_CNN))
    # Fewer lanes or channels in a layer would be slower than the input.
    for k, lanes, channels in ((2, 28, 32), (2, 29, 31), (4, 15, 1)):
        assert layer_ii(DIGITS_CNN.layers[k], Folding(lanes, channels)) > 81


def test_cnn_demo_agrees_and_reports(tmp_path, capsys):
    """`--network rtn_digits_cnn`: the dataflow engine by default, a few test images back to
    back in the Amaranth simulator, every logit equal to the golden network's, results II
    apart, the first image's latency the predicted one; the report names the network."""
    out = tmp_path / "demo_cnn.json"
    assert demo.main(["--network", "rtn_digits_cnn", "--images", "3", "--simulator",
                      "amaranth", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    foldings = demo.default_foldings(DIGITS_CNN)
    images, labels = weights.load_digits_test()
    _, classes = DIGITS_CNN.forward(images[:3])
    assert report["network"] == "rtn_digits_cnn" and report["convolutional"]
    assert report["engine"] == "dataflow" and report["dataset"] == "digits"
    assert report["samples"] == 3 and report["hw_golden_agreement"] == 1.0
    assert report["accuracy_hw"] == float((classes == labels[:3]).mean())
    assert report["accuracy_float"] == DIGITS_CNN.manifest["training"]["accuracy"]["float"]
    assert report["handshakes_per_image"] == 64
    assert report["ii_cycles"] == report["ii_cycles_measured"] == predicted_ii(DIGITS_CNN,
                                                                               foldings)
    assert report["cycles_per_image"] == report["latency_cycles"] == latency(DIGITS_CNN,
                                                                             foldings)
    assert min(report["cycles_measured"]) == report["latency_cycles"]
    assert report["foldings"][1] is None
    # No routed Fmax of this folding: the folding model's clock, said so.
    assert report["clock"]["kind"] in ("routed", "model")
    assert report["images_per_second_at_fmax"] == pytest.approx(
        report["clock"]["mhz"] * 1e6 / report["ii_cycles"])
    text = capsys.readouterr().out
    assert "RTN digits demo: 3 test images of rtn_digits_cnn.json through DataflowEngine(" in text


def test_network_name_sets_the_report_path(tmp_path, monkeypatch, capsys):
    """--network NAME writes demo_NAME.json beside demo.json (checked before simulating)."""
    monkeypatch.setattr(demo, "REPORT", tmp_path / "reports" / "demo.json")

    def stop(*args, **kwargs):
        raise demo.SimulationError("stopped before simulating")
    monkeypatch.setattr(demo, "run_demo", stop)
    (tmp_path / "reports" / "demo_rtn_digits_cnn.json").mkdir(parents=True)
    assert demo.main(["--network", "rtn_digits_cnn"]) == 2
    assert "demo_rtn_digits_cnn.json: cannot write (Is a directory)" in capsys.readouterr().err
    (tmp_path / "reports" / "demo_rtn_digits_cnn.json").rmdir()
    assert demo.main(["--network", "rtn_digits_cnn"]) == 2
    assert capsys.readouterr().err.endswith("error: stopped before simulating\n")
    args = demo.parser().parse_args(["--network", "rtn_mnist5k_cnn"])
    assert demo._network_and_report(args) == (weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json",
                                              "--network", tmp_path / "reports" /
                                              "demo_rtn_mnist5k_cnn.json")
    args = demo.parser().parse_args(["--network", "x/y.json", "--out", "z.json"])
    assert demo._network_and_report(args) == (Path("x/y.json"), "--network", Path("z.json"))


def test_missing_network_is_one_line(capsys):
    assert demo.main(["--network", "no_such_network"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m rtn_hw.demo: error: --network ") and err.count("\n") == 1
    assert "no_such_network.json" in err


def test_run_demo_refuses_the_network_engine_for_a_cnn():
    with pytest.raises(ValueError, match=r"^Engine 'network' runs MLPs only; "
                                         r"rtn_digits_cnn.json is a CNN: use the dataflow "
                                         r"engine$"):
        demo.run_demo(np.zeros((1, 64), int), DIGITS_CNN, engine="network")


@pytest.mark.slow
def test_cnn_demo_on_verilator_every_digits_image(tmp_path):
    """Every digits test image through the exported CNN engine on Verilator, one pixel
    position per word of the testbench's stimulus memory."""
    out = tmp_path / "demo.json"
    assert demo.main(["--network", "rtn_digits_cnn", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    foldings = demo.default_foldings(DIGITS_CNN)
    assert report["hw_golden_agreement"] == 1.0 and report["samples"] == 359
    assert report["ii_cycles_measured"] == predicted_ii(DIGITS_CNN, foldings)
    assert min(report["cycles_measured"]) == latency(DIGITS_CNN, foldings)
    assert report["simulator"].startswith("verilator")


def test_dataflow_clock_reads_a_routed_cnn_row(tmp_path):
    """bench/dataflow_cnn_area.py's report (keyed by the folding, "pool" at the pools): its
    routed Fmax for the same network and folding, nothing for another one or a failed route."""
    foldings = demo.default_foldings(DIGITS_CNN)
    key = "9x16:baked,pool,29x32:bram,pool,16x1:bram"
    report = tmp_path / "dataflow_cnn_area.json"

    def clock(value):
        report.write_text(json.dumps(value))
        return demo.dataflow_clock(DIGITS_CNN, foldings, tmp_path / "no_synth.json",
                                   tmp_path / "no_pareto.json", tmp_path / "no_board.json",
                                   report)
    row = {"target": "ecp5-85k", "network": "Network(rtn_digits_cnn.json, 64-conv16-...)",
           "route": {"ok": True, "fmax_mhz": 57.5, "seed": 1}}
    mhz, source = clock({key: row})
    assert mhz == 57.5 and source.startswith("dataflow_cnn_area.json: routed Fmax")
    assert demo.clock_kind(source) == "routed"
    for other in ({key.replace("16x1", "8x2"): row},
                  {key: {**row, "route": {"ok": False, "error": "no route"}}},
                  {key: {**row, "network": "Network(rtn_mnist5k_cnn.json, ...)"}}):
        mhz, source = clock(other)
        assert mhz == demo.BOARD_CLOCK_MHZ and demo.clock_kind(source) == "board"
