"""RTN MAC array: P output channels of K1·D + K2·S_a + K0 over one ternary input vector per cycle.

Per input vector A (planes A1 = nz, A2 = sg) and channel p with weights W_p (W1, W2):

    S_a   = 2·pc(A1 & A2) - pc(A1)                  once per vector, shared by every channel
    c     = W1 & A1
    D_p   = pc(c) - 2·pc((W2 ^ A2) & c)             Eq. 8 (RTN.md §3)
    acc_p = K1_p·D_p + K2_p·S_a + K0_p              exact, in accumulator_width bits (+1)
    y_p   = (acc_p + 2^(s-1)) >> s                  s = F_k - F_out, round half up

bit for bit as `rtn_hw.model.postprocess`; optionally y_p is re-encoded to a trit with
nz = y > hi | y < lo, sg = y > hi (`rtn_hw.model.encode`).

The counts are built as sums of per-lane terms t + 1 ∈ {0, 1, 2} (S_a + n and D_p + m_p), so
the adder trees need no subtractor; the offsets, like the rounding constant 2^(s-1), are folded
into K0 (docs/units/rtn_mac_array.md).
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.fixed import Q, RtnConstants, accumulator_width, bits_for, check_output_format
from .layouts import trit_planes
from .pipeline import Pipeline
from .popcount import adder_tree, cut_levels, tree_levels

__all__ = ["RtnMacArray"]


def _naf(k):
    """Non-adjacent form of integer k: [(digit ±1, position)], at most ⌈(bits + 1)/2⌉ terms."""
    terms, position = [], 0
    while k:
        if k & 1:
            digit = 2 - (k & 3)
            k -= digit
            terms.append((digit, position))
        k >>= 1
        position += 1
    return terms


def _times_const(value, k):
    """value · k for a constant k as shifted adds and subtracts (NAF: fewest non-zero digits)."""
    terms = _naf(int(k))
    if not terms:
        return Const(0, 1)
    plus = [value << j for digit, j in terms if digit > 0]
    minus = [value << j for digit, j in terms if digit < 0]
    result = sum(plus[1:], plus[0]) if plus else Const(0, 1)
    for term in minus:
        result = result - term
    return result


def _int_vector(value, rows, name):
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, not dtype {arr.dtype}")
    if arr.shape != (rows,):
        raise ValueError(f"{name} must have shape ({rows},), not {arr.shape}")
    return arr.astype(np.int64)


class RtnMacArray(wiring.Component):
    """P RTN output channels over `lanes`-trit input vectors, one vector per cycle.

    Parameters
    ----------
    lanes : int
        Trits per input vector (n).
    channels : int
        Output channels P held on chip.
    k_fmt, out_fmt : rtn_hw.model.Q
        Format of the K constants and of the outputs y (F_out ≤ F_k).
    weights : trit array (P, n) or None
        Baked mode: the weights become constants of the netlist. None: loadable mode.
    constants : rtn_hw.model.RtnConstants or None
        Baked mode: K1, K2, K0 codes for the P channels in `k_fmt`, folded for n = `lanes`.
        Must be None in loadable mode (weights and K arrive through the `load` stream).
    thresholds : (lo, hi) or None
        Per-channel integer arrays (P,) of out_fmt codes (as from `fold_thresholds`); when
        given, `o` carries trits nz = y > hi | y < lo, sg = y > hi instead of y.
    levels_per_stage : int or None
        A register layer after every k-th adder-tree level (None: combinational trees).

    Loadable mode sizes the accumulator and checks `out_fmt` for every K that `k_fmt` can
    hold, so no loaded value can overflow. A load accepted in cycle t applies to every input
    vector accepted after cycle t; vectors accepted in cycle t or earlier, even those still in
    the pipeline, finish with the previous weights and constants. After reset every channel
    has zero weights and K1 = K2 = K0 = 0 (so y = 0).
    """

    def __init__(self, lanes, channels, k_fmt, out_fmt, weights=None, constants=None,
                 thresholds=None, *, levels_per_stage=None):
        lanes = _check.positive_int(lanes, "Lane count")
        channels = _check.positive_int(channels, "Channel count")
        if levels_per_stage is not None:
            levels_per_stage = _check.positive_int(levels_per_stage, "Levels per stage")
        for fmt, what in ((k_fmt, "K format"), (out_fmt, "Output format")):
            if not isinstance(fmt, Q):
                raise TypeError(f"{what} must be a fixed-point format Q, not {fmt!r}")
        if (weights is None) != (constants is None):
            raise TypeError("Weights and constants must both be given (baked) or both be None "
                            "(loadable)")
        if weights is not None:
            weights = _check.trits(weights, "Weights")
            if weights.shape != (channels, lanes):
                raise ValueError(f"Weights must have shape ({channels}, {lanes}), not "
                                 f"{weights.shape}")
            if not isinstance(constants, RtnConstants):
                raise TypeError(f"Constants must be an RtnConstants, not {constants!r}")
            if constants.fmt != k_fmt:
                raise ValueError(f"Constants are in {constants.fmt}, not the K format {k_fmt}")
            if constants.n != lanes:
                raise ValueError(f"Constants were folded for n = {constants.n}, not for "
                                 f"{lanes} lanes")
            ks = {}
            for name in ("k1", "k2", "k0"):
                ks[name] = _int_vector(getattr(constants, name), channels,
                                       f"Constants {name.upper()}")
                if not k_fmt.fits(ks[name]):
                    raise ValueError(f"Constants {name.upper()} do not fit {k_fmt}")
            constants = RtnConstants(**ks, fmt=k_fmt, n=lanes)
            bound = constants
        else:
            # Every K that k_fmt can hold, at its largest magnitude.
            worst = np.full(channels, k_fmt.min_int, dtype=np.int64)
            bound = RtnConstants(k1=worst, k2=worst, k0=worst, fmt=k_fmt, n=lanes)
        shift = check_output_format(bound, out_fmt)
        if thresholds is not None:
            if not isinstance(thresholds, (tuple, list)) or len(thresholds) != 2:
                raise TypeError(f"Thresholds must be a pair (lo, hi), not {thresholds!r}")
            lo = _int_vector(thresholds[0], channels, "Threshold lo")
            hi = _int_vector(thresholds[1], channels, "Threshold hi")
            for arr, name in ((lo, "lo"), (hi, "hi")):
                if ((arr < out_fmt.min_int - 1) | (arr > out_fmt.max_int + 1)).any():
                    raise ValueError(f"Threshold {name} must lie in [{out_fmt.min_int - 1}, "
                                     f"{out_fmt.max_int + 1}] for {out_fmt}")
            thresholds = (lo, hi)

        self._lanes, self._channels = lanes, channels
        self._k_fmt, self._out_fmt = k_fmt, out_fmt
        self._weights, self._constants, self._thresholds = weights, constants, thresholds
        self._shift = shift
        # One bit above accumulator_width for the rounding constant 2^(s-1) folded into K0.
        self._acc_width = accumulator_width(bound) + (1 if shift else 0)
        self._levels_per_stage = levels_per_stage
        # Register layers after levels k, 2k, ... of the deepest tree (S_a's, n lane terms:
        # one lane-term level, then tree_levels(n)); shallower trees are padded to it.
        self._cuts = cut_levels(1 + tree_levels(lanes), levels_per_stage)
        self._pc_depth = len(self._cuts)

        if thresholds is None:
            out_layout = data.ArrayLayout(signed(out_fmt.width), channels)
        else:
            out_layout = trit_planes(channels)
        members = {
            "i": In(stream.Signature(trit_planes(lanes))),
            "o": Out(stream.Signature(out_layout)),
        }
        if weights is None:
            members["load"] = In(stream.Signature(self.load_layout(lanes, channels, k_fmt)))
        super().__init__(members)

    @staticmethod
    def load_layout(lanes, channels, k_fmt):
        """Payload of the `load` stream: one channel's weights and K constants."""
        return data.StructLayout({
            "channel": unsigned(bits_for(channels - 1)),
            "w": trit_planes(lanes),
            "k1": signed(k_fmt.width),
            "k2": signed(k_fmt.width),
            "k0": signed(k_fmt.width),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def channels(self):
        return self._channels

    @property
    def k_fmt(self):
        return self._k_fmt

    @property
    def out_fmt(self):
        return self._out_fmt

    @property
    def weights(self):
        return None if self._weights is None else self._weights.copy()

    @property
    def constants(self):
        return self._constants

    @property
    def thresholds(self):
        if self._thresholds is None:
            return None
        return tuple(arr.copy() for arr in self._thresholds)

    @property
    def levels_per_stage(self):
        return self._levels_per_stage

    @property
    def loadable(self):
        return self._weights is None

    @property
    def shift(self):
        """s = F_k - F_out, the rounding shift."""
        return self._shift

    @property
    def accumulator_width(self):
        """Signed width of the per-channel accumulator (holds acc + 2^(s-1) exactly)."""
        return self._acc_width

    @property
    def latency(self):
        return self._pc_depth + 2 + (self._thresholds is not None)

    def elaborate(self, platform):
        m = Module()
        lanes, channels = self._lanes, self._channels
        pipe = Pipeline(m, self.i, self.o, self.latency, name="mac")
        a1, a2 = self.i.payload.nz, self.i.payload.sg
        half = (1 << self._shift) >> 1

        def count(terms, name):
            """Sum lane terms (value, max) by the shared adder tree, then delay the sum so
            that every channel's count leaves the tree in the same cycle."""
            if not terms:
                return Const(0, 1)
            stages = 0
            if 1 in self._cuts:
                terms = [(pipe.stage(value, name=f"{name}_lane{k}"), top)
                         for k, (value, top) in enumerate(terms)]
                stages += 1
            value, _, inner = adder_tree(m, terms, stage=pipe.stage, cuts=self._cuts, level=1,
                                         name=name)
            for k in range(self._pc_depth - stages - inner):
                value = pipe.stage(value, name=f"{name}_delay{k}")
            return value

        # Each lane gives t + 1 ∈ {0, 1, 2} as a 2-bit term, so the trees sum S_a + n and
        # D + m (m = lanes with t_w ≠ 0) without subtractors; the offsets fold into K0.
        s_a = count([(Cat(~a1[k], a1[k] & a2[k]), 2) for k in range(lanes)], "s_a")
        d = []
        if self.loadable:
            ld = self.load
            m.d.comb += ld.ready.eq(pipe.advance)
            w = [Signal(trit_planes(lanes), name=f"w{p}") for p in range(channels)]
            with m.If(ld.valid & pipe.advance):
                with m.Switch(ld.payload.channel):
                    for p in range(channels):
                        with m.Case(p):
                            m.d.sync += w[p].eq(ld.payload.w)
            for p in range(channels):
                # Eq. 8 per lane: c = W1 & A1, agree = c & ~(W2 ^ A2); t_w·t_a + 1 is
                # 2·agree + ~c. A zero's sign bit only reaches agree, which c masks.
                c = Signal(lanes, name=f"c{p}")
                agree = Signal(lanes, name=f"agree{p}")
                m.d.comb += [c.eq(w[p].nz & a1), agree.eq(c & ~(w[p].sg ^ a2))]
                d.append(count([(Cat(~c[k], agree[k]), 2) for k in range(lanes)], f"d{p}"))
        else:
            for p in range(channels):
                # Constant weights select lanes: only lanes with t_w ≠ 0 reach the tree, and
                # t_w·t_a + 1 is 2·(A1 & A2) + ~A1 for t_w = +1, 2·(A1 & ~A2) + ~A1 for -1.
                row = self._weights[p]
                d.append(count([(Cat(~a1[k], a1[k] & (a2[k] if row[k] > 0 else ~a2[k])), 2)
                                for k in map(int, np.flatnonzero(row))], f"d{p}"))

        # One bit over the unsigned sums keeps the products signed and exact.
        s_a_r = pipe.stage(Value.cast(s_a).as_unsigned(), "s_a_r")
        s_a_r = Cat(s_a_r, Const(0, 1)).as_signed()
        d_r = []
        for p in range(channels):
            reg = pipe.stage(Value.cast(d[p]).as_unsigned(), f"d{p}_r")
            d_r.append(Cat(reg, Const(0, 1)).as_signed())

        if self.loadable:
            kw, aw = self._k_fmt.width, self._acc_width
            token_layout = data.StructLayout({
                "valid": 1, "channel": unsigned(bits_for(channels - 1)),
                "k1": signed(kw), "k2": signed(kw), "k0": signed(aw)})
            # The K constants are read one stage after the counts; a load's K values travel
            # beside the vectors and are written when the load reaches that stage, so vectors
            # ahead of it finish with the old K and vectors behind it see the new K.
            token = Signal(token_layout, name="load_token")
            load = ld.payload
            m.d.comb += [
                token.valid.eq(ld.valid),
                token.channel.eq(load.channel),
                token.k1.eq(load.k1),
                token.k2.eq(load.k2),
                token.k0.eq(load.k0 + half - _times_const(load.k1 + load.k2, lanes)),
            ]
            for k in range(self._pc_depth + 1):
                token = pipe.stage(token, f"load_token{k}")
            k1 = [Signal(signed(kw), name=f"k1_{p}") for p in range(channels)]
            k2 = [Signal(signed(kw), name=f"k2_{p}") for p in range(channels)]
            k0 = [Signal(signed(aw), name=f"k0_{p}", init=half) for p in range(channels)]
            with m.If(token.valid & pipe.advance):
                with m.Switch(token.channel):
                    for p in range(channels):
                        with m.Case(p):
                            m.d.sync += [k1[p].eq(token.k1), k2[p].eq(token.k2),
                                         k0[p].eq(token.k0)]

        y = Signal(data.ArrayLayout(signed(self._out_fmt.width), channels), name="y")
        for p in range(channels):
            acc = Signal(signed(self._acc_width), name=f"acc{p}")
            if self.loadable:
                m.d.comb += acc.eq(k1[p] * d_r[p] + k2[p] * s_a_r + k0[p])
            else:
                consts = self._constants
                k1, k2 = int(consts.k1[p]), int(consts.k2[p])
                offset = int(np.count_nonzero(self._weights[p])) * k1 + lanes * k2
                m.d.comb += acc.eq(_times_const(d_r[p], k1) + _times_const(s_a_r, k2)
                                   + (int(consts.k0[p]) + half - offset))
            # Wrapped sums are harmless: acc is exact modulo 2^accumulator_width, and the true
            # acc fits that width. check_output_format guarantees y fits out_fmt.
            m.d.comb += y[p].eq(acc >> self._shift)
        y_r = pipe.stage(y, "y_r")

        if self._thresholds is None:
            m.d.comb += self.o.payload.eq(y_r)
        else:
            lo, hi = self._thresholds
            trits = Signal(trit_planes(channels), name="trits")
            for p in range(channels):
                above = y_r[p] > int(hi[p])
                m.d.comb += [trits.nz[p].eq(above | (y_r[p] < int(lo[p]))),
                             trits.sg[p].eq(above)]
            m.d.comb += self.o.payload.eq(pipe.stage(trits, "trits_r"))
        return m
