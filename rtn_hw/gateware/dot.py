"""TernaryDot: the Eq. 8 dot product D and the activation sum S_a of N-lane ternary vectors.

Arithmetic (RTN.md §3). Per lane the product t_w·t_a is +1, 0 or -1. With c = W1 & A1 and
x = W2 ^ A2, pos = c & ~x marks +1 and ~neg = ~(c & x) marks "not -1", so pos + ~neg =
t_w·t_a + 1 and

    D   = popcount(pos) + popcount(~neg) - N    (= popcount(c) - 2·popcount(x & c))
    S_a = popcount(A1 & A2) + popcount(~(A1 & ~A2)) - N    (= 2·popcount(A1 & A2) - popcount(A1))

Each lane gives two single bits from two LUTs (4-input for D, 2-input for S_a); the 2N bits go
to one carry-chain compressor (`popcount.compress`), and a final subtraction of the constant N
gives the signed result. A zero's sign bit enters only through x and A2, always masked by c or
A1, so it cannot change the result. The unsigned sums stay in [0, 2N], so bits_for(2N) =
dot_width(N) bits never overflow (proven in tests/test_formal.py).

Levels: 1 (lane bits) + compress_levels(2N) + 1 (subtract the constant) = `dot_levels(N)`.
`pipeline` = p registers in all = the latency; the last is the output register, the other
p - 1 follow levels round(k·L/p), k = 1..p-1 (`dot_cuts`), so p may be at most L.
"""

from amaranth.hdl import Module, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model._check import positive_int
from .layouts import dot_width, trit_planes
from .pipeline import Pipeline
from .popcount import compress, compress_levels

__all__ = ["TernaryDot", "dot_levels", "dot_cuts"]


def dot_levels(lanes):
    """Logic levels of TernaryDot for `lanes` lanes (see the module docstring)."""
    return 2 + compress_levels(2 * positive_int(lanes, "Lane count"))


def dot_cuts(lanes, pipeline):
    """Levels after which TernaryDot(lanes, pipeline=pipeline) puts its inner registers."""
    levels = dot_levels(lanes)
    return frozenset(round(k * levels / pipeline) for k in range(1, pipeline))


def _check_pipeline(pipeline, lanes):
    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 0:
        raise TypeError(f"Pipeline depth must be a non-negative integer, not {pipeline!r}")
    levels = dot_levels(lanes)
    if pipeline > levels:
        raise ValueError(f"Pipeline depth must be at most {levels} for {lanes} lanes, "
                         f"not {pipeline}")
    return pipeline


class TernaryDot(wiring.Component):
    """D = Σ t_w·t_a (Eq. 8) and S_a = Σ t_a of one N-lane (w, a) pair per cycle.

    Ports: `i` stream of {w: trit_planes(lanes), a: trit_planes(lanes)}; `o` stream of
    {d: signed(dot_width(lanes)), s_a: signed(dot_width(lanes))}, without `s_a` when
    `activation_sum=False` (a MAC array computes S_a once for all its channels).
    Latency: `pipeline` cycles."""

    def __init__(self, lanes, *, pipeline=1, activation_sum=True):
        self._lanes = positive_int(lanes, "Lane count")
        self._pipeline = _check_pipeline(pipeline, self._lanes)
        if not isinstance(activation_sum, bool):
            raise TypeError(f"activation_sum must be a bool, not {activation_sum!r}")
        self._activation_sum = activation_sum
        operands = data.StructLayout({"w": trit_planes(self._lanes),
                                      "a": trit_planes(self._lanes)})
        fields = {"d": signed(dot_width(self._lanes))}
        if activation_sum:
            fields["s_a"] = signed(dot_width(self._lanes))
        super().__init__({
            "i": In(stream.Signature(operands)),
            "o": Out(stream.Signature(data.StructLayout(fields))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def pipeline(self):
        return self._pipeline

    @property
    def activation_sum(self):
        return self._activation_sum

    @property
    def latency(self):
        return self._pipeline

    def elaborate(self, platform):
        m = Module()
        n = self._lanes
        pipe = Pipeline(m, self.i, self.o, self._pipeline, name="dot")
        cuts = dot_cuts(n, self._pipeline) if self._pipeline else frozenset()
        w, a = self.i.payload.w, self.i.payload.a
        width = dot_width(n)

        bits = {}
        c = w.nz & a.nz
        x = w.sg ^ a.sg
        bits["d"] = [c & ~x, ~(c & x)]
        if self._activation_sum:
            bits["s_a"] = [a.nz & a.sg, ~(a.nz & ~a.sg)]

        results = {}
        for field, (plus, not_minus) in bits.items():
            # Level 1 is the lane logic; the compressor's levels count on from there.
            singles = [plus[k] for k in range(n)] + [not_minus[k] for k in range(n)]
            if 1 in cuts:
                singles = [pipe.stage(b, name=f"{field}_lane{k}") for k, b in enumerate(singles)]
            shifted = frozenset(cut - 1 for cut in cuts if cut > 1)
            total, _, _ = compress(m, singles, stage=pipe.stage, cuts=shifted, name=field)
            results[field] = Value.cast(total - n)[:width].as_signed()
        for field, value in results.items():
            out = pipe.stage(value, name=f"{field}_out") if self._pipeline else value
            m.d.comb += getattr(self.o.payload, field).eq(out)
        return m
