"""IEEE-754 binary32 baseline: multiplier, adder and the pairwise-tree dot product.

Bit-exact with `rtn_hw.model.fp32_dot_bits`: round to nearest, ties to even after every
multiply and every add; subnormal inputs and results are kept (no flush to zero); IEEE rules for
±0 and ±inf; every NaN result is the canonical quiet NaN 0x7FC00000.

The datapath is built by two functions, `fp32_mul` and `fp32_add`, that add logic to a module
and can put up to two registers inside the operation (through a `stage` callback, normally
`Pipeline.stage`): after the significand product or the aligned add, and after the normalizing
shift. `Fp32Mul`, `Fp32Add` and `Fp32Dot` wrap them as stream components; each operation takes
1, 2 or 3 cycles (default 3, the best Fmax: on an ECP5-85k out of context, about 33-43 MHz
per unit with 2 stages, 58-63 MHz with 3, and 53.5 MHz for a 4-lane dot product).
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
    """Submodules for an operation's logic before and after its first inner register.

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
    so `exp` is the effective exponent (>= 1) and `sig` carries the hidden bit explicitly.

    `field_max` with `frac_zero` is infinity, without it NaN: the operations combine these
    tests directly, since the order of `_select` (NaN, then infinity, then zero) makes most
    of the full class tests unnecessary."""

    def __init__(self, m, x, name):
        # Each derived value is one named signal: an inline expression is written out again
        # in the Verilog at every use, and Icarus evaluates every copy. Three 1-bit signals,
        # not one `Cat`: Amaranth would write the tests once and their `Cat` again.
        field = x[FRAC:31]
        self.sign = x[31]
        self.field_zero = field_zero = _comb(m, field == 0, f"{name}_fz")
        self.field_max = _comb(m, field == 0xFF, f"{name}_fmax")
        self.frac_zero = _comb(m, x[:FRAC] == 0, f"{name}_mz")
        # A multiplexer rather than a `Cat` with the hidden bit: Icarus re-evaluates a
        # concatenation (and the product or sum it feeds) once per changed part. With the
        # field zero, bit FRAC (its lowest bit) is already 0: a slice, no concatenation.
        self.sig = _comb(m, Mux(field_zero, x[:SIG], Cat(x[:FRAC], 1)), f"{name}_sig")
        self.exp = _comb(m, Mux(field_zero, 1, field), f"{name}_exp")

    @property
    def is_nan(self):
        return self.field_max & ~self.frac_zero

    @property
    def is_inf(self):
        return self.field_max & self.frac_zero


def _normalize(m, x, name, limit=None, windows=False):
    """Shift `x` left until its top bit is set; return (shifted, shift count).

    A logarithmic shifter: each step shifts by a power of two when that many top bits are
    zero, which is a leading-zero count and the normalizing shift in one. For x = 0 the count
    is meaningless (callers treat zero apart). With `limit`, at most that many leading zeros
    are removed (the steps up to the power of two above it).

    `windows=True` builds the same function from slices: the zeros that shifting brings in
    are attached once, below `x`, and each step keeps the low part (shifted) or the high part
    (not shifted) of the previous, wider window. Icarus copies every concatenation bit by
    bit; for the multiplier's 48-bit product this form makes fp32_dot about 5 % cheaper to
    simulate, and yosys maps it to fewer ECP5 cells. The adder keeps one concatenation per
    step: its 28-bit normalizer in windows form mapped to about 60 more LUT4 (docs/sim.md)."""
    m.submodules[name] = m = Module()
    width = len(x)
    limit = width - 1 if limit is None else limit
    steps = []
    k = 1
    while k <= limit:
        steps.insert(0, k)
        k *= 2
    if windows:
        # After each step the window is k bits narrower; after the last, `width` bits again.
        x = Cat(Const(0, sum(steps)), x)
    count = []
    for k in steps:
        w = len(x)
        zero = _comb(m, x[w - k:] == 0, f"{name}_z{k}")
        if windows:
            x = _comb(m, Mux(zero, x[:w - k], x[k:]), f"{name}_n{k}")
        else:
            # The shift as a slice and a constant: `(x << k)[:width]` is written out as a
            # (width + k)-bit vector and then cut, and simulators evaluate the wide one.
            x = _comb(m, Mux(zero, Cat(Const(0, k), x[:w - k]), x), f"{name}_n{k}")
        count.insert(0, zero)
    return x, Cat(*count)


# A right shift of SIG + 2 already leaves the top bit below the guard bit (the result rounds to
# zero), so longer shifts into the subnormal range need no shifter stages.
_MAX_SHIFT = SIG + 2


def _scale(m, exp, name):
    """Everything rounding needs from the exponent: (field, shift, over).

    `exp` is the biased exponent (signed, any range) of a normalized significand's top bit.
    A tiny result (exp < 1) is shifted right into the subnormal range before rounding, so it
    rounds once, at the subnormal position, as IEEE requires; `field` is the exponent field
    of a normal result (0 for a tiny one); `over` means too large for
    any finite value. It sits after the register that follows the normalizing shift: before
    it, it would lengthen the shift stage, the longest one (measured on ECP5)."""
    m.submodules[name] = m = Module()
    normal = _comb(m, exp >= 1, f"{name}_normal")
    # The field itself, not field - 1 plus the hidden bit: no subtractor (Icarus evaluates an
    # adder bit by bit).
    field = Mux(normal, exp[:8], 0)
    shift = Mux(normal, 0, Mux(exp < 1 - _MAX_SHIFT, _MAX_SHIFT, 1 - exp))[:5]
    return field, shift, exp >= 0xFF


def _round_pack(m, scale, sig, name):
    """Round a normalized significand to binary32 (RNE) and pack it: (over, packed), the
    31-bit magnitude and whether it overflows to infinity (`_select` attaches the sign).

    `sig` has its leading one at the top bit (any width > 25); `scale` comes from `_scale`.
    Adding the rounding increment to the packed exponent-and-fraction lets a carry out of the
    fraction bump the exponent (subnormal to normal, or the largest finite to infinity)."""
    m.submodules[name] = m = Module()
    width = len(sig)
    field, shift, over = scale
    # Only the significand and guard positions (the top SIG + 1 bits) can stay above the
    # guard bit after a right shift; everything else counts towards the sticky bit alone. So
    # the shifter is SIG + 1 + _MAX_SHIFT bits wide whatever the width of `sig` (a 74-bit
    # shifter for the multiplier's 48 bits before).
    top = sig[width - SIG - 1:]
    wide = _comb(m, Cat(Const(0, _MAX_SHIFT), top) >> shift, f"{name}_wide")
    mant = wide[_MAX_SHIFT + 1:]
    guard = wide[_MAX_SHIFT]
    sticky = (sig[:width - SIG - 1] != 0) | (wide[:_MAX_SHIFT] != 0)
    up = guard & (sticky | mant[0])
    # field + fraction + up as one adder: the rounding increment is the carry into bit 1 of a
    # sum whose bit 0 is 1 + up. The hidden bit (mant[FRAC]) is left out: it is 1 exactly
    # when the result is normal, and `field` is then the exponent field itself. `~~` is the
    # same value (yosys folds it away), but Icarus runs a gate once its inputs have settled,
    # and so the adder about once per vector instead of once per changed input.
    packed = (~~Cat(Const(1, 1), Const(0, FRAC), field) + ~~Cat(up, mant[:FRAC]))[1:32]
    return over, packed


def _select(special, sign, rounded, zero):
    """The result after IEEE special cases: NaN, then infinity, then an exact zero, then the
    rounded value (`_round_pack`: infinity on overflow). The 31 magnitude bits are one
    multiplexer chain and the sign is attached once (a `Cat` per case costs simulators a
    concatenation each)."""
    nan, inf = special[0], special[1]
    over, packed = rounded
    magnitude = Mux(nan, CANONICAL_NAN & 0x7FFFFFFF,
                    Mux(inf, POS_INF, Mux(zero, 0, Mux(over, POS_INF, packed))))
    return Cat(magnitude[:31], sign & ~nan)


def _points(stage, registers):
    """Register callbacks for the two points inside an operation, in the order they fill:
    after the significand product or the aligned add, then after the normalizing shift."""
    return [stage if k < registers else _no_stage for k in range(2)]


def fp32_mul(m, a, b, *, stage=_no_stage, registers=0, name="mul"):
    """binary32 `a * b` (RNE), as a 32-bit signal driven in `m`.

    The 24x24 significand product is a plain `*`, so synthesis maps it onto DSP blocks.
    `registers` (0 to 2) registers made with `stage` (normally `Pipeline.stage`) go after the
    product and after the normalizing shift; the caller registers the result."""
    after_product, after_shift = _points(stage, registers)
    front, back = _halves(m, name)
    fa, fb = _Fields(front, a, f"{name}_a"), _Fields(front, b, f"{name}_b")
    zero_a = _comb(front, fa.field_zero & fa.frac_zero, f"{name}_za")
    zero_b = _comb(front, fb.field_zero & fb.frac_zero, f"{name}_zb")
    product = _comb(front, fa.sig * fb.sig, f"{name}_p", unsigned(2 * SIG))
    # Biased exponent of product bit 47: (ea - 127) + (eb - 127) + 1 + 127.
    exp = _comb(front, fa.exp + fb.exp - 126, f"{name}_e", signed(10))
    # `_select` tests NaN first, so "infinity" may also be set for a NaN operand: any
    # operand with the exponent field all ones. NaN: a NaN operand, or inf * 0.
    nan = ((fa.field_max & (~fa.frac_zero | zero_b)) |
           (fb.field_max & (~fb.frac_zero | zero_a)))
    # The special-case bits and the sign travel as one 4-bit register: one clocked process
    # in the Verilog instead of two (Icarus runs each once per cycle).
    flags = Cat(nan, fa.field_max | fb.field_max, zero_a | zero_b, fa.sign ^ fb.sign)

    product, exp = after_product(product, f"{name}_p_r"), after_product(exp, f"{name}_e_r")
    flags = after_product(flags, f"{name}_flags_r")

    # A normal operand's significand is >= 2^23, so a product has at most 24 leading zeros
    # unless both operands are subnormal, and then it rounds to zero however far it is
    # normalized (its exponent stays below the subnormal range).
    norm, lz = _normalize(back, product, f"{name}_norm", limit=SIG, windows=True)
    exp = _comb(back, exp - lz, f"{name}_en")

    norm, exp = after_shift(norm, f"{name}_norm_r"), after_shift(exp, f"{name}_en_r")
    scale = _scale(back, exp, f"{name}_scale")
    flags = after_shift(flags, f"{name}_flags_n")

    rounded = _round_pack(back, scale, norm, f"{name}_rnd")
    return _select(flags, flags[3], rounded, flags[2])


def fp32_add(m, a, b, *, stage=_no_stage, registers=0, name="add"):
    """binary32 `a + b` (RNE), as a 32-bit signal driven in `m`.

    Order the operands by magnitude, align the smaller one with guard, round and sticky bits
    (three extra bits make the rounding of a sum or difference exact), add or subtract, then
    normalize and round. `registers` (0 to 2) registers made with `stage` go after the add and
    after the normalizing shift; the caller registers the result."""
    after_add, after_shift = _points(stage, registers)
    front, back = _halves(m, name)
    extra = 3
    width = SIG + extra
    # Each operand is decoded once, before the operands are ordered; the order then picks
    # the significands and the exponent (narrower multiplexers than whole operands).
    fa, fb = _Fields(front, a, f"{name}_a"), _Fields(front, b, f"{name}_b")
    swap = _comb(front, b[:31] > a[:31], f"{name}_swap")
    big_sig = _comb(front, Mux(swap, fb.sig, fa.sig), f"{name}_bsig")
    small_sig = _comb(front, Mux(swap, fa.sig, fb.sig), f"{name}_ssig")
    subtract = _comb(front, fa.sign ^ fb.sign, f"{name}_subtract")

    # Both alignment distances are computed beside the magnitude compare, which then only
    # picks one, instead of subtracting after the operands are ordered (a shorter path).
    ea, eb = fa.exp, fb.exp
    # Named operators, sliced where used: Amaranth writes an unnamed operator out again at
    # every use, while a named slice or `Cat` is one more (unused) copy.
    dist_a = _comb(front, ea - eb, f"{name}_dist_a")[:8]
    dist_b = _comb(front, eb - ea, f"{name}_dist_b")[:8]
    shift = _comb(front, Mux(swap, Mux(dist_b > width, width, dist_b),
                             Mux(dist_a > width, width, dist_a)), f"{name}_ashift",
                  range(width + 1))
    wide = _comb(front, Cat(Const(0, width + extra), small_sig) >> shift, f"{name}_align")
    aligned = Cat(wide[width] | (wide[:width] != 0), wide[width + 1:])
    # One adder: subtracting is adding the (width + 1)-bit complement plus one, the carry-in
    # the carry into bit 1 of a sum whose bit 0 is 1 + subtract; the same sum as a separate
    # adder and subtractor. The second operand is one multiplexer, so Icarus evaluates the
    # adder about once per cycle (a `Cat` re-evaluates it on every changed part).
    addend = _comb(front, Mux(subtract, Cat(1, ~aligned, 1), Cat(0, aligned, 0)),
                   f"{name}_addend")
    total = _comb(front, (Cat(Const(1, 1), Const(0, extra), big_sig) + addend)[1:width + 2],
                  f"{name}_sum", unsigned(width + 1))
    # `_select` tests NaN first, so "infinity" may also be set for a NaN operand. Infinity
    # is the larger operand (the sum's sign); inf - inf is NaN.
    nan = fa.is_nan | fb.is_nan | (fa.is_inf & fb.is_inf & subtract)
    # The special-case bits and the sign as one register (see `fp32_mul`).
    flags = Cat(nan, fa.field_max | fb.field_max, subtract, Mux(swap, fb.sign, fa.sign))
    exp = _comb(front, Mux(swap, eb, ea), f"{name}_e", unsigned(8))

    total, exp = after_add(total, f"{name}_sum_r"), after_add(exp, f"{name}_e_r")
    flags = after_add(flags, f"{name}_flags_r")

    norm, lz = _normalize(back, total, f"{name}_norm")
    # Bit `width` of the sum (the carry position) has weight 2^(exp - 127 + 1).
    exp = _comb(back, exp + 1 - lz, f"{name}_en")

    norm, exp = after_shift(norm, f"{name}_norm_r"), after_shift(exp, f"{name}_en_r")
    scale = _scale(back, exp, f"{name}_scale")
    flags = after_shift(flags, f"{name}_flags_n")

    # A normalized sum without its top bit is zero. An exact zero sum is -0 only when both
    # operands are -0; x + (-x) is +0 under RNE.
    zero = _comb(back, ~norm[-1], f"{name}_zero")
    sign = flags[3] & ~(flags[2] & zero)
    rounded = _round_pack(back, scale, norm, f"{name}_rnd")
    return _select(flags, sign, rounded, zero)


def _check_stages(value, what):
    """Cycles per operation: 1 (output register only), 2 or 3 (see `_points`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} stage count must be 1, 2 or 3, not {value!r}")
    if value not in (1, 2, 3):
        raise ValueError(f"{what} stage count must be 1, 2 or 3, not {value!r}")
    return int(value)


def fp32_dot_latency(lanes, mul_stages=3, add_stages=3):
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
        result = self._build(m, self.i.payload.a, self.i.payload.b, stage=pipe.stage,
                             registers=self._stages - 1)
        m.d.comb += self.o.payload.eq(pipe.stage(result, "result_r"))
        return m


class Fp32Mul(_Fp32Op):
    """Stream binary32 multiplier: payload {a, b} raw bit patterns → a * b (RNE).

    `stages` (1, 2 or 3) is the latency: an output register, plus registers after the
    significand product (2 and 3) and after the normalizing shift (3)."""
    _what = "Multiplier"
    _build = staticmethod(fp32_mul)

    def __init__(self, *, stages=3):
        super().__init__(stages)


class Fp32Add(_Fp32Op):
    """Stream binary32 adder: payload {a, b} raw bit patterns → a + b (RNE).

    `stages` (1, 2 or 3) is the latency: an output register, plus registers after the aligned
    add (2 and 3) and after the normalizing shift (3)."""
    _what = "Adder"
    _build = staticmethod(fp32_add)

    def __init__(self, *, stages=3):
        super().__init__(stages)


class Fp32Dot(wiring.Component):
    """binary32 dot product of `lanes`-element vectors, one vector pair per cycle.

    Input payload {a, b}: `lanes` raw binary32 bit patterns each. Output payload: the 32-bit
    result of `rtn_hw.model.fp32_dot_bits`: `lanes` multipliers, then a balanced pairwise tree
    of adders (element 2k + element 2k+1 per level; an odd last element is delayed and moves up
    unchanged). Every operation rounds to nearest even. Multipliers take `mul_stages` cycles,
    each tree level `add_stages`; the whole pipeline stalls together under backpressure."""

    def __init__(self, lanes, *, mul_stages=3, add_stages=3):
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

        def stage(value, name):
            # Data registers without reset (the valid bits reset): their contents matter only
            # under a valid bit, and Icarus then evaluates one multiplexer less per register.
            return pipe.stage(value, name, reset=False)

        def op_stages(build, count, a, b, name):
            # The last register of every operation is its output register; the others sit
            # inside it (see `fp32_mul` and `fp32_add`).
            result = build(m, a, b, stage=stage, registers=count - 1, name=name)
            return stage(result, f"{name}_r")

        # Each lane's operands as named 32-bit signals, so that a multiplier's submodule takes
        # them as ports instead of the whole payload: otherwise every submodule repeats the
        # payload's field views and part selects (at 64 lanes, 10,242 selects of the 4,096-bit
        # payload in the Verilog instead of 386, and 2.46 MB of Verilog instead of 1.70).
        payload = self.i.payload
        values = [op_stages(fp32_mul, self._mul_stages, _comb(m, payload.a[k], f"a{k}"),
                            _comb(m, payload.b[k], f"b{k}"), f"mul{k}")
                  for k in range(self._lanes)]
        for level in range(self.levels):
            summed = [op_stages(fp32_add, self._add_stages, values[2 * k], values[2 * k + 1],
                                f"add{level}_{k}")
                      for k in range(len(values) // 2)]
            if len(values) % 2:
                # The odd element waits as many cycles as an adder takes, to stay aligned.
                carry = values[-1]
                for s in range(self._add_stages):
                    carry = stage(carry, f"pass{level}_{s}")
                summed.append(carry)
            values = summed
        m.d.comb += self.o.payload.eq(values[0])
        return m
