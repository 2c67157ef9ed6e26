"""`make demo`: every digits test image through the simulated NetworkEngine, against the golden
network, bit for bit.

    python -m rtn_hw.demo [--images N] [--lanes L] [--channels C] [--seed S] [--out FILE]

Builds `NetworkEngine(weights.load(), lanes, channels)` (default: the ECP5-85k configuration
of `ENGINE_CONFIGS`), streams the test images through one Amaranth simulator, back to back
(valid and ready always high, so every image takes exactly `cycles_per_image`), compares every
image's logits and class with `Network.forward`, prints a table and writes
`build/reports/demo.json` atomically. The clock for `images_per_second_at_fmax` is the routed
ECP5 Fmax of unit "network_engine" in build/reports/synth.json when `make synth` recorded one,
otherwise the ULX3S board clock (25 MHz); the JSON says which (`clock.source`).

Exit status: 0 when hardware and golden agree on every image, 1 when they do not, 2 (one line
on stderr) for bad command-line input.
"""

import argparse
import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import weights

PROG = "python -m rtn_hw.demo"
REPORT = Path(__file__).resolve().parent.parent / "build" / "reports" / "demo.json"
SYNTH_REPORT = REPORT.parent / "synth.json"
BOARD_CLOCK_MHZ = 25.0       # ULX3S (ECP5-85k) oscillator: the fallback clock
FMAX_TARGET = "ecp5-85k"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _positive(text):
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def _seed(text):
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative integer")
    return value


def parser():
    from .gateware.engine import ENGINE_CONFIGS
    default = ENGINE_CONFIGS[FMAX_TARGET]
    p = _Parser(prog=PROG, description="Run the digits test images through the simulated "
                                       "network engine and compare with the golden network.")
    p.add_argument("--images", type=_positive, default=None,
                   help="run only the first N test images (default: all)")
    p.add_argument("--lanes", type=_positive, default=default["lanes"],
                   help=f"input trits per cycle (default {default['lanes']})")
    p.add_argument("--channels", type=_positive, default=default["channels"],
                   help=f"output channels in parallel (default {default['channels']})")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the stream harness (recorded; back-to-back runs draw nothing)")
    p.add_argument("--out", type=Path, default=REPORT, help="JSON report (default %(default)s)")
    return p


def fmax_clock(lanes, channels, synth_report=SYNTH_REPORT):
    """(MHz, source description) for the throughput figure: the routed ECP5 Fmax of a
    network_engine run in `synth_report` (the same lanes/channels preferred), else the board
    clock."""
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
    return BOARD_CLOCK_MHZ, (f"board clock: ULX3S 25 MHz oscillator (no network_engine run on "
                             f"{FMAX_TARGET} in {synth_report.name})")


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_demo(images, labels, network, *, lanes, channels, seed):
    """Simulate `images` through the engine: a dict of per-image results and the engine."""
    from .gateware.engine import NetworkEngine
    from .gateware.simulate import run_stream
    dut = NetworkEngine(network, lanes=lanes, channels=channels)
    start = time.monotonic()
    run = run_stream(dut, [[int(p) for p in image] for image in images], seed=seed,
                     timeout=4 * dut.cycles_per_image + 100)
    sim_seconds = time.monotonic() - start
    hw_logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    hw_classes = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return dut, run, hw_logits, hw_classes, sim_seconds


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
    except UsageError as error:
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 0
    if not args.out.parent.is_dir():
        args.out.parent.mkdir(parents=True, exist_ok=True)

    wall, cpu = time.monotonic(), time.process_time()
    network = weights.load()
    images, labels = weights.load_digits_test()
    if args.images is not None:
        images, labels = images[:args.images], labels[:args.images]
    n = len(images)
    golden_logits, golden_classes = network.forward(images)
    dut, run, hw_logits, hw_classes, sim_seconds = run_demo(
        images, labels, network, lanes=args.lanes, channels=args.channels, seed=args.seed)

    same_logits = (hw_logits == golden_logits).all(axis=1)
    same_class = hw_classes == golden_classes
    agree = same_logits & same_class
    agreement = float(agree.mean())
    mismatches = np.flatnonzero(~agree).tolist()
    accuracy_hw = float((hw_classes == labels).mean())
    accuracy_golden = float((golden_classes == labels).mean())
    accuracy_float = float(network.manifest["training"]["accuracy"]["float"])
    cycles = dut.cycles_per_image
    exact_cycles = run.latencies == [cycles] * n
    mhz, source = fmax_clock(args.lanes, args.channels)
    per_second = mhz * 1e6 / cycles
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu

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
        "cycles_measured": sorted(set(run.latencies)),
        "images_per_second_at_fmax": per_second,
        "clock": {"mhz": mhz, "source": source},
        "lanes": args.lanes,
        "channels": args.channels,
        "memories": {k: {"width": w, "depth": d} for k, (w, d) in dut.memories.items()},
        "seed": args.seed,
        "simulator": "amaranth (rtn_hw.gateware.simulate.run_stream, back to back)",
        "weights": {"manifest": Path(network.source).name,
                    "sha256": network.manifest["arrays"]["sha256"]},
        "tool_versions": {"python": platform.python_version(), "amaranth": _version("amaranth"),
                          "numpy": np.__version__, "rtn_hw": _version("rtn-hw")},
        "simulation_seconds": round(sim_seconds, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
    }
    text = json.dumps(report, indent=1) + "\n"
    weights.atomic_write(args.out, lambda f: f.write(text.encode()))

    print(f"RTN digits demo: {n} test images through NetworkEngine(lanes={args.lanes}, "
          f"channels={args.channels}) in the Amaranth simulator\n")
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
          f"{'all equal' if exact_cycles else sorted(set(run.latencies))})")
    print(f"  at {mhz:.2f} MHz ({source}): {per_second:,.0f} images/s")
    print(f"  simulation {sim_seconds:.1f} s, wall {wall:.1f} s (CPU {cpu:.1f} s); report: "
          f"{args.out}")
    if mismatches:
        print(f"  MISMATCH on images {mismatches[:20]}", file=sys.stderr)
    return 0 if agreement == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
