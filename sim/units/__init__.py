"""One small bench per exported unit: its stimulus, golden outputs and notation.

Every bench subclasses `UnitBench` and is found by the sidecar's unit name
(`units.<unit>.Bench`). It reads parameters and constructor arguments from the sidecar only,
computes expectations with `rtn_hw.model` only (never the gateware), and packs payloads with
the sidecar's field map. Stimulus is a dict of arrays (see `trits.concat`): corner vectors
first, then seeded random ones.
"""

import importlib

__all__ = ["UnitBench", "load"]


class UnitBench:
    def __init__(self, sidecar, rng, sparsity):
        self.sidecar = sidecar
        self.rng = rng
        self.sparsity = sparsity
        self.i = sidecar.stream("i").payload
        self.o = sidecar.stream("o").payload

    def loads(self):
        """[(stream name, payload int)] to send before the data, e.g. thresholds or weights;
        sent again after every reset."""
        return []

    def corners(self):
        raise NotImplementedError

    def random(self, count):
        raise NotImplementedError

    def volume(self, count):
        """Stimulus of the high-volume mode (volume.py): the random mix, unless a unit has a
        better one for millions of vectors."""
        return self.random(count)

    def inputs(self, stim):
        """Flat `i` payload ints, one per vector."""
        raise NotImplementedError

    def expected(self, stim):
        """Flat `o` payload ints the golden model predicts, one per vector."""
        raise NotImplementedError

    def describe(self, stim, k):
        raise NotImplementedError

    def show(self, value):
        """An output payload int, field by field."""
        return " ".join(f"{name or 'value'}={v}" for name, v in self.o.unpack(value).items())


def load(sidecar, rng, sparsity):
    module = importlib.import_module(f"{__name__}.{sidecar.unit}")
    return module.Bench(sidecar, rng, sparsity)
