"""RtnMacArray against the golden model (ternary_matmul → postprocess → encode), bit for bit."""

import numpy as np
import pytest

from rtn_hw import model
from rtn_hw.gateware.mac import RtnMacArray
from rtn_hw.gateware.simulate import run_stream
from rtn_hw.model import Q, RtnConstants

from helpers import assert_rejects, random_trits

K_FMT, OUT_FMT = Q(8, 10), Q(12, 6)


# --- stimulus and reference ------------------------------------------------------------------

def corner_vectors(n):
    """Trits (rows) and zero-sign masks: all zero, zeros with the sign bit set, all +1, all -1,
    alternating ±1, alternating +1/0 (zero signs set), single +1 at lane 0, single -1 at the
    last lane."""
    lane = np.arange(n)
    rows = [np.zeros(n), np.zeros(n), np.ones(n), -np.ones(n), np.where(lane % 2, -1, 1),
            np.where(lane % 2, 0, 1), np.eye(1, n, 0)[0], -np.eye(1, n, n - 1)[0]]
    signs = [np.zeros(n), np.ones(n), np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n),
             np.ones(n), np.ones(n)]
    return np.array(rows, dtype=np.int8), np.array(signs, dtype=bool)


def vectors(rng, n, count):
    """Corner vectors first, then `count` random ones; every zero gets a random sign bit."""
    corners, corner_signs = corner_vectors(n)
    t = np.concatenate([corners, random_trits(rng, (count, n))])
    signs = np.concatenate([corner_signs, rng.random((count, n)) < 0.5])
    return t, signs


def payloads(t, zero_sign=None):
    nz, sg = model.pack(t, zero_sign)
    return [{"nz": model.planes_to_int(nz[b]), "sg": model.planes_to_int(sg[b])}
            for b in range(len(t))]


def random_constants(rng, t_w, k_fmt=K_FMT):
    """Random α/β folded by fold_constants; α_w, β_w shrink at large n so that K0 (which
    grows with n and S_w) still fits k_fmt."""
    channels, n = t_w.shape
    scale = min(1.0, 64 / n)
    return model.fold_constants(scale * rng.uniform(0.02, 1.0, channels),
                                scale * rng.uniform(-0.5, 0.5, channels),
                                rng.uniform(0.1, 2.0), rng.uniform(-1.0, 1.0),
                                t_w.sum(axis=1, dtype=np.int64), n, k_fmt)


def extreme_constants(rng, channels, n, k_fmt):
    """K codes at the ends of k_fmt's range, to reach the accumulator's extremes."""
    pick = [k_fmt.min_int, k_fmt.max_int, k_fmt.min_int + 1, 0, 1, -1]
    k = rng.choice(pick, size=(3, channels))
    return RtnConstants(k1=k[0], k2=k[1], k0=k[2], fmt=k_fmt, n=n)


def golden(t_w, consts, t_a, out_fmt, thresholds=None):
    """Outputs as RtnMacArray presents them: lists of y codes, or {nz, sg} planes."""
    d, s_a = model.ternary_matmul(model.pack(t_w), model.pack(t_a))
    y = model.postprocess(d, s_a, consts, out_fmt)
    if thresholds is None:
        return y.tolist()
    return payloads(model.encode(y, *thresholds))


def quantile_thresholds(rng, y, out_fmt):
    """Per-channel (lo, hi) at values y really takes (so y == lo and y == hi both occur); with
    three or more channels, channel 0 is clamped to the format's ends (always 0) and channel 1
    gets lo = hi + 1 (as fold_thresholds makes for Δ = 0)."""
    y = np.asarray(y)
    lo = np.quantile(y, rng.uniform(0.1, 0.4), axis=0, method="nearest").astype(np.int64)
    hi = np.quantile(y, rng.uniform(0.6, 0.9), axis=0, method="nearest").astype(np.int64)
    if len(lo) > 2:
        lo[0], hi[0] = out_fmt.min_int - 1, out_fmt.max_int + 1
        lo[1] = hi[1] + 1
    return lo, hi


def loadable_out_fmt(n, k_fmt=K_FMT, frac_bits=6):
    """The narrowest out_fmt a loadable array accepts (it must hold every K in k_fmt)."""
    worst = np.array([k_fmt.min_int])
    bound = RtnConstants(k1=worst, k2=worst, k0=worst, fmt=k_fmt, n=n)
    for int_bits in range(1, 62 - frac_bits):
        try:
            model.check_output_format(bound, Q(int_bits, frac_bits))
        except ValueError:
            continue
        return Q(int_bits, frac_bits)
    raise AssertionError("no output format fits")


def load_action(dut, rows):
    """An action for run_stream: load each (channel, t_w, zero_sign, k1, k2, k0) in turn."""
    async def action(ctx):
        for channel, t_w, zero_sign, k1, k2, k0 in rows:
            (w,) = payloads(t_w[None], zero_sign[None])
            ctx.set(dut.load.payload, {"channel": channel, "w": w, "k1": k1, "k2": k2, "k0": k0})
            ctx.set(dut.load.valid, 1)
            await ctx.tick().until(dut.load.ready)
        ctx.set(dut.load.valid, 0)
    return action


class LoadPlan:
    """Loads at chosen input indices, and the golden outputs they imply: a load made before
    input j applies from input j on."""

    def __init__(self, rng, channels, n, k_fmt):
        self.rng, self.k_fmt, self.n = rng, k_fmt, n
        # Reset state: zero weights, K1 = K2 = K0 = 0.
        self.t_w = np.zeros((channels, n), dtype=np.int8)
        self.k = np.zeros((3, channels), dtype=np.int64)
        self.events = {}   # input index -> list of load rows

    def add(self, index, channels, extreme=False):
        t_w = random_trits(self.rng, (len(channels), self.n))
        if extreme:
            c = extreme_constants(self.rng, len(channels), self.n, self.k_fmt)
        else:
            c = random_constants(self.rng, t_w, self.k_fmt)
        signs = self.rng.random(t_w.shape) < 0.5
        rows = self.events.setdefault(index, [])
        for j, channel in enumerate(channels):
            rows.append((int(channel), t_w[j], signs[j], int(c.k1[j]), int(c.k2[j]),
                         int(c.k0[j])))

    def actions(self, dut):
        return {index: load_action(dut, rows) for index, rows in self.events.items()}

    def expected(self, t_a, out_fmt, thresholds=None):
        out, t_w, k = [], self.t_w.copy(), self.k.copy()
        bounds = sorted(set(self.events) | {0, len(t_a)})
        for start, stop in zip(bounds, bounds[1:]):
            for channel, row, _, k1, k2, k0 in self.events.get(start, []):
                if channel < len(t_w):   # the array ignores loads to channels it lacks
                    t_w[channel], k[:, channel] = row, (k1, k2, k0)
            consts = RtnConstants(k1=k[0].copy(), k2=k[1].copy(), k0=k[2].copy(),
                                  fmt=self.k_fmt, n=self.n)
            out += golden(t_w, consts, t_a[start:stop], out_fmt, thresholds)
        return out


# --- configurations ---------------------------------------------------------------------------

# (lanes, channels, loadable, re-encode, levels_per_stage, random vectors)
CONFIGS = [
    (1, 1, False, False, None, 2000),
    (1, 4, True, True, None, 2000),
    (3, 4, False, True, 1, 2000),
    (3, 1, True, False, None, 2000),
    (16, 16, False, False, 2, 2000),
    (16, 4, True, True, 3, 2000),
    (16, 1, False, True, None, 2000),
    (64, 4, False, True, 3, 2000),
    (64, 16, True, False, None, 2000),
    (64, 1, True, True, 2, 2000),
    (256, 4, False, False, 4, 2000),
    (256, 1, True, True, None, 2000),
    (256, 16, False, True, 2, 2000),
]


def config_tree(config):
    """Both tree styles of the core, spread over the configurations."""
    return "compressor" if config[1] == 4 else "adder"


def config_id(config):
    lanes, channels, loadable, encode, lps, _ = config
    return (f"n{lanes}-p{channels}-{'load' if loadable else 'baked'}-{'enc' if encode else 'y'}"
            f"-lps{lps}-{config_tree(config)}")


def baked_weights(rng, channels, lanes):
    """Random rows of varying density; the first rows are the corner patterns."""
    t_w = random_trits(rng, (channels, lanes))
    corners, _ = corner_vectors(lanes)
    for p in range(min(4, channels - 1)):
        t_w[p] = corners[[0, 2, 3, 4][p]]
    return t_w


# Every combination, behind `slow` (make sim); the quick set above samples it.
FULL_CONFIGS = [(lanes, channels, loadable, encode, (None, 1, 2, 3)[(lanes + channels) % 4],
                 2000)
                for lanes in (1, 3, 16, 64, 256) for channels in (1, 4, 16)
                for loadable in (False, True) for encode in (False, True)]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_matches_golden(config, seed):
    check_config(config, seed)


@pytest.mark.slow
@pytest.mark.parametrize("config", FULL_CONFIGS, ids=config_id)
def test_matches_golden_full(config, seed):
    check_config(config, seed)


def check_config(config, seed):
    """Corner then random vectors with gaps and backpressure; loadable arrays start in the
    reset state and are loaded and partly reloaded while vectors are in flight."""
    lanes, channels, loadable, encode, lps, count = config
    rng = np.random.default_rng([seed, lanes, channels, loadable, encode])
    t_a, signs = vectors(rng, lanes, count)
    inputs = payloads(t_a, signs)
    if loadable:
        out_fmt = loadable_out_fmt(lanes)
        plan = LoadPlan(rng, channels, lanes, K_FMT)
        # A few vectors in the reset state, then every channel, then reloads of some channels
        # (back to back, with K at the format's extremes) while vectors are in flight.
        plan.add(3, range(channels))
        plan.add(len(t_a) // 3, rng.permutation(channels)[:max(1, channels // 2)], extreme=True)
        plan.add(2 * len(t_a) // 3, range(channels))
        plan.add(2 * len(t_a) // 3 + 1, [channels - 1], extreme=True)
        thresholds = None
        if encode:
            thresholds = quantile_thresholds(rng, plan.expected(t_a, out_fmt), out_fmt)
        dut = RtnMacArray(lanes, channels, K_FMT, out_fmt, thresholds=thresholds,
                          levels_per_stage=lps, tree=config_tree(config))
        expected = plan.expected(t_a, out_fmt, thresholds)
        actions = plan.actions(dut)
    else:
        out_fmt = OUT_FMT
        t_w = baked_weights(rng, channels, lanes)
        consts = random_constants(rng, t_w)
        thresholds = None
        if encode:
            thresholds = quantile_thresholds(rng, golden(t_w, consts, t_a, out_fmt), out_fmt)
        dut = RtnMacArray(lanes, channels, K_FMT, out_fmt, t_w, consts, thresholds,
                          levels_per_stage=lps, tree=config_tree(config))
        expected = golden(t_w, consts, t_a, out_fmt, thresholds)
        actions = None
    run = run_stream(dut, inputs, seed=seed, idle=0.2, stall=0.3, actions=actions)
    assert run.outputs == expected
    assert min(run.latencies) >= dut.latency


@pytest.mark.parametrize("loadable", [False, True], ids=["baked", "load"])
@pytest.mark.parametrize("lanes,channels,lps", [(16, 4, None), (64, 4, 2), (256, 2, 1)])
def test_latency_and_throughput(lanes, channels, lps, loadable, seed):
    """With no gaps, every vector takes exactly `latency` cycles and one result leaves per
    cycle. With adder trees the core has 1 + ceil(log2 n) logic levels (the lane logic, then
    S_a's tree over n lane terms, the deepest), then its output register and two stages of
    post-processing."""
    rng = np.random.default_rng(seed)
    t_a = random_trits(rng, (200, lanes))
    t_w = random_trits(rng, (channels, lanes))
    consts = random_constants(rng, t_w)
    if loadable:
        out_fmt = loadable_out_fmt(lanes)
        dut = RtnMacArray(lanes, channels, K_FMT, out_fmt, levels_per_stage=lps, tree="adder")
        rows = [(p, t_w[p], np.zeros(lanes, bool), int(consts.k1[p]), int(consts.k2[p]),
                 int(consts.k0[p])) for p in range(channels)]
        setup = load_action(dut, rows)
    else:
        out_fmt = OUT_FMT
        dut = RtnMacArray(lanes, channels, K_FMT, out_fmt, t_w, consts, levels_per_stage=lps,
                          tree="adder")
        setup = None
    levels = 1 + (lanes - 1).bit_length()
    assert dut.latency == 3 + (0 if lps is None else (levels - 1) // lps)
    run = run_stream(dut, payloads(t_a), seed=seed, setup=setup)
    assert run.outputs == golden(t_w, consts, t_a, out_fmt)
    assert run.latencies == [dut.latency] * len(t_a)
    assert np.diff(run.in_cycles).tolist() == [1] * (len(t_a) - 1)
    assert np.diff(run.out_cycles).tolist() == [1] * (len(t_a) - 1)


def test_load_in_same_cycle_as_vector(seed):
    """A load accepted together with vector j applies from vector j + 1 on: vector j, and the
    vectors in flight ahead of it, keep the old weights and constants."""
    rng = np.random.default_rng(seed)
    lanes, channels, count = 16, 3, 60
    out_fmt = loadable_out_fmt(lanes)
    dut = RtnMacArray(lanes, channels, K_FMT, out_fmt, levels_per_stage=2)
    t_a = random_trits(rng, (count, lanes))
    plan = LoadPlan(rng, channels, lanes, K_FMT)
    plan.add(0, range(channels))
    plan.add(10, [3])   # channel index 3 ≥ P = 3: ignored
    same_cycle = {}
    for index in (20, 21, 22, 40):
        plan.add(index, [int(rng.integers(channels))])
        (row,) = plan.events.pop(index)
        same_cycle[index] = row

    def offer(row):
        async def action(ctx):
            if row is None:
                ctx.set(dut.load.valid, 0)
                return
            channel, t_w, zero_sign, k1, k2, k0 = row
            (w,) = payloads(t_w[None], zero_sign[None])
            ctx.set(dut.load.payload, {"channel": channel, "w": w, "k1": k1, "k2": k2, "k0": k0})
            ctx.set(dut.load.valid, 1)   # left high: it is taken with the vector offered next
        return action

    actions = plan.actions(dut)
    for index, row in same_cycle.items():
        actions[index] = offer(row)
        actions.setdefault(index + 1, offer(None))
        plan.events[index + 1] = plan.events.get(index + 1, []) + [row]
    expected = plan.expected(t_a, out_fmt)
    # idle=0: the vector is offered at once, so it and the load meet in one handshake cycle.
    run = run_stream(dut, payloads(t_a), seed=seed, stall=0.3, actions=actions)
    assert run.outputs == expected


def test_reset_state_outputs_zero(seed):
    rng = np.random.default_rng(seed)
    dut = RtnMacArray(3, 2, K_FMT, loadable_out_fmt(3))
    t_a = random_trits(rng, (20, 3))
    assert run_stream(dut, payloads(t_a), seed=seed).outputs == [[0, 0]] * 20


def test_fold_thresholds_and_zero_shift(seed):
    """Thresholds straight from fold_thresholds, and F_out = F_k (no rounding shift)."""
    rng = np.random.default_rng(seed)
    lanes, channels = 16, 4
    k_fmt, out_fmt = Q(6, 8), Q(12, 8)
    t_w = random_trits(rng, (channels, lanes))
    consts = random_constants(rng, t_w, k_fmt)
    thresholds = model.fold_thresholds(rng.uniform(0.5, 2, channels), rng.uniform(-0.2, 0.2,
                                       channels), rng.uniform(-1, 1, channels),
                                       rng.uniform(1, 4, channels), 0.5, out_fmt)
    dut = RtnMacArray(lanes, channels, k_fmt, out_fmt, t_w, consts, thresholds)
    assert dut.shift == 0
    t_a, signs = vectors(rng, lanes, 300)
    run = run_stream(dut, payloads(t_a, signs), seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == golden(t_w, consts, t_a, out_fmt, thresholds)


def test_extreme_constants_large_shift(seed):
    """K codes at the ends of the format and a 13-bit rounding shift (many ties)."""
    rng = np.random.default_rng(seed)
    lanes, channels = 64, 6
    k_fmt = Q(4, 14)
    consts = extreme_constants(rng, channels, lanes, k_fmt)
    out_fmt = loadable_out_fmt(lanes, k_fmt, 1)
    t_w = random_trits(rng, (channels, lanes))
    t_w[0] = 1
    dut = RtnMacArray(lanes, channels, k_fmt, out_fmt, t_w, consts)
    assert dut.shift == 13
    t_a, signs = vectors(rng, lanes, 300)
    run = run_stream(dut, payloads(t_a, signs), seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == golden(t_w, consts, t_a, out_fmt)


def test_properties():
    t_w = np.array([[1, 0, -1], [0, 0, 1]])
    consts = model.fold_constants([0.5, 0.25], 0.1, 1.0, 0.5, t_w.sum(axis=1), 3, K_FMT)
    lo, hi = np.array([-3, -2]), np.array([3, 2])
    dut = RtnMacArray(3, 2, K_FMT, OUT_FMT, t_w, consts, (lo, hi), levels_per_stage=1,
                      tree="adder")
    assert (dut.lanes, dut.channels, dut.k_fmt, dut.out_fmt) == (3, 2, K_FMT, OUT_FMT)
    assert dut.weights.tolist() == t_w.tolist() and not dut.loadable
    assert dut.constants.k1.tolist() == consts.k1.tolist()
    assert [a.tolist() for a in dut.thresholds] == [[-3, -2], [3, 2]]
    assert dut.levels_per_stage == 1 and dut.shift == 4
    assert dut.accumulator_width == model.accumulator_width(consts) + 1
    # Core levels 1 + 2 = 3 (lane logic, adder tree over 3 terms): cuts after 1 and 2, the
    # core's output register; products, then acc' (the trit is compared from its register).
    assert dut.latency == 2 + 1 + 2 and dut.tree == "adder"
    dut.weights[0, 0] = 0
    assert dut.weights[0, 0] == 1
    assert not hasattr(dut, "load")
    loadable = RtnMacArray(3, 2, K_FMT, loadable_out_fmt(3))
    assert loadable.loadable and loadable.weights is None and loadable.constants is None
    assert loadable.latency == 3 and loadable.thresholds is None
    assert set(loadable.load.payload.shape().members) == {"channel", "w", "k1", "k2", "k0"}


# --- parameter validation ----------------------------------------------------------------------

def _errors():
    t_w = np.array([[1, 0, -1], [0, 0, 1]])
    consts = model.fold_constants([0.5, 0.25], 0.1, 1.0, 0.5, t_w.sum(axis=1), 3, K_FMT)
    ok = dict(lanes=3, channels=2, k_fmt=K_FMT, out_fmt=OUT_FMT, weights=t_w, constants=consts)
    three = model.fold_constants([0.5] * 3, 0.1, 1.0, 0.5, [0, 0, 0], 3, K_FMT)
    wide = RtnConstants(k1=np.array([1, 1 << 20]), k2=consts.k2, k0=consts.k0, fmt=K_FMT, n=3)
    floats = RtnConstants(k1=np.array([1.0, 2.0]), k2=consts.k2, k0=consts.k0, fmt=K_FMT, n=3)
    lo, hi = np.array([0, 0]), np.array([1, 1])
    return [
        (dict(ok, lanes=0), TypeError, "Lane count must be a positive integer, not 0"),
        (dict(ok, lanes=True), TypeError, "Lane count must be a positive integer, not True"),
        (dict(ok, channels=0), TypeError, "Channel count must be a positive integer, not 0"),
        (dict(ok, channels=2.0), TypeError,
         "Channel count must be a positive integer, not 2.0"),
        (dict(ok, levels_per_stage=0), TypeError,
         "Levels per stage must be a positive integer, not 0"),
        (dict(ok, tree="wallace"), ValueError,
         "Tree must be one of 'compressor', 'adder', not 'wallace'"),
        (dict(ok, k_fmt=(8, 10)), TypeError,
         "K format must be a fixed-point format Q, not (8, 10)"),
        (dict(ok, out_fmt="Q12.6"), TypeError,
         "Output format must be a fixed-point format Q, not 'Q12.6'"),
        (dict(ok, weights=None), TypeError,
         "Weights and constants must both be given (baked) or both be None (loadable)"),
        (dict(ok, constants=None), TypeError,
         "Weights and constants must both be given (baked) or both be None (loadable)"),
        (dict(ok, weights=[[1, 0, 2], [0, 0, 0]]), ValueError,
         "Weights must contain only trits (-1, 0, +1), not 2 at index (0, 2)"),
        (dict(ok, weights=[[True, False, True]] * 2), TypeError,
         "Weights must be an array of trits (-1, 0, +1), not dtype bool"),
        (dict(ok, weights=t_w[:, :2]), ValueError, "Weights must have shape (2, 3), not (2, 2)"),
        (dict(ok, weights=t_w[:1]), ValueError, "Weights must have shape (2, 3), not (1, 3)"),
        (dict(ok, constants=(1, 2, 3)), TypeError,
         "Constants must be an RtnConstants, not (1, 2, 3)"),
        (dict(ok, k_fmt=Q(8, 9)), ValueError, "Constants are in Q8.10, not the K format Q8.9"),
        (dict(ok, lanes=4, weights=np.zeros((2, 4), int)), ValueError,
         "Constants were folded for n = 3, not for 4 lanes"),
        (dict(ok, constants=three), ValueError, "Constants K1 must have shape (2,), not (3,)"),
        (dict(ok, constants=floats), TypeError,
         "Constants K1 must be an integer array, not dtype float64"),
        (dict(ok, constants=wide), ValueError, "Constants K1 do not fit Q8.10"),
        (dict(ok, out_fmt=Q(1, 6)), ValueError,
         "Output format Q1.6 is too narrow for n = 3: |y| can reach 1.953125, which needs "
         "int_bits >= 2"),
        (dict(ok, out_fmt=Q(12, 11)), ValueError,
         "Output format Q12.11 has more fraction bits than the constants' format Q8.10"),
        # Loadable: out_fmt must hold the result for every K that k_fmt can hold.
        (dict(lanes=256, channels=2, k_fmt=K_FMT, out_fmt=OUT_FMT), ValueError,
         "Output format Q12.6 is too narrow for n = 256: |y| can reach 65664.0, which needs "
         "int_bits >= 18"),
        (dict(ok, thresholds=(lo,)), TypeError,
         "Thresholds must be a pair (lo, hi), not (array([0, 0]),)"),
        (dict(ok, thresholds=(lo, np.array([1.5, 2]))), TypeError,
         "Threshold hi must be an integer array, not dtype float64"),
        (dict(ok, thresholds=(np.array([0, 0, 0]), hi)), ValueError,
         "Threshold lo must have shape (2,), not (3,)"),
        (dict(ok, thresholds=(lo, np.array([0, 1 << 18]))), ValueError,
         "Threshold hi must lie in [-131073, 131072] for Q12.6"),
    ]


@pytest.mark.parametrize("kwargs,error,message", _errors(),
                         ids=[f"{e.__name__}:{msg[:40]}" for _, e, msg in _errors()])
def test_parameter_errors(kwargs, error, message):
    assert_rejects(error, message, lambda: RtnMacArray(**kwargs))
