"""The fixed-point rules (rtn_hw.model.fixed) against exact rational arithmetic: Q.quantize
is round-to-nearest (ties away from zero) of the float's exact value, fold_constants rounds
the exact products once, and postprocess stays within error_bound of the exact real dot
product. Seeds and budgets: tests/fuzzing.py."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import event, given, strategies as st

from fuzzing import examples, fuzz_seed, seeded  # noqa: F401 (fuzz_seed: autouse fixture)
from rtn_hw.model import fixed
from rtn_hw.model.fixed import Q

formats = st.builds(Q, st.integers(1, 31), st.integers(0, 31))
reals = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True)


def nearest(value, frac_bits):
    """The nearest integer to value·2^F, ties away from zero, in rationals (written apart
    from the implementation: compare distances)."""
    scaled = Fraction(value) * (1 << frac_bits)
    low = math.floor(scaled)
    below, above = scaled - low, low + 1 - scaled
    if below < above:
        return low
    if above < below:
        return low + 1
    return low + 1 if scaled > 0 else low


@seeded
@examples(500)
@given(formats, st.one_of(reals, st.integers(-2**40, 2**40).map(lambda k: k / 1024.0),
                          st.integers(-2**20, 2**20).map(lambda k: (k + 0.5) / 2**10)))
def test_quantize_is_exact_round_to_nearest(fmt, x):
    want = nearest(x, fmt.frac_bits)
    if fmt.min_int <= want <= fmt.max_int:
        assert int(fmt.quantize(x)) == want
    else:
        with pytest.raises(ValueError, match=r"^value = .* does not fit Q"):
            fmt.quantize(x)


@pytest.mark.parametrize("x, fmt, code", [
    (float.fromhex("0x1.fffffffffffffp-12"), Q(8, 10), 0),    # the issue's K1 case
    (float.fromhex("0x1.0000000000001p-11"), Q(8, 10), 1),    # just above the tie
    (2.0 ** -11, Q(8, 10), 1),                                # the tie, away from zero
    (-(2.0 ** -11), Q(8, 10), -1),
    (float.fromhex("0x1.fffffffffffffp-2"), Q(4, 0), 0),      # 0.49999999999999994
    (5e-324, Q(2, 30), 0),                                    # the smallest subnormal
])
def test_quantize_corner_cases(x, fmt, code):
    assert int(fmt.quantize(x)) == code


def test_issue_k1_case():
    """α_w = 0x1.fffffffffffffp-12, β_w = 0, α_a = 1 in Q8.10: K1 is 0, the nearest code."""
    consts = fixed.fold_constants([float.fromhex("0x1.fffffffffffffp-12")], [0.0], 1.0, 0.0,
                                  [0], 4, Q(8, 10))
    assert (int(consts.k1[0]), int(consts.k2[0]), int(consts.k0[0])) == (0, 0, 0)


positive = st.one_of(st.floats(min_value=2**-20, max_value=8.0),
                     st.floats(min_value=2**-20, max_value=2.0**40))
signed_small = st.one_of(st.floats(min_value=-4.0, max_value=4.0),
                         st.floats(min_value=-2.0**40, max_value=2.0**40))


@seeded
@examples(100)
@given(st.integers(1, 64), st.lists(st.tuples(positive, signed_small), min_size=1,
                                     max_size=4),
       positive, signed_small, st.integers(0, 22), st.data())
def test_postprocess_within_error_bound_of_exact(n, channels, alpha_a, beta_a, k_frac, data):
    """K codes are the exact products rounded once; y stays within error_bound of the exact
    ŵ·â = α_w α_a D + β_w α_a S_a + α_w β_a S_w + n β_w β_a, for every reachable D and S_a
    drawn. Formats too narrow for the parameters are refused with one line."""
    out_frac = data.draw(st.integers(0, k_frac))
    alpha_w = [a for a, _ in channels]
    beta_w = [b for _, b in channels]
    # Mostly formats just wide enough for the largest K (so most draws reach the check),
    # sometimes any width (so the refusals are exercised too).
    largest = max(max(abs(a * alpha_a), abs(b * alpha_a), abs(a * beta_a * n) + abs(n * b * beta_a))
                  for a, b in channels)
    needed = max(2, math.ceil(math.log2(largest + 1)) + 2)
    k_int = min(62 - k_frac, needed + data.draw(st.integers(0, 3))) \
        if data.draw(st.integers(0, 3)) else data.draw(st.integers(2, 62 - k_frac))
    k_fmt, out_fmt = Q(k_int, k_frac), Q(62 - out_frac, out_frac)
    s_w = [data.draw(st.integers(-n, n)) for _ in channels]
    try:
        consts = fixed.fold_constants(alpha_w, beta_w, alpha_a, beta_a, s_w, n, k_fmt)
        fixed.check_output_format(consts, out_fmt)
    except ValueError as error:
        assert "\n" not in str(error)
        event("format refused")
        return
    event("checked against exact")
    a_a, b_a = Fraction(alpha_a), Fraction(beta_a)
    for p, (a, b) in enumerate(channels):
        a, b = Fraction(a), Fraction(b)
        assert int(consts.k1[p]) == nearest(a * a_a, k_frac)
        assert int(consts.k2[p]) == nearest(b * a_a, k_frac)
        assert int(consts.k0[p]) == nearest(a * b_a * s_w[p] + n * b * b_a, k_frac)
    d = np.array([data.draw(st.integers(-n, n)) for _ in channels])
    s_a = data.draw(st.integers(-n, n))
    y = fixed.postprocess(d[None], np.array([s_a]), consts, out_fmt)[0]
    bound = Fraction(fixed.error_bound(n, k_fmt, out_fmt))
    for p, (a, b) in enumerate(channels):
        a, b = Fraction(a), Fraction(b)
        exact = a * a_a * int(d[p]) + b * a_a * s_a + a * b_a * s_w[p] + n * b * b_a
        assert abs(Fraction(int(y[p]), 1 << out_frac) - exact) <= bound


def test_accumulator_beyond_int64_is_refused():
    """K1 = 2^58 codes of Q40.20 at n = 64 reaches 2^64: refused, not wrapped round to 0."""
    consts = fixed.fold_constants([2.0**38], [0.0], 1.0, 0.0, [0], 64, Q(40, 20))
    assert int(consts.max_abs_acc()[0]) == 2**64
    with pytest.raises(ValueError, match=r"^\|K1·D \+ K2·S_a \+ K0\| can reach "
                                         r"18446744073709551616 codes of Q40\.20 for n = 64, "
                                         r"beyond a 64-bit accumulator$"):
        fixed.check_output_format(consts, Q(42, 20))
