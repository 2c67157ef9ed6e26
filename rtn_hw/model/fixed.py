"""Fixed-point folding of the reparameterized dot product, and the activation encoder.

Fixed-point format `Q(int_bits, frac_bits)`: signed two's complement, `int_bits` includes the
sign bit, width = int_bits + frac_bits; an integer k stands for k · 2^-frac_bits.

Per output channel (docs/rtn.md §3):

    ŵ·â = K1·D + K2·S_a + K0,   K1 = α_w α_a,  K2 = β_w α_a,  K0 = α_w β_a S_w + n β_w β_a

K1, K2, K0 are each computed exactly from the float64 parameters (rational arithmetic) and
rounded once to the nearest multiple of 2^-F (F = the K format's frac_bits, ties away from
zero). The hardware then computes, exactly in integers,

    acc = K1·D + K2·S_a + K0                         (scale 2^-F)
    y   = (acc + 2^(s-1)) >> s,  s = F - F_out       (arithmetic shift; y at scale 2^-F_out)

i.e. **round half up** (towards +∞) to F_out fraction bits; s = 0 leaves acc unchanged. The
output format must hold every y reachable for |D|, |S_a| ≤ n, so nothing ever saturates.
"""

import dataclasses
import math
import numbers
import re
from fractions import Fraction

import numpy as np

from . import _check


@dataclasses.dataclass(frozen=True)
class Q:
    """Signed fixed-point format: `int_bits` (sign included) + `frac_bits`."""
    int_bits: int
    frac_bits: int

    def __post_init__(self):
        for name in ("int_bits", "frac_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise TypeError(f"Fixed-point {name} must be a non-negative integer, not {value!r}")
        if self.int_bits + self.frac_bits < 1 or self.int_bits + self.frac_bits > 62:
            raise ValueError(f"Fixed-point width must be 1..62 bits, not "
                             f"{self.int_bits + self.frac_bits} (Q{self.int_bits}.{self.frac_bits})")

    def __str__(self):
        return f"Q{self.int_bits}.{self.frac_bits}"

    @classmethod
    def parse(cls, text):
        """"Q8.8" (or "q8.8") → Q(8, 8), the inverse of `str`; ValueError otherwise."""
        match = re.fullmatch(r"[Qq](\d+)\.(\d+)", text.strip()) if isinstance(text, str) \
            else None
        if match is None:
            raise ValueError(f"expected a fixed-point format Q<int_bits>.<frac_bits>, e.g. "
                             f"Q8.8, not {text!r}")
        return cls(int(match[1]), int(match[2]))

    @property
    def width(self):
        return self.int_bits + self.frac_bits

    @property
    def min_int(self):
        return -(1 << (self.width - 1))

    @property
    def max_int(self):
        return (1 << (self.width - 1)) - 1

    @property
    def lsb(self):
        return 2.0 ** -self.frac_bits

    def fits(self, ints):
        ints = np.asarray(ints)
        return bool(((ints >= self.min_int) & (ints <= self.max_int)).all())

    def quantize(self, x, name="value"):
        """Round real `x` to the nearest representable integer code (ties away from zero).

        `x` holds floats (taken at their exact binary value) or `Fraction`s (an exact
        product, say); the rounding is done in rational arithmetic, so a value within 2^-54
        of a tie still goes to the nearest code (float64 `floor(|x|·2^F + 0.5)` does not)."""
        exact = _exact(x, name)
        scale = 1 << self.frac_bits
        half = Fraction(1, 2)
        codes = []
        for value in exact.flat:
            magnitude = math.floor(abs(value) * scale + half)
            codes.append(-magnitude if value < 0 else magnitude)
        for index, code in enumerate(codes):
            if not self.min_int <= code <= self.max_int:
                bad = exact.flat[index]
                shown = repr(float(bad)) if isinstance(bad, Fraction) else repr(bad)
                raise ValueError(f"{name} = {shown} does not fit {self} (range "
                                 f"{self.min_int * self.lsb} .. {self.max_int * self.lsb})")
        return np.array(codes, dtype=np.int64).reshape(exact.shape)

    def to_real(self, ints):
        return np.asarray(ints, dtype=np.float64) * self.lsb


def _exact(x, name):
    """`x` as an object array of exact values: Fractions and ints kept, floats converted
    exactly; NaN and infinities rejected (as `_check.finite` does)."""
    array = np.asarray(x, dtype=object if _has_fraction(x) else None)
    if array.dtype != object:
        array = _check.finite(array, name).astype(object)
    flat = [Fraction(v) if isinstance(v, Fraction) else _finite_fraction(v, name)
            for v in array.flat]
    out = np.empty(array.shape, dtype=object)
    out.flat[:] = flat if flat else []
    return out


def _has_fraction(x):
    return isinstance(x, Fraction) or (
        isinstance(x, (list, tuple, np.ndarray)) and any(
            isinstance(v, Fraction) for v in np.asarray(x, dtype=object).flat))


def _finite_fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return Fraction(value)


@dataclasses.dataclass(frozen=True)
class RtnConstants:
    """Folded per-channel constants (integer codes in format `fmt`) for vectors of n lanes."""
    k1: np.ndarray
    k2: np.ndarray
    k0: np.ndarray
    fmt: Q
    n: int

    def max_abs_acc(self):
        """Largest |K1·D + K2·S_a + K0| over |D|, |S_a| ≤ n, per channel (integer codes), in
        Python integers (an object array): exact where int64 would wrap round."""
        return np.array([abs(int(a)) * self.n + abs(int(b)) * self.n + abs(int(c))
                         for a, b, c in zip(self.k1.flat, self.k2.flat, self.k0.flat)],
                        dtype=object).reshape(np.shape(self.k1))


def fold_constants(alpha_w, beta_w, alpha_a, beta_a, s_w, n, fmt):
    """Fold per-channel weight (α_w, β_w, S_w, shape (P,)) and per-tensor activation
    (α_a, β_a) parameters into K1, K2, K0 codes in format `fmt`."""
    n = _check.positive_int(n, "Lane count")
    s_w = np.atleast_1d(np.asarray(s_w))
    if not np.issubdtype(s_w.dtype, np.integer) or s_w.ndim != 1 or (np.abs(s_w) > n).any():
        raise ValueError(f"S_w must be a vector of integers in [-{n}, {n}], not {s_w!r}")
    rows = s_w.shape[0]
    alpha_w = _check.positive_finite(_check.per_row(alpha_w, rows, "alpha_w"), "alpha_w")
    beta_w = _check.finite(_check.per_row(beta_w, rows, "beta_w"), "beta_w")
    alpha_a = Fraction(float(_check.positive_finite(alpha_a, "alpha_a")))
    beta_a = Fraction(float(_check.finite(beta_a, "beta_a")))
    # Exact products and sums of the float64 parameters, so each K is rounded only once.
    a_w = [Fraction(float(v)) for v in alpha_w]
    b_w = [Fraction(float(v)) for v in beta_w]
    return RtnConstants(
        k1=fmt.quantize(_objects([a * alpha_a for a in a_w]), "K1"),
        k2=fmt.quantize(_objects([b * alpha_a for b in b_w]), "K2"),
        k0=fmt.quantize(_objects([a * beta_a * int(s) + n * b * beta_a
                                  for a, b, s in zip(a_w, b_w, s_w)]), "K0"),
        fmt=fmt, n=n)


def _objects(values):
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def accumulator_width(consts):
    """Signed width that holds acc = K1·D + K2·S_a + K0 for every |D|, |S_a| ≤ n."""
    return int(consts.max_abs_acc().max()).bit_length() + 1


def check_output_format(consts, out_fmt):
    """Raise unless `out_fmt` holds every rounded result for |D|, |S_a| ≤ n."""
    shift = consts.fmt.frac_bits - out_fmt.frac_bits
    if shift < 0:
        raise ValueError(f"Output format {out_fmt} has more fraction bits than the constants' "
                         f"format {consts.fmt}")
    largest = int(consts.max_abs_acc().max(initial=0))
    if largest + (1 << shift >> 1) >= 1 << 63:
        # postprocess (and the gateware's tests) accumulate in int64.
        raise ValueError(f"|K1·D + K2·S_a + K0| can reach {largest} codes of {consts.fmt} "
                         f"for n = {consts.n}, beyond a 64-bit accumulator")
    worst = (largest + (1 << shift >> 1)) >> shift
    if worst > out_fmt.max_int:
        need = (worst.bit_length() + 1) - out_fmt.frac_bits
        raise ValueError(f"Output format {out_fmt} is too narrow for n = {consts.n}: |y| can "
                         f"reach {worst * out_fmt.lsb}, which needs int_bits >= {need}")
    return shift


def postprocess(d, s_a, consts, out_fmt):
    """y = round_half_up((K1·D + K2·S_a + K0) · 2^-s), integer codes in `out_fmt`.

    `d` is (..., P) (one D per channel), `s_a` is (...) (one per input vector)."""
    shift = check_output_format(consts, out_fmt)
    d = np.asarray(d, dtype=np.int64)
    s_a = np.asarray(s_a, dtype=np.int64)
    if (np.abs(d) > consts.n).any() or (np.abs(s_a) > consts.n).any():
        raise ValueError(f"D and S_a must lie in [-{consts.n}, {consts.n}]")
    acc = consts.k1 * d + consts.k2 * s_a[..., None] + consts.k0
    if shift:
        acc = (acc + (1 << (shift - 1))) >> shift
    return acc


def error_bound(n, k_fmt, out_fmt):
    """Worst-case |y·2^-F_out - ŵ·â| of `postprocess` against the exact real dot product.

    Each K carries at most half an LSB of rounding error, multiplied by |D| ≤ n, |S_a| ≤ n
    and 1; the final shift adds at most half an output LSB (none when s = 0):

        bound = (2n + 1) · 2^-(F+1) + [s > 0] · 2^-(F_out+1)
    """
    n = _check.positive_int(n, "Lane count")
    final = out_fmt.lsb / 2 if k_fmt.frac_bits > out_fmt.frac_bits else 0.0
    return (2 * n + 1) * k_fmt.lsb / 2 + final


def fold_thresholds(gamma, beta, mean, sigma, delta, in_fmt):
    """Fold BatchNorm (γ, β, μ, σ per channel) and Δ into integer thresholds (lo, hi).

    The activation is T(γ(y - μ)/σ + β) for a pre-activation y. With γ > 0 that is +1 when
    y > μ + σ(Δ - β)/γ and -1 when y < μ + σ(-Δ - β)/γ. For integer codes y (format
    `in_fmt`), hi = floor(that · 2^F) and lo = ceil(that · 2^F) keep both comparisons exact.
    Thresholds are clamped to [min-1, max+1] of `in_fmt`, so they need width + 1 bits.
    A negative γ must be folded into the preceding layer first (negate its K constants).
    """
    gamma = _check.positive_finite(gamma, "gamma")
    beta, mean = _check.finite(beta, "beta"), _check.finite(mean, "mean")
    sigma = _check.positive_finite(sigma, "sigma")
    if np.ndim(delta) != 0 or not 0 <= float(delta) < 1:
        raise ValueError(f"Threshold delta must be a number in [0, 1), not {delta!r}")
    scale = 2.0 ** in_fmt.frac_bits
    hi = np.floor((mean + sigma * (delta - beta) / gamma) * scale)
    lo = np.ceil((mean + sigma * (-delta - beta) / gamma) * scale)
    clamp = (in_fmt.min_int - 1, in_fmt.max_int + 1)
    return (np.clip(lo, *clamp).astype(np.int64), np.clip(hi, *clamp).astype(np.int64))


def encode(y, lo, hi):
    """Activation encoder: integer pre-activations y (..., C) → trits with nz = y > hi | y < lo
    and sg = y > hi (docs/rtn.md §3). Returns int8 trits (..., C)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"Pre-activations must be integer fixed-point codes, not dtype {y.dtype}")
    return (np.where(y > hi, 1, 0) - np.where((y < lo) & ~(y > hi), 1, 0)).astype(np.int8)


def bits_for(value):
    """Unsigned bits needed for `value` ≥ 0 (at least 1)."""
    return max(1, int(value).bit_length())


def dot_width(n):
    """Signed width that holds any integer in [-n, n] (D and S_a)."""
    return bits_for(n) + 1




def decode(t, alpha, beta, fmt):
    """TernaryDecoder reference: trits (..., C) → codes of α·t + β in `fmt`, per lane.

    `alpha`/`beta` are scalars or per-lane vectors (C,). Each of the three possible values
    β - α, β, β + α is rounded once to the nearest code (ties away from zero), so the result
    is the correctly rounded α·t + β."""
    t = _check.trits(t, "t")
    lanes = t.shape[-1]
    alpha = _check.positive_finite(_check.per_row(alpha, lanes, "alpha"), "alpha")
    beta = _check.finite(_check.per_row(beta, lanes, "beta"), "beta")
    exact_alpha = [Fraction(float(v)) for v in alpha]
    exact_beta = [Fraction(float(v)) for v in beta]
    table = np.stack([
        fmt.quantize(_objects([b - a for a, b in zip(exact_alpha, exact_beta)]), "beta - alpha"),
        fmt.quantize(_objects(exact_beta), "beta"),
        fmt.quantize(_objects([b + a for a, b in zip(exact_alpha, exact_beta)]), "beta + alpha")])
    return table[t + 1, np.arange(lanes)]


# Fixed point [choice], shared by training export and QONNX import: the K constants of a layer
# share one format of K_WIDTH = 18 bits (an 18x18 DSP operand) with the fewest integer bits that
# hold every K1, K2, K0, so the fraction F and the error bound (2n + 1)·2^-(F+1) are as good as
# 18 bits allow. The output format is at most OUT_WIDTH = 24 bits: the fewest integer bits that
# hold every reachable y, and F_out = min(F, 24 - int_bits).
K_WIDTH = 18
OUT_WIDTH = 24


def choose_formats(alpha_w, beta_w, alpha_a, beta_a, s_w, n, k_width=K_WIDTH,
                   out_width=OUT_WIDTH):
    """(k_fmt, out_fmt) for one layer, chosen by the rule above."""
    for int_bits in range(1, k_width + 1):
        k_fmt = Q(int_bits, k_width - int_bits)
        try:
            consts = fold_constants(alpha_w, beta_w, alpha_a, beta_a, s_w, n, k_fmt)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"K constants do not fit {k_width} bits")
    for int_bits in range(1, out_width + 1):
        out_fmt = Q(int_bits, min(k_fmt.frac_bits, out_width - int_bits))
        try:
            check_output_format(consts, out_fmt)
            return k_fmt, out_fmt
        except ValueError:
            continue
    raise ValueError(f"Outputs do not fit {out_width} bits")
