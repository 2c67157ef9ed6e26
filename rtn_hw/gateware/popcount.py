"""Population count for 4-input-LUT fabrics with carry chains, plus the naive adder chain.

The builder `popcount(m, bits, ...)` is meant to be called from another unit's `elaborate()`;
`Popcount` wraps it as a stream component. `compress(m, singles, terms, ...)` is the general
form: it sums single bits and unsigned multi-bit terms, so callers can feed it their own
LUT-sized leaves.

Tree ("tree" style). Yosys maps an adder of five or more result bits to a carry chain (CCU2C on
ECP5, SB_CARRY on iCE40, CARRY4 on Xilinx), which abc cannot restructure, while small adders and
full-adder (Wallace) trees become LUT logic that abc merges into wide LUT5/LUT6 muxes (measured
in bench/popcount_compare.py: about 3 LUT4 per input bit). So every tree level here is a few
long carry chains, each adding many independent *fields* side by side: field k adds two terms
a_k + b_k of equal width w into w + 1 bits. Fields are kept apart by a guard position just
above each field where both adder inputs carry the same single bit g: there the carry out is g
whatever the carry in (so nothing leaks between fields), the sum bit is the field's top bit,
and g enters the next field as its carry in, so every guard also counts one bit for free. A
guard of two constant zeros would make yosys split the chain into small (LUT-mapped) adders.

Each level: if there are more single bits than terms, ceil((S - T) / 2) singles become 1-bit
terms (so about as many singles stay in reserve for the guards of this and later levels as
there are terms), and at least two terms exist while anything is left to add; the terms,
sorted by maximum value, are added in neighbouring pairs (an odd one passes through), fields
packed into chains of at most `MAX_CHAIN` positions. `compress_levels` counts the levels by
running the same plan without building logic.

Chain ("chain" style): `((b0 + b1) + b2) + ...`, one adder per bit and one level per adder.

Pipelining: with `levels_per_stage=k` a register layer (made by the caller's `stage`
callback, e.g. `Pipeline.stage`) follows levels k, 2k, ... that are not the last level, so a
count of L levels inserts `(L - 1) // k` stages (`popcount_stages`). The caller registers the
final output itself if it wants to.
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..model._check import positive_int
from ..model.fixed import bits_for
from .pipeline import Pipeline

__all__ = ["STYLES", "MAX_CHAIN", "popcount", "compress", "compress_levels", "popcount_levels",
           "popcount_stages", "cut_levels", "adder_tree", "tree_levels", "stage_all", "Popcount"]

STYLES = ("tree", "chain")
MAX_CHAIN = 24   # adder positions per carry chain: bounds the carry delay of one level


def _check_style(style):
    if style not in STYLES:
        raise ValueError(f"Popcount style must be one of {', '.join(map(repr, STYLES))}, "
                         f"not {style!r}")
    return style


def _check_levels_per_stage(value):
    if value is None:
        return None
    return positive_int(value, "Levels per stage")


def _plan_level(singles, terms, add, record=None):
    """One compressor level. `singles` is a list of 1-bit items, `terms` a list of
    (item, top); `add(a_parts, b_parts)` builds one chain from equal-length lists of
    (item, width) parts and returns the sum item. Returns the new (singles, terms).
    If `record` is a list, each field made is appended as (a, b, g, out_item, top), g being
    the single injected as its carry in (or None): the formal tests prove out = a + b + g."""
    singles, terms = list(singles), list(terms)
    promote = max(0, -(-(len(singles) - len(terms)) // 2), 2 - len(terms))
    promote = min(promote, len(singles))
    terms += [(singles.pop(), 1) for _ in range(promote)]
    terms.sort(key=lambda t: t[1])
    pairs = [(terms[k], terms[k + 1]) for k in range(0, len(terms) - 1, 2)]
    rest = terms[2 * len(pairs):]
    out = []
    k = 0
    while k < len(pairs):
        a_parts, b_parts, fields, pos, carry_in, g = [], [], [], 0, 0, None
        while k < len(pairs):
            (a, ta), (b, tb) = pairs[k]
            w = max(bits_for(ta), bits_for(tb))
            top = ta + tb + carry_in
            a_parts.append((a, bits_for(ta), w))
            b_parts.append((b, bits_for(tb), w))
            fields.append((pos, bits_for(top), top, a, b, g))
            pos += w
            k += 1
            carry_in, g = 0, None
            if bits_for(top) > w:
                more = k < len(pairs) and pos + 1 + 2 * bits_for(pairs[k][0][1]) <= MAX_CHAIN
                if more and singles:
                    # The guard: carry out = g whatever the carry in; g feeds the next field.
                    g = singles.pop()
                    carry_in = 1
                    a_parts.append((g, 1, 1))
                    b_parts.append((g, 1, 1))
                else:
                    a_parts.append((None, 0, 1))
                    b_parts.append((None, 0, 1))
                pos += 1
            if not (k < len(pairs) and pos + 2 * bits_for(pairs[k][0][1]) <= MAX_CHAIN):
                break
        total = add(a_parts, b_parts, pos)
        for off, width, top, a, b, g_in in fields:
            out.append(((total, off, width), top))
            if record is not None:
                record.append((a, b, g_in, (total, off, width), top))
    return singles, rest + out


def _dry_add(a_parts, b_parts, positions):
    return None


def compress_levels(singles, tops=()):
    """Levels `compress` uses for `singles` single bits and terms of maximum values `tops`."""
    s, t = [None] * singles, [(None, top) for top in tops]
    levels = 0
    while len(s) + len(t) > 1:
        s, t = _plan_level(s, t, _dry_add)
        levels += 1
    return levels


def popcount_levels(width, style="tree"):
    """Logic levels of a popcount of `width` bits (see the module docstring)."""
    positive_int(width, "Popcount width")
    if _check_style(style) == "chain":
        return width - 1
    return compress_levels(width)


def cut_levels(levels, levels_per_stage):
    """Levels after which a register layer goes: multiples of `levels_per_stage` below
    `levels` (none if `levels_per_stage` is None)."""
    levels_per_stage = _check_levels_per_stage(levels_per_stage)
    if levels_per_stage is None:
        return frozenset()
    return frozenset(range(levels_per_stage, levels, levels_per_stage))


def popcount_stages(width, levels_per_stage=None, style="tree"):
    """Register stages `popcount(...)` inserts: `(levels - 1) // levels_per_stage`, or 0 when
    `levels_per_stage` is None or the count has no logic level."""
    return len(cut_levels(popcount_levels(width, style), levels_per_stage))


def _fit(value, width):
    value = Value.cast(value).as_unsigned()
    if len(value) >= width:
        return value[:width]
    return Cat(value, Const(0, width - len(value)))


def _value(item):
    """An item of the plan (a Value, or a field (sum, offset, width) of a chain) as a Value."""
    if isinstance(item, tuple):
        total, off, width = item
        return total[off:off + width]
    return Value.cast(item)


def _chain_adder(m, name):
    count = 0

    def add(a_parts, b_parts, positions):
        nonlocal count
        a = Cat(*[_fit(_value(v), w) if v is not None else Const(0, w) for v, _, w in a_parts])
        b = Cat(*[_fit(_value(v), w) if v is not None else Const(0, w) for v, _, w in b_parts])
        # A named signal per chain: an expression used by several fields would otherwise be
        # emitted once per use, and the copies would multiply level by level.
        total = Signal(positions, name=f"{name}_chain{count}")
        count += 1
        # `~~`: the same value (synthesis folds it away: ECP5 area unchanged), but an
        # event-driven simulator evaluates an adder again for every operand bit that changes,
        # and each re-evaluation ripples through every later level. Icarus defers its
        # bitwise gates to the end of the delta step, so behind them each chain's adder runs
        # about once per operand per cycle (TernaryDot at 256 lanes: ~1.4x on Icarus 11).
        m.d.comb += total.eq(~~a + ~~b)
        return total
    return add


def compress(m, singles, terms=(), *, stage=None, cuts=frozenset(), name="sum"):
    """Sum 1-bit `singles` and unsigned `terms` (a list of (value, max_value)) with the
    carry-chain compressor; a register layer follows every level whose number is in `cuts`.
    Returns `(value, top, stages)`: the sum as unsigned(bits_for(top)), its maximum `top`,
    and the number of register layers inserted. An empty input sums to Const(0)."""
    s = [Value.cast(b) for b in singles]
    t = [(Value.cast(v), top) for v, top in terms]
    if stage is None:
        cuts = frozenset()
    add = _chain_adder(m, name)
    level = stages = 0
    while len(s) + len(t) > 1:
        s, t = _plan_level(s, t, add)
        t = [(_value(item), top) for item, top in t]
        level += 1
        if level in cuts:
            values = stage_all(stage, s + [v for v, _ in t], name=f"{name}_s{stages}")
            s, t = values[:len(s)], [(v, top) for v, (_, top) in zip(values[len(s):], t)]
            stages += 1
    if t:
        value, top = t[0]
    elif s:
        value, top = s[0], 1
    else:
        value, top = Const(0, 1), 0
    return _fit(value, bits_for(top)), top, stages


def stage_all(stage, values, name):
    """Register every value in `values` through one `stage` register (one signal, not one
    per bit, which keeps simulation fast) and return the registered slices in order."""
    values = [Value.cast(v) for v in values]
    if not values:
        return []
    reg = stage(Cat(*values), name=name)
    out, offset = [], 0
    for v in values:
        out.append(reg[offset:offset + len(v)])
        offset += len(v)
    return out


def tree_levels(terms):
    """Levels of `adder_tree` over `terms` terms: ceil(log2(terms))."""
    return (positive_int(terms, "Term count") - 1).bit_length()


def adder_tree(m, terms, *, stage=None, cuts=frozenset(), level=0, name="sum"):
    """Sum `terms`, a list of `(value, max_value)` with unsigned values, by a balanced binary
    tree of plain adders (`tree_levels(len(terms))` levels; an odd term passes through). A
    register layer follows every level whose number, counting on from `level`, is in `cuts`.
    Returns `(value, top, stages)`: the sum (unsigned, bits_for(top) bits), its maximum and
    the stages inserted. The MAC core's "adder" trees sum its 2-bit lane terms with it;
    `compress` is the smaller structure on carry-chain fabrics."""
    terms = [(Value.cast(v), top) for v, top in terms]
    stages = 0
    count = 0
    while len(terms) > 1:
        paired = []
        for k in range(0, len(terms) - 1, 2):
            (va, ta), (vb, tb) = terms[k], terms[k + 1]
            total = Signal(bits_for(ta + tb), name=f"{name}_add{count}")
            count += 1
            m.d.comb += total.eq(va + vb)
            paired.append((total, ta + tb))
        terms = paired + terms[2 * len(paired):]
        level += 1
        if stage is not None and level in cuts:
            values = stage_all(stage, [v for v, _ in terms], name=f"{name}_s{stages}")
            terms = [(v, top) for v, (_, top) in zip(values, terms)]
            stages += 1
    value, top = terms[0]
    return _fit(value, bits_for(top)), top, stages


def _popcount_chain(m, bits, cuts, stage, name):
    width = len(bits)
    acc = bits[0]
    stages = 0
    for k in range(1, width):
        acc = Value.cast(acc + bits[k])[:bits_for(k + 1)]
        if k % 16 == 0:
            # A signal now and then keeps the expression shallow (Python recursion).
            step = Signal(bits_for(k + 1), name=f"{name}_acc{k}")
            m.d.comb += step.eq(acc)
            acc = step
        if k in cuts and stage is not None:
            # Register the running sum and the bits not yet added, so the tail keeps pace.
            acc = stage(acc, name=f"{name}_s{stages}_acc")
            bits = Cat(bits[:k + 1], stage(bits[k + 1:], name=f"{name}_s{stages}_rest"))
            stages += 1
    return acc, stages


def popcount(m, bits, *, stage=None, levels_per_stage=None, style="tree", name="pc"):
    """Number of set bits in `bits`, built into module `m`.

    `stage(value, name)` makes a pipeline register (e.g. `Pipeline.stage`); with
    `levels_per_stage=k` one register layer follows every k-th logic level except the last, so
    the result comes `popcount_stages(len(bits), k, style)` cycles after `bits`. With
    `stage=None` or `levels_per_stage=None` the count is combinational.

    Returns `(value, stages_used)`; `value` is unsigned(bits_for(len(bits)))."""
    bits = Value.cast(bits)
    width = positive_int(len(bits), "Popcount width")
    _check_style(style)
    cuts = cut_levels(popcount_levels(width, style), levels_per_stage)
    if style == "chain":
        value, stages = _popcount_chain(m, bits, cuts, stage, name)
    else:
        value, _, stages = compress(m, [bits[k] for k in range(width)], stage=stage, cuts=cuts,
                                    name=name)
    return _fit(value, bits_for(width)), stages


class Popcount(wiring.Component):
    """Stream popcount: `o.payload` = number of set bits of `i.payload`, one vector per cycle.

    Ports: `i` stream of unsigned(width); `o` stream of unsigned(bits_for(width)).
    Latency: `popcount_stages(width, levels_per_stage, style) + 1` (the output register)."""

    def __init__(self, width, *, style="tree", levels_per_stage=None):
        self._width = positive_int(width, "Popcount width")
        self._style = _check_style(style)
        self._levels_per_stage = _check_levels_per_stage(levels_per_stage)
        super().__init__({
            "i": In(stream.Signature(unsigned(self._width))),
            "o": Out(stream.Signature(unsigned(bits_for(self._width)))),
        })

    @property
    def width(self):
        return self._width

    @property
    def style(self):
        return self._style

    @property
    def levels_per_stage(self):
        return self._levels_per_stage

    @property
    def latency(self):
        return popcount_stages(self._width, self._levels_per_stage, self._style) + 1

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, self.latency, name="pc")
        value, _ = popcount(m, self.i.payload, stage=pipe.stage,
                            levels_per_stage=self._levels_per_stage, style=self._style)
        m.d.comb += self.o.payload.eq(pipe.stage(value, name="pc_out"))
        return m
