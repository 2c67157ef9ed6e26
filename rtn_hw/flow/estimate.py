"""A lower bound on a unit's cells, read from its RTLIL before synthesis: "does not fit" for free.

Only multipliers are counted (the cells that dominate the baselines), and only what every
mapping must spend on them, so a bound over the device means the run cannot fit and yosys
need not run (fp32 all-LUT at 16 lanes on the iCE40 took 242 s to find that out):

* all-LUT: an a × b multiplier of variable operands needs at least a·b LUT4, and 2·a·b once
  both are 8+ bits wide (yosys 0.70 measured, register in and out, synth_ice40: 4 × 4 → 28
  SB_LUT4 = 1.75·a·b, 8 × 8 → 158 = 2.47·a·b, 12 × 12 → 365 = 2.53·a·b, 24 × 24 → 1,563 =
  2.71·a·b; synth_ecp5 -nodsp uses more; IntDot-16 at 16 lanes, 3.1·a·b per multiplier);
* with DSPs: synth_ice40 -dsp / synth_ecp5 cut every multiplier into D × D pieces (yosys's
  mul2dsp, D = 16 for SB_MAC16, 18 for MULT18X18D) and put each piece of 2+ bit operands
  (on the iCE40 also 11+ product bits) into a DSP tile: 24 × 24 → 4 tiles on both (measured:
  Fp32Dot at 64 lanes, 256 MULT18X18D). Counted only for multipliers of 9+ bit operands,
  which are always mapped so.

Constant operand bits do not count (yosys folds them). Every module of Amaranth's RTLIL is
instantiated once, so the module's cells add up.

The ECP5-85k rows are synthesized even when they cannot fit: the headline comparisons
(README, docs/synth.md) take the baselines' area there, Fp32Dot at 64 lanes included.
"""

import re

__all__ = ["DSP_WIDTH", "multipliers", "lower_bound"]

DSP_WIDTH = {"ice40": 16, "ecp5": 18}
DSP_PRODUCT_MIN = {"ice40": 11, "ecp5": 0}     # mul2dsp's DSP_Y_MINWIDTH per family
# Targets whose rows are needed even when they do not fit (see above).
COUNTS_NEEDED = ("ecp5-85k",)
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
    def pieces(n):
        full, rest = divmod(n, width)
        return [width] * full + ([rest] if rest >= 2 else [])

    for a, b in multipliers(rtlil):
        if mapping == "dsp" and width:
            if a >= 9 and b >= 9:
                dsp += sum(1 for x in pieces(a) for y in pieces(b)
                           if x + y >= DSP_PRODUCT_MIN[family])
        elif a >= 4 and b >= 4:
            lut += (2 if a >= 8 and b >= 8 else 1) * a * b
    return {"lut": lut, "dsp": dsp}


def misfit(target, rtlil, mapping):
    """Reasons why `rtlil` cannot fit `target`, from the bound alone ([] if it may fit)."""
    from .devices import DEVICES, TARGETS
    device = DEVICES[target]
    if device["lut4"] is None or target in COUNTS_NEEDED:
        return []
    bound = lower_bound(rtlil, TARGETS[target].family, mapping)
    reasons = []
    if bound["lut"] > device["lut4"]:
        reasons.append(f"at least {bound['lut']} LUT4 for its multipliers > {device['lut4']}")
    if bound["dsp"] > device["dsp"]:
        reasons.append(f"at least {bound['dsp']} {device['dsp_cell'].split()[0]} > "
                       f"{device['dsp']}")
    return reasons
