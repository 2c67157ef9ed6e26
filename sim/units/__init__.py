"""One small bench per exported unit: its stimulus, golden outputs and notation.

Every bench subclasses `UnitBench` and is found by the sidecar's unit name
(`units.<unit>.Bench`). It reads parameters and constructor arguments from the sidecar only,
computes expectations with `rtn_hw.model` only (never the gateware), and packs payloads with
the sidecar's field map. Stimulus is a dict of arrays (see `trits.concat`): corner vectors
first, then seeded random ones. A unit that takes one vector every II cycles says so in
`interval` (bench.py then expects that spacing) and may run fewer vectors in the throughput
and reset tests; one that takes a vector in several input handshakes says how many in
`handshakes` (bench.py then times each vector from its first).
"""

import importlib

__all__ = ["UnitBench", "load", "interval", "handshakes"]


class UnitBench:
    # Vectors of bench.py's test_throughput and test_reset (a slow unit runs fewer).
    throughput_vectors = 512
    reset_vectors = 256

    def __init__(self, sidecar, rng, sparsity):
        self.sidecar = sidecar
        self.rng = rng
        self.sparsity = sparsity
        # The run's vector count (RTN_SIM_VECTORS; set by `load`), for a unit whose corners
        # are many.
        self.vectors = None
        self.i = sidecar.stream("i").payload
        self.o = sidecar.stream("o").payload

    @classmethod
    def interval(cls, sidecar):
        """Cycles between vectors at full rate (the initiation interval): 1, unless a unit
        takes one vector per several cycles."""
        return 1

    @classmethod
    def handshakes(cls, sidecar):
        """Input handshakes per output vector: 1, unless a unit takes a vector in several
        (a CNN engine: one pixel position per handshake)."""
        return 1

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


def _bench_class(sidecar):
    return importlib.import_module(f"{__name__}.{sidecar.unit}").Bench


def load(sidecar, rng, sparsity, vectors=None):
    bench = _bench_class(sidecar)(sidecar, rng, sparsity)
    bench.vectors = vectors
    return bench


def interval(sidecar):
    """The unit's initiation interval in cycles (`UnitBench.interval`)."""
    return _bench_class(sidecar).interval(sidecar)


def handshakes(sidecar):
    """Input handshakes per output vector (`UnitBench.handshakes`)."""
    return _bench_class(sidecar).handshakes(sidecar)
