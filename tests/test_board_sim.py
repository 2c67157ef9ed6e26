"""End-to-end proof in simulation: the board logic (UART + link + the board's engine, as
boards.top.board_logic builds it for the bitstream) exported to Verilog, with a UART model on
its pins, driven by the host driver's own BoardClient (sim/board/), against the golden
network. The short versions (a few images and every error case, Icarus: the digits MLP on the
iCEBreaker logic, the digits CNN on the ULX3S dataflow logic) run in `make test`; `make sim`
runs 120 images per board of the MLP and MNIST CNN images (each in PARTs) on the ULX3S logic,
on Verilator, and records the simulated images per second in build/sim/board/summary.json."""

import os
import sys
from pathlib import Path

import pytest

from rtn_hw.files import update_json

ROOT = Path(__file__).resolve().parents[1]


def _load_runner():
    # By path under its own name: a bare "run" on sys.path could shadow or be shadowed.
    import importlib.util
    spec = importlib.util.spec_from_file_location("board_sim_run", ROOT / "sim/board/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


board_sim = _load_runner()

SUMMARY = ROOT / "build" / "sim" / "board" / "summary.json"
SEED = int(os.environ.get("SEED", "20261129"))
MNIST_IMAGES = 30


def _record(key, stats):
    """Merge one row into summary.json (locked: parallel workers keep each other's rows)."""
    update_json(SUMMARY, lambda summary: {**summary, key: stats})


@pytest.mark.cocotb
def test_board_sim_quick():
    """iCEBreaker logic on Icarus: INFO, 2 images with logits, 4 images, every error case."""
    stats = board_sim.run("icebreaker", "icarus", images=4, seed=SEED)
    assert stats["images"]["mismatches"] == 0
    assert stats["errors"]["cases"] == 8
    _record("icebreaker-icarus-quick", stats)


@pytest.mark.slow
@pytest.mark.cocotb
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
def test_board_sim_digits(board):
    """120 digits test images give the golden network's classes; every error case too."""
    stats = board_sim.run(board, "verilator", images=120, seed=SEED)
    assert stats["images"]["images"] == 120
    assert stats["images"]["mismatches"] == 0
    assert stats["errors"]["cases"] == 8
    _record(f"{board}-verilator", stats)
    print(f"{board}: {stats['images']['images_per_second_wall']} images/s (wall, Verilator)")


@pytest.mark.cocotb
def test_board_sim_digits_cnn_quick():
    """The ULX3S logic of `boards.build ulx3s --engine dataflow --network rtn_digits_cnn` on
    Icarus: INFO, 2 images with logits, 3 images, every error case (64 pixels: no PARTs)."""
    print(f"seed {SEED}")
    stats = board_sim.run("ulx3s", "icarus", images=3, seed=SEED, network="rtn_digits_cnn")
    assert stats["engine"]["kind"] == "dataflow"
    assert stats["images"]["images"] == 3
    assert stats["images"]["mismatches"] == 0
    assert stats["errors"]["cases"] == 8
    _record("ulx3s-dataflow-rtn_digits_cnn-icarus-quick", stats)


@pytest.mark.slow
@pytest.mark.cocotb
def test_board_sim_mnist_cnn():
    """The ULX3S logic of `boards.build ulx3s --engine dataflow --network rtn_mnist5k_cnn` on
    Verilator: MNIST-5k test images, each in three PARTs and a CLASSIFY, give the golden
    network's classes (two also its logits); the error cases, on the last request after its
    PARTs, a PART with a bad CRC and garbage between PARTs (no pixel is out of range at 255)."""
    print(f"seed {SEED}")
    stats = board_sim.run("ulx3s", "verilator", images=MNIST_IMAGES, seed=SEED,
                          network="rtn_mnist5k_cnn")
    assert stats["images"]["images"] == MNIST_IMAGES
    assert stats["images"]["mismatches"] == 0
    assert stats["errors"]["cases"] == 9
    _record("ulx3s-dataflow-rtn_mnist5k_cnn-verilator", stats)
    print(f"MNIST CNN: {stats['images']['images_per_second_wall']} images/s (wall, Verilator)")


# The board build's front end (the builds themselves run in CI: `make bitstream`).

def _boards():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import boards.build
    import boards.top
    return boards.build, boards.top


@pytest.mark.parametrize("argv, message", [
    (["nexys"], "unknown board 'nexys'; valid boards: icebreaker, ulx3s"),
    ([], "unknown board ''; valid boards: icebreaker, ulx3s"),
    (["icebreaker", "--baud", "fast"], "--baud fast: expected a positive integer"),
    (["icebreaker", "--baud", "4000000"],
     "Baud rate 4000000 is too fast for a 12 MHz clock (at most 3000000)"),
    (["ulx3s", "--baud", "2400000"],
     "Baud rate 2400000 is off by 4.2% from a 25 MHz clock (divisor 10); at most 2% is "
     "allowed"),
    (["ulx3s", "--timeout-ms", "0"],
     "--timeout-ms 0: expected a number of milliseconds above 0 and below 10000"),
    (["ulx3s", "--engine", "finn"],
     "argument --engine: invalid choice: 'finn' (choose from 'network', 'dataflow')"),
    (["ulx3s", "--folding", "64x4,128x4,8x5"], "--folding: applies to --engine dataflow only"),
    (["ulx3s", "--engine", "dataflow", "--folding", "64x4"],
     "--folding '64x4': Foldings must give one Folding per layer (3), not 1"),
    (["ulx3s", "--network", "rtn_mnist5k_cnn"],
     "--network rtn_mnist5k_cnn: a CNN runs on --engine dataflow only"),
    (["ulx3s", "--engine", "dataflow", "--network", "rtn_mnist5k_cnn", "--folding", "8x1"],
     "--folding '8x1': Foldings must give one Folding per conv or linear layer (4; max-pool "
     "layers take none), not 1"),
    (["ulx3s", "--engine", "dataflow", "--network", "nope"],
     f"--network nope: {ROOT / 'weights' / 'nope.json'}: (file): cannot read: No such file or "
     f"directory"),
])
def test_bitstream_rejects(argv, message, capsys):
    build, _ = _boards()
    assert build.main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"boards.build: error: {message}\n")


def test_make_bitstream_unknown_board():
    """`make bitstream` with an unknown board stops with the valid ones, status 2 from the
    script (make reports its own failure after that line)."""
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "boards.build", "bogus"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == ("boards.build: error: unknown board 'bogus'; valid boards: "
                           "icebreaker, ulx3s\n")


@pytest.mark.parametrize("clock, baud, divisor", [
    (12e6, 115_200, 104), (25e6, 115_200, 217), (12e6, 3_000_000, 4), (25e6, 9600, 2604)])
def test_divisor_for(clock, baud, divisor):
    _, top = _boards()
    assert top.divisor_for(clock, baud) == divisor


def test_board_definitions():
    build, top = _boards()
    from rtn_hw.gateware.engine import ENGINE_CONFIGS
    icebreaker, ulx3s = build.load_board("icebreaker"), build.load_board("ulx3s")
    assert (icebreaker.platform.device, icebreaker.clock_hz) == ("iCE40UP5K", 12e6)
    assert (ulx3s.platform.device, ulx3s.clock_hz) == ("LFE5U-85F", 25e6)
    assert icebreaker.engine_config == ENGINE_CONFIGS["ice40-up5k"]
    assert ulx3s.engine_config == ENGINE_CONFIGS["ecp5-85k"]


def test_board_top_takes_the_dataflow_engine():
    """ENGINE=dataflow: the default folding per device, or the given one; the link's INFO
    reply names no lanes or channels (per-layer foldings)."""
    build, top = _boards()
    from rtn_hw.fold import fewest_lanes
    ulx3s = build.load_board("ulx3s")
    board_top = top.BoardTop(ulx3s, engine="dataflow")
    assert board_top.engine.foldings == fewest_lanes(board_top.engine.network, 8)
    assert board_top.engine.ii == 8
    assert (board_top.logic.link.lanes, board_top.logic.link.channels) == (0, 0)
    board_top = top.BoardTop(ulx3s, engine="dataflow", folding="64x16,128x16,32x5")
    assert board_top.engine.ii == 8     # the same II, weights in block RAM
    assert build.engine_report(board_top.engine) == {
        "kind": "dataflow", "foldings": ["64x16:bram", "128x16:bram", "32x5:bram"],
        "buffers": "fifo", "ii": 8, "latency": board_top.engine.latency}
    # The iCEBreaker: the fastest folding that fits the UP5K, hidden results in block RAM.
    board_top = top.BoardTop(build.load_board("icebreaker"), engine="dataflow")
    assert [str(f) for f in board_top.engine.foldings] == ["8x1:bram", "16x1:bram", "2x1:bram"]
    assert (board_top.engine.ii, board_top.engine.buffers) == (1024, "bram")


def test_board_top_takes_a_cnn():
    """`--network rtn_mnist5k_cnn --engine dataflow`: the CNN's default folding (the fewest
    lanes at its input's II), a link of 784 features that hands the engine one pixel a
    handshake, its own build folder; the network engine and a two-channel CNN are refused."""
    build, top = _boards()
    from rtn_hw import weights
    from rtn_hw.demo import default_foldings
    ulx3s = build.load_board("ulx3s")
    manifest = build.network_manifest("rtn_mnist5k_cnn")
    assert manifest == ROOT / "weights" / "rtn_mnist5k_cnn.json"
    network = weights.load(manifest)
    board_top = top.BoardTop(ulx3s, engine="dataflow", network=network)
    assert board_top.engine.foldings == default_foldings(network)
    assert [str(f) for f in board_top.engine.foldings] == [
        "9x16:baked", "None", "144x8:bram", "None", "15x16:bram", "2x1:bram"]
    assert build.engine_report(board_top.engine)["foldings"] == [
        "9x16:baked", "144x8:bram", "15x16:bram", "2x1:bram"]
    link = board_top.logic.link
    assert (link.features, link.pixels_per_handshake, link.pixel_max) == (784, 1, 255)
    assert link.info.features == 784
    assert build.build_folder(ulx3s, "dataflow", manifest) == \
        ROOT / "build" / "boards" / "ulx3s-dataflow-rtn_mnist5k_cnn"
    with pytest.raises(ValueError, match="^The network engine runs MLPs only; a CNN needs "
                                         "the dataflow engine$"):
        top.BoardTop(ulx3s, network=network)
    import types
    wide = types.SimpleNamespace(convolutional=True,
                                 layers=[types.SimpleNamespace(in_shape=(3, 28, 28))])
    with pytest.raises(ValueError, match="^A CNN with 3 input channels cannot run on a board"):
        top.check_network(wide)
