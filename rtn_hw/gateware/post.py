"""PostProcess: the affine step and the output encoding after the MAC core, per channel.

From the biased counts d = D + m and s = S_a + n of `MacCore` (or their sums over chunks),
exactly as `rtn_hw.model.postprocess` and `rtn_hw.model.encode`:

    acc' = K1·d + K2·s + K0'      K0' = K0 + 2^(s-1) - K1·m - K2·n   (2^(s-1) only if s > 0)
         = K1·D + K2·S_a + K0 + 2^(s-1)
    y    = acc' >> s                                   round half up, s = F_k - F_out
    trit = +1 if acc' > hi', -1 if acc' < lo', else 0  hi' = ((hi + 1) << s) - 1, lo' = lo << s

The thresholds move into the acc' domain (y > hi ⟺ acc' ≥ (hi + 1)·2^s, y < lo ⟺ acc' <
lo·2^s), so a trit needs no shift. Sums may wrap in `acc_width` bits: acc' is exact modulo
2^acc_width, and the caller sizes acc_width so that the true acc' fits.

Constants are baked (`Baked`: per-channel integers; multiplications become shifted adds) or
streamed (`i.payload.params`, one `param_layout` per channel, e.g. from a memory read port).
`fold` turns K constants, biases and output thresholds into the K0', lo', hi' used here.

Pipeline (latency 2): the products K1·d and K2·s (baked: balanced trees of shifted terms),
then acc'; y and the trit come from the acc' register through wiring and one comparison.
"""

import dataclasses

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import _check
from .layouts import threshold_trit, trit_planes
from .pipeline import Pipeline

__all__ = ["PostProcess", "Baked", "fold", "clamp", "times_const", "signed_width"]


def signed_width(values):
    """Smallest signed width holding every integer in `values` (at least 1)."""
    return max([1] + [(int(v) if v >= 0 else -int(v) - 1).bit_length() + 1 for v in values])


@dataclasses.dataclass(frozen=True)
class Baked:
    """Per-channel integer constants in the acc' domain (see `fold`): K1, K2, K0' and,
    optionally, the trit thresholds lo', hi'."""
    k1: tuple
    k2: tuple
    k0: tuple
    lo: tuple = None
    hi: tuple = None


def fold(k1, k2, k0, *, shift, d_bias, s_bias, lo=None, hi=None):
    """K0' = K0 + 2^(shift-1) - K1·d_bias - K2·s_bias and the acc'-domain thresholds
    lo' = lo << shift, hi' = ((hi + 1) << shift) - 1, as int64 arrays (None stays None)."""
    k1, k2, k0 = (np.asarray(v, dtype=np.int64) for v in (k1, k2, k0))
    half = (1 << shift) >> 1
    k0 = k0 + half - k1 * np.asarray(d_bias, dtype=np.int64) - k2 * int(s_bias)
    if lo is not None:
        lo = np.asarray(lo, dtype=np.int64) << shift
        hi = ((np.asarray(hi, dtype=np.int64) + 1) << shift) - 1
    return k1, k2, k0, lo, hi


def clamp(thresholds, acc_width):
    """acc'-domain thresholds clamped to just outside the range of a signed `acc_width`-bit
    acc' (no decision changes), so that they fit acc_width + 1 signed bits."""
    top = 1 << (acc_width - 1)
    return np.clip(np.asarray(thresholds, dtype=np.int64), -top - 1, top)


def _naf(k):
    """Non-adjacent form of integer k: [(digit ±1, position)], fewest non-zero digits."""
    terms, position = [], 0
    while k:
        if k & 1:
            digit = 2 - (k & 3)
            k -= digit
            terms.append((digit, position))
        k >>= 1
        position += 1
    return terms


def _balanced_sum(values):
    """The sum of `values` as a balanced tree of adders (None if there are none)."""
    while len(values) > 1:
        values = [a + b for a, b in zip(values[0::2], values[1::2])] + values[len(values) & ~1:]
    return values[0] if values else None


def times_const(value, k):
    """value · k for a constant k as shifted adds and subtracts (NAF digits): the positive
    terms summed by one balanced tree, the negative by another, then one subtraction (a chain
    of shifted adds was the MNIST CNN's routed critical path, docs/units/conv_stage.md)."""
    terms = _naf(int(k))
    plus = _balanced_sum([value << j for digit, j in terms if digit > 0])
    minus = _balanced_sum([value << j for digit, j in terms if digit < 0])
    plus = Const(0, 1) if plus is None else plus
    return plus if minus is None else plus - minus


class PostProcess(wiring.Component):
    """acc' = K1·d + K2·s + K0' per channel; y = acc' >> shift and/or a trit.

    Parameters
    ----------
    channels : int
    d_width, s_width : int
        Widths of the unsigned counts d (per channel) and s (shared).
    acc_width : int
        Signed width of acc' (the caller guarantees the true acc' fits).
    shift : int
        s = F_k - F_out.
    out_width : int or None
        Width of the signed output codes y; None: no `y` output.
    params : Baked or data.StructLayout
        Baked constants, or the per-channel layout of streamed ones (fields k1, k2, k0 and,
        for trits, lo and hi), carried in `i.payload.params`.
    trits : bool
        Whether `o.payload.t` (trit planes, one trit per channel) exists.
    side : shape or None
        A payload carried beside the vector.
    """

    def __init__(self, channels, *, d_width, s_width, acc_width, shift, out_width, params,
                 trits=False, side=None):
        self._channels = _check.positive_int(channels, "Channel count")
        for value, what in ((d_width, "d width"), (s_width, "s width"),
                            (acc_width, "Accumulator width")):
            _check.positive_int(value, what)
        if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
            raise TypeError(f"Shift must be a non-negative integer, not {shift!r}")
        if out_width is not None:
            _check.positive_int(out_width, "Output width")
        if out_width is None and not trits:
            raise ValueError("PostProcess needs an output: out_width, trits or both")
        if isinstance(params, Baked):
            for name in ("k1", "k2", "k0") + (("lo", "hi") if trits else ()):
                values = getattr(params, name)
                if values is None or len(values) != channels:
                    raise ValueError(f"Baked {name} must have {channels} values, not {values!r}")
        elif isinstance(params, data.StructLayout):
            need = {"k1", "k2", "k0"} | ({"lo", "hi"} if trits else set())
            missing = need - {name for name, _ in params}
            if missing:
                raise ValueError(f"Parameter layout lacks the fields {', '.join(sorted(missing))}")
        else:
            raise TypeError(f"Parameters must be Baked or a StructLayout, not {params!r}")
        self._d_width, self._s_width, self._acc_width = d_width, s_width, acc_width
        self._shift, self._out_width, self._params, self._trits = shift, out_width, params, trits

        fields_in = {"d": data.ArrayLayout(unsigned(d_width), channels), "s": unsigned(s_width)}
        if not isinstance(params, Baked):
            fields_in["params"] = data.ArrayLayout(params, channels)
        fields_out = {}
        if out_width is not None:
            fields_out["y"] = data.ArrayLayout(signed(out_width), channels)
        if trits:
            fields_out["t"] = trit_planes(channels)
        if side is not None:
            fields_in["side"] = fields_out["side"] = side
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(fields_in))),
            "o": Out(stream.Signature(data.StructLayout(fields_out))),
        })

    @property
    def channels(self):
        return self._channels

    @property
    def shift(self):
        return self._shift

    @property
    def latency(self):
        return 2

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, self.latency, name="post")
        baked = isinstance(self._params, Baked)
        payload = self.i.payload
        # One zero bit above the unsigned counts keeps the products signed and exact.
        s = Signal(signed(self._s_width + 1), name="s_signed")
        m.d.comb += s.eq(payload.s)
        acc_shape = signed(self._acc_width)
        y = Signal(data.ArrayLayout(signed(self._out_width or 1), self._channels), name="y")
        t = Signal(trit_planes(self._channels), name="t")
        ys, nzs, sgs = [], [], []
        for p in range(self._channels):
            d = Signal(signed(self._d_width + 1), name=f"d{p}")
            m.d.comb += d.eq(payload.d[p])
            if baked:
                k1, k2, k0 = (int(getattr(self._params, f)[p]) for f in ("k1", "k2", "k0"))
                prod1, prod2 = times_const(d, k1), times_const(s, k2)
                k0_r = Const(k0, acc_shape)
                if self._trits:
                    lo, hi = (Const(int(clamp(getattr(self._params, f)[p], self._acc_width)),
                                    signed(self._acc_width + 1)) for f in ("lo", "hi"))
            else:
                params = payload.params[p]
                prod1, prod2 = params.k1 * d, params.k2 * s
                k0_r = pipe.stage(params.k0, f"k0_{p}")
                if self._trits:
                    lo = pipe.stage(pipe.stage(params.lo, f"lo_{p}_1"), f"lo_{p}_2")
                    hi = pipe.stage(pipe.stage(params.hi, f"hi_{p}_1"), f"hi_{p}_2")
            prod1 = pipe.stage(prod1, f"prod1_{p}")
            prod2 = pipe.stage(prod2, f"prod2_{p}")
            acc = Signal(acc_shape, name=f"acc{p}")
            m.d.comb += acc.eq(prod1 + prod2 + k0_r)
            acc = pipe.stage(acc, f"acc{p}_r")
            if self._out_width is not None:
                y_p = Signal(signed(self._out_width), name=f"y{p}")
                m.d.comb += y_p.eq(acc >> self._shift)
                ys.append(y_p)
            if self._trits:
                nz, sg = threshold_trit(acc, lo, hi)
                nzs.append(nz)
                sgs.append(sg)
        # Whole words, not one assignment per channel: Icarus re-evaluates a wire driven in
        # parts as a whole on every part's change (docs/sim.md, as in codec.py).
        if self._out_width is not None:
            m.d.comb += y.eq(Cat(ys))
        if self._trits:
            m.d.comb += t.as_value().eq(Cat(*nzs, *sgs))
        if "side" in payload.shape().members:
            side = pipe.stage(pipe.stage(payload.side, "side_1"), "side_2")
            m.d.comb += self.o.payload.side.eq(side)
        if self._trits:
            m.d.comb += self.o.payload.t.eq(t)
        if self._out_width is not None:
            m.d.comb += self.o.payload.y.eq(y)
        return m
