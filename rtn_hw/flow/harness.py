"""A register harness that lets any streaming unit be placed, routed and timed on a real package.

A unit's ports are far wider than any package (an N-lane fp32 dot has 64·N input bits), and
ports left unconnected let synthesis delete the logic behind them. The harness gives the unit
four pins (`clk`, `rst`, `sin`, `sout`) and keeps every bit of it alive:

* every input of the unit (payload, valid and, for outputs, ready; any number of streams) is
  one bit of a serial-in shift register fed from `sin` (in chains of CHAIN_BITS, each chain's
  first bit also XORed with the previous chain's), so each bit is an independent register;
* every output of the unit (payloads, valids, input readies) is registered, then XOR-reduced
  four bits per LUT, one register level per tree level, down to `sout`.

So every path is register to register (nextpnr reports an Fmax), and the harness's own paths
are one LUT at most: the critical path is the unit's. The unit sits in its own submodule named
`UNIT_NAME`, which the synthesis flow marks `keep_hierarchy` so that `stat` counts the unit's
cells apart from the harness's.

For synthesis the unit is an `Instance` of a separately converted module (`instance=` names
it, `domain_ports` says which of clk and rst it has; see `rtn_hw.flow.yosys.elaborate`): its
ports then keep the names of the exported Verilog (`i__payload`, `o__valid`, ...), so the
mapped unit can be simulated on its own by the power model. Without `instance` the unit is an
Amaranth submodule (for simulating the harness).
"""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterHarness", "UNIT_NAME", "XOR_FANIN", "CHAIN_BITS", "harness_widths"]

UNIT_NAME = "unit"
XOR_FANIN = 4       # one LUT4 per XOR node on iCE40/ECP5; LUT6 fabrics simply use part of a LUT
CHAIN_BITS = 512    # longest run of the input shift register


def _ports(component):
    """(path, member) of every port of `component`, inputs and outputs, in signature order."""
    return [(path, member) for path, member in component.signature.members.flatten()
            if member.is_port]


def _value(component, path):
    value = component
    for part in path:
        value = value[part] if isinstance(part, int) else getattr(value, part)
    return value


def harness_widths(component):
    """(input bits, output bits) of `component`: the shift register and XOR tree sizes."""
    ins = outs = 0
    for path, member in _ports(component):
        width = len(Value.cast(_value(component, path)))
        if member.flow == In:
            ins += width
        else:
            outs += width
    return ins, outs


class RegisterHarness(wiring.Component):
    """`unit` behind a serial-in shift register and a pipelined XOR reduction.

    Ports: sin (in, 1): shift register input; sout (out, 1): XOR of every unit output bit,
    `levels` + 1 cycles late. Plus the `sync` domain's clk and rst."""

    sin: In(1)
    sout: Out(1)

    def __init__(self, unit, *, instance=None, domain_ports=("clk", "rst")):
        if not isinstance(unit, wiring.Component):
            raise TypeError(f"Unit must be a wiring.Component, not {unit!r}")
        self._unit = unit
        self._instance = instance
        self._domain_ports = tuple(domain_ports)
        self._in_bits, self._out_bits = harness_widths(unit)
        if self._out_bits == 0:
            raise ValueError("Unit has no output bits: nothing would survive synthesis")
        super().__init__()

    @property
    def unit(self):
        return self._unit

    @property
    def in_bits(self):
        return self._in_bits

    @property
    def out_bits(self):
        return self._out_bits

    @property
    def levels(self):
        """XOR tree levels after the output register."""
        count, levels = self._out_bits, 0
        while count > 1:
            count = -(-count // XOR_FANIN)
            levels += 1
        return levels

    def elaborate(self, platform):
        m = Module()
        inputs, outputs = [], []
        if self._instance is None:
            m.submodules[UNIT_NAME] = unit = self._unit
            for path, member in _ports(unit):
                (inputs if member.flow == In else outputs).append(Value.cast(_value(unit, path)))
        else:
            # The flattened port names of Amaranth's Verilog/RTLIL output; zero-width members
            # are left out of the module.
            domain = {"clk": ClockSignal(), "rst": ResetSignal()}
            ports = {f"i_{name}": domain[name] for name in self._domain_ports}
            for path, member in _ports(self._unit):
                name = "__".join(str(part) for part in path)
                width = len(Value.cast(_value(self._unit, path)))
                if not width:
                    continue
                signal = Signal(width, name=f"u_{name}")
                (inputs if member.flow == In else outputs).append(signal)
                ports[f"{'i' if member.flow == In else 'o'}_{name}"] = signal
            m.submodules[UNIT_NAME] = Instance(self._instance, **ports)

        if self._in_bits:
            # Chains of at most CHAIN_BITS: one chain thousands of flip-flops long overflows
            # the recursion of yosys's topological sort under WebAssembly (fp32 dot, 64 lanes).
            # Chain j starts from sin ^ (chain j-1's first bit), so no two flip-flops share a
            # D input and none can be merged.
            chains, head = [], self.sin
            for j, start in enumerate(range(0, self._in_bits, CHAIN_BITS)):
                chain = Signal(min(CHAIN_BITS, self._in_bits - start), name=f"chain{j}")
                m.d.sync += chain.eq(Cat(head if j == 0 else self.sin ^ head, chain[:-1]))
                chains.append(chain)
                head = chain[0]
            chain, offset = Cat(*chains), 0
            for value in inputs:
                m.d.comb += value.eq(chain[offset:offset + len(value)])
                offset += len(value)

        bits = Signal(self._out_bits, name="out_r")
        m.d.sync += bits.eq(Cat(*outputs))
        level = 0
        while len(bits) > 1:
            groups = [bits[k:k + XOR_FANIN] for k in range(0, len(bits), XOR_FANIN)]
            reduced = Signal(len(groups), name=f"xor{level}")
            m.d.sync += reduced.eq(Cat(*(group.xor() for group in groups)))
            bits, level = reduced, level + 1
        m.d.comb += self.sout.eq(bits[0])
        return m
