"""TernaryDecoder: trits → codes of α·t + β per lane, against `model.decode` with the
sidecar's α and β (scalars or per-lane arrays)."""

import numpy as np

from rtn_hw.model import Q, decode
from trits import concat, corner_rows, notation, plane_bits, random_trits

from . import UnitBench


class Bench(UnitBench):
    def __init__(self, sidecar, rng, sparsity):
        super().__init__(sidecar, rng, sparsity)
        self.lanes = sidecar.params["lanes"]
        self.fmt = Q.parse(sidecar.arguments["out_fmt"])
        self.alpha = np.asarray(sidecar.arguments["alpha"], dtype=np.float64)
        self.beta = np.asarray(sidecar.arguments["beta"], dtype=np.float64)

    def corners(self):
        t = np.array(list(corner_rows(self.lanes).values()))
        plain = {"t": t, "zs": np.zeros(t.shape, bool)}
        return concat(plain, {"t": t, "zs": np.ones(t.shape, bool)})

    def random(self, count):
        t = random_trits(self.rng, count, self.lanes, self.sparsity)
        return {"t": t, "zs": self.rng.random(t.shape) < 0.5}

    def inputs(self, stim):
        nz, sg = plane_bits(stim["t"], stim["zs"])
        return self.i.pack({"nz": nz, "sg": sg}, len(stim["t"]))

    def expected(self, stim):
        return self.o.pack({"": decode(stim["t"], self.alpha, self.beta, self.fmt)},
                           len(stim["t"]))

    def describe(self, stim, k):
        return f"t={notation(stim['t'][k], stim['zs'][k])}"

    def show(self, value):
        return f"codes {self.o.ints(value, '')} ({self.fmt})"
