"""Population count as a compressor tree for 4-input-LUT fabrics, plus the naive adder chain.

The builder `popcount(m, bits, ...)` is meant to be called from another unit's `elaborate()`;
`Popcount` wraps it as a stream component. The general form, `compress(m, heap, ...)`, sums a
*bit heap* (bits of arbitrary binary weights), so callers can fold a weighted sum such as
Eq. 8's `popcount(c) - 2·popcount(neg)` into one tree instead of subtracting two counts.

Tree ("tree" style): each level puts a full adder (3:2 counter, two LUT3s) on every group of
three bits of equal weight, until no weight holds more than two bits; the two remaining rows
go to one carry-propagate adder (a carry chain). That final adder is one more level.
Chain ("chain" style): `((b0 + b1) + b2) + ...`, one adder per bit, one level per adder.

Pipelining: with `levels_per_stage=k` a register layer (made by the caller's `stage`
callback, e.g. `Pipeline.stage`) follows levels k, 2k, ... that are not the last level, so a
tree of L levels inserts `(L - 1) // k` stages (`popcount_stages`). The caller registers the
final output itself if it wants to.
"""

from amaranth.hdl import Cat, Const, Module, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..model._check import positive_int
from ..model.fixed import bits_for
from .pipeline import Pipeline

__all__ = ["STYLES", "popcount", "compress", "popcount_levels", "popcount_stages",
           "heap_levels", "Popcount"]

STYLES = ("tree", "chain")


def _check_style(style):
    if style not in STYLES:
        raise ValueError(f"Popcount style must be one of {', '.join(map(repr, STYLES))}, "
                         f"not {style!r}")
    return style


def _check_levels_per_stage(value):
    if value is None:
        return None
    return positive_int(value, "Levels per stage")


def _reduce_heights(heights):
    """One full-adder level on column heights; returns the new heights."""
    new = [0] * (len(heights) + 1)
    for col, h in enumerate(heights):
        fas, rest = divmod(h, 3)
        new[col] += fas + rest
        new[col + 1] += fas
    while new and new[-1] == 0:
        new.pop()
    return new


def heap_levels(heights):
    """Levels of the "tree" compressor for a heap with `heights[j]` bits of weight 2**j:
    full-adder levels until every column holds at most two bits, plus one final-adder level
    if any column still holds two."""
    heights = list(heights)
    levels = 0
    while any(h > 2 for h in heights):
        heights = _reduce_heights(heights)
        levels += 1
    return levels + (1 if any(h == 2 for h in heights) else 0)


def popcount_levels(width, style="tree"):
    """Logic levels (full-adder levels plus the final adder, or chain adders) of a popcount."""
    positive_int(width, "Popcount width")
    if _check_style(style) == "chain":
        return width - 1
    return heap_levels([width])


def popcount_stages(width, levels_per_stage=None, style="tree"):
    """Register stages `popcount(...)` inserts: `(levels - 1) // levels_per_stage`, or 0 when
    `levels_per_stage` is None or the count is purely wiring (0 levels)."""
    levels = popcount_levels(width, style)
    levels_per_stage = _check_levels_per_stage(levels_per_stage)
    if levels_per_stage is None or levels == 0:
        return 0
    return (levels - 1) // levels_per_stage


def compress(m, heap, *, width, stage=None, levels_per_stage=None, name="pc"):
    """Sum a bit heap with the "tree" compressor. `heap[j]` is a list of 1-bit Values of weight
    2**j. Returns `(value, stages_used)`, `value` unsigned(`width`); the caller guarantees the
    sum fits `width` bits (the carry out of the final adder is dropped)."""
    levels_per_stage = _check_levels_per_stage(levels_per_stage)
    cols = [[bit for bit in column] for column in heap]
    total = heap_levels([len(c) for c in cols])
    level = stages = 0

    def register(cols):
        nonlocal stages
        if stage is None or levels_per_stage is None or level % levels_per_stage \
                or level >= total:
            return cols
        out = []
        for j, column in enumerate(cols):
            if column:
                reg = stage(Cat(*column), name=f"{name}_s{stages}_w{j}")
                out.append([reg[k] for k in range(len(column))])
            else:
                out.append([])
        stages += 1
        return out

    while any(len(c) > 2 for c in cols):
        new = [[] for _ in range(len(cols) + 1)]
        for j, column in enumerate(cols):
            groups = len(column) // 3
            for g in range(groups):
                a, b, c = column[3 * g:3 * g + 3]
                # A full adder is two LUT3s on any LUT4 fabric, and reduces one bit per level.
                s = Value.cast(a ^ b ^ c)
                cy = Value.cast((a & b) | (a & c) | (b & c))
                new[j].append(s)
                new[j + 1].append(cy)
            new[j].extend(column[3 * groups:])
        while new and not new[-1]:
            new.pop()
        cols = new
        level += 1
        cols = register(cols)

    rows = [Cat(*[(c[r] if len(c) > r else Const(0, 1)) for c in cols]) for r in range(2)]
    if any(len(c) == 2 for c in cols):
        value = (rows[0] + rows[1])[:width]
    else:
        value = rows[0][:width] if len(rows[0]) >= width else rows[0]
    return Value.cast(value).as_unsigned(), stages


def _chain(m, bits, *, stage, levels_per_stage, name):
    width = len(bits)
    acc = bits[0]
    stages = 0
    for k in range(1, width):
        acc = (acc + bits[k])[:bits_for(k + 1)]
        level = k
        if (stage is not None and levels_per_stage is not None
                and level % levels_per_stage == 0 and level < width - 1):
            # Register the running sum and the bits not yet added, so the tail keeps pace.
            acc = stage(acc, name=f"{name}_s{stages}_acc")
            rest = stage(bits[k + 1:], name=f"{name}_s{stages}_rest")
            bits = Cat(bits[:k + 1], rest)
            stages += 1
    return Value.cast(acc), stages


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
    levels_per_stage = _check_levels_per_stage(levels_per_stage)
    if stage is None:
        levels_per_stage = None
    if style == "chain":
        value, stages = _chain(m, bits, stage=stage, levels_per_stage=levels_per_stage,
                               name=name)
    else:
        value, stages = compress(m, [[bits[k] for k in range(width)]], width=bits_for(width),
                                 stage=stage, levels_per_stage=levels_per_stage, name=name)
    assert stages == popcount_stages(width, levels_per_stage, style)
    return value.as_unsigned(), stages


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
