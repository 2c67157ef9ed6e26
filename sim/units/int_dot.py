"""IntDot: exact Σ a_k·b_k of signed 8/16-bit lanes, against `model.int_dot`."""

import numpy as np

from rtn_hw.model import int_dot

from . import UnitBench


class Bench(UnitBench):
    def __init__(self, sidecar, rng, sparsity):
        super().__init__(sidecar, rng, sparsity)
        self.lanes, self.width = sidecar.params["lanes"], sidecar.params["width"]
        self.min, self.max = -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1

    def corners(self):
        k = np.arange(self.lanes)
        lo, hi = self.min, self.max
        rows = [(0, 0), (lo, lo), (hi, hi), (lo, hi), (hi, lo), (1, -1), (-1, -1),
                (np.where(k % 2, lo, hi), np.where(k % 2, lo, hi)),
                (np.where(k % 2, lo, hi), np.where(k % 2, hi, lo))]
        a, b = zip(*[(np.broadcast_to(x, self.lanes), np.broadcast_to(y, self.lanes))
                     for x, y in rows])
        return {"a": np.array(a, dtype=np.int64), "b": np.array(b, dtype=np.int64)}

    def random(self, count):
        draw = lambda: self.rng.integers(self.min, self.max + 1, (count, self.lanes))
        return {"a": draw(), "b": draw()}

    def inputs(self, stim):
        return self.i.pack({"a": stim["a"], "b": stim["b"]}, len(stim["a"]))

    def expected(self, stim):
        return self.o.pack({"": int_dot(stim["a"], stim["b"], self.width)}, len(stim["a"]))

    def describe(self, stim, k):
        return f"a={stim['a'][k].tolist()} b={stim['b'][k].tolist()}"

    def show(self, value):
        return str(self.o.fields[""].get(value))
