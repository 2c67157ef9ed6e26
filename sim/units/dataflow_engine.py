"""DataflowEngine: one image in, {logits, label} out, against `Network.forward`.

The network is the sidecar's `weights` parameter (shipped = weights/rtn_digits.json): an MLP
takes a whole image per input handshake, a CNN one pixel position (its C input pixels) per
handshake in raster order (`rtn_hw.demo.stimulus`), so a CNN's image is H·W handshakes
(`handshakes`) and bench.py checks latency and II from each image's first one. A "vector" is
an image. Stimulus: constant and patterned images at the pixel encoder's thresholds, then the
network's shipped test split (the digits or MNIST-5k) in order, as many as the run's vector
count leaves room for (`corners`); random images after them: uniform pixels, pixels at the
thresholds, and sparse ones. The engine takes one image every II cycles: for an MLP II =
max_l ⌈N_l / L_l⌉ · ⌈P_l / C_l⌉, for a CNN the largest of its stages' cycles per image (a conv
max(steps, H_out·W_out·K·G), a pool its steps, a linear layer K·G; steps = the rows × columns
of the padded map its window generator walks, docs/units/conv_stage.md). `interval` computes
II from the sidecar's `folding` text and the layer shapes itself, so the bench checks the
gateware's claim instead of repeating it.
"""

import functools
import re
from pathlib import Path

import numpy as np

from rtn_hw import weights
from rtn_hw.demo import stimulus
from rtn_hw.interop.qonnx_check import test_split
from trits import concat

from . import UnitBench

_PART = re.compile(r"(\d+)x(\d+)(?::\w+)?")


@functools.lru_cache(maxsize=None)
def _network(manifest):
    return weights.load(weights.DEFAULT_MANIFEST if manifest == "shipped" else Path(manifest))


def _steps(layer):
    """Steps per image of a conv or pool layer's window generator: the padded map's rows and
    columns from the first real one to the last that a window or a real position needs."""
    padding = layer.padding if layer.kind == "conv" else (0, 0)
    walked = 1
    for size, kernel, stride, pad in zip(layer.in_shape[1:], layer.kernel, layer.stride,
                                         padding):
        out = (size + 2 * pad - kernel) // stride + 1
        walked *= max((out - 1) * stride + kernel, pad + size) - pad
    return walked


def _interval(network, text):
    """II of folding `text` ("unfolded", "smallest" or LxC[:storage] per conv or linear
    layer; a CNN's pools take none)."""
    computing = [layer for layer in network.layers if layer.kind != "maxpool"]
    sizes = [(layer.in_features, layer.out_features) for layer in computing]
    text = text.strip()
    if text == "unfolded":
        folds = [(1, 1)] * len(sizes)
    elif text == "smallest":
        folds = [(n, p) for n, p in sizes]
    else:
        parts = [_PART.fullmatch(part.strip()) for part in text.split(",")]
        if len(parts) != len(sizes) or not all(parts):
            raise ValueError(f"folding {text!r}: expected LANESxCHANNELS per conv or linear "
                             f"layer")
        folds = [(-(-n // int(m[1])), -(-p // int(m[2]))) for (n, p), m in zip(sizes, parts)]
    cycles = {id(layer): chunks * groups for layer, (chunks, groups) in zip(computing, folds)}
    stages = []
    for layer in network.layers:
        if layer.kind == "maxpool":
            stages.append(_steps(layer))
        elif layer.kind == "conv":
            positions = layer.out_shape[1] * layer.out_shape[2]
            stages.append(max(_steps(layer), positions * cycles[id(layer)]))
        else:
            stages.append(cycles[id(layer)])
    return max(stages)


def _handshakes(network):
    """Input handshakes per image: a CNN's pixel positions, else 1."""
    if not network.convolutional:
        return 1
    _, h, w = network.layers[0].in_shape
    return h * w


class Bench(UnitBench):
    # Icarus runs these designs at tens of cycles per second (docs/sim.md): the throughput and
    # reset tests take fewer images than the generic 512 and 256 vectors, still several times
    # the images in flight at once.
    throughput_vectors = 32
    reset_vectors = 16

    def __init__(self, sidecar, rng, sparsity):
        super().__init__(sidecar, rng, sparsity)
        self.network = _network(sidecar.params["weights"])
        encoding = self.network.input
        self.features, self.pixel_max = encoding.features, encoding.pixel_max
        self.lo, self.hi = encoding.lo, encoding.hi
        if self.network.convolutional:
            # A CNN image is H·W handshakes and II cycles (81 and more for the digits CNN),
            # and Icarus runs the digits CNN at about 15 cycles a second on the loaded
            # machine: the fewest images that still show II (three results, two spacings)
            # and a reset with images in flight.
            self.throughput_vectors, self.reset_vectors = 3, 2

    @classmethod
    def interval(cls, sidecar):
        return _interval(_network(sidecar.params["weights"]), sidecar.params["folding"])

    @classmethod
    def handshakes(cls, sidecar):
        return _handshakes(_network(sidecar.params["weights"]))

    def _stim(self, pixels, what):
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, self.features)
        return {"pixels": pixels, "what": np.array(what, dtype=object).reshape(-1)}

    def corners(self):
        top, lo, hi = self.pixel_max, self.lo, self.hi
        k = np.arange(self.features)
        levels = sorted({0, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, top} & set(range(top + 1)))
        rows = [np.full(self.features, v) for v in levels]
        names = [f"every pixel {v}" for v in levels]
        rows += [np.where(k % 2, top, 0), np.where(k % 2, lo, hi)]
        names += [f"alternating 0/{top}", f"alternating {hi}/{lo}"]
        if self.vectors is not None:        # a short run (a CNN on Icarus): its first ones
            rows, names = rows[:self.vectors], names[:self.vectors]
        split = test_split(self.network)
        _, images, labels = split if split else ("", np.zeros((0, self.features)), [])
        room = len(images) if self.vectors is None else max(0, self.vectors - len(rows))
        images, labels = images[:room], labels[:room]
        return concat(self._stim(rows, names),
                      self._stim(images, [f"test image {j} (label {label})"
                                          for j, label in enumerate(labels)]))

    def random(self, count):
        rng, top = self.rng, self.pixel_max
        kind = rng.integers(0, 3, count)
        uniform = rng.integers(0, top + 1, (count, self.features))
        edges = np.array(sorted({self.lo - 1, self.lo, self.hi, self.hi + 1} & set(
            range(top + 1))))
        at_edges = rng.choice(edges, (count, self.features))
        sparse = np.where(rng.random((count, self.features)) < self.sparsity, 0, uniform)
        pixels = np.choose(kind[:, None], [uniform, at_edges, sparse])
        names = np.array(["random (uniform)", "random (at the thresholds)",
                          "random (sparse)"], dtype=object)
        return self._stim(pixels, names[kind])

    def inputs(self, stim):
        handshakes, _ = stimulus(self.network, stim["pixels"])
        return self.i.pack({"": np.array(handshakes, dtype=np.int64).reshape(
            len(handshakes), -1)}, len(handshakes))

    def expected(self, stim):
        logits, classes = self.network.forward(stim["pixels"])
        return self.o.pack({"logits": np.asarray(logits, dtype=np.int64),
                            "label": np.asarray(classes, dtype=np.int64)}, len(classes))

    def describe(self, stim, k):
        return f"{stim['what'][k]}: pixels {stim['pixels'][k].tolist()}"

    def show(self, value):
        return f"logits={self.o.ints(value, 'logits')} label={self.o.unpack(value)['label']}"
