"""Wire formats shared by every unit, in one place (docs/rtn.md §2)."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from ..model.fixed import dot_width

__all__ = ["trit_planes", "dot_width", "fixed", "threshold_trit"]


def trit_planes(lanes):
    """Two `lanes`-bit planes; element i is bit i. value = nz ? (sg ? +1 : -1) : 0."""
    return data.StructLayout({"nz": unsigned(lanes), "sg": unsigned(lanes)})


def fixed(fmt):
    """Amaranth shape of a signed fixed-point format `rtn_hw.model.Q`."""
    return signed(fmt.width)


def threshold_trit(value, lo, hi):
    """The activation encoder's rule (docs/rtn.md §3): (nz, sg) of value against thresholds,
    +1 above `hi`, -1 below `lo`, else 0. With lo <= hi + 1 the two comparisons never both
    hold, so nz needs no priority."""
    above = value > hi
    return above | (value < lo), above
