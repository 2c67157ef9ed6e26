"""Fp32Mul, Fp32Add and Fp32Dot against the binary32 golden model, bit for bit.

The multiplier and adder run standalone with many vectors (cheap to simulate); the dot product
runs at 1, 3, 16, 64 and 256 lanes with fewer vectors (each lane is a multiplier and an adder).
References come from `rtn_hw.model.fp32_dot_bits`: a one-lane dot is a rounded product, and a
two-lane dot with b = (1, 1) is a rounded sum (x * 1 is exact, subnormals included).
"""

import itertools

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data

from rtn_hw.gateware.fp32 import Fp32Add, Fp32Dot, Fp32Mul, fp32_dot_latency
from rtn_hw.gateware.simulate import run_stream
from rtn_hw.model import fp32_dot_bits

from helpers import assert_rejects

ONE = 0x3F800000
NAN = 0x7FC00000

# Hand-picked operands: signed zeros, infinities, NaNs with several payloads (quiet and
# signalling, both signs), extremes of the normal and subnormal ranges, and ordinary values.
SPECIALS = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000,
            0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFA5A5A5]
EXTREMES = [0x7F7FFFFF, 0xFF7FFFFF, 0x7F000000,           # largest finite, 2^127
            0x00800000, 0x80800000, 0x00800001,           # smallest normals
            0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,  # smallest, largest subnormal
            0x00400000, 0x00012345, 0x80234567, 0x00000003]  # other subnormals
ORDINARY = [ONE, 0xBF800000, 0x3F800001, 0x3F7FFFFF, 0x3FC00000, 0x40000000, 0x3F000000,
            0x40400000, 0xC0A00000, 0x33800000, 0x34000000,   # 2^-24, 2^-23
            0x5F800000, 0x1F800000, 0x1A000000, 0x1A400000,   # 2^64, 2^-64, 2^-75, 1.5*2^-75
            0x71800000, 0x0D800000, 0x3EAAAAAB, 0xBDCCCCCD]   # 2^100, 2^-100, 1/3, -0.1
CORNERS = SPECIALS + EXTREMES + ORDINARY

# Targeted pairs (a, b) whose exact result sits on a rounding boundary.
MUL_CASES = [
    (0x7F000000, 0x40000000),   # 2^127 * 2 overflows to +inf
    (0x7F7FFFFF, 0xBF800001),   # max * -(1 + ulp) rounds to -inf
    (0x7F7FFFFF, 0x3F800000),   # max * 1 stays max
    (0x1A000000, 0x1A000000),   # 2^-150: tie between 0 and the smallest subnormal, to +0
    (0x1A000000, 0x9A000001),   # just above the tie: rounds to -(smallest subnormal)
    (0x1A400000, 0x1A800000),   # 1.5 * 2^-149: tie between 1 and 2 ulp, to 2 (even)
    (0x1A200000, 0x1B000000),   # 2.5 * 2^-149: tie, to 2 (even)
    (0x00800000, 0x3F7FFFFF),   # min normal * (1 - 2^-24): tie, rounds up into the normals
    (0x00800000, 0x3F000000),   # min normal / 2: exact subnormal
    (0x00000001, 0x3F000000),   # smallest subnormal / 2: tie, to +0
    (0x00000003, 0x3F000000),   # 1.5 ulp: tie, to 2 ulp
    (0x00000001, 0x4B000000),   # subnormal * 2^23: exact normal 2^-126
    (0x007FFFFF, 0x40000000),   # largest subnormal * 2: normal
    (0x3F800800, 0x3F800800),   # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: tie, to even
    (0x40400000, 0x3F800001),   # 3 * (1 + 2^-23): 1.5 ulp tie, rounds to even
    (0x00000001, 0x00000001),   # underflows to +0
    (0x80000001, 0x00000001),   # underflows to -0
    (0x7F800000, 0x00000000),   # inf * 0 is NaN
    (0x80000000, 0xFF800000),   # -0 * -inf is NaN
    (0xFF800000, 0x00000001),   # -inf * subnormal is -inf
]
ADD_CASES = [
    (0x7F7FFFFF, 0x7F7FFFFF),   # max + max overflows to +inf
    (0x7F7FFFFF, 0x73000000),   # max + half an ulp: tie, odd mantissa rounds up to inf
    (0x7F7FFFFF, 0x72FFFFFF),   # just below the tie: stays max
    (0xFF7FFFFF, 0xF3000000),   # the same, negative: -inf
    (0x3F800000, 0x33800000),   # 1 + 2^-24: tie, stays 1 (even)
    (0x3F800001, 0x33800000),   # (1 + 2^-23) + 2^-24: tie, rounds up to even
    (0x3F800000, 0xB3800000),   # 1 - 2^-24: exact
    (0x3F800000, 0xB3000000),   # 1 - 2^-25: tie below 1, to 1
    (0x3F800000, 0x33800001),   # just above the tie: rounds up
    (0x00800000, 0x80000001),   # min normal - smallest subnormal: largest subnormal
    (0x007FFFFF, 0x00000001),   # largest subnormal + smallest: min normal
    (0x3F800001, 0xBF800000),   # cancellation down to 2^-23
    (0x3F800000, 0xBF800000),   # x + (-x) = +0
    (0x80000000, 0x80000000),   # -0 + -0 = -0
    (0x80000000, 0x00000000),   # -0 + +0 = +0
    (0x00000001, 0x80000001),   # subnormal cancellation: +0
    (0x7F800000, 0xFF800000),   # inf - inf is NaN
    (0xFF800000, 0xFF800000),   # -inf + -inf = -inf
    (0xFF800000, 0x7F7FFFFF),   # -inf + max = -inf
    (0x4B800000, 0x3F800000),   # 2^24 + 1: tie, to 2^24
    (0x4B800001, 0x3F800000),   # (2^24 + 2) + 1: tie, to 2^24 + 4
]


def product_ref(a, b):
    return fp32_dot_bits(np.asarray(a, np.uint32)[..., None], np.asarray(b, np.uint32)[..., None])


def sum_ref(a, b):
    pairs = np.stack([np.asarray(a, np.uint32), np.asarray(b, np.uint32)], axis=-1)
    return fp32_dot_bits(pairs, np.full(pairs.shape, ONE, np.uint32))


def random_bits(rng, shape, exponents):
    """Random sign and fraction with exponent fields drawn from `exponents` (low, high)."""
    sign = rng.integers(0, 2, shape, dtype=np.uint32) << 31
    field = rng.integers(*exponents, size=shape, endpoint=True).astype(np.uint32) << 23
    return sign | field | rng.integers(0, 1 << 23, shape, dtype=np.uint32)


def random_operands(rng, shape):
    """A mix: raw bit patterns (NaN, inf, subnormal, anything), values near 1 (products of
    similar size, so tree sums cancel and every rounding matters), small values whose products
    underflow into the subnormals, huge values that overflow, and hand-picked corners."""
    kinds = rng.choice(5, size=shape, p=[0.25, 0.45, 0.12, 0.08, 0.10])
    choices = [rng.integers(0, 1 << 32, shape, dtype=np.uint64).astype(np.uint32),
               random_bits(rng, shape, (124, 130)),
               random_bits(rng, shape, (0, 60)),
               random_bits(rng, shape, (190, 254)),
               rng.choice(np.array(CORNERS, np.uint32), size=shape)]
    return np.choose(kinds, choices).astype(np.uint32)


def random_pairs(rng, count):
    """Operand pairs for the standalone units; a third of the `b`s sit within a few binades of
    their `a` with random sign, so sums cancel (partly or exactly) and round in every way."""
    a, b = random_operands(rng, count), random_operands(rng, count)
    near = rng.random(count) < 1 / 3
    shift = rng.integers(-2, 3, count)
    field = np.clip(((a >> 23) & 0xFF).astype(np.int64) + shift, 0, 254).astype(np.uint32)
    low = np.where(rng.random(count) < 0.3, a & 0x7FFFFF,
                   rng.integers(0, 1 << 23, count, dtype=np.uint32))
    sign = rng.integers(0, 2, count, dtype=np.uint32) << 31
    b[near] = (sign | (field << 23) | low)[near]
    exact = rng.random(count) < 0.02
    b[exact] = a[exact] ^ 0x80000000
    return a, b


def run_pairs(dut, a, b, **kwargs):
    inputs = [{"a": int(x), "b": int(y)} for x, y in zip(a, b)]
    run = run_stream(dut, inputs, **kwargs)
    return np.array(run.outputs, dtype=np.uint32), run


def run_dot(dut, a, b, **kwargs):
    inputs = [{"a": [int(x) for x in row_a], "b": [int(x) for x in row_b]}
              for row_a, row_b in zip(a, b)]
    run = run_stream(dut, inputs, **kwargs)
    return np.array(run.outputs, dtype=np.uint32), run


def assert_bits(got, want, a, b):
    """Compare full ordered output lists; on failure, name the first mismatching vectors."""
    assert got.shape == want.shape
    bad = np.flatnonzero(got != want)
    report = [f"vector {k}: got {got[k]:#010x}, want {want[k]:#010x}, "
              f"a={np.atleast_1d(a[k]).tolist()} b={np.atleast_1d(b[k]).tolist()}"
              for k in bad[:5]]
    assert not bad.size, f"{bad.size} of {got.size} mismatch:\n" + "\n".join(report)


def assert_full_rate(run, latency):
    assert run.latencies == [latency] * len(run.in_cycles)
    assert np.all(np.diff(run.in_cycles) == 1)
    assert np.all(np.diff(run.out_cycles) == 1)


# Parameters and properties ------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [0, -3, 2.5, True, "4", None])
def test_dot_rejects_bad_lane_count(lanes):
    assert_rejects(TypeError, f"Lane count must be a positive integer, not {lanes!r}",
                   lambda: Fp32Dot(lanes))


def test_dot_lane_message_exact():
    assert_rejects(TypeError, "Lane count must be a positive integer, not 0", lambda: Fp32Dot(0))


@pytest.mark.parametrize("make, what", [
    (lambda v: Fp32Dot(4, mul_stages=v), "Multiplier"),
    (lambda v: Fp32Dot(4, add_stages=v), "Adder"),
    (lambda v: Fp32Mul(stages=v), "Multiplier"),
    (lambda v: Fp32Add(stages=v), "Adder"),
], ids=["dot-mul", "dot-add", "mul", "add"])
def test_rejects_bad_stage_count(make, what):
    for value in (0, 4, -1):
        assert_rejects(ValueError, f"{what} stage count must be 1, 2 or 3, not {value}",
                       lambda: make(value))
    for value in (True, 2.0, None, "2"):
        assert_rejects(TypeError, f"{what} stage count must be 1, 2 or 3, not {value!r}",
                       lambda: make(value))


def test_dot_properties_and_signature():
    dut = Fp32Dot(5, mul_stages=1, add_stages=2)
    assert (dut.lanes, dut.mul_stages, dut.add_stages, dut.levels) == (5, 1, 2, 3)
    assert dut.latency == 1 + 2 * 3 == fp32_dot_latency(5, 1, 2)
    for name in ("lanes", "mul_stages", "add_stages", "latency", "levels"):
        with pytest.raises(AttributeError):
            setattr(dut, name, 1)
    vector = data.ArrayLayout(unsigned(32), 5)
    assert dut.i.payload.shape() == data.StructLayout({"a": vector, "b": vector})
    assert dut.o.payload.shape() == unsigned(32)
    # Default: 3 cycles per multiply and per tree level, latency 3 + 3 * ceil(log2(lanes)).
    assert [Fp32Dot(n).latency for n in (1, 2, 3, 4, 5, 16, 64, 256)] == \
        [3, 6, 9, 9, 12, 15, 21, 27]
    assert (Fp32Mul().latency, Fp32Mul(stages=1).latency, Fp32Add(stages=2).stages) == (3, 1, 2)
    pair = data.StructLayout({"a": unsigned(32), "b": unsigned(32)})
    assert Fp32Add().i.payload.shape() == pair and Fp32Mul().o.payload.shape() == unsigned(32)


# Standalone multiplier and adder -------------------------------------------------------------

def test_reference_covers_rounding_boundaries():
    """The targeted cases really are ties / overflows / underflows (a test that can fail)."""
    products = product_ref(*np.array(MUL_CASES, np.uint32).T)
    assert products.tolist()[:8] == [0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x00000000,
                                     0x80000001, 0x00000002, 0x00000002, 0x00800000]
    assert products.tolist()[-5:] == [0x00000000, 0x80000000, NAN, NAN, 0xFF800000]
    sums = sum_ref(*np.array(ADD_CASES, np.uint32).T)
    assert sums.tolist()[:6] == [0x7F800000, 0x7F800000, 0x7F7FFFFF, 0xFF800000, ONE,
                                 0x3F800002]
    assert sums.tolist()[12:17] == [0x00000000, 0x80000000, 0x00000000, 0x00000000, NAN]


@pytest.mark.parametrize("unit", [Fp32Mul, Fp32Add], ids=["mul", "add"])
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_op_corners(unit, stages, seed):
    """Every pair of corner operands (both orders), then the targeted rounding cases."""
    pairs = list(itertools.product(CORNERS, repeat=2))
    pairs += MUL_CASES + ADD_CASES + [(b, a) for a, b in MUL_CASES + ADD_CASES]
    a, b = np.array(pairs, np.uint32).T
    dut = unit(stages=stages)
    got, run = run_pairs(dut, a, b, seed=seed)
    assert_full_rate(run, stages)
    want = product_ref(a, b) if unit is Fp32Mul else sum_ref(a, b)
    assert_bits(got, want, a, b)


# Random pairs per standalone unit: a few thousand in `make test`, 40,000 in `make sim` (slow:
# a 40,000-pair run takes 40-50 s in the Amaranth simulator).
OP_RANDOM = [pytest.param(Fp32Mul, 3_000, id="mul"), pytest.param(Fp32Add, 3_000, id="add"),
             pytest.param(Fp32Mul, 40_000, id="mul-40k", marks=pytest.mark.slow),
             pytest.param(Fp32Add, 40_000, id="add-40k", marks=pytest.mark.slow)]


@pytest.mark.parametrize("unit, count", OP_RANDOM)
def test_op_random(unit, count, rng, seed):
    a, b = random_pairs(rng, count)
    got, _ = run_pairs(unit(), a, b, seed=seed, idle=0.2, stall=0.3)
    want = product_ref(a, b) if unit is Fp32Mul else sum_ref(a, b)
    # The stimulus must reach the cases that matter, or the comparison proves little.
    assert np.isnan(want.view(np.float32)).sum() > count // 100
    assert (want & 0x7FFFFFFF == 0).sum() > count // 100
    assert ((want & 0x7F800000) == 0).sum() > count // 50
    assert_bits(got, want, a, b)


# Dot product ----------------------------------------------------------------------------------

def corner_vectors(rng, lanes):
    """Structured vectors for a `lanes`-wide dot, as (a, b) arrays of shape (vectors, lanes)."""
    rows = []
    def row(a, b):
        rows.append((np.resize(np.array(a, np.uint32), lanes),
                     np.resize(np.array(b, np.uint32), lanes)))
    row([0x80000000], [ONE])                      # all products -0: the sum is -0
    row([0x80000000, 0x00000000], [ONE])          # -0 + +0 = +0
    row([0x7F800000], [ONE])                      # +inf everywhere
    row([0x7F800000, 0xFF800000], [ONE])          # inf - inf somewhere: NaN (if lanes > 1)
    row([0x7F800000], [0x00000000])               # inf * 0: NaN
    row([0x7FA00001, ONE], [ONE])                 # NaN payload in: canonical NaN out
    row([0x7F7FFFFF], [0x40000000])               # every product overflows
    row([0x7F000000], [0x3FC00000])               # large products whose sum overflows
    row([0x00000001], [0x3F000000])               # products tie to zero
    row([0x00000003], [0x3F000000])               # products tie to 2 ulp, sums subnormal
    row([0x007FFFFF, 0x00000001], [ONE])          # subnormal sums that reach the normals
    row([0x3F800001, 0xBF800000], [ONE])          # pairwise cancellation to 2^-23
    row([0x4B800000, ONE], [ONE])                 # 2^24 + 1 ties
    row([0x3EAAAAAB, 0xBEAAAAAB], [0x40400000])   # x*y + (-x)*y = +0
    x = rng.integers(0, 1 << 32, lanes, dtype=np.uint64).astype(np.uint32)
    row(x, np.full(lanes, ONE))                    # the tree sum of random bit patterns
    row(np.repeat(np.array([ONE], np.uint32), lanes), x)
    for _ in range(8):
        row(rng.choice(np.array(CORNERS, np.uint32), lanes),
            rng.choice(np.array(CORNERS, np.uint32), lanes))
    a, b = zip(*rows)
    return np.array(a), np.array(b)


# (lanes, vectors in the no-gap run, vectors in the backpressure run); 256 lanes keeps its size
# but runs few vectors, because simulating 256 multipliers and 255 adders is slow.
DOT_CONFIGS = [(1, 300, 2500), (3, 200, 1500), (16, 100, 700), (64, 60, 350), (256, 16, 70)]


def dot_random_pairs():
    return sum(lanes * (fast + slow) for lanes, fast, slow in DOT_CONFIGS)


@pytest.mark.parametrize("lanes, fast, slow", DOT_CONFIGS, ids=[f"{c[0]}" for c in DOT_CONFIGS])
def test_dot(lanes, fast, slow, rng, seed):
    dut = Fp32Dot(lanes)
    # No gaps: corner vectors, then random ones; full throughput at the documented latency.
    corner_a, corner_b = corner_vectors(rng, lanes)
    a = np.concatenate([corner_a, random_operands(rng, (fast, lanes))])
    b = np.concatenate([corner_b, random_operands(rng, (fast, lanes))])
    got, run = run_dot(dut, a, b, seed=seed)
    assert_full_rate(run, dut.latency)
    assert_bits(got, fp32_dot_bits(a, b), a, b)
    # Random valid gaps and ready backpressure.
    a, b = random_operands(rng, (slow, lanes)), random_operands(rng, (slow, lanes))
    got, run = run_dot(dut, a, b, seed=seed + 1, idle=0.2, stall=0.3)
    assert min(run.latencies) >= dut.latency
    assert_bits(got, fp32_dot_bits(a, b), a, b)


@pytest.mark.parametrize("mul_stages, add_stages", [(1, 1), (2, 2), (3, 1), (1, 3)])
def test_dot_stage_options(mul_stages, add_stages, rng, seed):
    dut = Fp32Dot(5, mul_stages=mul_stages, add_stages=add_stages)
    assert dut.latency == mul_stages + 3 * add_stages
    a, b = random_operands(rng, (300, 5)), random_operands(rng, (300, 5))
    got, run = run_dot(dut, a, b, seed=seed)
    assert_full_rate(run, dut.latency)
    assert_bits(got, fp32_dot_bits(a, b), a, b)
    got, _ = run_dot(dut, a, b, seed=seed, idle=0.2, stall=0.3)
    assert_bits(got, fp32_dot_bits(a, b), a, b)


@pytest.mark.slow
@pytest.mark.parametrize("lanes, vectors", [(1, 20_000), (7, 5_000), (64, 2_000), (256, 400)])
def test_dot_long(lanes, vectors, rng, seed):
    a, b = random_operands(rng, (vectors, lanes)), random_operands(rng, (vectors, lanes))
    got, _ = run_dot(Fp32Dot(lanes), a, b, seed=seed, idle=0.1, stall=0.2)
    assert_bits(got, fp32_dot_bits(a, b), a, b)


@pytest.mark.slow
@pytest.mark.parametrize("unit", [Fp32Mul, Fp32Add], ids=["mul", "add"])
def test_op_long(unit, rng, seed):
    a, b = random_pairs(rng, 300_000)
    got, _ = run_pairs(unit(), a, b, seed=seed, idle=0.1, stall=0.2)
    want = product_ref(a, b) if unit is Fp32Mul else sum_ref(a, b)
    assert_bits(got, want, a, b)
