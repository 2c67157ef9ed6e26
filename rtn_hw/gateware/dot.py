# amaranth: UnusedElaboratable=no
"""TernaryDot: the Eq. 8 dot product D and the activation sum S_a of N-lane ternary vectors.

A thin wrapper of the shared `MacCore` (one channel, weights streamed beside the activations):
the core gives the biased counts D + N and S_a + N, and subtracting the constant N after the
core's output register gives the signed results in `dot_width(N)` bits (docs/rtn.md §3).

`pipeline` = p registers in all = the latency: the core's output register and p - 1 register
layers after the core's levels round(k·L/p), k = 1..p-1 (`dot_cuts`), L = `dot_levels(N)`, so
p may be at most L; p = 0 is combinational.
"""

from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model._check import positive_int
from .core import MacCore, check_tree, core_levels
from .layouts import dot_width, trit_planes

__all__ = ["TernaryDot", "dot_levels", "dot_cuts"]


def dot_levels(lanes, tree="compressor"):
    """Logic levels of TernaryDot's core for `lanes` lanes: the lane logic and the tree."""
    return core_levels(lanes, tree)


def dot_cuts(lanes, pipeline, tree="compressor"):
    """Levels after which TernaryDot(lanes, pipeline=pipeline) puts its inner registers."""
    levels = dot_levels(lanes, tree)
    return frozenset(round(k * levels / pipeline) for k in range(1, pipeline))


def _check_pipeline(pipeline, lanes, tree):
    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 0:
        raise TypeError(f"Pipeline depth must be a non-negative integer, not {pipeline!r}")
    levels = dot_levels(lanes, tree)
    if pipeline > levels:
        raise ValueError(f"Pipeline depth must be at most {levels} for {lanes} lanes, "
                         f"not {pipeline}")
    return pipeline


class TernaryDot(wiring.Component):
    """D = Σ t_w·t_a (Eq. 8) and S_a = Σ t_a of one N-lane (w, a) pair per cycle.

    Ports: `i` stream of {w: trit_planes(lanes), a: trit_planes(lanes)}; `o` stream of
    {d: signed(dot_width(lanes)), s_a: signed(dot_width(lanes))}, without `s_a` when
    `activation_sum=False` (a MAC array computes S_a once for all its channels).
    Latency: `pipeline` cycles. `tree`: the core's tree style (`MacCore`)."""

    def __init__(self, lanes, *, pipeline=1, activation_sum=True, tree="compressor"):
        self._lanes = positive_int(lanes, "Lane count")
        check_tree(tree)
        self._pipeline = _check_pipeline(pipeline, self._lanes, tree)
        if not isinstance(activation_sum, bool):
            raise TypeError(f"activation_sum must be a bool, not {activation_sum!r}")
        self._core = MacCore(self._lanes, 1, activation_sum=activation_sum, tree=tree,
                             cuts=dot_cuts(self._lanes, pipeline, tree) if pipeline else (),
                             registered=pipeline > 0)
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
        return self._core.activation_sum

    @property
    def tree(self):
        return self._core.tree

    @property
    def latency(self):
        return self._core.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        n = self._lanes
        m.d.comb += [core.i.valid.eq(self.i.valid), self.i.ready.eq(core.i.ready),
                     core.i.payload.a.eq(self.i.payload.a), core.i.payload.w[0].eq(self.i.payload.w),
                     self.o.valid.eq(core.o.valid), core.o.ready.eq(self.o.ready),
                     # The counts are D + N and S_a + N, in [0, 2N]: the difference fits
                     # dot_width(N) signed bits.
                     self.o.payload.d.eq(core.o.payload.d[0] - n)]
        if self.activation_sum:
            m.d.comb += self.o.payload.s_a.eq(core.o.payload.s - n)
        return m
