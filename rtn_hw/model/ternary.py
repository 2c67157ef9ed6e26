"""Ternary quantization, reparameterization, 2-bit planes and the Eq. 8 dot product.

Encoding (docs/rtn.md §2): a trit is two bits, nz (non-zero) and sg (sign: 1 means +1).
A zero's sign bit is don't-care. A vector of n trits is two n-bit planes, NZ and SG, with
element i in bit i. In NumPy a plane is a uint64 array whose last axis holds
ceil(n / 64) little-endian words (element i is bit i % 64 of word i // 64).
"""

import numpy as np

from . import _check

WORD = 64


def ternarize(x, delta=0.5):
    """T(x) of docs/rtn.md §1: clip to [-1, 1], then +1 above Δ, -1 below -Δ, else 0 (int8)."""
    x = _check.finite(x, "x")
    if not np.isscalar(delta) and np.ndim(delta) != 0 or not 0 <= float(delta) < 1:
        raise ValueError(f"Threshold delta must be a number in [0, 1), not {delta!r}")
    x = np.clip(x, -1.0, 1.0)
    return (np.where(x > delta, 1, 0) - np.where(x < -delta, 1, 0)).astype(np.int8)


def reparameterize(t, alpha, beta):
    """α·t + β (float64). `alpha`/`beta` are scalars (per tensor, as for activations) or
    arrays of shape t.shape[:-1] (e.g. per output channel, for a (P, N) weight matrix)."""
    t = _check.trits(t, "t")
    alpha = _check.positive_finite(alpha, "alpha")
    beta = _check.finite(beta, "beta")
    return alpha[..., None] * t + beta[..., None]


def words_for(n):
    """Number of uint64 words in a plane of n trits."""
    return -(-_check.positive_int(n, "Lane count") // WORD)


def pack(t, zero_sign=None):
    """Pack trits (..., n) into planes (nz, sg), each uint64 (..., words_for(n)).

    `zero_sign` (bool array like `t`, optional) sets the don't-care sign bit of each zero,
    so tests can show that nothing depends on it; by default zeros get sign 0.
    """
    t = _check.trits(t, "t")
    n = t.shape[-1]
    words_for(n)
    sg = t > 0
    if zero_sign is not None:
        zero_sign = np.asarray(zero_sign, dtype=bool)
        if zero_sign.shape != t.shape:
            raise ValueError(f"zero_sign must have shape {t.shape}, not {zero_sign.shape}")
        sg = sg | (zero_sign & (t == 0))
    return _bits_to_words(t != 0), _bits_to_words(sg)


def unpack(nz, sg, n):
    """Planes (nz, sg) → trits (..., n) int8. A zero's sign bit may hold either value."""
    nz, sg = _planes(nz, sg, n, "nz", "sg")
    nz_bits = _words_to_bits(nz, n)
    sg_bits = _words_to_bits(sg, n)
    return np.where(nz_bits, np.where(sg_bits, 1, -1), 0).astype(np.int8)


def ternary_dot(w, a):
    """Eq. 8 on planes: D = popcount(W1 & A1) - 2·popcount((W2 ^ A2) & W1 & A1) = Σ t_w·t_a.

    `w` and `a` are (nz, sg) plane pairs; leading axes broadcast. Returns int64."""
    (w1, w2), (a1, a2) = w, a
    c = w1 & a1
    return _popcount(c) - 2 * _popcount((w2 ^ a2) & c)


def activation_sum(a):
    """S_a = 2·popcount(A1 & A2) - popcount(A1) = Σ t_a, from planes (nz, sg). Returns int64."""
    a1, a2 = a
    return 2 * _popcount(a1 & a2) - _popcount(a1)


def ternary_matmul(w, a):
    """Matrix form, the MAC array's reference: weights (P, words), activations (B, words).

    Returns (D, S_a): D is int64 (B, P), D[b, p] = Σ_i t_w[p, i]·t_a[b, i]; S_a is int64 (B,).
    """
    w1, w2 = (np.asarray(p, dtype=np.uint64) for p in w)
    a1, a2 = (np.asarray(p, dtype=np.uint64) for p in a)
    if w1.ndim != 2 or a1.ndim != 2 or w1.shape[1] != a1.shape[1]:
        raise ValueError(f"Weight planes must be (P, words) and activation planes (B, words) "
                         f"with equal words, not {w1.shape} and {a1.shape}")
    rows = max(1, (1 << 22) // max(1, w1.size))  # bound the (B, P, words) temporary to ~32 MiB
    d = np.empty((a1.shape[0], w1.shape[0]), dtype=np.int64)
    for start in range(0, a1.shape[0], rows):
        block = slice(start, start + rows)
        d[block] = ternary_dot((w1[None], w2[None]), (a1[block, None], a2[block, None]))
    return d, activation_sum((a1, a2))


def planes_to_int(plane):
    """One plane (words,) → a Python int with element i in bit i (a hardware payload)."""
    return sum(int(word) << (WORD * k) for k, word in enumerate(np.asarray(plane, dtype=np.uint64)))


def int_to_plane(value, n):
    """A Python int with element i in bit i → one plane (words_for(n),) uint64."""
    if not 0 <= value < (1 << n):
        raise ValueError(f"Plane value {value:#x} does not fit {n} lanes")
    return np.array([(value >> (WORD * k)) & ((1 << WORD) - 1) for k in range(words_for(n))],
                    dtype=np.uint64)


def _popcount(words):
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def _bits_to_words(bits):
    n = bits.shape[-1]
    padded = np.zeros(bits.shape[:-1] + (words_for(n) * WORD,), dtype=np.uint8)
    padded[..., :n] = bits
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def _words_to_bits(words, n):
    as_bytes = np.ascontiguousarray(words.astype("<u8")).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :n].astype(bool)


def _planes(nz, sg, n, nz_name, sg_name):
    nz, sg = np.asarray(nz), np.asarray(sg)
    for plane, name in ((nz, nz_name), (sg, sg_name)):
        if plane.dtype != np.uint64 or plane.ndim == 0 or plane.shape[-1] != words_for(n):
            raise ValueError(f"{name} must be uint64 (..., {words_for(n)}) for {n} lanes, "
                             f"not {plane.dtype} {plane.shape}")
    if n % WORD and (nz[..., -1] >> np.uint64(n % WORD)).any():
        raise ValueError(f"{nz_name} has bits set above lane {n - 1}")
    return nz, sg
