"""`rtn-hw`: the command-line front end.

    rtn-hw verilog --list
    rtn-hw verilog UNIT [-p NAME=VALUE ...] -o FILE.v [--name MODULE] [--interface axis]
    rtn-hw synth [--targets T,...] [--units U,...] [--lanes N,...] [--seeds S,...] [--jobs J]
    rtn-hw synth --docs
    rtn-hw explore [SPEC.toml|SPEC.json] [--targets ...] [--units ...] [--lanes ...]
                   [--seeds ...] [-p NAME=V1,V2 ...] [--jobs J]
    (synth and explore: [--scheduler tcp://HOST:PORT] [--time-limit S] [--memory-limit MB])
    rtn-hw run --port PORT (--images FILE | --digits-test) [--baud B] [--timeout S]
    rtn-hw import MODEL.onnx -o NAME.json [--pixel-max P] [--engine N]
    rtn-hw export-qonnx NAME.json -o NAME.onnx
    rtn-hw fold [--target T] [--images-per-second R [--clock-mhz F]] [--lut4 N] [--dsp N]
                [--bram N] [--weights NAME.json] [--json]

Bad input exits with status 2 and one line on stderr, `rtn-hw: error: ...`, never a
traceback. Each subcommand is an `_add_<command>` function in COMMANDS that declares its
arguments and sets `run` to its `_run_<command>`.
"""

import argparse
import math
import re
import sys
from pathlib import Path

from . import __version__

PROG = "rtn-hw"
USAGE_ERROR = 2
INTERRUPTED = 130      # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C


class UsageError(Exception):
    """Bad command-line input; its message is printed as one line after `PROG: error: `.
    Every command-line entry point of the project (rtn-hw, python -m rtn_hw.demo,
    python -m boards.build) uses this one type."""


class ArgumentParser(argparse.ArgumentParser):
    # argparse prints the usage block and exits on its own errors; make them one-line errors
    # handled the same way as every other usage error.
    def error(self, message):
        raise UsageError(message)


def print_usage_error(prog, error):
    """`PROG: error: MESSAGE` on one line on stderr; returns the exit status, 2."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return USAGE_ERROR


def print_interrupted(prog):
    """Ctrl-C: `PROG: interrupted` on stderr, no traceback; returns the shell's status for
    SIGINT, 130. Files written through rtn_hw.files are then complete or untouched."""
    print(f"{prog}: interrupted", file=sys.stderr)
    return INTERRUPTED


def run_entry_point(prog, main):
    """`sys.exit(main())` for a `python -m` entry point, with Ctrl-C as `print_interrupted`."""
    try:
        status = main()
    except KeyboardInterrupt:
        status = print_interrupted(prog)
    sys.exit(status)


def _add_verilog(subparsers):
    parser = subparsers.add_parser(
        "verilog", help="export a unit as Verilog plus a JSON sidecar",
        description="Export a registered unit as Verilog (FILE.v) and a JSON sidecar "
                    "(FILE.json) with its parameters, latency and port map.")
    parser.add_argument("unit", nargs="?", metavar="UNIT", help="unit to export (see --list)")
    parser.add_argument("--list", action="store_true",
                        help="list the exportable units and their parameters")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="set a unit parameter (repeatable)")
    parser.add_argument("-o", "--output", metavar="FILE.v", help="Verilog file to write")
    parser.add_argument("--name", metavar="MODULE",
                        help="Verilog module name (default: the unit name)")
    parser.add_argument("--interface", default="native", metavar="NAME",
                        help="native: the unit's own stream ports (default); axis: AXI4-Stream "
                             "ports plus component.xml (IP-XACT) and a FuseSoC .core "
                             "(docs/ip.md)")
    parser.set_defaults(run=_run_verilog)


def _parse_params(items):
    params = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UsageError(f"-p {item}: expected NAME=VALUE")
        if name in params:
            raise UsageError(f"-p {item}: parameter {name!r} given twice")
        params[name] = value
    return params


def _list_units(out):
    from .units import UNITS
    for name in sorted(UNITS):
        unit = UNITS[name]
        print(f"{name}: {unit.description}", file=out)
        for param in unit.params:
            print(f"    {param.name}={param.default}  ({param.type.name}) {param.help}", file=out)


def _run_verilog(args, out):
    if args.list:
        if args.unit or args.output or args.param:
            raise UsageError("--list takes no UNIT, -p or -o")
        _list_units(out)
        return 0
    if not args.unit:
        raise UsageError("verilog: expected a UNIT or --list")
    params = _parse_params(args.param)
    from .units import ParameterError, unit
    from .ip import check_interface
    try:
        # Names and values first (cheap), so they are reported before any output problem.
        check_interface(args.interface)
        unit(args.unit).resolve(params)
    except ParameterError as error:
        raise UsageError(str(error)) from None
    if not args.output:
        raise UsageError("verilog: -o FILE.v is required")
    if not args.output.endswith(".v") or Path(args.output).name == ".v":
        raise UsageError(f"-o {args.output}: expected a file name ending in .v")
    folder = Path(args.output).parent
    if not folder.is_dir():
        raise UsageError(f"-o {args.output}: cannot write (no folder {str(folder)!r})")

    from .flow import verilog
    try:
        result = verilog.export(args.unit, params, name=args.name, interface=args.interface)
    except ParameterError as error:
        raise UsageError(str(error)) from None
    except (ValueError, TypeError, OverflowError) as error:
        # What the registry's checks let through but the export refuses (a Verilog keyword
        # as --name, say): one line naming what was asked for.
        name = f" --name {args.name}" if args.name else ""
        raise UsageError(f"verilog {args.unit}{name}: {error}") from None
    try:
        verilog.write(result, args.output)
    except OSError as error:
        reason = error.strerror or str(error)
        sidecar = verilog.sidecar_path(args.output)
        if error.filename and Path(error.filename) == sidecar:
            reason = f"{reason}: {sidecar}"
        raise UsageError(f"-o {args.output}: cannot write ({reason})") from None
    return 0


def _add_synth(subparsers):
    parser = subparsers.add_parser(
        "synth", help="area / timing / power sweep of RTN and baseline units",
        description="Synthesize, place and route the RTN units and the fp32/int baselines, "
                    "estimate power, and write build/reports/synth.{json,md} and plots. "
                    "An empty selection means all (the default sweep).")
    parser.add_argument("--targets", default="", metavar="T,...", help="targets to run")
    parser.add_argument("--units", default="", metavar="U,...", help="units to run")
    parser.add_argument("--lanes", default="", metavar="N,...", help="lane counts to run")
    parser.add_argument("--seeds", default="", metavar="S,...",
                        help="nextpnr seeds of every routed row; Fmax is their median "
                             "(default: 1; with --full 1,2,3 on the ECP5 RTN rows)")
    parser.add_argument("--jobs", default="", metavar="J", help="parallel runs (default: CPUs)")
    parser.add_argument("--full", action="store_true",
                        help="the full sweep the README's tables come from (make synth-full): "
                             "adds fp32 at 64 lanes and three seeds on the ECP5 RTN rows")
    parser.add_argument("--docs", action="store_true",
                        help="run nothing: rewrite the generated tables in README.md and "
                             "docs/synth.md from build/reports/synth.json")
    _add_executor(parser)
    parser.set_defaults(run=_run_synth)


def _add_executor(parser):
    parser.add_argument("--scheduler", default="", metavar="tcp://HOST:PORT",
                        help="run on this Dask scheduler (default: a local cluster of --jobs "
                             "worker processes)")
    parser.add_argument("--time-limit", default="", metavar="S",
                        help="seconds each run may take (default 7200)")
    parser.add_argument("--memory-limit", default="", metavar="MB",
                        help="memory each run's tools may use (default: the machine's memory "
                             "divided by the local workers; none on --scheduler)")


def _executor(args):
    """run_sweep/execute keyword arguments of the executor options."""
    scheduler = args.scheduler.strip()
    if scheduler and not re.fullmatch(r"(tcp|tls)://[^\s/:]+:[0-9]+", scheduler):
        raise UsageError(f"--scheduler {scheduler}: expected tcp://HOST:PORT")
    chosen = {"scheduler": scheduler or None, "bar": sys.stderr.isatty()}
    if args.time_limit:
        chosen["run_seconds"] = _positive(args.time_limit, "--time-limit", float)
    if args.memory_limit:
        chosen["run_memory_mb"] = _positive(args.memory_limit, "--memory-limit", float)
    return chosen


def _on_cluster(sweep):
    """Run `sweep` (a sweep on Dask); an unreachable scheduler is a usage error. Ctrl-C is
    `main`'s: what finished is in the cache, and running it again goes on from there."""
    from .flow.cluster import ClusterError
    try:
        return sweep()
    except ClusterError as error:
        raise UsageError(str(error)) from None


def _run_synth(args, out):
    if args.docs:
        if any((args.targets, args.units, args.lanes, args.seeds, args.jobs, args.full)):
            raise UsageError("synth --docs takes no selection (it reads build/reports/synth.json)")
        from .flow import tables
        try:
            changed = tables.update_docs()
        except tables.TableError as error:
            raise UsageError(str(error)) from None
        for path in changed:
            print(f"updated {path}", file=out)
        return 0
    for option, text in (("--targets", args.targets), ("--units", args.units),
                         ("--lanes", args.lanes), ("--seeds", args.seeds), ("--jobs", args.jobs)):
        # "" means all; text with no names in it (",") is a mistake that would run nothing
        # and replace the reports with an empty one.
        if text.strip() and not [word for word in re.split(r"[\s,]+", text) if word]:
            raise UsageError(f"{option} {text!r}: names nothing; give a comma-separated list, "
                             f"or leave it out for all")
    from .flow import selection, synth
    try:
        chosen = selection.selection_from_env({"TARGETS": args.targets, "UNITS": args.units,
                                               "LANES": args.lanes, "SEEDS": args.seeds,
                                               "JOBS": args.jobs})
    except ValueError as error:
        raise UsageError(str(error)) from None
    executor = _executor(args)
    report = _on_cluster(lambda: synth.run_sweep(
        progress=lambda line: print(line, file=out, flush=True), full=args.full, **chosen,
        **executor))
    print(f"reports: {', '.join(_report_paths(report.get('files', {})))}", file=out)
    return 0


def _report_paths(files):
    """The paths in a report's {kind: path or [paths]}, in that order."""
    paths = []
    for value in files.values():
        paths += [str(p) for p in value] if isinstance(value, (list, tuple)) else [str(value)]
    return paths


def _add_run(subparsers):
    parser = subparsers.add_parser(
        "run", help="classify images on a board over its serial port",
        description="Send images to a board running the RTN classifier (boards/, "
                    "docs/protocol.md) and print each prediction, the accuracy and the "
                    "throughput.")
    parser.add_argument("--port", metavar="PORT", help="serial port, e.g. /dev/ttyUSB1")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", metavar="FILE",
                        help=".npz with 'images' (and optional 'labels'), or .npy of images "
                             "(weights/mnist5k_test.npz for a board built with the MNIST CNN)")
    source.add_argument("--digits-test", action="store_true",
                        help="the shipped digits test split (weights/digits_test.npz)")
    parser.add_argument("--baud", default="115200", metavar="B",
                        help="baud rate (default 115200, as the board tops)")
    parser.add_argument("--timeout", default="2", metavar="S",
                        help="seconds to wait for a reply (default 2)")
    parser.set_defaults(run=_run_run)


def _number(text, option, kind, low, high=None):
    """`text` as an int or a finite float in [low, high] (low excluded for floats; no upper
    bound when `high` is None), else a usage error naming the option, the value and the
    range."""
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        value = None
    ok = value is not None and (kind is int or math.isfinite(value)) and (
        low <= value if kind is int else low < value) and (high is None or value <= high)
    if not ok:
        if kind is int:
            what = (f"an integer from {low} to {high}" if high is not None
                    else f"an integer of at least {low}")
        else:
            what = (f"a number above {low:g} and at most {high:g}" if high is not None
                    else f"a finite number above {low:g}")
        raise UsageError(f"{option} {text}: expected {what}")
    return value


def _positive(text, option, kind):
    """`text` as a positive int or a positive finite float, else a usage error."""
    return _number(text, option, kind, 1 if kind is int else 0)


def _run_run(args, out):
    if not args.port:
        raise UsageError("run: --port PORT is required")
    if not args.images and not args.digits_test:
        raise UsageError("run: expected --images FILE or --digits-test")
    from . import host, weights
    baud = _number(args.baud, "--baud", int, 50, host.MAX_BAUD)
    timeout = _number(args.timeout, "--timeout", float, 0, host.MAX_TIMEOUT)
    try:
        if args.digits_test:
            images, labels = weights.load_digits_test()
        else:
            images, labels = host.load_images(args.images)
        transport = host.SerialTransport(args.port, baud=baud)
    except (host.HostError, ValueError) as error:
        raise UsageError(str(error)) from None
    try:
        client = host.BoardClient(transport, timeout=timeout)
        info = client.info()
        print(f"board: {info.features} pixels (0..{info.pixel_max}), {info.classes} classes, "
              f"lanes={info.lanes} channels={info.channels}", file=out)
        if images.shape[1] != info.features:
            raise UsageError(f"images have {images.shape[1]} pixels; the board expects "
                             f"{info.features}")
        if images.min() < 0 or images.max() > info.pixel_max:
            raise UsageError(f"images have pixels outside 0..{info.pixel_max} (the board's "
                             f"range): {int(images.min())}..{int(images.max())}")

        def progress(index, prediction, label):
            tail = ""
            if label is not None:
                tail = f" (label {label}{'' if label == prediction else ', MISS'})"
            print(f"image {index}: class {prediction}{tail}", file=out, flush=True)

        result = host.run_images(client, images, labels, progress=progress)
    except host.HostError as error:
        raise UsageError(f"--port {args.port}: {error}") from None
    finally:
        transport.close()
    count = len(result.predictions)
    if result.correct is not None:
        print(f"accuracy: {result.correct}/{count} ({100 * result.correct / count:.1f}%)",
              file=out)
    print(f"throughput: {result.images_per_second:.1f} images/s ({count} images in "
          f"{result.seconds:.2f} s)", file=out)
    return 0


def _add_explore(subparsers):
    parser = subparsers.add_parser(
        "explore", help="design-space exploration: Pareto fronts over parameters and seeds",
        description="Sweep unit parameters, targets and nextpnr seeds from a spec file "
                    "(TOML or JSON, docs/synth.md) and/or options, and write "
                    "build/reports/explore.{json,md} and PNGs: Pareto fronts of LUT4 against "
                    "throughput and energy, and Fmax per seed.")
    parser.add_argument("spec", nargs="?", metavar="SPEC", help="spec file (.toml or .json)")
    parser.add_argument("--targets", default="", metavar="T,...", help="targets (spec's: all)")
    parser.add_argument("--units", default="", metavar="U,...",
                        help="units: the spec's entries to keep, or one entry per unit")
    parser.add_argument("--lanes", default="", metavar="N,...", help="lane counts of every unit")
    parser.add_argument("--seeds", default="", metavar="S,...", help="nextpnr seeds")
    parser.add_argument("-p", "--param", action="append", default=[],
                        metavar="NAME=V1,V2", help="a registry parameter's values (repeatable)")
    parser.add_argument("--jobs", default="", metavar="J", help="local workers (default: cores)")
    _add_executor(parser)
    parser.set_defaults(run=_run_explore)


def _run_explore(args, out):
    from .flow import explore, selection
    if not args.spec and not args.units:
        raise UsageError("explore: expected a SPEC file or --units")
    params = {}
    for name, values in _parse_params(args.param).items():
        params[name] = [v for v in values.split(",") if v.strip()] or [values]
    try:
        raw = explore._load_text(args.spec) if args.spec else None
        spec = explore.parse_spec(explore.spec_from_options(
            raw, targets=selection.parse_targets(args.targets) if args.targets else None,
            units=selection.parse_units(args.units) if args.units else None,
            lanes=selection.parse_lanes(args.lanes), seeds=selection.parse_seeds(args.seeds),
            params=params), where=args.spec or "options")
        jobs = selection.parse_jobs(args.jobs)
    except ValueError as error:
        raise UsageError(str(error)) from None
    executor = _executor(args)
    report = _on_cluster(lambda: explore.run_explore(
        spec, progress=lambda line: print(line, file=out, flush=True), jobs=jobs, **executor))
    print(f"reports: {', '.join(_report_paths(report.get('files', {})))}", file=out)
    return 0


IMPORT_REPORT = "build/reports/import.json"


def _add_import(subparsers):
    parser = subparsers.add_parser(
        "import", help="a QONNX model (Brevitas, FINN, ...) as rtn-hw weights",
        description="Fold a QONNX MLP or CNN of 2-bit (ternary) Quant layers into the weights "
                    "format (-o NAME.json and NAME.npz), check it against qonnx's execute_onnx "
                    f"on the shipped test images and write {IMPORT_REPORT} (docs/qonnx.md).")
    parser.add_argument("model", metavar="MODEL.onnx", help="QONNX model to import")
    parser.add_argument("-o", "--output", metavar="NAME.json", help="weights manifest to write")
    parser.add_argument("--pixel-max", default="16", metavar="P",
                        help="largest input pixel value (default 16, the 8x8 digits)")
    parser.add_argument("--engine", default="0", metavar="N",
                        help="also run the first N test images through make demo's simulated "
                             "engine (an MLP's network engine, a CNN's dataflow engine; Amaranth "
                             "simulator; default 0: none; make demo runs all)")
    parser.set_defaults(run=_run_import)


def _run_import(args, out):
    if not args.output:
        raise UsageError("import: -o NAME.json is required")
    output = _output_file(args.output, ".json")
    pixel_max = _number(args.pixel_max, "--pixel-max", int, 1, 255)
    engine_images = _number(args.engine, "--engine", int, 0)
    from .interop import QonnxError, qonnx_import
    try:
        network, entry = qonnx_import.import_file(
            args.model, output, pixel_max=pixel_max, report=IMPORT_REPORT,
            engine=_simulated_engine(engine_images) if engine_images else None)
    except QonnxError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"-o {args.output}: cannot write ({error.strerror or error})") from None
    _print_check(entry, out)
    print(f"wrote {output} and {output.with_suffix('.npz').name} "
          f"({network!r}); report: {IMPORT_REPORT}", file=out)
    return 0 if entry["consistent"] else 1


def _simulated_engine(count):
    """engine(network, images) → (logits, classes) of `make demo`'s default engine on the
    first `count` images, in the Amaranth simulator: an MLP's NetworkEngine (its default lanes
    and channels), a CNN's DataflowEngine (its default folding, one pixel position per
    handshake). `engine.description` names the one run."""
    def engine(network, images):
        from .demo import run_demo
        run = run_demo(images[:count], network, seed=0)
        if run.engine == "dataflow":
            folding = ",".join(str(f) for f in run.dut.foldings if f is not None)
            engine.description = (f"DataflowEngine({folding}), make demo's default folding, "
                                  f"Amaranth simulator")
        else:
            engine.description = (f"NetworkEngine(lanes={run.dut.lanes}, channels="
                                  f"{run.dut.channels}), make demo's lanes and channels, "
                                  f"Amaranth simulator")
        return run.logits, run.classes
    engine.description = "make demo's default engine, Amaranth simulator"
    return engine


def _add_export_qonnx(subparsers):
    parser = subparsers.add_parser(
        "export-qonnx", help="rtn-hw weights as a QONNX model",
        description="Write a network (weights/NAME.json) as a QONNX graph (ternary Quant "
                    "nodes with RTN's offset as the zero point), checked by qonnx and by "
                    "importing it back (docs/qonnx.md).")
    parser.add_argument("weights", metavar="NAME.json", help="weights manifest")
    parser.add_argument("-o", "--output", metavar="NAME.onnx", help="QONNX file to write")
    parser.set_defaults(run=_run_export_qonnx)


def _run_export_qonnx(args, out):
    if not args.output:
        raise UsageError("export-qonnx: -o NAME.onnx is required")
    output = _output_file(args.output, ".onnx")
    from .interop import QonnxError, qonnx_export
    try:
        entry = qonnx_export.export_file(args.weights, output, report=IMPORT_REPORT)
    except QonnxError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"-o {args.output}: cannot write ({error.strerror or error})") from None
    print(f"zero points: {', '.join(entry['zero_points']) or 'none'}; offsets as Add: "
          f"{', '.join(entry['offsets_as_add']) or 'none'}", file=out)
    if "logits" in entry:
        _print_check(entry, out)
    print(f"wrote {output} (imports back as the same integer network); report: "
          f"{IMPORT_REPORT}", file=out)
    return 0 if entry.get("consistent", True) else 1


def _output_file(text, suffix):
    path = Path(text)
    if path.suffix != suffix or path.name == suffix:
        raise UsageError(f"-o {text}: expected a file name ending in {suffix}")
    if not path.parent.is_dir():
        raise UsageError(f"-o {text}: cannot write (no folder {str(path.parent)!r})")
    return path


def _print_check(entry, out):
    logits = entry["logits"]
    print(f"execute_onnx vs golden on {entry['images']} {entry.get('dataset', 'digits')} test "
          f"images: class agreement "
          f"{100 * entry['class_agreement']:.2f} %, accuracy golden "
          f"{100 * entry['accuracy']['golden']:.2f} % / qonnx "
          f"{100 * entry['accuracy']['qonnx']:.2f} %", file=out)
    for layer in entry["layers"]:
        trits = (f", hidden trits agree {100 * layer['trit_agreement']:.3f} %"
                 if "trit_agreement" in layer else "")
        if "k_fmt" not in layer:                                # max pooling
            print(f"  {layer['name']}: max pool{trits}", file=out)
            continue
        print(f"  {layer['name']}: K {layer['k_fmt']}, y {layer['out_fmt']}, fixed-point "
              f"bound {layer['error_bound']:.3g}{trits}", file=out)
    if "engine" in entry:
        engine = entry["engine"]
        print(f"  engine (simulated, {engine['images']} images): golden agreement "
              f"{100 * engine['golden_agreement']:.2f} %, classes as the graph's "
              f"{100 * engine['class_agreement_with_graph']:.2f} %", file=out)
    print(f"  logits: max error {logits['max_error']:.3g} on the {logits['compared_on']} "
          f"images whose hidden trits agree, bound {logits['fixed_point_bound']:.3g} + float32 "
          f"{logits['float32_bound_max']:.3g}: "
          f"{'within' if logits['within_bound'] else 'OUTSIDE'}", file=out)
    if not entry["consistent"]:
        print("  NOT CONSISTENT: a difference beyond the bounds (see the report)", file=out)


def _add_fold(subparsers):
    parser = subparsers.add_parser(
        "fold", help="per-layer foldings of the dataflow engine for a target",
        description="Pick the dataflow engine's per-layer foldings (lanes, channels, weight "
                    "storage) for a throughput target or, without one, the fastest within a "
                    "budget (default: the device), with the resource model of rtn_hw.fold "
                    "(docs/units/dataflow_engine.md); print the plan and its predicted II, "
                    "LUT4, FF, DSP, BRAM and images/s.")
    parser.add_argument("--weights", default="shipped", metavar="NAME.json",
                        help="weights manifest (default: weights/rtn_digits.json)")
    parser.add_argument("--target", default="ecp5-85k", metavar="T",
                        help="device (default ecp5-85k)")
    parser.add_argument("--images-per-second", metavar="R", help="throughput to reach")
    parser.add_argument("--clock-mhz", metavar="F",
                        help="clock for images/s (default: rtn_hw.fold.FMAX_MHZ)")
    for name in ("lut4", "dsp", "bram"):
        parser.add_argument(f"--{name}", metavar="N", help=f"{name.upper()} budget")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(run=_run_fold)


def _run_fold(args, out):
    rate = (None if args.images_per_second is None
            else _positive(args.images_per_second, "--images-per-second", float))
    clock = None if args.clock_mhz is None else _positive(args.clock_mhz, "--clock-mhz", float)
    budget = {name: _number(getattr(args, name), f"--{name}", int, 0)
              for name in ("lut4", "dsp", "bram") if getattr(args, name) is not None}
    from . import fold, weights
    try:
        network = weights.load(weights.DEFAULT_MANIFEST if args.weights == "shipped"
                               else args.weights)
        plan = fold.solve(network, args.target, images_per_second=rate, clock_mhz=clock,
                          **budget)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.json:
        import json
        print(json.dumps(plan.as_dict(), indent=1), file=out)
        return 0
    e = plan.estimate
    for layer, folding in zip(network.layers, plan.foldings):
        cycles = -(-layer.in_features // folding.lanes) * -(-layer.out_features // folding.channels)
        print(f"{layer.name} ({layer.in_features}→{layer.out_features}): {folding}, {cycles} "
              f"cycles per image", file=out)
    print(f"folding={','.join(map(str, plan.foldings))}", file=out)
    print(f"II {e.ii} cycles; model: LUT4 {e.lut4:,}, FF {e.ff:,}, DSP {e.dsp}, BRAM {e.bram}; "
          f"{plan.images_per_second:,.0f} images/s at {plan.clock_mhz:g} MHz", file=out)
    return 0


COMMANDS = {"verilog": _add_verilog, "synth": _add_synth, "explore": _add_explore,
            "run": _add_run, "import": _add_import, "export-qonnx": _add_export_qonnx,
            "fold": _add_fold}


def _parser():
    parser = ArgumentParser(prog=PROG, description="RTN hardware generator.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    subparsers.required = True
    for add in COMMANDS.values():
        add(subparsers)
    return parser


def main(argv=None):
    """Run the command line `argv` (default sys.argv[1:]); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = _parser()
        command = next((arg for arg in argv if not arg.startswith("-")), None)
        if command is not None and command not in COMMANDS:
            # argparse quotes the choices differently from one Python version to the next.
            raise UsageError(f"unknown command {command!r}; valid commands: "
                             f"{', '.join(COMMANDS)}")
        args = parser.parse_args(argv)
        return args.run(args, sys.stdout)
    except UsageError as error:
        return print_usage_error(PROG, error)
    except KeyboardInterrupt:
        return print_interrupted(PROG)
    except SystemExit as exit:
        # --help and --version end argparse with SystemExit(0); report it as a status.
        return exit.code if isinstance(exit.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
