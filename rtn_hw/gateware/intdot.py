"""Exact int8/int16 dot product: the integer baseline against which RTN's ternary MAC is sized.

`IntDot` is `rtn_hw.model.int_dot` in hardware: N plain `*` products (so synthesis maps them to
DSP blocks), then a balanced adder tree with one register level per tree level. Every partial
sum is exactly as wide as its worst case, so the result never overflows and nothing is wider
than it needs to be.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.baseline import int_dot_width
from .pipeline import Pipeline

__all__ = ["IntDot"]


class IntDot(wiring.Component):
    """Σ a_k·b_k over N lanes of signed `width`-bit integers, one vector pair per cycle.

    Parameters
    ----------
    lanes : int
        Vector length N.
    width : 8 or 16
        Operand width in bits (signed).

    Ports
    -----
    i : In(stream.Signature(StructLayout({"a": ArrayLayout(signed(width), N), "b": same})))
    o : Out(stream.Signature(signed(int_dot_width(N, width))))

    Latency 1 + ceil(log2 N): one register after the multipliers, then one per tree level.
    The tree pairs element 2k with 2k + 1 at each level; an odd last element is registered
    unchanged into the next level.
    """

    def __init__(self, lanes, width):
        self._lanes = _check.positive_int(lanes, "Lane count")
        # The model accepts 8.0 == 8; a float width would break the shapes below.
        if isinstance(width, bool) or not isinstance(width, int):
            raise ValueError(f"Integer width must be 8 or 16, not {width!r}")
        # The golden model's own check and width, so neither can drift from it.
        self._out_width = int_dot_width(self._lanes, width)
        self._width = width
        operand = data.ArrayLayout(signed(width), self._lanes)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"a": operand, "b": operand}))),
            "o": Out(stream.Signature(signed(self._out_width))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def width(self):
        return self._width

    @property
    def out_width(self):
        return self._out_width

    @property
    def levels(self):
        """Adder-tree levels, ceil(log2 lanes)."""
        return (self._lanes - 1).bit_length()

    @property
    def latency(self):
        return 1 + self.levels

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, depth=self.latency, name="dot")
        a, b = self.i.payload.a, self.i.payload.b

        # Each node carries (value, lanes it sums); its width is that many lanes' worst case.
        def node_shape(count):
            return signed(int_dot_width(count, self._width))

        level = []
        for k in range(self._lanes):
            product = Signal(node_shape(1), name=f"product{k}")
            m.d.comb += product.eq(a[k] * b[k])
            level.append((pipe.stage(product, f"product{k}_q"), 1))
        for depth in range(self.levels):
            nxt = []
            for k in range(0, len(level) - 1, 2):
                (left, n_left), (right, n_right) = level[k], level[k + 1]
                total = Signal(node_shape(n_left + n_right), name=f"sum{depth}_{k // 2}")
                m.d.comb += total.eq(left + right)
                nxt.append((pipe.stage(total, f"sum{depth}_{k // 2}_q"), n_left + n_right))
            if len(level) % 2:
                last, count = level[-1]
                nxt.append((pipe.stage(last, f"carry{depth}_q"), count))
            level = nxt
        (result, _), = level
        m.d.comb += self.o.payload.eq(result)
        return m
