"""Device data, synthesis targets and the area figure: what a sweep's cell counts mean.

A target names a yosys cell library (family), its synthesis commands (with DSPs, all-LUT) and,
where an open place-and-route exists, nextpnr's device arguments. `parse_stat` splits yosys's
`stat -json` into the unit's cells and the register harness's; `classify` sorts cell types
into LUT / FF / carry / DSP / BRAM / LUT-RAM; `area_lc` gives one area figure in logic cells;
`check_fit` says why counts do not fit a device.
"""

import dataclasses
import fnmatch
import json

from .yosys import UNIT_MODULE

__all__ = ["DEVICES", "Target", "TARGETS", "CELLS", "LUT_NAME", "LC_AREA_VTR", "DSP_LC",
           "BRAM_LC_PER_KBIT", "BRAM_KBITS", "AREA_DEFINITION", "parse_stat", "classify",
           "cell_class", "area_lc", "check_fit"]

# --- area conversion: VTR 40 nm reference architecture tile areas -------------------------------
# A logic cluster of 10 LUT6 (+FF, routing) is 53,894 units, so one logic cell is 5,389.4. A 36×36
# multiplier tile is 396,000 units and fractures into two 18×18: 36.7 cells per 18×18-class DSP
# (MULT18X18D, SB_MAC16 16×16, DSP48E1 25×18). A 32 Kb RAM tile is 548,000 units: 3.18 cells per
# Kbit. The same cell figure is used for a LUT4 cell (ECP5, iCE40), which undercounts a DSP
# against LUT4 logic, i.e. it favours the DSP-heavy baselines.
LC_AREA_VTR = 53_894 / 10
DSP_LC = 396_000 / 2 / LC_AREA_VTR
BRAM_LC_PER_KBIT = 548_000 / 32 / LC_AREA_VTR
BRAM_KBITS = {"DP16KD": 18, "PDPW16KD": 18, "SB_RAM40_4K": 4, "SB_SPRAM256KA": 256,
              "RAMB18E1": 18, "RAMB36E1": 36}
AREA_DEFINITION = (
    "logic cells = LUTs (+2 per ECP5 CCU2C) + 36.74 per DSP (an 18x18-class multiplier: half "
    "of VTR's 40 nm 36x36 tile, 396,000 / 2 / 5,389.4 per logic cell) + 3.18 per Kbit of "
    "block RAM (VTR 32 Kb tile 548,000)")

DEVICES = {
    "ecp5-85k": {
        "device": "Lattice LFE5U-85F, CABGA381",
        "lut4": 83_640, "ff": 83_640, "dsp": 156, "dsp_cell": "MULT18X18D (18×18)",
        "bram": 208, "bram_cell": "DP16KD (18 Kb)", "io": 205,
        "source": "Lattice ECP5 family data sheet FPGA-DS-02012 (84K LUTs, 208 EBR, 156 "
                  "18×18 multipliers; CABGA381: 205 user I/O); LUT/FF/DSP figures match "
                  "nextpnr-ecp5's --report bel counts (TRELLIS_COMB 83,640, MULT18X18D 156)",
    },
    "ice40-up5k": {
        "device": "Lattice iCE40UP5K, SG48",
        "lut4": 5_280, "ff": 5_280, "dsp": 8, "dsp_cell": "SB_MAC16 (16×16)",
        "bram": 30, "bram_cell": "SB_RAM40_4K (4 Kb)", "spram": 4, "io": 39,
        "source": "Lattice iCE40 UltraPlus data sheet FPGA-DS-02008 (5,280 LUT4, 8 DSP, 30 "
                  "EBR, 4 SPRAM; SG48: 39 I/O); matches nextpnr-ice40's --report (ICESTORM_LC "
                  "5,280, ICESTORM_DSP 8, SB_IO 39)",
    },
    "xilinx-lut6": {
        "device": "generic 7-series fabric (synth_xilinx -family xc7)",
        "lut4": None, "ff": None, "dsp": None, "dsp_cell": "DSP48E1 (25×18)",
        "bram": None, "bram_cell": "RAMB18E1/RAMB36E1", "io": None,
        "source": "counts only: no device is chosen and no open place-and-route exists for "
                  "7-series here, so nothing is checked for fit",
    },
}


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    family: str                 # yosys family / cell library
    synth: str                  # synthesis command with DSPs
    synth_lut: str              # all-LUT synthesis command
    pnr_args: tuple | None      # nextpnr device arguments, None for counts only
    freq_mhz: float | None      # nextpnr timing constraint
    power_target: str | None    # `rtn_hw.flow.power.estimate_power` target

    def synth_command(self, mapping):
        return self.synth if mapping == "dsp" else self.synth_lut


# Both nextpnr families route with router2: the default router1 did not finish within
# 20 minutes on fp32 at 16 lanes (ECP5, 95k arcs) nor on TernaryDot at 64/256 lanes (iCE40),
# which router2 routes in 6 min and in seconds. One router for every run keeps RTN and baseline
# Fmax comparable (router2 costs the 64-lane MAC array 14 % of Fmax on ECP5).
TARGETS = {t.name: t for t in (
    Target("ecp5-85k", "ecp5", "synth_ecp5 -top top", "synth_ecp5 -top top -nodsp",
           ("--85k", "--package", "CABGA381", "--router", "router2"), 200, "ecp5"),
    Target("ice40-up5k", "ice40", "synth_ice40 -dsp -top top", "synth_ice40 -top top",
           ("--up5k", "--package", "sg48", "--router", "router2"), 100, "ice40"),
    Target("xilinx-lut6", "xilinx", "synth_xilinx -family xc7 -noiopad -top top",
           "synth_xilinx -family xc7 -noiopad -nodsp -top top", None, None, None),
)}

# Cell classes per family (fnmatch patterns over yosys cell types).
CELLS = {
    "ecp5": {"lut": ("LUT4",), "ff": ("TRELLIS_FF",), "carry": ("CCU2C",),
             "dsp": ("MULT18X18D", "ALU54B"), "bram": ("DP16KD", "PDPW16KD"),
             "lutram": ("TRELLIS_DPR16X4",)},
    "ice40": {"lut": ("SB_LUT4",), "ff": ("SB_DFF*",), "carry": ("SB_CARRY",),
              "dsp": ("SB_MAC16",), "bram": ("SB_RAM40_4K", "SB_SPRAM256KA"), "lutram": ()},
    "xilinx": {"lut": ("LUT[1-6]",), "ff": ("FD[RSCP]E", "FD[RSCP]E_1"),
               "carry": ("CARRY4", "CARRY8"), "dsp": ("DSP48E1",),
               "bram": ("RAMB18E1", "RAMB36E1"),
               "lutram": ("RAM32M", "RAM64M", "RAM*X1[SD]*", "SRL16E", "SRLC32E")},
}
LUT_NAME = {"ecp5": "LUT4", "ice40": "LUT4", "xilinx": "LUT6"}


def parse_stat(text, *, top="top", unit=UNIT_MODULE):
    """`stat -json` text → (unit cells, harness cells), each {cell type: count}.

    The harness is the top module's own cells minus the instance of the unit. Submodules
    left in the unit (synth_xilinx does not flatten) are expanded into their cells."""
    modules = {name.lstrip("\\"): entry for name, entry in json.loads(text)["modules"].items()}

    def own(name):
        if name not in modules:
            raise ValueError(f"module {name!r} not in yosys stat (modules: "
                             f"{', '.join(modules)})")
        return {t.lstrip("\\$"): int(n) for t, n in modules[name]["num_cells_by_type"].items()}

    def cells(name):
        out = {}
        for ctype, n in own(name).items():
            inner = cells(ctype) if ctype in modules else {ctype: 1}
            for t, m in inner.items():
                out[t] = out.get(t, 0) + n * m
        return {t: n for t, n in out.items() if n}

    unit_cells = cells(unit)
    harness = {t: n for t, n in own(top).items() if t != unit and n}
    return unit_cells, harness


def cell_class(family, ctype):
    """"lut", "ff", "carry", "dsp", "bram", "lutram" or "other" for one cell type."""
    for name, patterns in CELLS[family].items():
        if any(fnmatch.fnmatchcase(ctype, p) for p in patterns):
            return name
    return "other"


def classify(family, cells):
    """Cell counts → {"lut", "ff", "carry", "dsp", "bram", "lutram", "other", "bram_kbits"}."""
    counts = {name: 0 for name in (*CELLS[family], "other")}
    bram_kbits = 0
    for ctype, n in cells.items():
        kind = cell_class(family, ctype)
        counts[kind] += n
        if kind == "bram":
            bram_kbits += n * BRAM_KBITS.get(ctype, 0)
    counts["bram_kbits"] = bram_kbits
    return counts


def area_lc(family, counts):
    """One area figure in logic cells: LUTs (+2 per ECP5 CCU2C, which holds two LUT4s) +
    DSP_LC per DSP + BRAM_LC_PER_KBIT per Kbit of block RAM."""
    luts = counts["lut"] + (2 * counts["carry"] if family == "ecp5" else 0)
    return luts + DSP_LC * counts["dsp"] + BRAM_LC_PER_KBIT * counts["bram_kbits"]


def check_fit(target, counts):
    """Reasons (a list of short strings) why `counts` (unit + harness) do not fit `target`.

    Necessary, not sufficient, on the iCE40: a logic cell holds one LUT4 and one flip-flop, and
    a flip-flop not fed by a LUT4 of its own (from another flip-flop, a block RAM, a DSP) takes
    a cell by itself, so LUT4 and FF each within the cells can still need more cells than the
    device has (8x1,16x1,2x1 with FIFO buffers: 2,853 LUT4 and 3,919 FF packed into 7,388 of
    the UP5K's 5,280). The yosys counts cannot tell which flip-flops pair; nextpnr's packing
    decides, and the flow reports its refusal as "does not fit" (`nextpnr.CAPACITY_PATTERNS`, the
    ICESTORM_LC line of its utilisation table)."""
    device = DEVICES[target]
    reasons = []
    if device["lut4"] is None:
        return reasons
    family = TARGETS[target].family
    luts = counts["lut"] + (2 * counts["carry"] if family == "ecp5" else 0)
    for what, used, cap in (("LUT4", luts, device["lut4"]), ("FF", counts["ff"], device["ff"]),
                            (device["dsp_cell"].split()[0], counts["dsp"], device["dsp"]),
                            (device["bram_cell"].split()[0], counts["bram"], device["bram"])):
        if used > cap:
            reasons.append(f"{used} {what} > {cap}")
    return reasons
