"""TernaryEncoder against `rtn_hw.model.encode`, bit for bit; TernaryDecoder against α·t + β
computed exactly in the test (the decoder's constants come from `rtn_hw.model.decode`, so that
function cannot be its reference)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import signed
from amaranth.lib import data

from rtn_hw.gateware.codec import TernaryDecoder, TernaryEncoder, threshold_layout
from rtn_hw.gateware.layouts import trit_planes
from rtn_hw.gateware.simulate import run_stream
from rtn_hw.model import Q, encode, fold_thresholds, pack, planes_to_int

from helpers import assert_rejects

RANDOM_VECTORS = 2000
# (lanes, format): every lane count, with 8- and 16-bit formats and odd splits among them.
ENCODER_CONFIGS = [(1, Q(4, 4)), (3, Q(8, 8)), (16, Q(3, 5)), (64, Q(6, 10)), (256, Q(4, 4))]
DECODER_CONFIGS = [(1, Q(4, 6)), (3, Q(3, 5)), (16, Q(8, 8)), (64, Q(4, 4)), (256, Q(5, 7))]
config_id = lambda config: f"lanes{config[0]}-{config[1]}" if isinstance(config, tuple) else None


def pack_rows(rows, width):
    """Integer rows (count, lanes) → Python ints, element k in bits k·width .. (k+1)·width-1."""
    rows = np.asarray(rows, dtype=np.int64)
    fields = (rows & ((1 << width) - 1)).astype(object)
    raw = np.zeros(len(rows), dtype=object)
    for k in range(rows.shape[1]):
        raw += fields[:, k] << (k * width)
    return [int(value) for value in raw]


def code_payloads(dut, codes):
    layout = dut.i.payload.shape()
    return [data.Const(layout, raw) for raw in pack_rows(codes, dut.in_fmt.width)]


def threshold_payload(dut, lo, hi):
    width = dut.in_fmt.width + 1
    lo_raw, = pack_rows([lo], width)
    hi_raw, = pack_rows([hi], width)
    layout = threshold_layout(dut.lanes, dut.in_fmt)
    return data.Const(layout, lo_raw | hi_raw << (dut.lanes * width))


def planes(trits, zero_sign=None):
    """Trit rows → [{"nz": int, "sg": int}] as `run_stream` returns trit_planes payloads."""
    nz, sg = pack(trits, zero_sign)
    return [{"nz": planes_to_int(a), "sg": planes_to_int(b)} for a, b in zip(nz, sg)]


def load(dut, lo, hi, cycles=1):
    """An async action that loads (lo, hi) through `t`, keeping valid high for `cycles`."""
    payload = threshold_payload(dut, lo, hi)

    async def action(ctx):
        ctx.set(dut.t.payload, payload)
        ctx.set(dut.t.valid, 1)
        for _ in range(cycles):
            assert ctx.get(dut.t.ready) == 1, "a threshold load must never wait"
            await ctx.tick()
        ctx.set(dut.t.valid, 0)
    return action


def load_with_next_input(dut, lo, hi):
    """Two actions: the first raises `t.valid` without waiting, so the load is taken in the
    same cycle as the next input (when nothing stalls); the second, before the input after,
    drops it again."""
    payload = threshold_payload(dut, lo, hi)

    async def raise_valid(ctx):
        ctx.set(dut.t.payload, payload)
        ctx.set(dut.t.valid, 1)

    async def drop_valid(ctx):
        assert ctx.get(dut.t.ready) == 1
        ctx.set(dut.t.valid, 0)
    return raise_valid, drop_valid


def bn_thresholds(rng, lanes, fmt):
    """`fold_thresholds` of random BatchNorm parameters; lane 0 of a multi-lane vector gets a
    tiny γ, which pushes its thresholds outside the format so they clamp."""
    span = fmt.max_int * fmt.lsb
    gamma = rng.uniform(0.5, 2.0, lanes)
    if lanes > 1:
        gamma[0] = 1e-4
    beta = rng.normal(0.0, 0.5, lanes)
    mean = rng.uniform(-span / 2, span / 2, lanes)
    sigma = rng.uniform(0.02, 0.4, lanes) * span
    return fold_thresholds(gamma, beta, mean, sigma, 0.5, fmt)


def extreme_thresholds(rng, lanes, fmt):
    """Random lo <= hi + 1 over the whole clamped range, with the edge patterns up front:
    never zero, always -1, always +1, an empty zero band, a one-code zero band."""
    low, high = fmt.min_int - 1, fmt.max_int + 1
    hi = rng.integers(low, high + 1, lanes)
    lo = rng.integers(low, hi + 2)
    edges = [(low, high), (high, high), (low, low), (5, 4), (-3, -3)]
    for k, (a, b) in enumerate(edges[:lanes]):
        lo[k], hi[k] = a, b
    return lo, hi


def encoder_corners(lo, hi, fmt):
    """One vector per probe: every lane at its lo, hi, lo - 1, hi + 1, lo + 1, hi - 1, and at
    the minimum, maximum and zero codes; then the probes shuffled across lanes."""
    probes = [lo, hi, lo - 1, hi + 1, lo + 1, hi - 1, np.full_like(lo, fmt.min_int),
              np.full_like(lo, fmt.max_int), np.zeros_like(lo)]
    rows = np.clip(np.array(probes), fmt.min_int, fmt.max_int)
    mixed = rows[(np.arange(len(lo)) * 5 + np.arange(len(rows))[:, None]) % len(rows),
                 np.arange(len(lo))]
    return np.concatenate([rows, mixed])


def encoder_random(rng, count, lo, hi, fmt):
    """Half uniform codes, half within ±2 codes of a lane's threshold."""
    shape = (count, len(lo))
    near = np.where(rng.random(shape) < 0.5, lo, hi) + rng.integers(-2, 3, shape)
    uniform = rng.integers(fmt.min_int, fmt.max_int + 1, shape)
    rows = np.where((np.arange(count) % 2 == 1)[:, None], near, uniform)
    return np.clip(rows, fmt.min_int, fmt.max_int)


# --- TernaryEncoder -------------------------------------------------------------------------


@pytest.mark.parametrize("config", ENCODER_CONFIGS, ids=config_id)
def test_encoder_bn_thresholds_with_gaps_and_backpressure(config, seed, rng):
    lanes, fmt = config
    lo, hi = bn_thresholds(rng, lanes, fmt)
    assert (lo <= hi + 1).all()
    dut = TernaryEncoder(lanes, fmt, (lo, hi))
    y = np.concatenate([encoder_corners(lo, hi, fmt),
                        encoder_random(rng, RANDOM_VECTORS, lo, hi, fmt)])
    run = run_stream(dut, code_payloads(dut, y), seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == planes(encode(y, lo, hi))
    assert min(run.latencies) >= dut.latency


@pytest.mark.parametrize("config", ENCODER_CONFIGS, ids=config_id)
def test_encoder_extreme_constant_thresholds(config, seed, rng):
    lanes, fmt = config
    lo, hi = extreme_thresholds(rng, lanes, fmt)
    dut = TernaryEncoder(lanes, fmt, (lo, hi))
    y = np.concatenate([encoder_corners(lo, hi, fmt), encoder_random(rng, 500, lo, hi, fmt)])
    run = run_stream(dut, code_payloads(dut, y), seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == planes(encode(y, lo, hi))


@pytest.mark.parametrize("config", ENCODER_CONFIGS, ids=config_id)
def test_encoder_loadable_reloads_between_batches(config, seed, rng):
    lanes, fmt = config
    batches = [bn_thresholds(rng, lanes, fmt), extreme_thresholds(rng, lanes, fmt),
               bn_thresholds(rng, lanes, fmt)]
    dut = TernaryEncoder(lanes, fmt)
    inputs, expected, actions = [], [], {}
    for lo, hi in batches:
        y = np.concatenate([encoder_corners(lo, hi, fmt),
                            encoder_random(rng, RANDOM_VECTORS // len(batches), lo, hi, fmt)])
        # A load right behind the previous batch's last input: that vector is still in flight
        # (and often stalled by backpressure) while the thresholds change under it.
        actions[len(inputs)] = load(dut, lo, hi)
        inputs += code_payloads(dut, y)
        expected += planes(encode(y, lo, hi))
    first = actions.pop(0)
    run = run_stream(dut, inputs, seed=seed, idle=0.2, stall=0.3, setup=first, actions=actions)
    assert run.outputs == expected


@pytest.mark.parametrize("config", ENCODER_CONFIGS, ids=config_id)
def test_encoder_latency_throughput_and_load_timing(config, seed, rng):
    lanes, fmt = config
    dut = TernaryEncoder(lanes, fmt)
    assert dut.latency == 1
    zero = np.zeros(lanes, dtype=np.int64)
    first = (3 + np.arange(lanes) % 3, 6 + np.arange(lanes) % 5)
    second = extreme_thresholds(rng, lanes, fmt)
    y = np.concatenate([encoder_corners(zero, zero, fmt), encoder_corners(*first, fmt),
                        encoder_corners(*second, fmt)])
    # Loads taken together with inputs 10 (zero → first) and 14 (first → zero). Code 1 is +1
    # under zero, 0 under (zero's lo, first's hi), -1 under first; code 0 is -1 under first,
    # 0 under (zero's lo, first's hi) and under zero: so these inputs show exactly which
    # thresholds each one met, lo and hi separately.
    y[10:12], y[14:16] = 1, 0
    to_first, to_zero = load_with_next_input(dut, *first), load_with_next_input(dut, zero, zero)
    actions = {10: to_first[0], 11: to_first[1], 14: to_zero[0], 15: to_zero[1],
               20: load(dut, *second, cycles=3)}
    run = run_stream(dut, code_payloads(dut, y), seed=seed, actions=actions)
    # Until the first load all thresholds are 0; an input taken in the same cycle as a load
    # still meets the old thresholds; the 3-cycle load before input 20 delays it by 3 cycles.
    in_force = ([(zero, zero)] * 11 + [first] * 4 + [(zero, zero)] * 5
                + [second] * (len(y) - 20))
    lo, hi = (np.array(column) for column in zip(*in_force))
    assert run.outputs == planes(encode(y, lo, hi))
    assert run.latencies == [1] * len(y)
    gaps = np.diff(run.in_cycles).tolist()
    assert gaps == [1] * 19 + [4] + [1] * (len(y) - 21)
    assert np.diff(run.out_cycles).tolist() == gaps


@pytest.mark.parametrize("loadable", [False, True], ids=["constant", "loadable"])
def test_encoder_ports_and_properties(loadable):
    fmt = Q(4, 4)
    thresholds = None if loadable else (np.array([-3, 0, 2]), 5)
    dut = TernaryEncoder(3, fmt, thresholds)
    assert dut.i.payload.shape() == data.ArrayLayout(signed(8), 3)
    assert dut.o.payload.shape() == trit_planes(3)
    assert (dut.lanes, dut.in_fmt, dut.latency) == (3, fmt, 1)
    if loadable:
        assert dut.thresholds is None
        assert dut.t.payload.shape() == data.StructLayout({
            "lo": data.ArrayLayout(signed(9), 3), "hi": data.ArrayLayout(signed(9), 3)})
    else:
        assert not hasattr(dut, "t")
        lo, hi = dut.thresholds
        assert lo.tolist() == [-3, 0, 2] and hi.tolist() == [5, 5, 5]
        with pytest.raises(ValueError):
            lo[0] = 1
    for name in ("lanes", "in_fmt", "thresholds", "latency"):
        with pytest.raises(AttributeError):
            setattr(dut, name, None)
    assert "planes_q" in rtlil.convert(dut)


@pytest.mark.parametrize(("args", "error", "message"), [
    ((0, Q(4, 4)), TypeError, "Lane count must be a positive integer, not 0"),
    ((2, "Q4.4"), TypeError,
     "Input format must be a rtn_hw.model.Q fixed-point format, not 'Q4.4'"),
    ((2, Q(4, 4), [0, 1]), TypeError, "Thresholds must be None or a (lo, hi) tuple, not [0, 1]"),
    ((2, Q(4, 4), (0.5, 1)), TypeError,
     "Threshold lo must be integer fixed-point codes, not 0.5"),
    ((2, Q(4, 4), (0, np.array([True, False]))), TypeError,
     "Threshold hi must be integer fixed-point codes, not array([ True, False])"),
    ((2, Q(4, 4), (np.array([0, 1, 2]), 1)), ValueError,
     "Threshold lo must be a scalar or have shape (2,), not (3,)"),
    ((2, Q(4, 4), (-130, 0)), ValueError,
     "Threshold lo = -130 at lane 0 is outside [-129, 128] (input format Q4.4 with one code "
     "of margin each side)"),
    ((2, Q(4, 4), (0, np.array([5, 129]))), ValueError,
     "Threshold hi = 129 at lane 1 is outside [-129, 128] (input format Q4.4 with one code "
     "of margin each side)"),
    ((2, Q(4, 4), (np.array([0, 6]), 4)), ValueError,
     "Thresholds must satisfy lo <= hi + 1, not lo = 6 and hi = 4 at lane 1"),
], ids=["zero-lanes", "format", "list", "float", "bool", "shape", "below-range", "above-range",
        "lo-above-hi"])
def test_encoder_parameter_errors(args, error, message):
    assert_rejects(error, message, lambda: TernaryEncoder(*args))


def test_encoder_accepts_clamped_extremes():
    # min - 1 and max + 1 are legal (fold_thresholds clamps to them); lo = hi + 1 too.
    dut = TernaryEncoder(3, Q(4, 4), (np.array([-129, 128, 5]), np.array([128, 128, 4])))
    y = np.array([[-128, -128, 4], [127, 127, 5], [0, 0, 0]])
    run = run_stream(dut, code_payloads(dut, y), seed=1)
    assert run.outputs == planes(np.array([[0, -1, -1], [0, -1, 1], [0, -1, -1]]))


# --- TernaryDecoder -------------------------------------------------------------------------


def decoder_params(rng, lanes, fmt):
    """Per-lane α in (0, span/4], β with |β| + α inside the format, and a few lanes on exact
    half-LSB ties, which round away from zero."""
    span = fmt.max_int * fmt.lsb
    alpha = rng.uniform(fmt.lsb / 4, span / 4, lanes)
    beta = rng.uniform(-span / 2, span / 2, lanes)
    ties = np.arange(lanes) % 4 == 1
    alpha[ties] = (rng.integers(1, 8, ties.sum()) + 0.5) * fmt.lsb
    beta[ties] = (rng.integers(-8, 8, ties.sum()) + 0.5) * fmt.lsb
    return alpha, beta


def affine_codes(trits, alpha, beta, fmt):
    """Expected decoder output: α·t + β with exact rationals, times 2^F, rounded to the nearest
    integer with ties away from zero (the documented rule). Each lane's value for t = -1, 0, +1
    is computed once (exact arithmetic per element would take seconds at 256 lanes)."""
    lanes = trits.shape[-1]
    scale = 1 << fmt.frac_bits

    def code(a, b, t):
        x = (Fraction(float(a)) * t + Fraction(float(b))) * scale
        magnitude = math.floor(abs(x) + Fraction(1, 2))
        value = magnitude if x >= 0 else -magnitude
        assert fmt.min_int <= value <= fmt.max_int, "test parameters must fit the format"
        return value
    exact = np.array([[code(a, b, t) for a, b in zip(np.broadcast_to(alpha, lanes),
                                                     np.broadcast_to(beta, lanes))]
                      for t in (-1, 0, 1)], dtype=np.int64)
    return exact[trits + 1, np.arange(lanes)].tolist()


def decoder_corners(rng, lanes):
    """(trits, zero sign bits): all zero with sign 0 and 1, all +1, all -1, alternating ±1,
    alternating 0/+1 and 0/-1 with the zeros' signs set, zeros with random sign bits."""
    even = np.arange(lanes) % 2 == 0
    rows = [(np.zeros(lanes), False), (np.zeros(lanes), True), (np.ones(lanes), False),
            (-np.ones(lanes), True), (np.where(even, 1, -1), False), (np.where(even, 0, 1), True),
            (np.where(even, -1, 0), True), (np.zeros(lanes), rng.random(lanes) < 0.5)]
    trits = np.array([r[0] for r in rows], dtype=np.int8)
    signs = np.array([np.broadcast_to(r[1], lanes) for r in rows])
    return trits, signs


@pytest.mark.parametrize("config", DECODER_CONFIGS, ids=config_id)
def test_decoder_matches_exact_affine_with_gaps_and_backpressure(config, seed, rng):
    lanes, fmt = config
    alpha, beta = decoder_params(rng, lanes, fmt)
    dut = TernaryDecoder(lanes, fmt, alpha, beta)
    corner_t, corner_s = decoder_corners(rng, lanes)
    trits = np.concatenate([corner_t, rng.integers(-1, 2, (RANDOM_VECTORS, lanes))])
    signs = np.concatenate([corner_s, rng.random((RANDOM_VECTORS, lanes)) < 0.5])
    run = run_stream(dut, planes(trits, signs), seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == affine_codes(trits, alpha, beta, fmt)
    assert min(run.latencies) >= dut.latency


@pytest.mark.parametrize("config", DECODER_CONFIGS, ids=config_id)
def test_decoder_latency_and_throughput_without_gaps(config, seed, rng):
    lanes, fmt = config
    alpha, beta = decoder_params(rng, lanes, fmt)
    dut = TernaryDecoder(lanes, fmt, alpha, beta)
    trits, signs = decoder_corners(rng, lanes)
    run = run_stream(dut, planes(trits, signs), seed=seed)
    assert run.outputs == affine_codes(trits, alpha, beta, fmt)
    assert dut.latency == 1 and run.latencies == [1] * len(trits)
    assert np.diff(run.out_cycles).tolist() == [1] * (len(trits) - 1)


def test_decoder_scalar_parameters_by_hand(seed):
    # Q4.2: β - α = -0.25 → -1; β = 0.125 is a tie → 0.25 (+1, away from zero); β + α → 2.
    dut = TernaryDecoder(4, Q(4, 2), 0.375, 0.125)
    assert dut.table.tolist() == [[-1] * 4, [1] * 4, [2] * 4]
    trits = np.array([[1, 0, -1, 0], [-1, -1, 1, 1], [0, 0, 0, 0]])
    signs = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    run = run_stream(dut, planes(trits, signs), seed=seed, idle=0.5, stall=0.5)
    assert run.outputs == [[2, 1, -1, 1], [-1, -1, 2, 2], [1, 1, 1, 1]]


def test_decoder_ports_and_properties():
    alpha = np.array([0.5, 1.0, 1.5])
    dut = TernaryDecoder(3, Q(4, 4), alpha, -0.25)
    assert dut.i.payload.shape() == trit_planes(3)
    assert dut.o.payload.shape() == data.ArrayLayout(signed(8), 3)
    assert (dut.lanes, dut.out_fmt, dut.beta, dut.latency) == (3, Q(4, 4), -0.25, 1)
    alpha[0] = 9.0      # the component keeps its own copy
    assert dut.alpha.tolist() == [0.5, 1.0, 1.5]
    assert dut.table.tolist() == [[-12, -20, -28], [-4, -4, -4], [4, 12, 20]]
    for name in ("lanes", "out_fmt", "alpha", "beta", "table", "latency"):
        with pytest.raises(AttributeError):
            setattr(dut, name, None)
    assert "values_q" in rtlil.convert(dut)


@pytest.mark.parametrize(("args", "error", "message"), [
    ((0, Q(4, 4), 1.0, 0.0), TypeError, "Lane count must be a positive integer, not 0"),
    ((2, (4, 4), 1.0, 0.0), TypeError,
     "Output format must be a rtn_hw.model.Q fixed-point format, not (4, 4)"),
    ((2, Q(4, 4), math.nan, 0.0), ValueError, "alpha must be finite, not nan"),
    ((2, Q(4, 4), math.inf, 0.0), ValueError, "alpha must be finite, not inf"),
    ((2, Q(4, 4), 0.0, 0.0), ValueError, "alpha must be positive, not 0.0"),
    ((2, Q(4, 4), [1.0, -0.5], 0.0), ValueError, "alpha must be positive, not -0.5"),
    ((2, Q(4, 4), 1.0, -math.inf), ValueError, "beta must be finite, not -inf"),
    ((2, Q(4, 4), [1.0, 1.0, 1.0], 0.0), ValueError,
     "alpha must be a scalar or have shape (2,), not (3,)"),
    ((2, Q(4, 4), 1.0, [0.0, 7.5]), ValueError,
     "beta + alpha = 8.5 does not fit Q4.4 (range -8.0 .. 7.9375)"),
    ((2, Q(2, 2), 0.5, -2.0), ValueError,
     "beta - alpha = -2.5 does not fit Q2.2 (range -2.0 .. 1.75)"),
], ids=["zero-lanes", "format", "nan-alpha", "inf-alpha", "zero-alpha", "negative-alpha",
        "inf-beta", "alpha-shape", "too-high", "too-low"])
def test_decoder_parameter_errors(args, error, message):
    assert_rejects(error, message, lambda: TernaryDecoder(*args))
