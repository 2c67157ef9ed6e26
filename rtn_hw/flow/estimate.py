"""A lower bound on a unit's cells, read from its RTLIL before synthesis: "does not fit" for free.

Only multipliers are counted (the cells that dominate the baselines), and only what every
mapping must spend on them, so a bound over the device means the run cannot fit and yosys
need not run (fp32 all-LUT at 16 lanes on the iCE40 took 242 s to find that out):

* all-LUT: an a × b multiplier of variable operands needs at least a·b LUT4 (yosys 0.70
  measured, register in and out: 4 × 4 → 28 SB_LUT4 = 1.75·a·b, 8 × 8 → 158 = 2.5·a·b,
  24 × 24 → 1,563 = 2.7·a·b; ECP5 -nodsp uses more);
* with DSPs: synth_ice40 -dsp / synth_ecp5 put every multiplier of 2+ bit operands into DSP
  tiles (16 × 16 SB_MAC16, 18 × 18 MULT18X18D), at least ⌊a/D⌋·⌊b/D⌋ of them when both are
  at least 9 bits wide (the remainder pieces may go to LUTs).

Constant operand bits do not count (yosys folds them). Every module of Amaranth's RTLIL is
instantiated once, so the module's cells add up.
"""

import math
import re

__all__ = ["DSP_WIDTH", "multipliers", "lower_bound"]

DSP_WIDTH = {"ice40": 16, "ecp5": 18}
_CELL = re.compile(r"^\s*cell \$mul \S+\n(.*?)^\s*end$", re.M | re.S)
_WIRE = re.compile(r"^\s*wire (?:width (\d+) )?(?:(?:input|output|inout) \d+ )?(?:\w+ )*"
                   r"(\S+)$", re.M)
_TOKEN = re.compile(r"(\d+)'[01xz-]+|(\\?\S+?)(?: \[(\d+)(?::(\d+))?\])?(?=\s|$)")


def _module_wires(text):
    widths = {}
    for match in _WIRE.finditer(text):
        widths[match[2]] = int(match[1] or 1)
    return widths


def _variable_bits(spec, widths):
    """Bits of an RTLIL signal spec that are not constants."""
    spec = spec.strip().removeprefix("{").removesuffix("}").strip()
    bits = 0
    for match in _TOKEN.finditer(spec):
        const, name, hi, lo = match.groups()
        if const is not None:
            continue
        if hi is None:
            bits += widths.get(name, 0)
        else:
            bits += int(hi) - (int(lo) if lo is not None else int(hi)) + 1
    return bits


def multipliers(rtlil):
    """[(a, b)] variable operand widths of every $mul cell of an RTLIL text."""
    out = []
    for module in re.split(r"^module ", rtlil, flags=re.M)[1:]:
        widths = _module_wires(module)
        for cell in _CELL.finditer(module):
            ports = dict(re.findall(r"^\s*connect \\([AB]) (.+)$", cell[1], re.M))
            if "A" in ports and "B" in ports:
                out.append((_variable_bits(ports["A"], widths),
                            _variable_bits(ports["B"], widths)))
    return out


def lower_bound(rtlil, family, mapping):
    """{"lut": n, "dsp": n} that any synthesis of `rtlil` for `family` must use at least."""
    lut = dsp = 0
    width = DSP_WIDTH.get(family)
    for a, b in multipliers(rtlil):
        if mapping == "dsp" and width:
            if a >= 9 and b >= 9:
                dsp += max(1, (a // width) * (b // width))
        elif a >= 4 and b >= 4:
            lut += a * b
    return {"lut": lut, "dsp": dsp}


def misfit(target, rtlil, mapping):
    """Reasons why `rtlil` cannot fit `target`, from the bound alone ([] if it may fit)."""
    from .devices import DEVICES, TARGETS
    device = DEVICES[target]
    if device["lut4"] is None:
        return []
    bound = lower_bound(rtlil, TARGETS[target].family, mapping)
    reasons = []
    if bound["lut"] > device["lut4"]:
        reasons.append(f"at least {bound['lut']} LUT4 for its multipliers > {device['lut4']}")
    if bound["dsp"] > device["dsp"]:
        reasons.append(f"at least {bound['dsp']} {device['dsp_cell'].split()[0]} > "
                       f"{device['dsp']}")
    return reasons
