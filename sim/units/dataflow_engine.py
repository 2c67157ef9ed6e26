"""DataflowEngine: one image in, {logits, label} out, against `Network.forward`.

The network is the sidecar's `weights` parameter (shipped = weights/rtn_digits.json). Stimulus:
constant and patterned images at the pixel encoder's thresholds, then the shipped digits test
images (weights/digits_test.npz) in order, as many as the run's vector count leaves room for
(`corners`); random images after them: uniform pixels, pixels at the thresholds, and sparse
ones. The engine takes one image every II = max_l ⌈N_l / L_l⌉ · ⌈P_l / C_l⌉ cycles;
`interval` computes II from the sidecar's `folding` text itself, so the bench checks the
gateware's claim instead of repeating it.
"""

import functools
import re
from pathlib import Path

import numpy as np

from rtn_hw import weights
from trits import concat

from . import UnitBench

_PART = re.compile(r"(\d+)x(\d+)(?::\w+)?")


@functools.lru_cache(maxsize=None)
def _network(manifest):
    return weights.load(weights.DEFAULT_MANIFEST if manifest == "shipped" else Path(manifest))


def _interval(network, text):
    """II of folding `text` ("unfolded", "smallest" or LxC[:storage] per layer)."""
    sizes = [(layer.in_features, layer.out_features) for layer in network.layers]
    text = text.strip()
    if text == "unfolded":
        return 1
    if text == "smallest":
        return max(n * p for n, p in sizes)
    parts = [_PART.fullmatch(part.strip()) for part in text.split(",")]
    if len(parts) != len(sizes) or not all(parts):
        raise ValueError(f"folding {text!r}: expected LANESxCHANNELS per layer")
    return max(-(-n // int(m[1])) * -(-p // int(m[2])) for (n, p), m in zip(sizes, parts))


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

    @classmethod
    def interval(cls, sidecar):
        return _interval(_network(sidecar.params["weights"]), sidecar.params["folding"])

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
        images, labels = weights.load_digits_test()
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
        return self.i.pack({"": stim["pixels"]}, len(stim["pixels"]))

    def expected(self, stim):
        logits, classes = self.network.forward(stim["pixels"])
        return self.o.pack({"logits": np.asarray(logits, dtype=np.int64),
                            "label": np.asarray(classes, dtype=np.int64)}, len(classes))

    def describe(self, stim, k):
        return f"{stim['what'][k]}: pixels {stim['pixels'][k].tolist()}"

    def show(self, value):
        return f"logits={self.o.ints(value, 'logits')} label={self.o.unpack(value)['label']}"
