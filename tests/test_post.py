"""PostProcess, the one affine step after the MAC core, against the golden model
(`postprocess`, then `encode`), bit for bit: baked and streamed constants, rounding shifts,
codes and trits, biased counts folded into K0', constants at the K format's extremes."""

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.hdl import signed

from rtn_hw import model
from rtn_hw.gateware.post import Baked, PostProcess, clamp, fold, times_const
from rtn_hw.gateware.simulate import run_stream
from rtn_hw.model import Q, RtnConstants

from helpers import assert_rejects

K_FMT = Q(6, 10)


def constants(rng, channels, n):
    """K codes drawn over the whole K format, extremes included."""
    pick = [K_FMT.min_int, K_FMT.max_int, 0, 1, -1]
    k = np.where(rng.random((3, channels)) < 0.3, rng.choice(pick, (3, channels)),
                 rng.integers(K_FMT.min_int, K_FMT.max_int + 1, (3, channels)))
    return RtnConstants(k1=k[0], k2=k[1], k0=k[2], fmt=K_FMT, n=n)


def counts(rng, m, n, count):
    """D (count, channels) in [-m_p, m_p] (m_p lanes counted for channel p) and S_a (count,)
    in [-n, n], both ends included."""
    d = rng.integers(-m, m + 1, (count, len(m)))
    s_a = rng.integers(-n, n + 1, count)
    d[0], d[1], s_a[0], s_a[1] = m, -m, n, -n
    return d, s_a


@pytest.mark.parametrize("streamed", [False, True], ids=["baked", "streamed"])
@pytest.mark.parametrize("n,channels,out_frac", [(1, 1, 10), (7, 3, 4), (64, 4, 0),
                                                 (256, 2, 6)])
def test_matches_golden(streamed, n, channels, out_frac, seed, rng):
    consts = constants(rng, channels, n)
    shift = K_FMT.frac_bits - out_frac
    worst = (int(consts.max_abs_acc().max()) + (1 << shift >> 1)) >> shift
    out_fmt = Q(worst.bit_length() + 1 - out_frac + 1, out_frac)
    # The core's counts are biased: d = D + m_p (m_p lanes counted, |D| <= m_p), s = S_a + n.
    m = rng.integers(0, n + 1, channels)
    m[0] = n
    d, s_a = counts(rng, m, n, 300)
    y = model.postprocess(d, s_a, consts, out_fmt)
    lo = np.sort(rng.choice(y.ravel(), (2, channels)), axis=0)
    lo, hi = lo[0], lo[1]
    hi[0] = out_fmt.max_int + 1                     # never +1
    t = model.encode(y, lo, hi)
    nz, sg = model.pack(t)
    want = [{"y": y[b].tolist(), "t": {"nz": model.planes_to_int(nz[b]),
                                       "sg": model.planes_to_int(sg[b])}} for b in range(len(y))]
    k1, k2, k0, lo_f, hi_f = fold(consts.k1, consts.k2, consts.k0, shift=shift, d_bias=m,
                                  s_bias=n, lo=lo, hi=hi)
    acc_width = model.accumulator_width(consts) + 1
    width = (2 * n).bit_length()
    common = dict(d_width=width, s_width=width, acc_width=acc_width, shift=shift,
                  out_width=out_fmt.width, trits=True)
    inputs = [{"d": (d[b] + m).tolist(), "s": int(s_a[b] + n)} for b in range(len(y))]
    if streamed:
        layout = data.StructLayout({"k1": signed(K_FMT.width), "k2": signed(K_FMT.width),
                                    "k0": signed(acc_width), "lo": signed(acc_width + 1),
                                    "hi": signed(acc_width + 1)})
        params = [{"k1": int(k1[p]), "k2": int(k2[p]), "k0": int(k0[p]),
                   "lo": int(clamp(lo_f[p], acc_width)),
                   "hi": int(clamp(hi_f[p], acc_width))} for p in range(channels)]
        dut = PostProcess(channels, params=layout, **common)
        inputs = [dict(x, params=params) for x in inputs]
    else:
        dut = PostProcess(channels, params=Baked(*(tuple(int(v) for v in a)
                                                   for a in (k1, k2, k0, lo_f, hi_f))), **common)
    run = run_stream(dut, inputs, seed=seed, idle=0.2, stall=0.2)
    assert run.outputs == want
    assert min(run.latencies) == dut.latency == 2


def test_fold():
    # K0' = K0 + 2^(s-1) - K1·m - K2·n; lo' = lo·2^s, hi' = (hi + 1)·2^s - 1.
    k1, k2, k0, lo, hi = fold([3, -2], [5, 0], [7, 1], shift=2, d_bias=[4, 1], s_bias=6,
                              lo=[-1, 0], hi=[2, 3])
    assert k0.tolist() == [7 + 2 - 12 - 30, 1 + 2 + 2 - 0]
    assert (lo.tolist(), hi.tolist()) == ([-4, 0], [11, 15])
    assert fold([1], [1], [1], shift=0, d_bias=0, s_bias=0)[2].tolist() == [1]


@pytest.mark.parametrize("k", [0, 1, -1, 7, -7, 0b101101, -(1 << 13), (1 << 13) - 1])
def test_times_const(k):
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator
    m = Module()
    x = Signal(signed(9))
    y = Signal(signed(32))
    m.d.comb += y.eq(times_const(x, k))
    sim = Simulator(m)
    seen = []

    async def bench(ctx):
        for v in (-256, -1, 0, 1, 77, 255):
            ctx.set(x, v)
            seen.append(ctx.get(y))
    sim.add_testbench(bench)
    sim.run()
    assert seen == [v * k for v in (-256, -1, 0, 1, 77, 255)]


@pytest.mark.parametrize("k1", [0x15555, -0x15555, 0x1FFFF, 3])
def test_baked_tree_wraps(k1, seed, rng):
    # Products far wider than acc' (17-bit K, 9 NAF digits) whose sum fits: K2 = 3 - K1 and
    # s = d give acc' = 3·d + K0'. The tree's partial sums wrap modulo 2^acc_width and the
    # digits above it are dropped; acc' must still be exact (y with shift 0 is acc').
    channels, width, acc_width = 3, 6, 10
    k0 = (-5, 0, 17)
    dut = PostProcess(channels, d_width=width, s_width=width, acc_width=acc_width, shift=0,
                      out_width=acc_width, params=Baked((k1,) * channels, (3 - k1,) * channels,
                                                        k0))
    d = rng.integers(0, 1 << width, 60)
    d[:2] = 0, (1 << width) - 1
    inputs = [{"d": [int(v)] * channels, "s": int(v)} for v in d]
    run = run_stream(dut, inputs, seed=seed, idle=0.2, stall=0.2)
    assert [o["y"] for o in run.outputs] == [[3 * int(v) + c for c in k0] for v in d]
    assert min(run.latencies) == dut.latency == 2


def _baked(channels=2):
    return Baked((1,) * channels, (1,) * channels, (0,) * channels)


ERRORS = [
    (dict(channels=0), TypeError, "Channel count must be a positive integer, not 0"),
    (dict(d_width=0), TypeError, "d width must be a positive integer, not 0"),
    (dict(shift=-1), TypeError, "Shift must be a non-negative integer, not -1"),
    (dict(out_width=None), ValueError, "PostProcess needs an output: out_width, trits or both"),
    (dict(params=Baked((1,), (1, 1), (0, 0))), ValueError,
     "Baked k1 must have 2 values, not (1,)"),
    (dict(trits=True), ValueError, "Baked lo must have 2 values, not None"),
    (dict(params=data.StructLayout({"k1": 4, "k2": 4})), ValueError,
     "Parameter layout lacks the fields k0"),
    (dict(params=(1, 2)), TypeError, "Parameters must be Baked or a StructLayout, not (1, 2)"),
]


@pytest.mark.parametrize("kwargs,error,message", ERRORS)
def test_parameter_errors(kwargs, error, message):
    args = dict(channels=2, d_width=4, s_width=4, acc_width=8, shift=0, out_width=8,
                params=_baked())
    args.update(kwargs)
    assert_rejects(error, message, lambda: PostProcess(**args))
