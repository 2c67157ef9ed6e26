"""IEEE-754 binary32 baseline: multiplier, adder and the pairwise-tree dot product.

Bit-exact with `rtn_hw.model.fp32_dot_bits`: round to nearest, ties to even after every
multiply and every add; subnormal inputs and results are kept (no flush to zero); IEEE rules for
±0 and ±inf; every NaN result is the canonical quiet NaN 0x7FC00000.

The datapath is built by two functions, `fp32_mul` and `fp32_add`, that add logic to a module
and can put one register in the middle of the operation (through a `stage` callback, normally
`Pipeline.stage`). `Fp32Mul`, `Fp32Add` and `Fp32Dot` wrap them as stream components.
"""

import numbers

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import _check
from .pipeline import Pipeline

__all__ = ["CANONICAL_NAN", "POS_INF", "fp32_mul", "fp32_add", "fp32_dot_latency",
           "Fp32Mul", "Fp32Add", "Fp32Dot"]

CANONICAL_NAN = 0x7FC00000
POS_INF = 0x7F800000

FRAC = 23          # stored fraction bits
SIG = FRAC + 1     # significand bits with the hidden one


def _comb(m, value, name, shape=None):
    """A named signal driven by `value`, for values that are shared or worth seeing in traces.

    Everything else stays an inline expression: the Amaranth simulator settles a module's
    combinational logic one signal level per pass, so short signal chains simulate faster."""
    sig = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.comb += sig.eq(value)
    return sig


def _halves(m, name):
    """Submodules for the logic before and after an operation's middle register.

    Separate modules keep each block's combinational logic apart, so the simulator re-evaluates
    a block only when its own inputs change."""
    front, back = Module(), Module()
    m.submodules[f"{name}_front"] = front
    m.submodules[f"{name}_back"] = back
    return front, back


def _no_stage(value, name):
    return value


class _Fields:
    """Fields of a binary32 operand. A subnormal has exponent field 0 but scales like field 1,
    so `exp` is the effective exponent (>= 1) and `sig` carries the hidden bit explicitly."""

    def __init__(self, x):
        field = x[FRAC:31]
        frac = x[:FRAC]
        self.sign = x[31]
        self.is_nan = (field == 0xFF) & (frac != 0)
        self.is_inf = (field == 0xFF) & (frac == 0)
        self.sig = Cat(frac, field != 0)
        self.exp = Mux(field == 0, 1, field)


def _normalize(m, x, name):
    """Shift `x` left until its top bit is set; return (shifted, shift count).

    A logarithmic shifter: each step shifts by a power of two when that many top bits are
    zero, which is a leading-zero count and the normalizing shift in one. For x = 0 the count
    is meaningless (callers treat zero apart)."""
    m.submodules[name] = m = Module()
    width = len(x)
    steps = []
    k = 1
    while k < width:
        steps.insert(0, k)
        k *= 2
    count = []
    for k in steps:
        zero = _comb(m, x[width - k:] == 0, f"{name}_z{k}")
        x = _comb(m, Mux(zero, (x << k)[:width], x), f"{name}_n{k}")
        count.insert(0, zero)
    return x, Cat(*count)


def _round_pack(m, sign, exp, sig, name):
    """Round a normalized significand to binary32 (RNE) and pack it, as a 32-bit signal.

    `sig` has its leading one at the top bit (any width > 25); `exp` is the biased exponent of
    that top bit (signed, may be < 1 or > 254). Tiny results shift right into the subnormal
    range before rounding, so they round once, at the subnormal position, as IEEE requires.
    Adding the rounding increment to the packed exponent-and-fraction lets a carry out of the
    fraction bump the exponent (subnormal to normal, or the largest finite to infinity)."""
    m.submodules[name] = m = Module()
    width = len(sig)
    # A shift of SIG + 2 already leaves the top bit below the guard bit (the result rounds to
    # zero), so longer shifts need no shifter stages.
    cap = SIG + 2
    exp = _comb(m, exp, f"{name}_exp")
    normal = exp >= 1
    shift = _comb(m, Mux(normal, 0, Mux(exp < 1 - cap, cap, 1 - exp)), f"{name}_dshift",
                  range(cap + 1))
    # Bits pushed out below `sig` still count towards the sticky bit.
    wide = _comb(m, Cat(Const(0, cap), sig) >> shift, f"{name}_wide")
    kept = wide[cap:]
    mant = kept[width - SIG:]
    guard = kept[width - SIG - 1]
    sticky = (kept[:width - SIG - 1] != 0) | (wide[:cap] != 0)
    up = guard & (sticky | mant[0])
    packed = (Cat(Const(0, FRAC), Mux(normal, exp - 1, 0)[:8]) + mant + up)[:31]
    return Mux(exp >= 0xFF, Cat(Const(POS_INF, 31), sign), Cat(packed, sign))


def _select(special, sign, rounded, zero):
    """The result after IEEE special cases: NaN, then infinity, then an exact zero."""
    nan, inf = special[0], special[1]
    return Mux(nan, CANONICAL_NAN,
               Mux(inf, Cat(Const(POS_INF, 31), sign),
                   Mux(zero, Cat(Const(0, 31), sign), rounded)))


def fp32_mul(m, a, b, *, stage=_no_stage, name="mul"):
    """binary32 `a * b` (RNE), as a 32-bit signal driven in `m`.

    The 24x24 significand product is a plain `*`, so synthesis maps it onto DSP blocks. With
    `stage` set (e.g. `Pipeline.stage`), one register sits right after that product."""
    front, back = _halves(m, name)
    fa, fb = _Fields(a), _Fields(b)
    zero_a, zero_b = fa.sig == 0, fb.sig == 0
    product = _comb(front, fa.sig * fb.sig, f"{name}_p", unsigned(2 * SIG))
    # Biased exponent of product bit 47: (ea - 127) + (eb - 127) + 1 + 127.
    exp = _comb(front, fa.exp + fb.exp - 126, f"{name}_e", signed(11))
    nan = fa.is_nan | fb.is_nan | (fa.is_inf & zero_b) | (fb.is_inf & zero_a)
    special = _comb(front, Cat(nan, fa.is_inf | fb.is_inf, zero_a | zero_b), f"{name}_special")
    sign = _comb(front, fa.sign ^ fb.sign, f"{name}_sign")

    product, exp = stage(product, f"{name}_p_r"), stage(exp, f"{name}_e_r")
    special, sign = stage(special, f"{name}_special_r"), stage(sign, f"{name}_sign_r")

    norm, lz = _normalize(back, product, f"{name}_norm")
    rounded = _round_pack(back, sign, exp - lz, norm, f"{name}_rnd")
    return _comb(back, _select(special, sign, rounded, special[2]), f"{name}_result",
                 unsigned(32))


def fp32_add(m, a, b, *, stage=_no_stage, name="add"):
    """binary32 `a + b` (RNE), as a 32-bit signal driven in `m`.

    Order the operands by magnitude, align the smaller one with guard, round and sticky bits
    (three extra bits make the rounding of a sum or difference exact), add or subtract, then
    normalize and round. With `stage` set, one register sits after the add."""
    front, back = _halves(m, name)
    extra = 3
    width = SIG + extra
    swap = b[:31] > a[:31]
    big = _comb(front, Mux(swap, b, a), f"{name}_big", unsigned(32))
    small = _comb(front, Mux(swap, a, b), f"{name}_small", unsigned(32))
    fb, fs = _Fields(big), _Fields(small)
    subtract = fb.sign ^ fs.sign

    dist = (fb.exp - fs.exp)[:8]
    shift = Mux(dist > width, width, dist)
    wide = _comb(front, Cat(Const(0, width + extra), fs.sig) >> shift, f"{name}_align")
    aligned = Cat(wide[width] | (wide[:width] != 0), wide[width + 1:])
    big_sig = Cat(Const(0, extra), fb.sig)
    total = _comb(front, Mux(subtract, big_sig - aligned, big_sig + aligned)[:width + 1],
                  f"{name}_sum", unsigned(width + 1))
    nan = fb.is_nan | fs.is_nan | (fb.is_inf & fs.is_inf & subtract)
    special = _comb(front, Cat(nan, fb.is_inf, subtract), f"{name}_special")
    sign, exp = big[31], _comb(front, fb.exp, f"{name}_e", unsigned(8))

    total, exp = stage(total, f"{name}_sum_r"), stage(exp, f"{name}_e_r")
    special, sign = stage(special, f"{name}_special_r"), stage(sign, f"{name}_sign_r")

    zero = total == 0
    # An exact zero sum is -0 only when both operands are -0; x + (-x) is +0 under RNE.
    sign = sign & ~(special[2] & zero)
    norm, lz = _normalize(back, total, f"{name}_norm")
    # Bit `width` of the sum (the carry position) has weight 2^(exp - 127 + 1).
    rounded = _round_pack(back, sign, exp + 1 - lz, norm, f"{name}_rnd")
    return _comb(back, _select(special, sign, rounded, zero), f"{name}_result", unsigned(32))


def _check_stages(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} stage count must be 1 or 2, not {value!r}")
    if value not in (1, 2):
        raise ValueError(f"{what} stage count must be 1 or 2, not {value!r}")
    return int(value)


def fp32_dot_latency(lanes, mul_stages=2, add_stages=2):
    """Cycles from input to output handshake: the multiplier plus one adder per tree level."""
    return mul_stages + add_stages * (lanes - 1).bit_length()


def _pair_layout():
    return data.StructLayout({"a": unsigned(32), "b": unsigned(32)})


class _Fp32Op(wiring.Component):
    def __init__(self, stages):
        self._stages = _check_stages(stages, self._what)
        super().__init__({"i": In(stream.Signature(_pair_layout())),
                          "o": Out(stream.Signature(unsigned(32)))})

    @property
    def stages(self):
        return self._stages

    @property
    def latency(self):
        return self._stages

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, self._stages, name="pipe")
        inner = pipe.stage if self._stages == 2 else _no_stage
        result = self._build(m, self.i.payload.a, self.i.payload.b, stage=inner)
        m.d.comb += self.o.payload.eq(pipe.stage(result, "result_r"))
        return m


class Fp32Mul(_Fp32Op):
    """Stream binary32 multiplier: payload {a, b} raw bit patterns → a * b (RNE).

    `stages` (1 or 2) is the latency; with 2, a register follows the significand product."""
    _what = "Multiplier"
    _build = staticmethod(fp32_mul)

    def __init__(self, *, stages=2):
        super().__init__(stages)


class Fp32Add(_Fp32Op):
    """Stream binary32 adder: payload {a, b} raw bit patterns → a + b (RNE).

    `stages` (1 or 2) is the latency; with 2, a register follows the aligned add."""
    _what = "Adder"
    _build = staticmethod(fp32_add)

    def __init__(self, *, stages=2):
        super().__init__(stages)


class Fp32Dot(wiring.Component):
    """binary32 dot product of `lanes`-element vectors, one vector pair per cycle.

    Input payload {a, b}: `lanes` raw binary32 bit patterns each. Output payload: the 32-bit
    result of `rtn_hw.model.fp32_dot_bits`: `lanes` multipliers, then a balanced pairwise tree
    of adders (element 2k + element 2k+1 per level; an odd last element is delayed and moves up
    unchanged). Every operation rounds to nearest even. Multipliers take `mul_stages` cycles,
    each tree level `add_stages`; the whole pipeline stalls together under backpressure."""

    def __init__(self, lanes, *, mul_stages=2, add_stages=2):
        self._lanes = _check.positive_int(lanes, "Lane count")
        self._mul_stages = _check_stages(mul_stages, "Multiplier")
        self._add_stages = _check_stages(add_stages, "Adder")
        vector = data.ArrayLayout(unsigned(32), self._lanes)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"a": vector, "b": vector}))),
            "o": Out(stream.Signature(unsigned(32))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def mul_stages(self):
        return self._mul_stages

    @property
    def add_stages(self):
        return self._add_stages

    @property
    def levels(self):
        """Adder tree depth, ceil(log2(lanes))."""
        return (self._lanes - 1).bit_length()

    @property
    def latency(self):
        return fp32_dot_latency(self._lanes, self._mul_stages, self._add_stages)

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, self.latency, name="pipe")

        def op_stages(build, count, a, b, name):
            # The last register of every operation is its output register; a two-stage
            # operation adds one inside (after the significand product / the aligned add).
            inner = pipe.stage if count == 2 else _no_stage
            return pipe.stage(build(m, a, b, stage=inner, name=name), f"{name}_r")

        values = [op_stages(fp32_mul, self._mul_stages, self.i.payload.a[k],
                            self.i.payload.b[k], f"mul{k}")
                  for k in range(self._lanes)]
        for level in range(self.levels):
            summed = [op_stages(fp32_add, self._add_stages, values[2 * k], values[2 * k + 1],
                                f"add{level}_{k}")
                      for k in range(len(values) // 2)]
            if len(values) % 2:
                # The odd element waits as many cycles as an adder takes, to stay aligned.
                carry = values[-1]
                for s in range(self._add_stages):
                    carry = pipe.stage(carry, f"pass{level}_{s}")
                summed.append(carry)
            values = summed
        m.d.comb += self.o.payload.eq(values[0])
        return m
