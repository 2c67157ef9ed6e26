"""TernaryEncoder: codes y → trits nz = y > hi | y < lo, sg = y > hi, against `model.encode`.

Thresholds are the sidecar's (thresholds=fixed/random) or, with thresholds=load, drawn here
from the seed and sent on the `t` stream before the data (and again after every reset).
Random inputs honour the sparsity: each lane lies inside [lo, hi] (a zero) with that
probability, else above hi or below lo.
"""

import numpy as np

from rtn_hw.model import Q, encode
from trits import plane_bits, planes_notation

from . import UnitBench


class Bench(UnitBench):
    def __init__(self, sidecar, rng, sparsity):
        super().__init__(sidecar, rng, sparsity)
        self.lanes = sidecar.params["lanes"]
        self.fmt = Q.parse(sidecar.params["in_fmt"])
        low, high = self.fmt.min_int - 1, self.fmt.max_int + 1
        if sidecar.arguments["thresholds"] is None:
            # Narrow bands around 0 (a few units wide), lo <= hi + 1, and on the first lanes
            # the extremes: never non-zero, never zero (lo = hi + 1), always +1, always -1.
            span = max(1, min(self.fmt.max_int, 4 << self.fmt.frac_bits))
            hi = rng.integers(-span, span + 1, self.lanes)
            lo = hi + 1 - rng.integers(0, 2 * span + 2, self.lanes)
            for k, (l, h) in enumerate([(low, high), (1, 0), (low, low), (high, high)]):
                if k < self.lanes:
                    lo[k], hi[k] = l, h
            hi = np.clip(hi, low, high)
            self.lo = np.minimum(np.clip(lo, low, high), hi + 1).astype(np.int64)
            self.hi = hi.astype(np.int64)
        else:
            lo, hi = sidecar.arguments["thresholds"]
            self.lo, self.hi = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)

    def loads(self):
        if self.sidecar.arguments["thresholds"] is not None:
            return []
        t = self.sidecar.stream("t").payload
        return [("t", t.pack({"lo": self.lo[None], "hi": self.hi[None]}, 1)[0])]

    def corners(self):
        f, lanes = self.fmt, self.lanes
        clip = lambda v: np.clip(v, f.min_int, f.max_int)
        k = np.arange(lanes)
        rows = [np.zeros(lanes), np.full(lanes, f.min_int), np.full(lanes, f.max_int),
                clip(self.lo), clip(self.hi), clip(self.lo - 1), clip(self.hi + 1),
                np.where(k % 2, f.min_int, f.max_int), np.where(k % 2, f.max_int, f.min_int)]
        return {"y": np.array(rows, dtype=np.int64)}

    def random(self, count):
        f, rng = self.fmt, self.rng
        shape = (count, self.lanes)
        lo = np.broadcast_to(np.clip(self.lo, f.min_int, f.max_int), shape)
        hi = np.broadcast_to(np.clip(self.hi, f.min_int, f.max_int), shape)
        u = rng.random(shape)
        inside = lo + np.floor(u * np.maximum(hi - lo + 1, 1)).astype(np.int64)
        above = hi + 1 + np.floor(u * np.maximum(f.max_int - hi, 1)).astype(np.int64)
        below = f.min_int + np.floor(u * np.maximum(lo - f.min_int, 1)).astype(np.int64)
        pick = rng.random(shape)
        side = rng.random(shape) < 0.5
        y = np.where(pick < self.sparsity, inside, np.where(side, above, below))
        return {"y": np.clip(y, f.min_int, f.max_int)}

    def inputs(self, stim):
        return self.i.pack({"": stim["y"]}, len(stim["y"]))

    def expected(self, stim):
        nz, sg = plane_bits(encode(stim["y"], self.lo, self.hi))
        return self.o.pack({"nz": nz, "sg": sg}, len(stim["y"]))

    def describe(self, stim, k):
        return f"y={stim['y'][k].tolist()} (codes of {self.fmt})"

    def show(self, value):
        return planes_notation(self.o, value, self.lanes)
