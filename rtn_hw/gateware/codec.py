"""Fixed-point ↔ trit conversion at the edges of a ternary layer (docs/rtn.md §2, §3).

`TernaryEncoder` turns N fixed-point pre-activations into two N-bit planes with two comparisons
per lane (`rtn_hw.model.encode`); `TernaryDecoder` turns planes back into fixed-point codes of
α·t + β with a three-entry table per lane (`rtn_hw.model.decode`).
"""


import numpy as np
from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.fixed import Q, decode
from .layouts import threshold_trit, trit_planes
from .pipeline import Pipeline

__all__ = ["TernaryEncoder", "TernaryDecoder", "threshold_layout"]


def _check_format(fmt, what):
    if not isinstance(fmt, Q):
        raise TypeError(f"{what} must be a rtn_hw.model.Q fixed-point format, not {fmt!r}")
    return fmt


def _frozen(arr):
    arr = np.array(arr, copy=True)
    arr.flags.writeable = False
    return arr


def threshold_layout(lanes, in_fmt):
    """Payload of the encoder's threshold stream `t`: every lane's (lo, hi), one bit wider than
    the input format so the clamped values min - 1 and max + 1 fit."""
    element = signed(in_fmt.width + 1)
    return data.StructLayout({"lo": data.ArrayLayout(element, lanes),
                              "hi": data.ArrayLayout(element, lanes)})


def _check_thresholds(thresholds, lanes, in_fmt):
    """(lo, hi) → two int64 arrays (lanes,), or raise naming the first bad value."""
    if not isinstance(thresholds, tuple) or len(thresholds) != 2:
        raise TypeError(f"Thresholds must be None or a (lo, hi) tuple, not {thresholds!r}")
    low, high = in_fmt.min_int - 1, in_fmt.max_int + 1
    result = []
    for value, name in zip(thresholds, ("lo", "hi")):
        arr = np.asarray(value)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"Threshold {name} must be integer fixed-point codes, not "
                            f"{value!r}")
        if arr.ndim == 0:
            arr = np.full(lanes, int(arr), dtype=np.int64)
        elif arr.shape != (lanes,):
            raise ValueError(f"Threshold {name} must be a scalar or have shape ({lanes},), not "
                             f"{arr.shape}")
        arr = arr.astype(np.int64)
        bad = np.flatnonzero((arr < low) | (arr > high))
        if bad.size:
            raise ValueError(f"Threshold {name} = {int(arr[bad[0]])} at lane {int(bad[0])} is "
                             f"outside [{low}, {high}] (input format {in_fmt} with one code of "
                             f"margin each side)")
        result.append(arr)
    lo, hi = result
    bad = np.flatnonzero(lo > hi + 1)
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"Thresholds must satisfy lo <= hi + 1, not lo = {int(lo[k])} and "
                         f"hi = {int(hi[k])} at lane {k}")
    return _frozen(lo), _frozen(hi)


class TernaryEncoder(wiring.Component):
    """Fixed-point pre-activations → trits, nz = (y > hi) | (y < lo), sg = y > hi, per lane.

    Parameters
    ----------
    lanes : int
        Vector length N; lane k is channel k and becomes bit k of both output planes.
    in_fmt : rtn_hw.model.Q
        Format of the pre-activation codes on `i`.
    thresholds : (lo, hi) or None
        Constant integer thresholds (scalars or shape (N,)) in [min - 1, max + 1] of `in_fmt`
        with lo <= hi + 1 per lane (so no code is both above hi and below lo, and the two
        comparisons never conflict; `fold_thresholds` always satisfies this). With None the
        thresholds come from the stream `t` instead: a load is always accepted (`t.ready` is
        1) and applies to every input accepted in a later cycle; an input accepted in the same
        cycle as a load, and every vector already accepted, still uses the old thresholds.
        Until the first load every threshold is 0.

    Ports
    -----
    i : In(stream.Signature(ArrayLayout(signed(in_fmt.width), N)))
    o : Out(stream.Signature(trit_planes(N)))
    t : In(stream.Signature(threshold_layout(N, in_fmt))), only with thresholds=None

    Latency 1: the comparators sit before the single output register, so a vector is compared
    with the thresholds in force in the cycle it is accepted, and a later load cannot reach it.
    """

    def __init__(self, lanes, in_fmt, thresholds=None):
        self._lanes = _check.positive_int(lanes, "Lane count")
        self._in_fmt = _check_format(in_fmt, "Input format")
        if thresholds is None:
            self._thresholds = None
        else:
            self._thresholds = _check_thresholds(thresholds, self._lanes, in_fmt)
        members = {
            "i": In(stream.Signature(data.ArrayLayout(signed(in_fmt.width), self._lanes))),
            "o": Out(stream.Signature(trit_planes(self._lanes))),
        }
        if thresholds is None:
            members["t"] = In(stream.Signature(threshold_layout(self._lanes, in_fmt)))
        super().__init__(members)

    @property
    def lanes(self):
        return self._lanes

    @property
    def in_fmt(self):
        return self._in_fmt

    @property
    def thresholds(self):
        """(lo, hi) as read-only int64 arrays of shape (lanes,), or None when loadable."""
        return self._thresholds

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, depth=1, name="enc")
        if self._thresholds is None:
            # Loads only move the registers; vectors already past the comparators keep their
            # result, so a load in any cycle neither stalls nor corrupts in-flight data.
            current = Signal(threshold_layout(self._lanes, self._in_fmt), name="thresholds")
            m.d.comb += self.t.ready.eq(1)
            with m.If(self.t.valid):
                m.d.sync += current.eq(self.t.payload)
            lo = [current.lo[k] for k in range(self._lanes)]
            hi = [current.hi[k] for k in range(self._lanes)]
        else:
            shape = signed(self._in_fmt.width + 1)
            lo = [C(int(v), shape) for v in self._thresholds[0]]
            hi = [C(int(v), shape) for v in self._thresholds[1]]
        planes = Signal(trit_planes(self._lanes), name="planes")
        trits = [threshold_trit(self.i.payload[k], lo[k], hi[k]) for k in range(self._lanes)]
        # One assignment of the whole word (nz is the layout's first field), not one per bit:
        # Icarus rebuilds a wire driven in parts as a whole on every part's change (docs/sim.md).
        m.d.comb += planes.as_value().eq(Cat(*(nz for nz, _ in trits), *(sg for _, sg in trits)))
        m.d.comb += self.o.payload.eq(pipe.stage(planes, "planes_q"))
        return m


class TernaryDecoder(wiring.Component):
    """Trits → fixed-point codes of α·t + β per lane, exactly `rtn_hw.model.decode`.

    Parameters
    ----------
    lanes : int
        Vector length N; bit k of both planes is lane k.
    out_fmt : rtn_hw.model.Q
        Format of the output codes.
    alpha, beta : float or array of shape (N,)
        Scale (> 0) and offset. β - α, β and β + α are each rounded once (ties away from zero)
        to `out_fmt` in Python and the hardware only selects among them, so the output is the
        correctly rounded α·t + β. Validation is the golden model's own (same messages).

    Ports
    -----
    i : In(stream.Signature(trit_planes(N)))
    o : Out(stream.Signature(ArrayLayout(signed(out_fmt.width), N)))

    Latency 1 (one output register). A zero's sign bit is ignored.
    """

    def __init__(self, lanes, out_fmt, alpha, beta):
        self._lanes = _check.positive_int(lanes, "Lane count")
        self._out_fmt = _check_format(out_fmt, "Output format")
        # The golden model validates alpha/beta and rounds the three values; one row per trit.
        trits = np.repeat(np.array([[-1], [0], [1]], dtype=np.int8), self._lanes, axis=1)
        self._table = _frozen(decode(trits, alpha, beta, out_fmt))
        self._alpha = _frozen(alpha) if np.ndim(alpha) else alpha
        self._beta = _frozen(beta) if np.ndim(beta) else beta
        super().__init__({
            "i": In(stream.Signature(trit_planes(self._lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), self._lanes))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def out_fmt(self):
        return self._out_fmt

    @property
    def alpha(self):
        return self._alpha

    @property
    def beta(self):
        return self._beta

    @property
    def table(self):
        """Output codes (3, lanes) for t = -1, 0, +1 (read-only)."""
        return self._table

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, depth=1, name="dec")
        shape = signed(self._out_fmt.width)
        values = Signal(data.ArrayLayout(shape, self._lanes), name="values")
        lanes = []
        for k in range(self._lanes):
            minus, zero, plus = (C(int(v), shape) for v in self._table[:, k])
            nz, sg = self.i.payload.nz[k], self.i.payload.sg[k]
            lane = Signal(shape, name=f"value{k}")
            m.d.comb += lane.eq(Mux(nz, Mux(sg, plus, minus), zero))
            lanes.append(lane)
        # One assignment of the whole array (see the encoder).
        m.d.comb += values.eq(Cat(lanes))
        m.d.comb += self.o.payload.eq(pipe.stage(values, "values_q"))
        return m
