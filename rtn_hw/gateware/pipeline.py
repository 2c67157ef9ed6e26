"""Valid/ready bookkeeping for fixed-depth pipelines that stall as a whole.

Every stage register loads only when the pipeline advances, and the pipeline advances when its
last stage is empty or being taken. So `o.valid` is a register output (never combinationally
dependent on `o.ready`), the unit sustains one vector per cycle when `o.ready` stays high, and
backpressure stalls every stage at once, so nothing is lost or duplicated.
"""

from amaranth.hdl import Signal


class Pipeline:
    """Connect stream `i` to stream `o` through `depth` register stages.

    Use `stage(value)` to register data alongside the valid bits; route the last stage's data to
    `o.payload` yourself. With depth 0 the data path is combinational."""

    def __init__(self, m, i, o, depth, name="pipe"):
        self._m = m
        self.advance = Signal(name=f"{name}_advance")
        valid = i.valid
        for k in range(depth):
            nxt = Signal(name=f"{name}_valid{k}")
            with m.If(self.advance):
                m.d.sync += nxt.eq(valid)
            valid = nxt
        if depth:
            m.d.comb += self.advance.eq(~o.valid | o.ready)
        else:
            m.d.comb += self.advance.eq(o.ready)
        m.d.comb += [i.ready.eq(self.advance), o.valid.eq(valid)]

    def stage(self, value, name):
        """A register that takes `value` whenever the pipeline advances."""
        reg = Signal.like(value, name=name)
        with self._m.If(self.advance):
            self._m.d.sync += reg.eq(value)
        return reg
