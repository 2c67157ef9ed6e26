"""Convolution and max pooling layers of the integer golden network (weights format version 2).

A convolution is the RTN pattern applied at every output position: the input trits (B, C, H,
W) are padded **in the trit domain** with trit 0 (docs/rtn.md §3: nz = 0, so a padded position
decodes to β_a and n = C·kh·kw and S_w stay the same at every position, so one set of K
constants serves the whole map), cut into patches (channel-major, C·kh·kw lanes, like a
(P, C, kh, kw) weight reshaped to (P, C·kh·kw)), and each patch goes through the same
pack → ternary_matmul (D, S_a) → postprocess → encode as a fully connected layer.

Max pooling works on the encoded trits: the maximum over each window, per channel. The torch
model pools after the activation quantizer, α_a·T(z) + β_a with α_a > 0, which is increasing
in the trit, so max(α_a·t + β_a) = α_a·max(t) + β_a: pooling trits is exact. It also commutes
with the encoder: `encode(y, lo, hi)` is non-decreasing in the code y it sees for any lo, hi
(+1 above hi, else -1 below lo, else 0), so max(encode(y)) = encode(max(y)) over a window of
one channel, and hardware may pool the codes y before encoding. That holds for the y the
hardware computes; where BatchNorm's γ < 0 the hardware's y is -ŵ·â (the layer's `sign`), so
pooling the real pre-activations ŵ·â before BatchNorm would be wrong there, never pooling y.
"""

import dataclasses

import numpy as np

from . import _check
from .fixed import encode
from .layers import im2col

__all__ = ["ConvLayer", "MaxPool", "pad_trits", "pool_trits", "conv_out_shape"]


def conv_out_shape(in_shape, kernel, stride, padding):
    """(H_out, W_out) of a window sliding over (H, W) padded by (ph, pw) on each side, or
    ValueError if the window does not fit."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = in_shape[-2:], kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"kernel {kh}x{kw} does not fit the {h + 2 * ph}x{w + 2 * pw} "
                         f"{'padded ' if ph or pw else ''}input")
    return ho, wo


def pad_trits(t, padding):
    """Trits (B, C, H, W) padded with trit 0 by (ph, pw) on each side."""
    ph, pw = padding
    return np.pad(_check.trits(t, "t"), ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def pool_trits(t, kernel, stride):
    """Max pooling of trits (B, C, H, W) over kh×kw windows at stride (sh, sw), no padding."""
    t = _check.trits(t, "t")
    ho, wo = conv_out_shape(t.shape, kernel, stride, (0, 0))
    windows = np.lib.stride_tricks.sliding_window_view(t, kernel, axis=(2, 3))
    return windows[:, :, ::stride[0], ::stride[1]][:, :, :ho, :wo].max(axis=(4, 5))


@dataclasses.dataclass(frozen=True, eq=False)
class ConvLayer:
    """One ternary convolution: `dense` is the fully connected `Layer` applied to every patch
    (its t_w is (P, C·kh·kw), channel-major; its K codes, sign, lo/hi and formats are the
    convolution's). Always hidden: its output is re-encoded to trits."""
    kind = "conv"
    name: str
    in_shape: tuple   # (C, H, W)
    kernel: tuple     # (kh, kw)
    stride: tuple     # (sh, sw)
    padding: tuple    # (ph, pw), trit 0
    dense: object     # network.Layer

    @property
    def out_shape(self):
        return (self.out_channels,) + conv_out_shape(self.in_shape, self.kernel, self.stride,
                                                     self.padding)

    @property
    def out_channels(self):
        return self.dense.out_features

    @property
    def in_features(self):
        """Lanes of one dot product, n = C·kh·kw."""
        return self.dense.in_features

    @property
    def t_w(self):
        """The weights as (P, C, kh, kw) trits."""
        return self.dense.t_w.reshape((self.out_channels, self.in_shape[0]) + self.kernel)

    def __getattr__(self, name):
        # The per-channel parameters and fixed point are the dense layer's (α_w, β_w, α_a,
        # β_a, consts, k_fmt, out_fmt, sign, lo, hi, hidden, error_bound).
        if name.startswith("_") or name == "dense":
            raise AttributeError(name)
        return getattr(self.dense, name)

    def encode(self, y):
        """Codes y (B, P, Ho, Wo) → output trits, thresholds per channel P."""
        return encode(y.transpose(0, 2, 3, 1), self.lo, self.hi).transpose(0, 3, 1, 2)

    def patches(self, t):
        """Input trits (B, C, H, W) → patches (B, H_out, W_out, C·kh·kw), padded with trit 0."""
        t = np.asarray(t)
        if t.ndim != 4 or t.shape[1:] != tuple(self.in_shape):
            raise ValueError(f"{self.name}: input must be (B, {', '.join(map(str, self.in_shape))})"
                             f" trits, not shape {t.shape}")
        return im2col(pad_trits(t, self.padding), self.kernel, self.stride)

    def preactivation(self, t):
        """Input trits (B, C, H, W) → (D (B, P, Ho, Wo), S_a (B, Ho, Wo), y (B, P, Ho, Wo))."""
        patches = self.patches(t)
        b, ho, wo, n = patches.shape
        d, s_a, y = self.dense.preactivation(patches.reshape(-1, n))
        def spatial(v):
            return v.reshape(b, ho, wo, -1).transpose(0, 3, 1, 2)
        return spatial(d), s_a.reshape(b, ho, wo), spatial(y)


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling of trits over kh×kw windows at stride (sh, sw), no padding."""
    kind = "maxpool"
    name: str
    in_shape: tuple   # (C, H, W)
    kernel: tuple
    stride: tuple

    @property
    def out_shape(self):
        return (self.in_shape[0],) + conv_out_shape(self.in_shape, self.kernel, self.stride,
                                                    (0, 0))

    def forward(self, t):
        t = np.asarray(t)
        if t.ndim != 4 or t.shape[1:] != tuple(self.in_shape):
            raise ValueError(f"{self.name}: input must be (B, {', '.join(map(str, self.in_shape))})"
                             f" trits, not shape {t.shape}")
        return pool_trits(t, self.kernel, self.stride)
