"""AXI4-Stream wrapper: any unit with one input stream `i` and one output stream `o`.

The wrapper adds no arithmetic. Its top-level ports are named the way vendor tools expect
(`aclk`, `aresetn`, `s_axis_t*`, `m_axis_t*`); `tdata` is the unit's payload padded to whole
bytes. Two shapes:

* one beat per transfer (every unit but the engine): `s_axis_tdata` is the `i` payload with
  zero bits above it, `m_axis_tdata` the `o` payload, sign-extended when the payload is a plain
  signed number and zero-padded when it is a layout; no `tlast`. Pure wiring: latency and
  throughput are the unit's.
* side streams: every other input stream of the unit (the encoder's thresholds `t`, the MAC
  array's `load`) becomes a slave interface of its own, `s_axis_<name>_*`, one beat per
  transfer like the first kind.
* framed (the network engine): the `i` payload is an array of small elements (pixels); each
  element takes `element_bytes` bytes of `tdata` (zero-extended in, high bits ignored), `per_beat`
  elements per beat, `beats` beats per frame, `s_axis_tlast` on the last. The frame is
  collected in a register and handed to the unit the cycle after its last beat; the next frame
  is accepted as soon as the unit has taken that one. A frame whose `tlast` is not on beat
  `beats` is dropped whole: one `tlast` too early ends it there, a missing one discards beats
  up to and including the next `tlast`. Every result is one beat with `m_axis_tlast` high.

AXI4-Stream's reset is synchronous and active low: `aresetn` low for one `aclk` edge clears the
wrapper and the unit (Amaranth's `sync` domain of the unit is driven from `aclk`/`~aresetn`).
Valid never depends combinationally on ready, in both directions, as AXI4-Stream requires.
"""

import math

from amaranth.hdl import ClockDomain, Module, Shape, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxisWrapper", "WrapError", "check_wrappable", "byte_width", "payload_shape"]


class WrapError(ValueError):
    """The component cannot be put behind the AXI4-Stream wrapper; one line."""


def byte_width(bits):
    """`bits` rounded up to whole bytes, at least one byte."""
    return 8 * max(1, math.ceil(bits / 8))


def _is_stream(member, flow):
    return (member.is_signature and isinstance(member.signature, stream.Signature)
            and member.flow == flow)


def check_wrappable(component):
    """The wrapper takes an input stream `i`, an output stream `o` and other input streams
    only; returns the names of those others, sorted."""
    members = component.signature.members
    names = sorted(members)
    ok = ("i" in members and "o" in members and _is_stream(members["o"], Out)
          and all(_is_stream(members[name], In) for name in names if name != "o"))
    if not ok:
        raise WrapError(f"the AXI4-Stream wrapper takes a unit whose ports are an output "
                        f"stream o, an input stream i and other input streams; this one has "
                        f"ports {', '.join(names)}")
    return [name for name in names if name not in ("i", "o")]


def payload_shape(component, name):
    """The payload shape of stream `name` of a component."""
    return component.signature.members[name].signature.members["payload"].shape


class AxisWrapper(wiring.Component):
    """`unit` behind AXI4-Stream ports.

    Parameters
    ----------
    unit : wiring.Component
        Streams `i` (in), `o` (out) and other input streams only (`check_wrappable`); its
        `latency` property gives the wrapper's.
    per_beat : int or None
        None: one beat per transfer. An int: framed input, `per_beat` elements of the `i`
        payload (an `ArrayLayout`) per beat; it must divide the element count.
    """

    def __init__(self, unit, *, per_beat=None):
        self._sides = check_wrappable(unit)
        self._unit = unit
        i_shape, o_shape = payload_shape(unit, "i"), payload_shape(unit, "o")
        self._i_shape, self._o_shape = i_shape, o_shape
        self._per_beat = per_beat
        if per_beat is None:
            self._beats, self._element_bytes = 1, None
            s_width = byte_width(Shape.cast(i_shape).width)
        else:
            if not isinstance(i_shape, data.ArrayLayout):
                raise WrapError("framed input needs an array payload (elements per beat)")
            if (not isinstance(per_beat, int) or isinstance(per_beat, bool) or per_beat < 1
                    or i_shape.length % per_beat):
                raise WrapError(f"elements per beat must be a positive divisor of "
                                f"{i_shape.length}, not {per_beat!r}")
            self._beats = i_shape.length // per_beat
            self._element_bytes = byte_width(Shape.cast(i_shape.elem_shape).width) // 8
            s_width = 8 * self._element_bytes * per_beat
        m_width = byte_width(Shape.cast(o_shape).width)
        members = {
            "aclk": In(1), "aresetn": In(1),
            "s_axis_tdata": In(s_width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(m_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
        }
        if self.framed:
            members["s_axis_tlast"] = In(1)
            members["m_axis_tlast"] = Out(1)
        for name in self._sides:
            width = byte_width(Shape.cast(payload_shape(unit, name)).width)
            members.update({f"s_axis_{name}_tdata": In(width), f"s_axis_{name}_tvalid": In(1),
                            f"s_axis_{name}_tready": Out(1)})
        super().__init__(members)

    @property
    def unit(self):
        return self._unit

    @property
    def side_streams(self):
        """Names of the unit's other input streams, each behind `s_axis_<name>_*`."""
        return list(self._sides)

    @property
    def framed(self):
        return self._per_beat is not None

    @property
    def per_beat(self):
        return self._per_beat

    @property
    def beats(self):
        """Input beats per transfer (1 unless framed)."""
        return self._beats

    @property
    def element_bytes(self):
        """Bytes of `s_axis_tdata` per input element when framed, else None."""
        return self._element_bytes

    @property
    def latency(self):
        """Cycles from the handshake of a transfer's last input beat to its result on
        `m_axis_tvalid`, with the unit idle and `m_axis_tready` high: the unit's latency, plus
        one for the frame register when framed."""
        return int(self._unit.latency) + (1 if self.framed else 0)

    def elaborate(self, platform):
        m = Module()
        # The unit's `sync` domain, on AXI's clock and synchronous active-low reset.
        m.domains.sync = sync = ClockDomain("sync", local=True)
        m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]
        m.submodules.unit = unit = self._unit

        o_payload = Value.cast(unit.o.payload)
        if Shape.cast(self._o_shape).signed:
            o_payload = o_payload.as_signed()      # sign-extends into the padding
        m.d.comb += [self.m_axis_tdata.eq(o_payload), self.m_axis_tvalid.eq(unit.o.valid),
                     unit.o.ready.eq(self.m_axis_tready)]
        if self.framed:
            m.d.comb += self.m_axis_tlast.eq(1)
            self._frame(m, unit)
        else:
            self._beat(m, unit.i, "s_axis")
        for name in self._sides:
            self._beat(m, getattr(unit, name), f"s_axis_{name}")
        return m

    def _beat(self, m, port, prefix):
        """One beat per transfer: the payload is the low bits of tdata."""
        tdata = getattr(self, f"{prefix}_tdata")
        m.d.comb += [port.payload.eq(tdata[:len(Value.cast(port.payload))]),
                     port.valid.eq(getattr(self, f"{prefix}_tvalid")),
                     getattr(self, f"{prefix}_tready").eq(port.ready)]

    def _frame(self, m, unit):
        beats, per_beat = self._beats, self._per_beat
        elem_bits = Shape.cast(self._i_shape.elem_shape).width
        frame = Signal(self._i_shape, name="frame")
        full = Signal(name="full")                  # `frame` holds a whole frame for the unit
        skip = Signal(name="skip")                  # discarding beats of a too-long frame
        beat = Signal(range(beats), name="beat")
        last = Signal(name="last")
        take = Signal(name="take")
        m.d.comb += [unit.i.payload.eq(frame), unit.i.valid.eq(full),
                     self.s_axis_tready.eq(~full),
                     last.eq(beat == beats - 1),
                     take.eq(self.s_axis_tvalid & self.s_axis_tready)]
        with m.If(unit.i.valid & unit.i.ready):
            m.d.sync += full.eq(0)
        stride = 8 * self._element_bytes
        with m.If(take & ~skip):
            with m.Switch(beat):
                for b in range(beats):
                    with m.Case(b):
                        m.d.sync += [frame[b * per_beat + k].eq(
                            self.s_axis_tdata[k * stride:k * stride + elem_bits])
                            for k in range(per_beat)]
        with m.If(take):
            with m.If(skip):
                m.d.sync += skip.eq(~self.s_axis_tlast)
            with m.Elif(last):
                # A complete frame goes to the unit only if tlast marks its end.
                m.d.sync += [beat.eq(0), full.eq(self.s_axis_tlast),
                             skip.eq(~self.s_axis_tlast)]
            with m.Elif(self.s_axis_tlast):
                m.d.sync += beat.eq(0)                 # too short: dropped
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
