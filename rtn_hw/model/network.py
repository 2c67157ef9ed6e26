"""The integer golden network: a trained RTN MLP or CNN run exactly as the hardware runs it.

Input pixels → trits by two fixed thresholds, then per layer pack → ternary_matmul (D, S_a) →
postprocess (K1·D + K2·S_a + K0, rounded to out_fmt) → encode (thresholds; hidden layers
only). The last layer's out_fmt codes are the logits. A CNN (weights format version 2) also
has convolutions and max pooling (`rtn_hw.model.conv`) on (B, C, H, W) trits; a fully
connected layer after them flattens its input in (C, H, W) order. `rtn_hw.weights.load` builds a
`Network` from the files on disk and checks every field; this module only computes.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from .fixed import Q, RtnConstants, encode, error_bound, postprocess
from .ternary import pack, ternary_matmul

__all__ = ["InputEncoding", "Layer", "Network"]


@dataclasses.dataclass(frozen=True)
class InputEncoding:
    """Pixels (integers 0..pixel_max) → trits: +1 above `hi`, -1 below `lo`, else 0.

    This is T(2·p/pixel_max - 1) with Δ = 0.5 computed on integers: hi = floor(0.75·pixel_max),
    lo = ceil(0.25·pixel_max); for the 8×8 digits (pixel_max 16) lo = 4, hi = 12."""
    shape: tuple
    pixel_max: int
    lo: int
    hi: int

    @property
    def features(self):
        return int(np.prod(self.shape))

    @staticmethod
    def thresholds(pixel_max):
        return -(-pixel_max // 4), (3 * pixel_max) // 4

    def encode(self, images):
        images = np.asarray(images)
        if not np.issubdtype(images.dtype, np.integer):
            raise TypeError(f"Images must be integer pixels 0..{self.pixel_max}, "
                            f"not dtype {images.dtype}")
        if images.shape[-len(self.shape):] == self.shape and images.ndim > len(self.shape):
            images = images.reshape(images.shape[:-len(self.shape)] + (self.features,))
        if images.ndim != 2 or images.shape[1] != self.features:
            raise ValueError(f"Images must be (B, {self.features}) or (B, "
                             f"{', '.join(map(str, self.shape))}), not shape {images.shape}")
        if images.size and (images.min() < 0 or images.max() > self.pixel_max):
            raise ValueError(f"Pixels must lie in 0..{self.pixel_max}, not "
                             f"{images.min()}..{images.max()}")
        return encode(images.astype(np.int64), self.lo, self.hi)


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """One ternary fully connected layer as the MAC array computes it.

    `sign` is +1 per channel, or -1 where BatchNorm's γ was negative: such a channel's K codes
    are negated (the hardware computes -y) and its thresholds are folded with |γ| and -μ, so
    the encoder's decision is still T(BN(y))."""
    kind = "linear"
    name: str
    t_w: np.ndarray
    alpha_w: np.ndarray
    beta_w: np.ndarray
    alpha_a: float
    beta_a: float
    consts: RtnConstants
    out_fmt: Q
    sign: np.ndarray
    lo: np.ndarray = None
    hi: np.ndarray = None

    @property
    def in_features(self):
        return self.t_w.shape[1]

    @property
    def out_features(self):
        return self.t_w.shape[0]

    @property
    def hidden(self):
        return self.lo is not None

    @property
    def k_fmt(self):
        return self.consts.fmt

    def error_bound(self):
        """Worst-case |y·2^-F_out - ŵ·â| (error_bound) in the out_fmt scale."""
        return error_bound(self.in_features, self.k_fmt, self.out_fmt)

    def encode(self, y):
        """Hidden layers: out_fmt codes y (B, P) → output trits (the encoder's thresholds)."""
        return encode(y, self.lo, self.hi)

    def preactivation(self, t):
        """Input trits (B, N) → (D, S_a, y): y are out_fmt codes (negated where sign < 0)."""
        d, s_a = ternary_matmul(pack(self.t_w), pack(t))
        return d, s_a, postprocess(d, s_a, self.consts, self.out_fmt)


class Network:
    """A validated RTN network (an MLP, or a CNN: `convolutional`); build it with `load`. All
    arrays are read-only."""

    def __init__(self, input_encoding, layers, manifest, source):
        self._input = input_encoding
        self._layers = tuple(layers)
        self._manifest = json.loads(json.dumps(manifest))
        self._source = source

    def __repr__(self):
        # Deterministic (no object address): exports record their constructor arguments.
        sizes = "-".join([str(self._input.features)] + [
            str(layer.out_features) if layer.kind == "linear"
            else f"{layer.kind}{layer.out_shape[0]}" for layer in self._layers])
        digest = self._manifest.get("arrays", {}).get("sha256", "")[:16]
        return f"Network({Path(self._source).name}, {sizes}, sha256 {digest})"

    @property
    def input(self):
        return self._input

    @property
    def layers(self):
        return self._layers

    @property
    def convolutional(self):
        """True if any layer is a convolution or pooling (not an MLP)."""
        return any(layer.kind != "linear" for layer in self._layers)

    @property
    def macs_per_image(self):
        """MACs per image: N·P per linear layer, N·P per output position of a conv layer,
        none in a max pool."""
        total = 0
        for layer in self._layers:
            if layer.kind == "maxpool":
                continue
            positions = int(np.prod(layer.out_shape[1:])) if layer.kind == "conv" else 1
            total += layer.in_features * layer.out_features * positions
        return total

    @property
    def manifest(self):
        """A copy of the JSON manifest the network was built from."""
        return json.loads(json.dumps(self._manifest))

    @property
    def source(self):
        return self._source

    def encode_input(self, images):
        return self._input.encode(images)

    def trace(self, images):
        """Everything the hardware sees, per layer: a list of dicts with `inputs` (B, N) int8
        trits, `d` (B, P) and `s_a` (B,) from the popcount pattern, `y` (B, P) out_fmt codes,
        and `outputs` (B, P) int8 trits (hidden layers) or None (the logits layer).
        Convolutions have `inputs` (B, C, H, W), `d`, `y`, `outputs` (B, P, Ho, Wo) and `s_a`
        (B, Ho, Wo); max pooling has only `inputs` and `outputs` (B, C, Ho, Wo)."""
        t = self.encode_input(images)
        if self._layers[0].kind != "linear":
            t = t.reshape((len(t),) + tuple(self._layers[0].in_shape))
        steps = []
        for layer in self._layers:
            if layer.kind == "maxpool":
                out = layer.forward(t)
                steps.append({"layer": layer.name, "inputs": t, "outputs": out})
                t = out
                continue
            if layer.kind == "linear" and t.ndim > 2:
                t = t.reshape(len(t), -1)  # flatten (C, H, W)
            d, s_a, y = layer.preactivation(t)
            out = layer.encode(y) if layer.hidden else None
            steps.append({"layer": layer.name, "inputs": t, "d": d, "s_a": s_a, "y": y,
                          "outputs": out})
            t = out
        return steps

    def layer_inputs(self, images):
        """The trits entering each layer for `images`: a list, one int8 (B, N_l) array (or (B,
        C, H, W) before a convolution or pooling) per layer (layer 0's is the encoded input):
        realistic stimulus for the power model."""
        return [step["inputs"] for step in self.trace(images)]

    def forward(self, images):
        """Images (B, features) or (B, *shape) integer pixels → (logits, classes): integer
        logits (B, classes) in the last layer's out_fmt and argmax classes (B,) (first maximum
        on ties)."""
        logits = self.trace(images)[-1]["y"]
        return logits, np.argmax(logits, axis=1)

    def accuracy(self, images, labels):
        """(correct, total) on a labelled batch."""
        labels = np.asarray(labels)
        _, classes = self.forward(images)
        if labels.shape != classes.shape:
            raise ValueError(f"Labels must have shape {classes.shape}, not {labels.shape}")
        return int((classes == labels).sum()), int(labels.size)
