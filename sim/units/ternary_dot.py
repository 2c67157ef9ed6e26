"""TernaryDot: D = Σ t_w·t_a (Eq. 8) and S_a = Σ t_a, against `ternary_dot`/`activation_sum`."""

import itertools

import numpy as np

from rtn_hw.model import activation_sum, pack, ternary_dot
from trits import concat, corner_rows, notation, plane_bits, random_trits

from . import UnitBench


class Bench(UnitBench):
    def __init__(self, sidecar, rng, sparsity):
        super().__init__(sidecar, rng, sparsity)
        self.lanes = sidecar.params["lanes"]
        self.activation_sum = sidecar.params["activation_sum"]

    def _stim(self, w, a, wz=None, az=None):
        shape = w.shape
        return {"w": w, "a": a,
                "wz": np.zeros(shape, bool) if wz is None else wz,
                "az": np.zeros(shape, bool) if az is None else az}

    def corners(self):
        rows = list(corner_rows(self.lanes).values())
        w, a = zip(*itertools.product(rows, rows))
        w, a = np.array(w), np.array(a)
        plain = self._stim(w, a)
        # Zeros with the don't-care sign bit set, on either side and on both.
        ones = np.ones_like(w, dtype=bool)
        return concat(plain, self._stim(w, a, wz=ones), self._stim(w, a, az=ones),
                      self._stim(w, a, ones, ones))

    def random(self, count):
        w = random_trits(self.rng, count, self.lanes, self.rng.uniform(0, 1, (count, 1)))
        a = random_trits(self.rng, count, self.lanes, self.sparsity)
        return self._stim(w, a, self.rng.random(w.shape) < 0.5, self.rng.random(a.shape) < 0.5)

    def inputs(self, stim):
        w_nz, w_sg = plane_bits(stim["w"], stim["wz"])
        a_nz, a_sg = plane_bits(stim["a"], stim["az"])
        return self.i.pack({"w.nz": w_nz, "w.sg": w_sg, "a.nz": a_nz, "a.sg": a_sg},
                           len(stim["w"]))

    def expected(self, stim):
        w, a = pack(stim["w"], stim["wz"]), pack(stim["a"], stim["az"])
        columns = {"d": ternary_dot(w, a)}
        if self.activation_sum:
            columns["s_a"] = activation_sum(a)
        return self.o.pack(columns, len(stim["w"]))

    def describe(self, stim, k):
        return (f"w={notation(stim['w'][k], stim['wz'][k])} "
                f"a={notation(stim['a'][k], stim['az'][k])}")
