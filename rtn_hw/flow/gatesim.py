"""Gate-level simulation of a mapped unit (`unit.v` of the synthesis run), for toggle counts.

The netlist is the unit alone as the sweep's one synthesis mapped it (`rtn_hw.flow.yosys`),
over the vendor cell models shipped with yosys, driven by the project's one `$readmemh`
testbench (`rtn_hw.flow.testbench`: every payload offered until taken, `o.ready` high):

* "icarus" (iCE40): Icarus over yosys's ice40 `cells_sim.v`;
* "icarus-flat" (either family): yosys flattens the netlist into those same cell models (plus
  our MULT18X18D and a one-line LUT4; the DP16KD block RAM, a black box in yosys, is our
  behavioural model), then Icarus: much cheaper than Verilator for large
  netlists, and the ECP5 default, since Icarus cannot parse the ECP5 models themselves;
* "verilator" (ECP5): Verilator over yosys's ecp5 `cells_sim.v` (a test checks that it and
  "icarus-flat" agree, net by net).

Only the netlist's own nets are traced. Toggles are counted in a window of whole input
intervals: from the edge that presents the first input at or after `warmup` cycles to the edge
that takes the last one, so a unit that is busy between inputs (the network engine) is charged
for whole images. Every net bit is charged to the cell type that drives it, read from yosys's
JSON of the same netlist.
"""

import dataclasses
import hashlib
import json
import pathlib
import re
import time

from .. import tools
from . import testbench, yosys
from .vcd import UNITS_PS, parse_vcd

__all__ = ["MappedNetlist", "read_netlist", "GateSim", "simulate_netlist", "SIMULATORS",
           "DEFAULT_SIMULATOR", "simulator_versions"]

SIMULATORS = {"ecp5": ("icarus-flat", "verilator"), "ice40": ("icarus", "icarus-flat")}
DEFAULT_SIMULATOR = {"ecp5": "icarus-flat", "ice40": "icarus"}


@dataclasses.dataclass
class MappedNetlist:
    """What the power model needs from yosys's JSON of the mapped unit."""
    family: str
    ports: dict          # name → (direction, width)
    cells: list          # (name, type, output bit ids, input bit ids (the clock excluded))
    netnames: dict       # net name → list of bit ids, LSB first (ints or "0"/"1"/"x")
    counts: dict         # cell type → instances
    workdir: pathlib.Path
    clock_bits: set

    def driver_types(self):
        """bit id → type of the cell driving it."""
        driver = {}
        for _, ctype, outs, _ in self.cells:
            for bit in outs:
                driver[bit] = ctype
        return driver

    def port_list(self):
        """The ports as the testbench takes them (sidecar style)."""
        return [{"name": name, "direction": direction, "width": width}
                for name, (direction, width) in self.ports.items()]


def read_netlist(workdir, family):
    """The mapped unit written by the synthesis script (`unit.json` in `workdir`)."""
    workdir = pathlib.Path(workdir)
    doc = json.loads((workdir / "unit.json").read_text())
    top = doc["modules"][yosys.UNIT_MODULE]
    ports = {name: (p["direction"], len(p["bits"])) for name, p in top["ports"].items()}
    clock = set(top["ports"]["clk"]["bits"]) if "clk" in top["ports"] else set()
    cells, counts = [], {}
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
        counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    netnames = {name: net["bits"] for name, net in top["netnames"].items()}
    return MappedNetlist(family, ports, cells, netnames, counts, workdir, clock)


@dataclasses.dataclass
class GateSim:
    outputs: list        # o__payload values (unsigned ints), in order
    toggles: dict        # bit id → toggles in the counted window (the clock net left out)
    traced_bits: set     # bit ids seen in the trace
    cycles: int          # cycles in the counted window
    inputs: int          # inputs taken in the counted window
    stalls: int          # cycles in which the unit did not take the offered payload
    simulator: str
    seconds: dict        # build, run, parse wall times


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


# The body of the DP16KD model: the modes synth_ecp5 maps memories to (DS1044, TN1264).
# 18 Kbit as 1,024 18-bit words; a 9/18-bit port addresses word AD[13:4] (a 9-bit one the
# half AD[3]; an 18-bit write has byte enables AD[1:0]); 36 bits is pseudo dual port: port B
# reads words {2a+1, 2a} onto {DOB, DOA}, port A writes DIA/DIB there with enables AD[3:0].
_DP16KD_BODY = """
  reg [17:0] mem [0:1023];
  integer k;
  initial begin
    if (!(DATA_WIDTH_A == 9 || DATA_WIDTH_A == 18 || DATA_WIDTH_A == 36)
        || !(DATA_WIDTH_B == 9 || DATA_WIDTH_B == 18 || DATA_WIDTH_B == 36)
        || REGMODE_A != "NOREG" || REGMODE_B != "NOREG") begin
      $display("DP16KD model: widths %%0d/%%0d, REGMODE %%0s/%%0s not modelled (9/18/36, NOREG)",
               DATA_WIDTH_A, DATA_WIDTH_B, REGMODE_A, REGMODE_B);
      $finish(1);
    end
    for (k = 0; k < 16; k = k + 1) begin
%(init)s
    end
  end
  wire [13:0] ada = %(ada)s, adb = %(adb)s;
  wire [17:0] dia = %(dia)s, dib = %(dib)s;
  wire [9:0] pair = {ada[13:5], 1'b0}, pairb = {adb[13:5], 1'b0};
  reg [17:0] qa = 0, qb = 0, qlo = 0;
  assign %(doa)s = DATA_WIDTH_B == 36 ? qlo : qa;
  assign %(dob)s = qb;
  function [17:0] narrow(input [31:0] width, input [17:0] word, input high);
    narrow = width == 9 ? {9'b0, high ? word[17:9] : word[8:0]} : word;
  endfunction
  // Port A: writes (also the write half of 36-bit mode) and 9/18-bit reads.
  wire arsta = RESETMODE == "ASYNC" && RSTA;
  always @(posedge CLKA or posedge arsta)
    if (arsta || RSTA) qa <= 0;
    else if (CEA) begin
      if (WEA && DATA_WIDTH_A == 36) begin
        if (ada[0]) mem[pair][8:0] <= dia[8:0];
        if (ada[1]) mem[pair][17:9] <= dia[17:9];
        if (ada[2]) mem[pair + 1][8:0] <= dib[8:0];
        if (ada[3]) mem[pair + 1][17:9] <= dib[17:9];
      end else if (WEA && DATA_WIDTH_A == 18) begin
        if (ada[0]) mem[ada[13:4]][8:0] <= dia[8:0];
        if (ada[1]) mem[ada[13:4]][17:9] <= dia[17:9];
      end else if (WEA) begin
        if (ada[3]) mem[ada[13:4]][17:9] <= dia[8:0];
        else mem[ada[13:4]][8:0] <= dia[8:0];
      end
      if (DATA_WIDTH_A != 36 && !(WEA && WRITEMODE_A == "NORMAL"))
        qa <= WEA && WRITEMODE_A == "WRITETHROUGH" ? narrow(DATA_WIDTH_A, dia, 1'b0)
              : narrow(DATA_WIDTH_A, mem[ada[13:4]], ada[3]);
    end
  // Port B: 9/18-bit reads and writes, or the read half of 36-bit mode.
  wire arstb = RESETMODE == "ASYNC" && RSTB;
  always @(posedge CLKB or posedge arstb)
    if (arstb || RSTB) begin qb <= 0; qlo <= 0; end
    else if (CEB) begin
      if (DATA_WIDTH_B == 36) begin
        qlo <= mem[pairb];
        qb <= mem[pairb + 1];
      end else begin
        if (WEB && DATA_WIDTH_B == 18) begin
          if (adb[0]) mem[adb[13:4]][8:0] <= dib[8:0];
          if (adb[1]) mem[adb[13:4]][17:9] <= dib[17:9];
        end else if (WEB) begin
          if (adb[3]) mem[adb[13:4]][17:9] <= dib[8:0];
          else mem[adb[13:4]][8:0] <= dib[8:0];
        end
        if (!(WEB && WRITEMODE_B == "NORMAL"))
          qb <= WEB && WRITEMODE_B == "WRITETHROUGH" ? narrow(DATA_WIDTH_B, dib, 1'b0)
                : narrow(DATA_WIDTH_B, mem[adb[13:4]], adb[3]);
      end
    end
"""


def _dp16kd_model():
    """A behavioural DP16KD: yosys ships the ECP5 block RAM as a black box. The ports and
    parameters are yosys's own declaration, so every parameter synth_ecp5 sets is accepted;
    the body is `_DP16KD_BODY`. Anything it does not model stops the simulation with a line."""
    source = (tools.yosys_share("ecp5") / "cells_sim.v").read_text()
    match = re.search(r"\(\* blackbox \*\)\s*(module DP16KD\(.*?)endmodule", source, re.S)
    if match is None:
        raise RuntimeError("yosys's ecp5/cells_sim.v has no DP16KD declaration to model")
    bus = lambda name: "{" + ", ".join(f"{name}{k}" for k in reversed(range(
        14 if name.startswith("AD") else 18))) + "}"
    init = "\n".join(f"      mem[{16 * nn} + k] = INITVAL_{nn:02X}[20 * k +: 18];"
                     for nn in range(64))
    body = _DP16KD_BODY % dict(init=init, **{name.lower(): bus(name) for name in
                                            ("ADA", "ADB", "DIA", "DIB", "DOA", "DOB")})
    return "// Behavioural DP16KD for gate-level simulation (rtn_hw.flow.gatesim).\n" + \
        match[1] + body + "endmodule\n"


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
                        "read_verilog unit.v",
                        # Unused LUT-RAM words (a FIFO's) have an undefined INITVAL; the
                        # device loads 0, while x would spread through the one-line LUT4.
                        # (Before `hierarchy`, which bakes parameters into the models.)
                        f"setundef -zero -params {yosys.UNIT_MODULE}",
                        f"hierarchy -top {yosys.UNIT_MODULE}", "proc",
                        # Private cell names give the flattened nets short private names.
                        f"rename -hide {yosys.UNIT_MODULE}/c:*", "flatten", "opt_clean",
                        "write_verilog -noattr flat.v"])
    digest = hashlib.sha256("\0".join([script, (work / "unit.v").read_text(),
                                       _mult18_model(), _LUT4_MODEL]).encode()).hexdigest()
    stamp = work / "flat.sha256"
    if not (stamp.exists() and stamp.read_text() == digest and (work / "flat.v").exists()):
        stamp.unlink(missing_ok=True)
        yosys.run_yosys(script, work, log="flatten.log")
        stamp.write_text(digest)


def simulate_netlist(netlist, payload_ints, *, warmup, drain, simulator=None, outputs=None):
    """Run the mapped netlist over `payload_ints` (each offered until taken) and count toggles.

    `simulator`: see the module docstring; default DEFAULT_SIMULATOR[family]. `outputs`: the
    outputs to wait for (default one per payload; 0 for a convolution stage, whose windows
    are fewer than its inputs: it then runs `drain` cycles past the last input). The counted
    window starts at the first input offered at or after cycle `warmup` and ends with the
    edge that takes the last input. Returns a `GateSim`."""
    family = netlist.family
    simulator = DEFAULT_SIMULATOR[family] if simulator is None else simulator
    if simulator not in SIMULATORS[family]:
        raise ValueError(f"Simulator for {family} must be one of "
                         f"{', '.join(map(repr, SIMULATORS[family]))}, not {simulator!r}")
    work = netlist.workdir
    count = len(payload_ints)
    testbench.write_inputs(work / testbench.INPUTS, payload_ints,
                           netlist.ports.get("i__payload", ("input", 0))[1])
    (work / "trace.vcd").unlink(missing_ok=True)
    share = tools.yosys_share(family)
    seconds = {}
    start = time.monotonic()
    if simulator in ("icarus", "icarus-flat"):
        if simulator == "icarus":
            netlist_v = "unit.v"
            sources = ["tb.v", "unit.v", str(share / "cells_sim.v")]
            flags = ["-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS"]
        else:
            _flatten(work, family)
            netlist_v = "flat.v"
            sources, flags = ["tb.v", "flat.v"], ["-g2012"]
            if family == "ecp5":
                # Block RAMs stay instances of yosys's black box through the flattening.
                (work / "dp16kd_sim.v").write_text(_dp16kd_model())
                sources.append("dp16kd_sim.v")
        # Count only the mapped netlist's own nets (a flattened one has many more inside the
        # cells), as far as they survived into the simulated Verilog. The whole scope is
        # dumped and the rest dropped when reading: a $dumpvars naming 35,000 nets cost
        # Icarus more to compile than the netlist itself (fp32_dot, 16 lanes: 175 s against 60).
        declared = set(re.findall(r"^\s*(?:wire|reg|input|output)\b[^;=\n]*?([A-Za-z_]\w*)"
                                  r"\s*(?:=[^;\n]*)?;",
                                  (work / netlist_v).read_text(), re.M))
        counted = declared & set(netlist.netnames)
    else:
        if netlist.counts.get("DP16KD"):
            raise ValueError(f"Simulator 'verilator' cannot run {work}: yosys's DP16KD is a "
                             f"black box there; use 'icarus-flat'")
        (work / "mult18x18d_sim.v").write_text(_mult18_model())
        # Only the netlist's own nets are wanted: tracing inside every cell model would
        # multiply the trace (Verilator ignores $dumpvars' depth).
        (work / "notrace.vlt").write_text(
            f'`verilator_config\ntracing_off -file "{share}/*"\n'
            'tracing_off -file "*mult18x18d_sim.v"\n')
        sources = ["notrace.vlt", "tb.v", "unit.v", "mult18x18d_sim.v", str(share / "cells_sim.v")]
        flags = ["--trace", "--trace-max-width", "100000", "--trace-depth", "2", f"-I{share}"]
        counted = None
    (work / "tb.v").write_text(testbench.testbench(
        netlist.port_list(), module=yosys.UNIT_MODULE, count=count, drain=drain, trace=True,
        timeout_cycles=100 * count + 10_000, outputs=outputs))
    testbench.simulate(work, sources, simulator=simulator.split("-")[0], flags=flags)
    seconds["run"] = time.monotonic() - start
    taken, outs = testbench.read_events(work / testbench.EVENTS)
    if len(taken) != count:
        raise RuntimeError(f"gate-level simulation in {work} took {len(taken)} of {count} "
                           f"inputs")
    # Input k is offered at the edge that took input k - 1 (input 0 at cycle 0).
    offered = [0] + taken[:-1]
    first = next((k for k in range(1, count) if offered[k] >= warmup), None)
    if first is None:
        raise ValueError(f"Need more payloads ({count}) than fit in the warm-up of {warmup} "
                         f"cycles")
    start_cycle, end_cycle = offered[first], taken[-1]

    start = time.monotonic()
    # Between an edge and the testbench's input changes at the falling edge after it: the
    # window holds the register changes of edges start+1 .. end and the inputs offered from
    # `start` on.
    quarter = testbench.PERIOD_PS // 4
    trace_counts = _read_trace(work / "trace.vcd", testbench.edge_ps(start_cycle) + quarter,
                               testbench.edge_ps(end_cycle) + quarter, counted)
    toggles, traced = {}, set()
    for name, counts in trace_counts.items():
        bits = netlist.netnames.get(name)
        if bits is None:
            continue
        for bit, n in zip(bits, counts):
            if isinstance(bit, int) and bit not in traced and bit not in netlist.clock_bits:
                traced.add(bit)
                toggles[bit] = n
    seconds["parse"] = time.monotonic() - start
    return GateSim([word for _, word in outs], toggles, traced, end_cycle - start_cycle,
                   count - first, taken[-1] - count, simulator, seconds)


def _dut_net(path):
    """The net name of a VCD path in the dut's own scope (Icarus names it tb.dut, Verilator
    TOP.tb.dut), else None."""
    parts = path.rsplit(".", 2)
    if len(parts) == 3 and parts[1] == "dut" and parts[0].split(".")[-1] == "tb":
        return parts[2]
    return None


def _read_trace(path, start_ps, end_ps, counted=None):
    """Toggles per net of the dut's scope; only the nets in `counted` (None: all)."""
    with open(path) as file:
        head = file.read(4096)
    match = re.search(r"\$timescale\s+(\d+)\s*([a-z]+)", head)
    unit = int(match[1]) * UNITS_PS[match[2]] if match else 1.0

    def keep(vcd_path):
        net = _dut_net(vcd_path)
        return net is not None and (counted is None or net in counted)

    parsed = parse_vcd(path, start=start_ps / unit, end=end_ps / unit, keep=keep)
    return {_dut_net(name): counts for name, counts in parsed.toggles.items()}


def simulator_versions():
    """Versions of the gate-level simulators, for reports."""
    import subprocess
    versions = {}
    try:
        out = subprocess.run([tools.iverilog(), "-V"], capture_output=True, text=True).stdout
        versions["icarus"] = (out.splitlines() or [""])[0]
    except OSError:
        versions["icarus"] = None
    try:
        exe, env = tools.verilator()
        versions["verilator"] = subprocess.run([exe, "--version"], env=env, capture_output=True,
                                               text=True).stdout.strip()
    except OSError:
        versions["verilator"] = None
    return versions
