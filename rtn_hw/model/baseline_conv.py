"""Golden model of the full-precision convolution stages (rtn_hw.gateware.baseconv).

A convolution of input maps x (B, C, H, W) with weights w (P, C, kh, kw), zero padded, no bias:
every output is the dot product of its patch (channel-major, like `layers.im2col`: element
c·kh·kw + i·kw + j) with the channel's weights, computed as the hardware does:

* int8 / int16: exactly (`int_dot`), so any order gives the same integer;
* fp32 (bit-exact with the hardware): the patch is cut into K = ⌈N/L⌉ chunks of L lanes, the
  last filled with +0.0 pairs; each chunk is a `fp32_dot` (RNE products, the pairwise tree);
  the chunks are added in order to -0.0 with binary32 RNE adds. NaNs come out canonical
  (0x7FC00000), as from every binary32 operation of the hardware.
"""

import numpy as np

from . import _check
from .baseline import CANONICAL_NAN, fp32_dot, int_dot
from .layers import im2col

__all__ = ["KINDS", "element_width", "patches", "fp32_conv_bits", "int_conv"]

KINDS = ("fp32", "int8", "int16")


def element_width(kind):
    """Bits of one element of a `kind` convolution: 32, 8 or 16."""
    if kind not in KINDS:
        raise ValueError(f"Convolution kind must be one of {', '.join(map(repr, KINDS))}, "
                         f"not {kind!r}")
    return 32 if kind == "fp32" else int(kind[3:])


def patches(x, kernel, stride, padding):
    """x (B, C, H, W) zero padded by (ph, pw) → patches (B, Ho, Wo, C·kh·kw)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"Convolution input must be (B, C, H, W), not shape {x.shape}")
    ph, pw = padding
    if min(ph, pw) < 0:
        raise ValueError(f"Padding must be non-negative, not {padding!r}")
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return im2col(x, kernel, stride)


def _check_shapes(x, w):
    if w.ndim != 4 or x.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"Convolution needs inputs (B, C, H, W) and weights (P, C, kh, kw) "
                         f"with equal C, not {x.shape} and {w.shape}")


def fp32_conv_bits(x_bits, w_bits, *, lanes, stride=(1, 1), padding=(0, 0)):
    """binary32 bit patterns x (B, C, H, W), w (P, C, kh, kw) → outputs (B, P, Ho, Wo) uint32,
    the chunked sum of the module docstring with `lanes` lanes."""
    x = np.asarray(x_bits, dtype=np.uint32).view(np.float32)
    w = np.asarray(w_bits, dtype=np.uint32).view(np.float32)
    _check_shapes(x, w)
    lanes = _check.positive_int(lanes, "Lane count")
    p = w.shape[0]
    cols = patches(x, w.shape[2:], stride, padding)           # (B, Ho, Wo, N)
    n = cols.shape[-1]
    chunks = -(-n // lanes)
    fill = chunks * lanes - n
    cols = np.pad(cols, ((0, 0),) * 3 + ((0, fill),)).reshape(cols.shape[:3] + (1, chunks,
                                                                                 lanes))
    rows = np.pad(w.reshape(p, n), ((0, 0), (0, fill))).reshape(p, chunks, lanes)
    shape = cols.shape[:3] + (p, chunks, lanes)
    dots = fp32_dot(np.broadcast_to(cols, shape), np.broadcast_to(rows, shape))
    total = np.full(shape[:4], -0.0, dtype=np.float32)
    with np.errstate(all="ignore"):
        for k in range(chunks):
            total = total + dots[..., k]
    bits = total.view(np.uint32).copy()
    bits[np.isnan(total)] = CANONICAL_NAN
    return bits.transpose(0, 3, 1, 2)


def int_conv(x, w, width, *, stride=(1, 1), padding=(0, 0)):
    """Signed `width`-bit integers x (B, C, H, W), w (P, C, kh, kw) → exact outputs
    (B, P, Ho, Wo) int64."""
    x, w = np.asarray(x), np.asarray(w)
    _check_shapes(x, w)
    cols = patches(x, w.shape[2:], stride, padding)
    p, n = w.shape[0], cols.shape[-1]
    shape = cols.shape[:3] + (p, n)
    out = int_dot(np.broadcast_to(cols[..., None, :], shape),
                  np.broadcast_to(w.reshape(p, n), shape), width)
    return out.transpose(0, 3, 1, 2)
