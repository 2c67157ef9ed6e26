"""Bit-exact references of the full-precision baselines: binary32 and int8/int16 dot products.

binary32 dot product of N lanes (the Fp32Dot hardware copies this exactly):
  * products p_i = a_i · b_i, each rounded to binary32 (round to nearest, ties to even);
  * a balanced pairwise tree: each level adds element 2k to element 2k+1, rounding each sum
    to binary32 (RNE); an odd last element moves up a level unchanged; repeat until one is left;
  * subnormals are fully supported (inputs, products, sums; no flush to zero);
  * ±0, ±inf follow IEEE 754 (e.g. +0 + -0 = +0, inf - inf = NaN, overflow rounds to ±inf);
  * every NaN result is the canonical quiet NaN 0x7FC00000 (payloads are not propagated).
"""

import numpy as np

from . import _check

CANONICAL_NAN = np.uint32(0x7FC00000)


def _tree_sum(values):
    """Pairwise sum along the last axis in the documented order, rounding at every step."""
    while values.shape[-1] > 1:
        pairs = values.shape[-1] // 2
        summed = values[..., 0:2 * pairs:2] + values[..., 1:2 * pairs:2]
        if values.shape[-1] % 2:
            summed = np.concatenate([summed, values[..., -1:]], axis=-1)
        values = summed
    return values[..., 0]


def fp32_dot(a, b):
    """binary32 dot product over the last axis of float32 arrays `a`, `b` (..., N).

    Returns float32 (...) with NaNs canonical (see the module docstring)."""
    a, b = np.asarray(a), np.asarray(b)
    for arr, name in ((a, "a"), (b, "b")):
        if arr.dtype != np.float32:
            raise TypeError(f"fp32_dot operand {name} must be float32, not {arr.dtype}")
    if a.ndim == 0 or a.shape != b.shape:
        raise ValueError(f"fp32_dot operands must have equal shapes (..., N), not {a.shape} "
                         f"and {b.shape}")
    with np.errstate(all="ignore"):
        result = np.asarray(_tree_sum(a * b))
    bits = result.view(np.uint32).copy()
    bits[np.isnan(result)] = CANONICAL_NAN
    return bits.view(np.float32)


def fp32_dot_bits(a_bits, b_bits):
    """`fp32_dot` on raw binary32 bit patterns (uint32) → uint32 bit patterns."""
    to_float = lambda bits: np.asarray(bits, dtype=np.uint32).view(np.float32)
    return fp32_dot(to_float(a_bits), to_float(b_bits)).view(np.uint32)


def fp32_error_bound(a, b):
    """Bound on |fp32_dot(a, b) - exact dot| when nothing overflows or underflows:
    γ_k · Σ|a_i b_i| with k = ceil(log2 N) + 1 roundings on any path and γ_k = k·u/(1 - k·u),
    u = 2^-24 (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1 and §4.2)."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    k = int(np.ceil(np.log2(a64.shape[-1]))) + 1
    u = 2.0 ** -24
    return k * u / (1 - k * u) * np.abs(a64 * b64).sum(axis=-1)


def int_dot_width(n, width):
    """Signed width of an exact dot product of n lanes of signed `width`-bit integers.
    The largest magnitude is n · 2^(2·width - 2), reached when all lanes are (-2^(width-1))²."""
    n = _check.positive_int(n, "Lane count")
    if width not in (8, 16):
        raise ValueError(f"Integer width must be 8 or 16, not {width!r}")
    return (n << (2 * width - 2)).bit_length() + 1


def int_dot(a, b, width):
    """Exact dot product over the last axis of signed `width`-bit integers (8 or 16) → int64."""
    a, b = np.asarray(a), np.asarray(b)
    int_dot_width(a.shape[-1] if a.ndim else 0, width)
    if a.shape != b.shape:
        raise ValueError(f"int_dot operands must have equal shapes, not {a.shape} and {b.shape}")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    for arr, name in ((a, "a"), (b, "b")):
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"int_dot operand {name} must be integers, not dtype {arr.dtype}")
        if ((arr < lo) | (arr > hi)).any():
            bad = arr[(arr < lo) | (arr > hi)].flat[0]
            raise ValueError(f"int_dot operand {name} holds {bad}, outside int{width} [{lo}, {hi}]")
    return (a.astype(np.int64) * b.astype(np.int64)).sum(axis=-1)
