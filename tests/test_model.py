"""The golden model against the worked example of docs/rtn.md §4 and against direct float
arithmetic."""

import numpy as np
import pytest

from rtn_hw import model

from helpers import assert_rejects, random_trits

T_W = [1, 0, -1, 1, 0, -1, 1, 0]
T_A = [1, 0, -1, 1, -1, 1, 0, 1]


def dont_care(rng, t):
    """Random sign bits for the zeros, to show nothing depends on them."""
    return rng.random(np.shape(t)) < 0.5


# --- docs/rtn.md §4 worked example --------------------------------------------------------

def test_worked_example_planes():
    w1, w2 = model.pack(T_W)
    a1, a2 = model.pack(T_A)
    # Written element 0 first in docs/rtn.md §4; element i is bit i here.
    assert [int(w1[0]) >> i & 1 for i in range(8)] == [1, 0, 1, 1, 0, 1, 1, 0]
    assert [int(w2[0]) >> i & 1 for i in range(8)] == [1, 0, 0, 1, 0, 0, 1, 0]
    assert [int(a1[0]) >> i & 1 for i in range(8)] == [1, 0, 1, 1, 1, 1, 0, 1]
    assert [int(a2[0]) >> i & 1 for i in range(8)] == [1, 0, 0, 1, 0, 1, 0, 1]


def test_worked_example_values():
    w, a = model.pack(T_W), model.pack(T_A)
    assert model.ternary_dot(w, a) == 2
    assert model.activation_sum(a) == 2
    assert sum(T_W) == 1
    direct = float(model.reparameterize(T_W, 0.8, 0.1) @ model.reparameterize(T_A, 1.5, 1.5))
    pattern = model.rtn_dot_terms(2, 2, 1, 8, 0.8, 0.1, 1.5, 1.5)
    assert direct == pytest.approx(5.1, abs=1e-12)
    assert pattern == pytest.approx(5.1, abs=1e-12)
    assert model.linear([T_A], [T_W], 0.8, 0.1, 1.5, 1.5)[0, 0] == pytest.approx(5.1, abs=1e-12)


def test_worked_example_within_error_bound():
    k_fmt, out_fmt = model.Q(6, 12), model.Q(8, 8)
    consts = model.fold_constants(0.8, 0.1, 1.5, 1.5, [1], 8, k_fmt)
    y = model.postprocess([[2]], [2], consts, out_fmt)
    assert abs(out_fmt.to_real(y)[0, 0] - 5.1) <= model.error_bound(8, k_fmt, out_fmt)


# --- T, reparameterization, planes -----------------------------------------------------------

def test_ternarize_thresholds():
    x = np.array([-3.0, -0.75, -0.5, -0.25, 0.0, 0.5, 0.5001, 2.0])
    assert model.ternarize(x).tolist() == [-1, -1, 0, 0, 0, 0, 1, 1]
    assert model.ternarize(x, delta=0.0).tolist() == [-1, -1, -1, -1, 0, 1, 1, 1]


def test_reparameterize_per_channel():
    t = np.array([[1, 0, -1], [-1, 1, 0]])
    got = model.reparameterize(t, [2.0, 0.5], [0.25, -1.0])
    assert got.tolist() == [[2.25, 0.25, -1.75], [-1.5, -0.5, -1.0]]


@pytest.mark.parametrize("n", [1, 3, 63, 64, 65, 200])
def test_pack_unpack_roundtrip_with_dont_care(rng, n):
    t = random_trits(rng, (5, n), sparsity=0.5)
    nz, sg = model.pack(t, zero_sign=dont_care(rng, t))
    assert nz.shape == (5, model.words_for(n))
    assert (model.unpack(nz, sg, n) == t).all()
    assert model.planes_to_int(model.int_to_plane(model.planes_to_int(nz[0]), n)) \
        == model.planes_to_int(nz[0])


def test_eq8_matches_direct_sum_random_lengths(rng):
    lengths = rng.integers(1, 4097, size=60)
    for n in lengths:
        t_w = random_trits(rng, (4, n), sparsity=rng.random())
        t_a = random_trits(rng, (4, n), sparsity=rng.random())
        w = model.pack(t_w, zero_sign=dont_care(rng, t_w))
        a = model.pack(t_a, zero_sign=dont_care(rng, t_a))
        direct = (t_w.astype(np.int64) * t_a).sum(axis=1)
        assert (model.ternary_dot(w, a) == direct).all(), n
        assert (model.activation_sum(a) == t_a.sum(axis=1)).all(), n


def test_matmul_matches_integer_matmul(rng):
    t_w = random_trits(rng, (37, 300), sparsity=0.5)
    t_a = random_trits(rng, (11, 300), sparsity=0.5)
    d, s_a = model.ternary_matmul(model.pack(t_w, dont_care(rng, t_w)),
                                  model.pack(t_a, dont_care(rng, t_a)))
    assert (d == t_a.astype(np.int64) @ t_w.T).all()
    assert (s_a == t_a.sum(axis=1)).all()


# --- Four-term decomposition and fixed point ------------------------------------------------

def random_params(rng, p):
    return (rng.uniform(0.05, 2.0, p), rng.normal(0, 0.5, p),
            float(rng.uniform(0.05, 2.0)), float(rng.normal(0, 0.5)))


def test_decomposition_equals_direct_float(rng):
    for n in (1, 7, 64, 1000):
        t_w = random_trits(rng, (9, n), sparsity=0.5)
        t_a = random_trits(rng, (13, n), sparsity=0.5)
        alpha_w, beta_w, alpha_a, beta_a = random_params(rng, 9)
        direct = (model.reparameterize(t_a, alpha_a, beta_a)
                  @ model.reparameterize(t_w, alpha_w, beta_w).T)
        got = model.linear(t_a, t_w, alpha_w, beta_w, alpha_a, beta_a)
        np.testing.assert_allclose(got, direct, rtol=1e-12, atol=1e-9 * n)


@pytest.mark.parametrize("k_fmt, out_fmt", [(model.Q(8, 10), model.Q(14, 6)),
                                             (model.Q(6, 16), model.Q(16, 16)),
                                             (model.Q(12, 4), model.Q(16, 2))])
def test_fixed_point_within_bound(rng, k_fmt, out_fmt):
    for n in (1, 5, 64, 256):
        t_w = random_trits(rng, (16, n), sparsity=0.5)
        t_a = random_trits(rng, (200, n), sparsity=0.5)
        params = random_params(rng, 16)
        exact = model.linear(t_a, t_w, *params)
        codes = model.linear_fixed(t_a, t_w, *params, k_fmt, out_fmt)
        assert codes.dtype == np.int64 and out_fmt.fits(codes)
        error = np.abs(out_fmt.to_real(codes) - exact).max()
        assert error <= model.error_bound(n, k_fmt, out_fmt) + 1e-9, (n, error)


def test_postprocess_rounds_half_up():
    # K1 = 1 LSB, no K2/K0, a 2-bit shift: acc = D; y = floor(D / 4 + 1/2).
    consts = model.RtnConstants(np.array([1]), np.array([0]), np.array([0]), model.Q(4, 2), 8)
    d = np.arange(-8, 9)[:, None]
    y = model.postprocess(d, np.zeros(17, dtype=np.int64), consts, model.Q(4, 0))
    assert y[:, 0].tolist() == [int(np.floor(v / 4 + 0.5)) for v in range(-8, 9)]
    assert y[:, 0].tolist()[:5] == [-2, -2, -1, -1, -1]  # -6/4 = -1.5 rounds up to -1


def test_accumulator_width_holds_extremes(rng):
    consts = model.fold_constants(rng.uniform(0.1, 3, 8), rng.normal(0, 1, 8), 1.7, -0.9,
                                  rng.integers(-50, 51, 8), 50, model.Q(8, 12))
    width = model.accumulator_width(consts)
    worst = consts.max_abs_acc().max()
    assert worst <= (1 << (width - 1)) - 1 < 2 * worst + 2


# --- Activation encoder ---------------------------------------------------------------------

def test_thresholds_reproduce_float_encoder(rng):
    fmt, channels = model.Q(8, 8), 32
    gamma, beta = rng.uniform(0.2, 2, channels), rng.normal(0, 0.5, channels)
    mean, sigma = rng.normal(0, 4, channels), rng.uniform(0.5, 3, channels)
    lo, hi = model.fold_thresholds(gamma, beta, mean, sigma, 0.5, fmt)
    y = rng.integers(fmt.min_int, fmt.max_int + 1, size=(4000, channels))
    expected = model.ternarize(gamma * (fmt.to_real(y) - mean) / sigma + beta, 0.5)
    assert (model.encode(y, lo, hi) == expected).all()
    assert (lo <= hi + 1).all()


def test_encode_at_threshold_edges():
    y = np.array([-5, -4, -3, 0, 3, 4, 5])
    assert model.encode(y, -4, 4).tolist() == [-1, 0, 0, 0, 0, 0, 1]


def test_decode_fixed():
    codes = model.decode([[1, 0, -1]], [0.5, 1.0, 2.0], 0.25, model.Q(4, 4))
    assert codes.tolist() == [[12, 4, -28]]


# --- Layers ---------------------------------------------------------------------------------

def direct_conv2d(x, w, stride, padding):
    b, c, h, wd = x.shape
    p, _, kh, kw = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((b, p, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("bcuv,pcuv->bp", patch, w)
    return out


def test_worked_example_fixed_point():
    # By hand (docs/rtn.md §4), K in Q8.10, y in Q14.6: K1 = 1.2·1024 → 1229, K2 = 0.15·1024 →
    # 154, K0 = 2.4·1024 → 2458; acc = 2·1229 + 2·154 + 2458 = 5224; y = (5224 + 8) >> 4 = 327.
    consts = model.fold_constants(0.8, 0.1, 1.5, 1.5, [sum(T_W)], 8, model.Q(8, 10))
    assert (consts.k1.tolist(), consts.k2.tolist(), consts.k0.tolist()) == ([1229], [154], [2458])
    y = model.linear_fixed([T_A], [T_W], 0.8, 0.1, 1.5, 1.5, model.Q(8, 10), model.Q(14, 6))
    assert y.tolist() == [[327]]
    assert abs(327 / 64 - 5.1) <= model.error_bound(8, model.Q(8, 10), model.Q(14, 6))
    # BatchNorm γ = 1, β = 0, μ = 0, σ = 1 and Δ = 0.5 in Q14.6: thresholds ±0.5 · 64.
    lo, hi = model.fold_thresholds(1.0, 0.0, 0.0, 1.0, 0.5, model.Q(14, 6))
    assert (int(lo), int(hi)) == (-32, 32)
    assert model.encode(y, lo, hi).tolist() == [[1]]


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1), (2, 2)])
def test_conv2d_equals_direct_float_convolution(rng, stride, padding):
    t_a = random_trits(rng, (2, 3, 9, 8), sparsity=0.5)
    t_w = random_trits(rng, (5, 3, 3, 3), sparsity=0.5)
    alpha_w, beta_w, alpha_a, beta_a = random_params(rng, 5)
    got = model.conv2d(t_a, t_w, alpha_w, beta_w, alpha_a, beta_a, stride, padding)
    # Padding is trit 0, which decodes to β_a (docs/rtn.md §3, a choice).
    x = np.pad(model.reparameterize(t_a, alpha_a, beta_a),
               ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=beta_a)
    w = (alpha_w[:, None, None, None] * t_w + beta_w[:, None, None, None])
    np.testing.assert_allclose(got, direct_conv2d(x, w, stride, 0), rtol=1e-12, atol=1e-9)


# --- Baselines ------------------------------------------------------------------------------

def sequential_pairwise_float32(a, b):
    """The documented order, written as plain scalar float32 arithmetic."""
    values = [np.float32(x) * np.float32(y) for x, y in zip(a, b)]
    while len(values) > 1:
        values = ([values[k] + values[k + 1] for k in range(0, len(values) - 1, 2)]
                  + ([values[-1]] if len(values) % 2 else []))
    return values[0]


@pytest.mark.parametrize("n", [1, 2, 3, 16, 17, 64, 255])
def test_fp32_matches_scalar_float32_and_float64_bound(rng, n):
    a = rng.normal(0, 1, (50, n)).astype(np.float32)
    b = rng.normal(0, 1, (50, n)).astype(np.float32)
    got = model.fp32_dot(a, b)
    for k in range(50):
        assert got[k].view(np.uint32) == sequential_pairwise_float32(a[k], b[k]).view(np.uint32)
    exact = (a.astype(np.float64) * b.astype(np.float64)).sum(axis=1)
    assert (np.abs(got.astype(np.float64) - exact) <= model.fp32_error_bound(a, b)).all()


def test_fp32_special_values():
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    tiny = np.float32(1e-45)  # smallest subnormal
    cases = [([inf, 1], [1, -inf], model.CANONICAL_NAN),                 # inf - inf
             ([0, 1], [inf, 1], model.CANONICAL_NAN),                    # 0 · inf
             ([-0.0, -0.0], [1, 1], np.float32(-0.0).view(np.uint32)),    # -0 + -0
             ([1, -1], [2, 2], np.uint32(0)),                             # exact cancellation: +0
             ([3e38, 3e38], [2, 2], np.float32(np.inf).view(np.uint32)),  # overflow
             ([tiny, tiny], [1, 1], np.uint32(2)),                          # subnormals kept
             ([nan, 1], [1, 1], model.CANONICAL_NAN)]
    for a, b, bits in cases:
        got = model.fp32_dot(np.float32(a), np.float32(b)).view(np.uint32)
        assert got == bits, (a, b, hex(got))


@pytest.mark.parametrize("width", [8, 16])
def test_int_dot_exact_at_extremes(rng, width):
    lo = -(1 << (width - 1))
    n = 300
    a = np.full(n, lo)
    assert model.int_dot(a, a, width) == n * lo * lo
    bits = model.int_dot_width(n, width)
    assert n * lo * lo <= (1 << (bits - 1)) - 1 and n * lo * lo > (1 << (bits - 2)) - 1
    a, b = (rng.integers(lo, -lo, (20, n)) for _ in range(2))
    assert (model.int_dot(a, b, width) == [sum(int(x) * int(y) for x, y in zip(*r))
                                           for r in zip(a, b)]).all()


# --- Bad input: one exact message each -------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda: model.pack([1, 2, 0]), ValueError,
     "t must contain only trits (-1, 0, +1), not 2 at index 1"),
    (lambda: model.linear([[1, 0]], [[1, 0, 1]], 1, 0, 1, 0), ValueError,
     "t_w has 3 lanes but t_a has 2; they must match"),
    (lambda: model.reparameterize([1, 0], float("nan"), 0), ValueError,
     "alpha must be finite, not nan"),
    (lambda: model.reparameterize([1, 0], 1.0, float("inf")), ValueError,
     "beta must be finite, not inf"),
    (lambda: model.reparameterize([1, 0], 0.0, 0), ValueError,
     "alpha must be positive, not 0.0"),
    (lambda: model.fold_constants(-0.5, 0, 1, 0, [0], 4, model.Q(4, 4)), ValueError,
     "alpha_w must be positive, not -0.5"),
    (lambda: model.words_for(0), TypeError, "Lane count must be a positive integer, not 0"),
    (lambda: model.fold_constants(1, 0, 1, 0, [0], 0, model.Q(4, 4)), TypeError,
     "Lane count must be a positive integer, not 0"),
    (lambda: model.fold_constants(1, 0.5, 1, 1.0, [0], 100, model.Q(4, 4)), ValueError,
     "K0 = 50.0 does not fit Q4.4 (range -8.0 .. 7.9375)"),
    (lambda: model.check_output_format(
        model.fold_constants(1, 0, 1, 0, [0], 256, model.Q(4, 4)), model.Q(6, 2)), ValueError,
     "Output format Q6.2 is too narrow for n = 256: |y| can reach 256.0, which needs "
     "int_bits >= 10"),
    (lambda: model.Q(0, 0), ValueError, "Fixed-point width must be 1..62 bits, not 0 (Q0.0)"),
    (lambda: model.Q(-1, 4), TypeError, "Fixed-point int_bits must be a non-negative integer, "
     "not -1"),
    (lambda: model.ternarize([0.3], delta=1.5), ValueError,
     "Threshold delta must be a number in [0, 1), not 1.5"),
    (lambda: model.unpack(np.array([8], dtype=np.uint64), np.array([0], dtype=np.uint64), 3),
     ValueError, "nz has bits set above lane 2"),
    (lambda: model.fp32_dot(np.ones(3), np.ones(3, np.float32)), TypeError,
     "fp32_dot operand a must be float32, not float64"),
    (lambda: model.int_dot([200], [1], 8), ValueError,
     "int_dot operand a holds 200, outside int8 [-128, 127]"),
    (lambda: model.int_dot_width(4, 12), ValueError, "Integer width must be 8 or 16, not 12"),
    (lambda: model.fold_thresholds(-1.0, 0, 0, 1, 0.5, model.Q(8, 8)), ValueError,
     "gamma must be positive, not -1.0"),
])
def test_bad_input_messages(call, error, message):
    assert_rejects(error, message, call)
