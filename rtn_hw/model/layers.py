"""RTN linear and conv2d layers, computed through the popcount pattern.

Weights are trits (P, N) with per-output-channel (α_w, β_w); activations are trits with
per-tensor (α_a, β_a). Float forms return ŵ·â exactly (four-term decomposition of docs/rtn.md §3);
fixed forms return the hardware's integer codes (see `fixed.postprocess`).

conv2d padding [choice, docs/rtn.md §3]: padding is applied in the trit domain, i.e. padded
positions hold trit 0, so they decode to β_a (not to 0). This keeps n = C·kh·kw and S_w
constant for every output position, so one set of K constants serves the whole feature map
and the hardware pads by feeding nz = 0. With β_a = 0 it equals ordinary zero padding.
"""

import numpy as np

from . import _check
from .fixed import fold_constants, postprocess
from .ternary import pack, ternary_matmul


def rtn_dot_terms(d, s_a, s_w, n, alpha_w, beta_w, alpha_a, beta_a):
    """ŵ·â = α_w α_a D + β_w α_a S_a + α_w β_a S_w + n β_w β_a (float64, broadcasting)."""
    return (alpha_w * alpha_a * d + beta_w * alpha_a * s_a + alpha_w * beta_a * s_w
            + n * beta_w * beta_a)


def linear(t_a, t_w, alpha_w, beta_w, alpha_a, beta_a):
    """RTN linear layer in float: activations (B, N), weights (P, N) → (B, P) ŵ·â."""
    t_a, t_w = _check.trits(t_a, "t_a"), _check.trits(t_w, "t_w")
    _check.same_lanes(t_w, t_a, "t_w", "t_a")
    p, n = t_w.shape
    alpha_w = _check.positive_finite(_check.per_row(alpha_w, p, "alpha_w"), "alpha_w")
    beta_w = _check.finite(_check.per_row(beta_w, p, "beta_w"), "beta_w")
    alpha_a = _check.positive_finite(alpha_a, "alpha_a")
    beta_a = _check.finite(beta_a, "beta_a")
    d, s_a = ternary_matmul(pack(t_w), pack(t_a))
    s_w = t_w.sum(axis=1, dtype=np.int64)
    return rtn_dot_terms(d, s_a[:, None], s_w, n, alpha_w, beta_w, alpha_a, beta_a)


def linear_fixed(t_a, t_w, alpha_w, beta_w, alpha_a, beta_a, k_fmt, out_fmt):
    """RTN linear layer as the MAC array computes it: (B, N) × (P, N) → (B, P) codes in out_fmt."""
    t_a, t_w = _check.trits(t_a, "t_a"), _check.trits(t_w, "t_w")
    _check.same_lanes(t_w, t_a, "t_w", "t_a")
    consts = fold_constants(alpha_w, beta_w, alpha_a, beta_a, t_w.sum(axis=1, dtype=np.int64),
                            t_w.shape[1], k_fmt)
    d, s_a = ternary_matmul(pack(t_w), pack(t_a))
    return postprocess(d, s_a, consts, out_fmt)


def im2col(x, kernel, stride=1, padding=0, pad_value=0):
    """x (B, C, H, W) → patches (B, Ho, Wo, C·kh·kw), channel-major like a (P, C, kh, kw)
    weight reshaped to (P, C·kh·kw)."""
    x = np.asarray(x)
    kh, kw = _pair(kernel, "Kernel size")
    sh, sw = _pair(stride, "Stride")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise TypeError(f"Padding must be a non-negative integer, not {padding!r}")
    if x.ndim != 4:
        raise ValueError(f"conv2d input must be (B, C, H, W), not shape {x.shape}")
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
               constant_values=pad_value)
    b, c, h, w = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"Kernel {kh}x{kw} does not fit a padded {h}x{w} input")
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw][:, :, :ho, :wo]  # (B, C, Ho, Wo, kh, kw)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(b, ho, wo, c * kh * kw)


def conv2d(t_a, t_w, alpha_w, beta_w, alpha_a, beta_a, stride=1, padding=0):
    """RTN conv2d in float: activations (B, C, H, W), weights (P, C, kh, kw) → (B, P, Ho, Wo).
    Padding is trit 0 (decodes to β_a); see the module docstring."""
    t_a, t_w = _check.trits(t_a, "t_a"), _check.trits(t_w, "t_w")
    if t_w.ndim != 4 or t_a.ndim != 4 or t_w.shape[1] != t_a.shape[1]:
        raise ValueError(f"conv2d needs activations (B, C, H, W) and weights (P, C, kh, kw) "
                         f"with equal C, not {t_a.shape} and {t_w.shape}")
    patches = im2col(t_a, t_w.shape[2:], stride, padding)
    b, ho, wo, n = patches.shape
    y = linear(patches.reshape(-1, n), t_w.reshape(t_w.shape[0], n),
               alpha_w, beta_w, alpha_a, beta_a)
    return y.reshape(b, ho, wo, -1).transpose(0, 3, 1, 2)


def _pair(value, what):
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{what} must be an integer or a pair, not {value!r}")
    return tuple(_check.positive_int(v, what) for v in pair)
