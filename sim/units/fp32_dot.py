"""Fp32Dot: binary32 dot product (RNE products, pairwise tree), against `model.fp32_dot_bits`.

Operands are raw bit patterns. Corners: ±0, ±inf, quiet and signalling NaN, the largest and
smallest normals, subnormals, exact cancellation, overflow of products and of sums, inf·0 and
inf - inf. Random vectors mix values of widely spread magnitude (the common case), pairs that
cancel exactly, and arbitrary bit patterns (NaN, inf and subnormal inputs anywhere).
"""

import numpy as np

from rtn_hw.model import fp32_dot_bits

from . import UnitBench

POS_ZERO, NEG_ZERO = 0x00000000, 0x80000000
POS_INF, NEG_INF = 0x7F800000, 0xFF800000
QNAN, SNAN = 0x7FC00000, 0x7F800001
MAX_NORMAL, MIN_NORMAL = 0x7F7FFFFF, 0x00800000
MIN_SUB, MAX_SUB = 0x00000001, 0x007FFFFF
ONE, TWO, HALF = 0x3F800000, 0x40000000, 0x3F000000
SIGN = 0x80000000


def _bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)


class Bench(UnitBench):
    def __init__(self, sidecar, rng, sparsity):
        super().__init__(sidecar, rng, sparsity)
        self.lanes = sidecar.params["lanes"]

    def corners(self):
        n = self.lanes
        k = np.arange(n)
        alt = lambda x, y: np.where(k % 2, y, x)
        rows = []
        for special in (POS_ZERO, NEG_ZERO, POS_INF, NEG_INF, QNAN, SNAN, MAX_NORMAL,
                        MIN_NORMAL, MIN_SUB, MAX_SUB, MAX_NORMAL | SIGN, MIN_SUB | SIGN):
            rows += [(special, ONE), (special, special), (special, NEG_ZERO)]
        rows += [
            (alt(ONE, ONE), alt(ONE, ONE | SIGN)),                  # exact cancellation
            (alt(MAX_NORMAL, MAX_NORMAL), alt(ONE, ONE | SIGN)),    # huge terms cancel
            (MAX_NORMAL, TWO),                                      # products overflow
            (MAX_NORMAL, ONE),                                      # sums overflow
            (alt(MAX_NORMAL, MAX_NORMAL | SIGN), TWO),              # +inf + -inf = NaN
            (alt(POS_INF, POS_ZERO), alt(POS_ZERO, POS_INF)),       # inf·0 = NaN
            (MIN_NORMAL, HALF),                                     # subnormal products
            (MIN_SUB, HALF),                                        # underflow to zero
            (alt(MIN_SUB, MIN_SUB | SIGN), ONE),                    # subnormal cancellation
            (alt(POS_ZERO, NEG_ZERO), ONE),                         # +0 + -0
            (NEG_ZERO, ONE),                                        # -0 + -0 = -0
        ]
        a, b = zip(*[(np.broadcast_to(x, n), np.broadcast_to(y, n)) for x, y in rows])
        return {"a": np.array(a, dtype=np.int64), "b": np.array(b, dtype=np.int64)}

    def random(self, count):
        rng, shape = self.rng, (count, self.lanes)
        spread = lambda: rng.standard_normal(shape) * 2.0 ** rng.integers(-40, 40, shape)
        a, b = _bits(spread()), _bits(spread())
        mode = rng.random(count)
        # Exact cancellation: lane 2k+1 repeats lane 2k with b negated.
        cancel = mode < 0.1
        if self.lanes > 1:
            pairs = self.lanes // 2 * 2
            a[cancel, 1:pairs:2] = a[cancel, 0:pairs:2]
            b[cancel, 1:pairs:2] = b[cancel, 0:pairs:2] ^ SIGN
        # Arbitrary bit patterns, per lane, in a further 10 % of the vectors.
        wild = (mode >= 0.1) & (mode < 0.2)
        lanes = wild[:, None] & (rng.random(shape) < 0.3)
        a = np.where(lanes, rng.integers(0, 1 << 32, shape), a)
        b = np.where(lanes, rng.integers(0, 1 << 32, shape), b)
        return {"a": a, "b": b}

    def inputs(self, stim):
        return self.i.pack({"a": stim["a"], "b": stim["b"]}, len(stim["a"]))

    def expected(self, stim):
        result = fp32_dot_bits(stim["a"].astype(np.uint32), stim["b"].astype(np.uint32))
        return self.o.pack({"": result.astype(np.int64)}, len(stim["a"]))

    def describe(self, stim, k):
        show = lambda row: "[" + ", ".join(f"{int(x):08x}" for x in row) + "]"
        return f"a={show(stim['a'][k])} b={show(stim['b'][k])} (binary32 bits)"

    def show(self, value):
        return f"{value:08x} ({np.uint32(value).view(np.float32)!r})"
