"""RTN MAC array: y_p = round((K1_p·D_p + K2_p·S_a + K0_p)·2^-s) per channel, optionally
re-encoded to trits, against `ternary_matmul` + `postprocess` (+ `encode`).

Baked weights and constants come from the sidecar's constructor arguments. With
weights=load the bench draws weights and K constants from the seed and sends them, one
channel per transfer, on the `load` stream before the data (and again after every reset).
"""

import numpy as np

from rtn_hw.model import Q, RtnConstants, encode, pack, postprocess, ternary_matmul
from trits import concat, corner_rows, notation, plane_bits, planes_notation, random_trits

from . import UnitBench


class Bench(UnitBench):
    def __init__(self, sidecar, rng, sparsity):
        super().__init__(sidecar, rng, sparsity)
        args = sidecar.arguments
        self.lanes, self.channels = args["lanes"], args["channels"]
        self.k_fmt, self.out_fmt = Q.parse(args["k_fmt"]), Q.parse(args["out_fmt"])
        if args["weights"] is None:
            self.weights = random_trits(rng, self.channels, self.lanes, 1 / 3)
            # Keep |K| small enough that y stays inside out_fmt for every D, S_a.
            top = min(self.k_fmt.max_int, 4 << self.k_fmt.frac_bits)
            k = lambda: rng.integers(-top, top + 1, self.channels)
            self.consts = RtnConstants(k1=k(), k2=k(), k0=k(), fmt=self.k_fmt, n=self.lanes)
        else:
            self.weights = np.array(args["weights"], dtype=np.int8)
            c = args["constants"]
            self.consts = RtnConstants(k1=np.array(c["k1"]), k2=np.array(c["k2"]),
                                       k0=np.array(c["k0"]), fmt=Q.parse(c["fmt"]), n=c["n"])
        self.thresholds = None
        if args["thresholds"] is not None:
            self.thresholds = tuple(np.array(v, dtype=np.int64) for v in args["thresholds"])

    def loads(self):
        if self.sidecar.arguments["weights"] is not None:
            return []
        load = self.sidecar.stream("load").payload
        nz, sg = plane_bits(self.weights)
        values = load.pack({"channel": np.arange(self.channels), "w.nz": nz, "w.sg": sg,
                            "k1": self.consts.k1, "k2": self.consts.k2, "k0": self.consts.k0},
                           self.channels)
        return [("load", v) for v in values]

    def corners(self):
        t = np.array(list(corner_rows(self.lanes).values()))
        return concat({"a": t, "zs": np.zeros(t.shape, bool)},
                      {"a": t, "zs": np.ones(t.shape, bool)})

    def random(self, count):
        a = random_trits(self.rng, count, self.lanes, self.sparsity)
        return {"a": a, "zs": self.rng.random(a.shape) < 0.5}

    def inputs(self, stim):
        nz, sg = plane_bits(stim["a"], stim["zs"])
        return self.i.pack({"nz": nz, "sg": sg}, len(stim["a"]))

    def expected(self, stim):
        d, s_a = ternary_matmul(pack(self.weights), pack(stim["a"], stim["zs"]))
        y = postprocess(d, s_a, self.consts, self.out_fmt)
        if self.thresholds is None:
            return self.o.pack({"": y}, len(y))
        nz, sg = plane_bits(encode(y, *self.thresholds))
        return self.o.pack({"nz": nz, "sg": sg}, len(y))

    def describe(self, stim, k):
        return f"a={notation(stim['a'][k], stim['zs'][k])}"

    def show(self, value):
        if self.thresholds is None:
            return f"y={self.o.ints(value, '')} ({self.out_fmt})"
        return f"trits {planes_notation(self.o, value, self.channels)}"
