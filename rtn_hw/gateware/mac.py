# amaranth: UnusedElaboratable=no
"""RTN MAC array: P output channels of K1·D + K2·S_a + K0 over one ternary input vector per cycle.

A thin wrapper: the shared `MacCore` (Eq. 8, docs/rtn.md §3) gives every channel's D_p + m_p and
the shared S_a + n, and the shared `PostProcess` computes

    y_p = (K1_p·D_p + K2_p·S_a + K0_p + 2^(s-1)) >> s        s = F_k - F_out, round half up

bit for bit as `rtn_hw.model.postprocess`, or the re-encoded trit nz = y > hi | y < lo,
sg = y > hi (`rtn_hw.model.encode`). The count offsets m_p and n, like the rounding constant
2^(s-1), fold into K0 (`post.fold`), so no tree needs a subtractor.

Baked weights drop zero-weight lanes and become table lookups shared between channels
(`MacCore`); loadable weights and K constants arrive through the `load` stream
(docs/units/rtn_mac_array.md).
"""

import numpy as np
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.fixed import Q, RtnConstants, accumulator_width, bits_for, check_output_format
from .core import MacCore, core_levels
from .layouts import trit_planes
from .popcount import cut_levels
from .post import Baked, PostProcess, clamp, fold, times_const

__all__ = ["RtnMacArray"]


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
        A register layer after every k-th level of the count trees (None: combinational).
    tree : "compressor" or "adder"
        The count trees' style (`MacCore`). The adder trees are the default: in a one-off
        yosys/nextpnr comparison at 64 lanes × 16 channels (ECP5) both trees took the same
        logic cells (4,105 and 4,118) and the adder trees 15 % fewer registers.

    Loadable mode sizes the accumulator and checks `out_fmt` for every K that `k_fmt` can
    hold, so no loaded value can overflow. A load accepted in cycle t applies to every input
    vector accepted after cycle t; vectors accepted in cycle t or earlier, even those still in
    the pipeline, finish with the previous weights and constants. After reset every channel
    has zero weights and K1 = K2 = K0 = 0 (so y = 0).
    """

    def __init__(self, lanes, channels, k_fmt, out_fmt, weights=None, constants=None,
                 thresholds=None, *, levels_per_stage=None, tree="adder"):
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
        cuts = cut_levels(core_levels(lanes, tree, weights), levels_per_stage)
        self._core = MacCore(lanes, channels, weights=weights, tree=tree, cuts=cuts,
                             side=None if weights is not None else self._token_layout(
                                 channels, k_fmt, self._acc_width))

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
    def tree(self):
        return self._core.tree

    @property
    def latency(self):
        return self._core.latency + 2

    @staticmethod
    def _token_layout(channels, k_fmt, acc_width):
        """What travels beside each slot of the loadable core: whether it holds a vector,
        and a load's K constants (K0 already folded to K0')."""
        return data.StructLayout({
            "vector": 1, "load": 1, "channel": unsigned(bits_for(channels - 1)),
            "k1": signed(k_fmt.width), "k2": signed(k_fmt.width), "k0": signed(acc_width)})

    def elaborate(self, platform):
        m = Module()
        channels = self._channels
        m.submodules.core = core = self._core
        lo = hi = None
        if self._thresholds is not None:
            lo, hi = self._thresholds
        trits = self._thresholds is not None
        aw = self._acc_width
        common = dict(d_width=len(core.o.payload.d[0]), s_width=len(core.o.payload.s),
                      acc_width=aw, shift=self._shift, trits=trits,
                      out_width=None if trits else self._out_fmt.width)
        if self.loadable:
            post = self._loadable(m, core, lo, hi, common)
        else:
            consts = self._constants
            k1, k2, k0, lo, hi = fold(consts.k1, consts.k2, consts.k0, shift=self._shift,
                                      d_bias=core.d_bias, s_bias=core.s_bias, lo=lo, hi=hi)
            m.submodules.post = post = PostProcess(
                channels, params=Baked(*(None if v is None else tuple(int(x) for x in v)
                                         for v in (k1, k2, k0, lo, hi))), **common)
            m.d.comb += [core.i.valid.eq(self.i.valid), self.i.ready.eq(core.i.ready),
                         post.i.valid.eq(core.o.valid), core.o.ready.eq(post.i.ready),
                         self.o.valid.eq(post.o.valid), post.o.ready.eq(self.o.ready)]
        m.d.comb += [core.i.payload.a.eq(self.i.payload),
                     post.i.payload.d.eq(core.o.payload.d), post.i.payload.s.eq(core.o.payload.s),
                     self.o.payload.eq(post.o.payload.t if trits else post.o.payload.y)]
        return m

    def _loadable(self, m, core, lo, hi, common):
        """Weights in registers written by `load`; each load's K constants ride in the core
        slot of the cycle it was accepted and are written when that slot enters the
        post-processing, so vectors ahead of it finish with the old K and vectors behind it
        see the new K. A slot may hold a load and no vector; it never reaches `o`."""
        channels, lanes, kw, aw = self._channels, self._lanes, self._k_fmt.width, self._acc_width
        half = (1 << self._shift) >> 1
        ld = self.load
        fields = {"k1": signed(kw), "k2": signed(kw), "k0": signed(aw)}
        if lo is not None:
            fields.update(lo=signed(aw + 1), hi=signed(aw + 1))
            *_, lo, hi = fold(0, 0, 0, shift=self._shift, d_bias=0, s_bias=0, lo=lo, hi=hi)
            lo, hi = clamp(lo, aw), clamp(hi, aw)
        m.submodules.post = post = PostProcess(self._channels,
                                               params=data.StructLayout(fields),
                                               side=1, **common)

        w = [Signal(trit_planes(lanes), name=f"w{p}") for p in range(channels)]
        accept = Signal(name="load_accept")
        m.d.comb += [core.i.valid.eq(self.i.valid | ld.valid), self.i.ready.eq(core.i.ready),
                     ld.ready.eq(core.i.ready), accept.eq(ld.valid & core.i.ready)]
        with m.If(accept):
            with m.Switch(ld.payload.channel):
                for p in range(channels):
                    with m.Case(p):
                        m.d.sync += w[p].eq(ld.payload.w)
        token = core.i.payload.side
        m.d.comb += [core.i.payload.w[p].eq(w[p]) for p in range(channels)]
        m.d.comb += [token.vector.eq(self.i.valid), token.load.eq(ld.valid),
                     token.channel.eq(ld.payload.channel), token.k1.eq(ld.payload.k1),
                     token.k2.eq(ld.payload.k2),
                     # K0' = K0 + 2^(s-1) - (K1 + K2)·n: every lane of a loaded row counts.
                     token.k0.eq(ld.payload.k0 + half
                                 - times_const(ld.payload.k1 + ld.payload.k2, lanes))]

        k = [Signal(data.StructLayout(fields), name=f"k{p}",
                    init={"k0": half} | ({} if lo is None else {"lo": int(lo[p]), "hi": int(hi[p])}))
             for p in range(channels)]
        arrived = core.o.payload.side
        m.d.comb += [post.i.payload.params[p].eq(k[p]) for p in range(channels)]
        with m.If(core.o.valid & post.i.ready & arrived.load):
            with m.Switch(arrived.channel):
                for p in range(channels):
                    with m.Case(p):
                        m.d.sync += [k[p].k1.eq(arrived.k1), k[p].k2.eq(arrived.k2),
                                     k[p].k0.eq(arrived.k0)]
        m.d.comb += [post.i.valid.eq(core.o.valid), core.o.ready.eq(post.i.ready),
                     post.i.payload.side.eq(arrived.vector),
                     self.o.valid.eq(post.o.valid & post.o.payload.side),
                     post.o.ready.eq(self.o.ready | ~post.o.payload.side)]
        return post
