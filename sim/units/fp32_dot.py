"""Fp32Dot: binary32 dot product (RNE products, pairwise tree), against `model.fp32_dot_bits`.

Operands are raw bit patterns. Corners: ±0, ±inf, quiet and signalling NaN, the largest and
smallest normals, subnormals, exact cancellation, overflow of products and of sums, inf·0 and
inf - inf. Random vectors mix values of widely spread magnitude (the common case), pairs that
cancel exactly, and arbitrary bit patterns (NaN, inf and subnormal inputs anywhere).

The high-volume mode (volume.py) adds TestFloat-style special values: every operand drawn
from a class (zero, subnormal, near the smallest normal, near 1, any normal, near overflow,
inf, quiet/signalling NaN, raw bits) with a random sign and a significand that is random or
a TestFloat pattern (all ones, a single bit, a run of ones at either end). Vectors are built
per scenario so that the special cases reach the result rather than drowning in a NaN: finite
classes only, tiny values (underflow, subnormal products and sums), huge values (product and
sum overflow, cancelling huge terms), or every class with inf and NaN in about one lane.
"""

import numpy as np

from rtn_hw.model import fp32_dot_bits
from trits import concat

from . import UnitBench

POS_ZERO, NEG_ZERO = 0x00000000, 0x80000000
POS_INF, NEG_INF = 0x7F800000, 0xFF800000
QNAN, SNAN = 0x7FC00000, 0x7F800001
MAX_NORMAL, MIN_NORMAL = 0x7F7FFFFF, 0x00800000
MIN_SUB, MAX_SUB = 0x00000001, 0x007FFFFF
ONE, TWO, HALF = 0x3F800000, 0x40000000, 0x3F000000
SIGN = 0x80000000


# Operand classes of the special-value mix: [low, high) of the biased exponent. "normal"
# stays where products neither overflow nor underflow; "below_one" is [2^-7, 1).
EXPONENTS = {"zero": (0, 1), "subnormal": (0, 1), "min_normal": (1, 3), "unit": (120, 135),
             "below_one": (120, 127), "normal": (64, 191), "huge": (250, 255)}
FINITE = ("zero", "subnormal", "min_normal", "unit", "normal")
TINY = ("zero", "subnormal", "min_normal")


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

    def _significand(self, shape):
        """23-bit significands: random, or a TestFloat pattern (ones, one bit, runs)."""
        rng = self.rng
        run = rng.integers(0, 24, shape)
        patterns = np.stack([
            rng.integers(0, 1 << 23, shape),
            np.full(shape, (1 << 23) - 1),                          # all ones
            np.left_shift(1, rng.integers(0, 23, shape)),           # a single bit
            (1 << 23) - np.left_shift(1, 23 - run),                 # ones from the top
            np.left_shift(1, run) - 1,                              # ones from the bottom
        ])
        pick = np.where(rng.random(shape) < 0.5, 0, rng.integers(1, 5, shape))
        return np.take_along_axis(patterns, pick[None], 0)[0] & ((1 << 23) - 1)

    def _operands(self, classes, shape, nan_rate):
        """Bit patterns of operands drawn from `classes`, plus inf/NaN at `nan_rate`."""
        rng = self.rng
        kind = rng.integers(0, len(classes), shape)
        exponent = np.zeros(shape, dtype=np.int64)
        for index, name in enumerate(classes):
            lo, hi = EXPONENTS[name]
            exponent = np.where(kind == index, rng.integers(lo, hi, shape), exponent)
        significand = self._significand(shape)
        if "zero" in classes:
            significand = np.where(kind == classes.index("zero"), 0, significand)
        bits = (exponent << 23) | significand
        special = rng.random(shape) < nan_rate
        nan_payload = self._significand(shape) | np.where(rng.random(shape) < 0.5, 1 << 22, 1)
        which = rng.integers(0, 3, shape)               # inf, quiet NaN, signalling NaN
        odd = np.where(which == 0, POS_INF, np.where(
            which == 1, POS_INF | nan_payload | (1 << 22), POS_INF | (nan_payload & ~(1 << 22))))
        # A signalling NaN needs a nonzero payload below the quiet bit.
        odd = np.where((which == 2) & ((odd & ((1 << 22) - 1)) == 0), odd | 1, odd)
        bits = np.where(special, odd, bits)
        raw = rng.random(shape) < 0.05
        bits = np.where(raw & (nan_rate > 0), rng.integers(0, 1 << 32, shape), bits)
        return bits | np.where(rng.random(shape) < 0.5, SIGN, 0)

    def special(self, count):
        """TestFloat-style special values by scenario (see the module docstring)."""
        rng, lanes = self.rng, self.lanes
        scenario = rng.integers(0, 5, count)
        a = np.zeros((count, lanes), dtype=np.int64)
        b = np.zeros_like(a)
        for index, (a_classes, b_classes, nan_rate) in enumerate([
                (FINITE, FINITE, 0.0),
                (TINY, ("below_one", "min_normal", "subnormal"), 0.0),   # subnormal results
                (("subnormal",), ("below_one",), 0.0),                   # subnormal sums
                (("huge", "normal"), ("below_one", "unit"), 0.0),        # overflow
                (FINITE + ("huge",), FINITE, 0.5 / lanes)]):
            rows = np.flatnonzero(scenario == index)
            shape = (len(rows), lanes)
            a[rows] = self._operands(a_classes, shape, nan_rate)
            b[rows] = self._operands(b_classes, shape, nan_rate)
        # Exact cancellation in a fifth of the vectors: lane 2k+1 = -(lane 2k).
        cancel = rng.random(count) < 0.2
        if lanes > 1:
            pairs = lanes // 2 * 2
            a[cancel, 1:pairs:2] = a[cancel, 0:pairs:2]
            b[cancel, 1:pairs:2] = b[cancel, 0:pairs:2] ^ SIGN
        return {"a": a, "b": b}

    def volume(self, count):
        """Half the random mix, half special values."""
        half = count // 2
        return concat(self.random(half), self.special(count - half))

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
