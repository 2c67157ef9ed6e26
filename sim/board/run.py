"""Export the board logic of one board to Verilog, build it once per simulator, run the cocotb
tests of board_bench.py on it, and return their statistics.

The simulated top is `boards.top.board_logic(board, network=..., engine=..., folding=...)`,
the very function the bitstream's BoardTop builds its logic with (the shipped digits MLP on
the board's NetworkEngine, or a network such as a CNN on the dataflow engine, as `python -m
boards.build BOARD --engine dataflow --network NAME`), with the pins (clk, rst, rx, tx, busy,
error) as ports, clocked at the board's frequency. Only the baud rate differs from the
bitstream: the divisor is 8 (clock/8 baud: 1.5 Mbaud at 12 MHz, 3.125 Mbaud at 25 MHz
instead of 115200), so a frame takes 80 cycles a byte instead of 1,040 or 2,170, and the
inter-byte timeout is 40 byte times. The UART, the link and the engine are the same gateware.
"""

import json
import os
import sys
import time
from pathlib import Path

from rtn_hw import tools

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD = ROOT / "build" / "sim" / "board"
SIM_DIVISOR = 8
SIM_TIMEOUT = 40 * 10 * SIM_DIVISOR
SIMULATORS = ("icarus", "verilator")

__all__ = ["run", "SIM_DIVISOR", "SIM_TIMEOUT"]


def _boards():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import boards.build
    import boards.top
    return boards.build, boards.top


def export(board, *, network=None, engine="network", folding=None, name=None):
    """build/sim/board/verilog/<name>/board_top.v (`name` default the board's), rewritten only
    when its text changes; returns (path, the SerialClassifier)."""
    from amaranth.back import verilog

    from rtn_hw.files import write_if_changed

    _, top = _boards()
    logic = top.board_logic(board, divisor=SIM_DIVISOR, timeout=SIM_TIMEOUT, network=network,
                            engine=engine, folding=folding)
    text = verilog.convert(logic, name="board_top", emit_src=False)
    path = BUILD / "verilog" / (name or board.name) / "board_top.v"
    write_if_changed(path, text)
    return path, logic


def run(board_name, simulator, *, images, seed, tests=("images", "errors_then_recover"),
        network=None, engine=None, folding=None):
    """Run `tests` on one board's logic; returns {"build_seconds", test name: stats...}.
    `network`: None (the shipped digits MLP) or as `boards.build --network` (weights/NAME.json
    or a manifest's path); `engine` default the network engine for an MLP, the dataflow
    engine for a CNN (rtn_hw.demo.default_engine); `folding` text as `--folding`. The images
    are the network's shipped test split (the digits or MNIST-5k)."""
    from cocotb_tools.runner import get_runner

    from rtn_hw import weights
    from rtn_hw.demo import default_engine
    from rtn_hw.interop.qonnx_check import test_split

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r}: expected one of {', '.join(SIMULATORS)}")
    build, _ = _boards()
    board = build.load_board(board_name)
    manifest = None if network is None else build.network_manifest(network)
    net = weights.load(weights.DEFAULT_MANIFEST if manifest is None else manifest)
    if test_split(net) is None:
        raise ValueError(f"network {net.source}: no shipped test split takes its input "
                         f"({net.input.features} pixels 0..{net.input.pixel_max})")
    engine = default_engine(net) if engine is None else engine
    # The bitstream's build folder name: ulx3s, ulx3s-dataflow, ulx3s-dataflow-rtn_digits_cnn.
    name = build.build_folder(board, engine, manifest).name
    began = time.perf_counter()
    source, logic = export(board, network=None if manifest is None else net, engine=engine,
                           folding=folding, name=name)
    folder = BUILD / simulator / name
    folder.mkdir(parents=True, exist_ok=True)
    build_env = {}
    if simulator == "icarus":
        build_args = ["-g2005"]   # docs/sim.md: -g2012 left a constant output X
    else:
        build_args, build_env = tools.verilator_cocotb_build()
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    runner = get_runner(simulator)
    if simulator == "icarus":
        tools.drop_stale_icarus_build(folder)
    # The runner takes the build's environment from os.environ.
    with tools.environment(build_env):
        runner.build(sources=[source], hdl_toplevel="board_top", build_dir=folder,
                     build_args=build_args, timescale=("1ps", "1ps"),
                     log_file=folder / "build.log")
    built = time.perf_counter()
    stats = folder / "stats.json"
    stats.unlink(missing_ok=True)
    period_ps = 2 * round(1e12 / board.clock_hz / 2)
    engine_cycles = getattr(logic.engine, "latency", None) or logic.engine.cycles_per_image
    env = {
        "RTN_BOARD_DIVISOR": str(SIM_DIVISOR), "RTN_BOARD_TIMEOUT": str(SIM_TIMEOUT),
        "RTN_BOARD_PERIOD_PS": str(period_ps), "RTN_BOARD_IMAGES": str(images),
        "RTN_BOARD_SEED": str(seed), "RTN_BOARD_LANES": str(logic.link.lanes),
        "RTN_BOARD_CHANNELS": str(logic.link.channels), "RTN_BOARD_STATS": str(stats),
        "RTN_BOARD_NETWORK": str(Path(net.source).resolve()),
        "RTN_BOARD_ENGINE_CYCLES": str(engine_cycles),
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    results = folder / "results.xml"
    try:
        runner.test(test_module="board_bench", hdl_toplevel="board_top", build_dir=folder,
                    test_dir=folder, extra_env=env, results_xml=str(results),
                    test_filter=f"({'|'.join(tests)})$", log_file=folder / "sim.log")
    except (SystemExit, RuntimeError) as error:
        raise AssertionError(_failure(folder / "sim.log", name, simulator)) from error
    failed = _failed_tests(results)
    if failed:
        raise AssertionError(_failure(folder / "sim.log", name, simulator))
    out = json.loads(stats.read_text()) if stats.exists() else {}
    out["build_seconds"] = round(built - began, 1)
    out["period_ps"] = period_ps
    out["network"] = Path(net.source).name
    out["engine"] = build.engine_report(logic.engine)
    return out


def _failed_tests(results):
    import xml.etree.ElementTree as ET
    if not results.exists():
        return ["(no results)"]
    return [case.get("name") for case in ET.parse(results).iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]


def _failure(log, board, simulator):
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    lines = [line for line in text.splitlines() if "Error" in line or "assert" in line
             or "FAIL" in line]
    return f"board sim {board} on {simulator} failed; {log}:\n" + "\n".join(lines[-30:])
