"""Export the board logic of one board to Verilog, build it once per simulator, run the cocotb
tests of board_bench.py on it, and return their statistics.

The simulated top is `SerialClassifier(NetworkEngine(shipped weights, **board config),
divisor=SIM_DIVISOR, timeout=SIM_TIMEOUT)` with the pins (clk, rst, rx, tx, busy, error) as
ports, clocked at the board's frequency. Only the baud rate differs from the bitstream: the
divisor is 8 (clock/8 baud: 1.5 Mbaud at 12 MHz, 3.125 Mbaud at 25 MHz instead of 115200),
so a frame takes 80 cycles a byte instead of 1,040 or 2,170, and the inter-byte timeout is 40
byte times. The UART, the link and the engine are the same gateware.
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


def _board(name):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from boards.build import load_board
    return load_board(name)


def export(board):
    """build/sim/board/verilog/<board>/board_top.v, rewritten only when its text changes."""
    from amaranth.back import verilog

    from rtn_hw import weights
    from rtn_hw.files import write_if_changed
    from rtn_hw.gateware.engine import NetworkEngine
    from rtn_hw.gateware.link import SerialClassifier

    engine = NetworkEngine(weights.load(), **board.engine_config)
    top = SerialClassifier(engine, divisor=SIM_DIVISOR, timeout=SIM_TIMEOUT)
    text = verilog.convert(top, name="board_top", emit_src=False)
    path = BUILD / "verilog" / board.name / "board_top.v"
    write_if_changed(path, text)
    return path, engine


def run(board_name, simulator, *, images, seed, tests=("digits", "errors_then_recover")):
    """Run `tests` on one board's logic; returns {"build_seconds", test name: stats...}."""
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r}: expected one of {', '.join(SIMULATORS)}")
    board = _board(board_name)
    began = time.perf_counter()
    source, engine = export(board)
    folder = BUILD / simulator / board.name
    folder.mkdir(parents=True, exist_ok=True)
    build_env = {}
    if simulator == "icarus":
        build_args = ["-g2005"]   # docs/sim.md: -g2012 left a constant output X
    else:
        build_env = tools.verilator_env()
        build_args = [*tools.VERILATOR_WARNINGS, "-O3"]
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    runner = get_runner(simulator)
    # The runner takes the build's environment from os.environ.
    with tools.environment(build_env):
        runner.build(sources=[source], hdl_toplevel="board_top", build_dir=folder,
                     build_args=build_args, timescale=("1ps", "1ps"),
                     log_file=folder / "build.log")
    built = time.perf_counter()
    stats = folder / "stats.json"
    stats.unlink(missing_ok=True)
    period_ps = 2 * round(1e12 / board.clock_hz / 2)
    env = {
        "RTN_BOARD_DIVISOR": str(SIM_DIVISOR), "RTN_BOARD_TIMEOUT": str(SIM_TIMEOUT),
        "RTN_BOARD_PERIOD_PS": str(period_ps), "RTN_BOARD_IMAGES": str(images),
        "RTN_BOARD_SEED": str(seed), "RTN_BOARD_LANES": str(engine.lanes),
        "RTN_BOARD_CHANNELS": str(engine.channels), "RTN_BOARD_STATS": str(stats),
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    results = folder / "results.xml"
    try:
        runner.test(test_module="board_bench", hdl_toplevel="board_top", build_dir=folder,
                    test_dir=folder, extra_env=env, results_xml=str(results),
                    test_filter=f"({'|'.join(tests)})$", log_file=folder / "sim.log")
    except (SystemExit, RuntimeError) as error:
        raise AssertionError(_failure(folder / "sim.log", board.name, simulator)) from error
    failed = _failed_tests(results)
    if failed:
        raise AssertionError(_failure(folder / "sim.log", board.name, simulator))
    out = json.loads(stats.read_text()) if stats.exists() else {}
    out["build_seconds"] = round(built - began, 1)
    out["period_ps"] = period_ps
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
