"""Seeded stimulus for the power model: one set of float values, seen by every unit.

The RTN units and the baselines are fed the *same underlying real numbers*, each in its own
number format, so that a difference in toggles comes from the format and the datapath, not
from different data:

* a **source** draws float pairs (activations `a`, weights `w`), each of shape (count, lanes),
  one row per cycle. The default, `gaussian_source`, draws both i.i.d. N(0, 1). A trained
  layer replaces it through `layer_source(weights, activations)` (weights (P, lanes) from
  weights/, activations (B, lanes), e.g. im2col rows), or any function with the signature
  `source(rng, count, lanes) -> (a, w)`. A source may also return `(a, w, ta, tw)`: the trits
  themselves, when the floats are their reparameterized values and not something to ternarize.
  `network_source` is such a source: the shipped trained network's hidden layer, streamed.
* **ternary** (`TernaryDot` and friends): each tensor is scaled so that `rtn_hw.model.ternarize`
  with its fixed threshold Δ = 0.5 zeroes the intended fraction, then packed to planes.
  Activations: scale = Δ / q, q = the empirical median of |a| (so about 50 % zeros, as the
  brief asks, whatever the source's spread). Weights: the TWN rule (Li & Liu, 2016),
  threshold 0.7·mean|w|, i.e. scale = Δ / (0.7·mean|w|); for Gaussian weights this gives
  about 42 % zeros (P(|z| < 0.7·√(2/π)) = 0.424). `Operands.sparsity` reports what was drawn.
* **fp32** (`Fp32Dot`): the unscaled values rounded to binary32, as raw bit patterns.
* **int** (`IntDot`, 8 or 16 bits): symmetric per-tensor quantization of the unscaled values,
  scale = max|x| / (2^(width-1) - 1) over the whole drawn tensor, q = round-half-even(x / scale).

Every function returns a list of payload values, one per cycle, in the form `ctx.set` accepts
on a `lib.data` view (dicts of plain ints and lists); `flat_payloads` turns them into the
integer value of the flat Verilog port `i__payload`. Nothing here imports the gateware.
"""

import dataclasses

import numpy as np

from ..model import (activation_sum, fp32_dot_bits, int_dot, pack, planes_to_int, ternarize,
                     ternary_dot)
from ..model._check import positive_int

__all__ = ["Operands", "gaussian_source", "layer_source", "network_source", "operands", "ACT_ZERO_FRACTION",
           "TWN_FACTOR", "DELTA", "ternary_payloads", "fp32_payloads", "int_payloads",
           "flat_payloads", "golden", "for_unit", "conv_payloads", "KINDS"]

KINDS = ("ternary", "fp32", "int8", "int16")

DELTA = 0.5                # ternarize()'s threshold, used unchanged
ACT_ZERO_FRACTION = 0.5    # activations: Δ sits at this quantile of |a|
TWN_FACTOR = 0.7           # weights: Δ_w = 0.7·mean|w| (ternary weight networks)


def gaussian_source(rng, count, lanes):
    """Default source: activations and weights i.i.d. N(0, 1), fresh every cycle."""
    return rng.standard_normal((count, lanes)), rng.standard_normal((count, lanes))


def layer_source(weights, activations):
    """A source streaming a real layer: every activation row against every weight row.

    Cycle k holds activation row (k // P) % B and weight row k % P, the order of a unit that
    computes all P output channels for one input vector before moving to the next. The rng is
    unused: the data is the data."""
    w = np.asarray(weights, dtype=np.float64)
    a = np.asarray(activations, dtype=np.float64)
    if w.ndim != 2 or a.ndim != 2 or w.shape[1] != a.shape[1]:
        raise ValueError(f"Layer weights must be (P, lanes) and activations (B, lanes), "
                         f"not {w.shape} and {a.shape}")

    def source(rng, count, lanes):
        if lanes != w.shape[1]:
            raise ValueError(f"Layer has {w.shape[1]} lanes, not {lanes}")
        k = np.arange(count)
        return a[(k // len(w)) % len(a)], w[k % len(w)]
    return source


def network_source(network, images, layer, *, per_channel=True):
    """A source streaming a trained RTN layer as the network engine does, in lanes-wide chunks.

    Every (image, output channel) pair of layer `layer` of `network` (a `rtn_hw.weights.Network`)
    contributes its N input trits and the channel's N weight trits, in the order image-major,
    channel-minor; the concatenation is cut into rows of `lanes` (so a 256-lane row holds two
    128-wide pairs and a 64-lane row half of one). With `per_channel=False` every pair is a new
    image (image k, channel k mod P): the stream of a unit that computes all its channels from
    one input vector at once, like the MAC array, which never sees the same input twice in a
    row. The trits are the layer's real inputs for
    `images` and its trained weights; the floats are their reparameterized values
    α_a·t_a + β_a and α_w·t_w + β_w (per output channel), the numbers the full-precision and
    integer baselines multiply for the same layer. The rng is unused."""
    spec = network.layers[layer]
    t_a = network.layer_inputs(images)[layer].astype(np.int8)
    t_w = spec.t_w.astype(np.int8)
    (batch, n), channels = t_a.shape, t_w.shape[0]

    def source(rng, count, lanes):
        pairs = -(-count * lanes // n)
        k = np.arange(pairs)
        image = (k // channels if per_channel else k) % batch
        channel = k % channels
        cut = slice(0, count * lanes)
        ta = t_a[image].reshape(-1)[cut].reshape(count, lanes)
        tw = t_w[channel].reshape(-1)[cut].reshape(count, lanes)
        alpha_w = np.repeat(spec.alpha_w[channel], n)[cut].reshape(count, lanes)
        beta_w = np.repeat(spec.beta_w[channel], n)[cut].reshape(count, lanes)
        return (spec.alpha_a * ta + spec.beta_a, alpha_w * tw + beta_w, ta, tw)
    return source


@dataclasses.dataclass(frozen=True)
class Operands:
    """The drawn floats, one row per cycle, and their ternary images."""
    a: np.ndarray            # activations (count, lanes) float64
    w: np.ndarray            # weights (count, lanes) float64
    a_scale: float           # ternarization scale of a (see the module docstring)
    w_scale: float
    seed: int
    trits: tuple = None      # (ta, tw) given by the source, instead of ternarizing a and w

    @property
    def lanes(self):
        return self.a.shape[1]

    @property
    def count(self):
        return self.a.shape[0]

    @property
    def ta(self):
        if self.trits is not None:
            return self.trits[0]
        return ternarize(self.a * self.a_scale, DELTA)

    @property
    def tw(self):
        if self.trits is not None:
            return self.trits[1]
        return ternarize(self.w * self.w_scale, DELTA)

    @property
    def sparsity(self):
        """Fractions of zeros: activations, weights, and products t_w·t_a."""
        ta, tw = self.ta, self.tw
        return {"activations": float(np.mean(ta == 0)), "weights": float(np.mean(tw == 0)),
                "products": float(np.mean(ta * tw == 0))}


def operands(lanes, count, *, seed, source=gaussian_source):
    """Draw `count` cycles of `lanes`-wide float operands from `source` with `seed`."""
    lanes = positive_int(lanes, "Lane count")
    count = positive_int(count, "Cycle count")
    rng = np.random.default_rng(seed)
    drawn = source(rng, count, lanes)
    a, w = (np.asarray(x, dtype=np.float64) for x in drawn[:2])
    if a.shape != (count, lanes) or w.shape != (count, lanes):
        raise ValueError(f"Source must return two ({count}, {lanes}) arrays, not {a.shape} "
                         f"and {w.shape}")
    trits = None
    if len(drawn) == 4:
        trits = tuple(np.asarray(t, dtype=np.int8) for t in drawn[2:])
        if any(t.shape != (count, lanes) or not np.isin(t, (-1, 0, 1)).all() for t in trits):
            raise ValueError(f"Source trits must be two ({count}, {lanes}) arrays of -1, 0, +1")
    a_q = float(np.quantile(np.abs(a), ACT_ZERO_FRACTION))
    w_q = TWN_FACTOR * float(np.mean(np.abs(w)))
    return Operands(a, w, DELTA / a_q if a_q > 0 else 1.0, DELTA / w_q if w_q > 0 else 1.0,
                    seed, trits)


def _planes(t):
    nz, sg = pack(t)
    return [{"nz": planes_to_int(n), "sg": planes_to_int(s)} for n, s in zip(nz, sg)]


def ternary_payloads(ops):
    """[{"w": {"nz", "sg"}, "a": {"nz", "sg"}}] per cycle (the TernaryDot operand layout)."""
    return [{"w": w, "a": a} for w, a in zip(_planes(ops.tw), _planes(ops.ta))]


def fp32_payloads(ops):
    """[{"a": [bits]*lanes, "b": [bits]*lanes}] per cycle: activations a, weights b (binary32)."""
    a = ops.a.astype(np.float32).view(np.uint32)
    b = ops.w.astype(np.float32).view(np.uint32)
    return [{"a": [int(x) for x in ra], "b": [int(x) for x in rb]} for ra, rb in zip(a, b)]


def quantize(x, width):
    """Symmetric per-tensor quantization to signed `width` bits (see the module docstring)."""
    top = (1 << (width - 1)) - 1
    peak = float(np.max(np.abs(x)))
    scale = peak / top if peak > 0 else 1.0
    return np.clip(np.rint(x / scale), -top, top).astype(np.int64), scale


def int_payloads(ops, width):
    """[{"a": [ints], "b": [ints]}] per cycle: activations a, weights b as int`width`."""
    if width not in (8, 16):
        raise ValueError(f"Integer width must be 8 or 16, not {width!r}")
    a, _ = quantize(ops.a, width)
    b, _ = quantize(ops.w, width)
    return [{"a": [int(x) for x in ra], "b": [int(x) for x in rb]} for ra, rb in zip(a, b)]


def golden(ops, kind):
    """The golden model's outputs for the payloads of `kind`, one per cycle, as `ctx.get`
    would show them: "ternary" → {"d", "s_a"} (Eq. 8 and the activation sum), "fp32" →
    binary32 bits, "int8" / "int16" → the exact integer dot product."""
    if kind == "ternary":
        w, a = pack(ops.tw), pack(ops.ta)
        return [{"d": int(d), "s_a": int(s)}
                for d, s in zip(ternary_dot(w, a), activation_sum(a))]
    if kind == "fp32":
        a = ops.a.astype(np.float32).view(np.uint32)
        b = ops.w.astype(np.float32).view(np.uint32)
        return [int(x) for x in fp32_dot_bits(a, b)]
    if kind in ("int8", "int16"):
        width = int(kind[3:])
        a, _ = quantize(ops.a, width)
        b, _ = quantize(ops.w, width)
        return [int(x) for x in int_dot(a, b, width)]
    raise ValueError(f"Stimulus kind must be one of {', '.join(map(repr, KINDS))}, "
                     f"not {kind!r}")


def for_unit(kind, lanes, count, *, seed, source=gaussian_source):
    """(payloads, golden outputs, Operands) of `count` cycles for a `lanes`-wide unit of `kind`
    ("ternary", "fp32", "int8", "int16"), drawn from `source` with `seed`."""
    if kind not in KINDS:
        raise ValueError(f"Stimulus kind must be one of {', '.join(map(repr, KINDS))}, "
                         f"not {kind!r}")
    ops = operands(lanes, count, seed=seed, source=source)
    if kind == "ternary":
        payloads = ternary_payloads(ops)
    elif kind == "fp32":
        payloads = fp32_payloads(ops)
    else:
        payloads = int_payloads(ops, int(kind[3:]))
    return payloads, golden(ops, kind), ops


def conv_payloads(kind, channels, count, *, seed, source=gaussian_source):
    """`count` input positions of a convolution stage, `channels` activations each, drawn from
    `source` (its activations `a`) with `seed`: `kind` "ternary" → {"nz", "sg"} planes,
    "fp32" → binary32 bit patterns, "int8" / "int16" → two's complement codes (the stage's
    unsigned elements), each as `ternary_payloads` / `fp32_payloads` / `int_payloads` make
    them."""
    if kind not in KINDS:
        raise ValueError(f"Stimulus kind must be one of {', '.join(map(repr, KINDS))}, "
                         f"not {kind!r}")
    ops = operands(channels, count, seed=seed, source=source)
    if kind == "ternary":
        return [p["a"] for p in ternary_payloads(ops)]
    if kind == "fp32":
        return [p["a"] for p in fp32_payloads(ops)]
    mask = (1 << int(kind[3:])) - 1
    return [[x & mask for x in p["a"]] for p in int_payloads(ops, int(kind[3:]))]


def flat_payloads(layout, payloads):
    """Payload values → the unsigned integers on the flat Verilog port (`i__payload`, or
    `o__payload` for outputs). `layout` is a `lib.data` layout or a plain shape; values that
    are already integers are taken as the flat bits."""
    from amaranth.hdl import Shape
    from amaranth.lib import data
    if isinstance(layout, data.Layout):
        mask = (1 << layout.size) - 1
        return [(p if isinstance(p, int) else layout.const(p).as_value().value) & mask
                for p in payloads]
    mask = (1 << Shape.cast(layout).width) - 1
    return [int(p) & mask for p in payloads]
