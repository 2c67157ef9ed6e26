"""Re-deriving the iCE40 power coefficients from measured silicon.

The tinyvision-ai-inc/ice40_power measurements (iCE40 UP5K, icestorm flow) include an 8-bit
multiply in LUTs and in one SB_MAC16; simulating the same block through this flow and dividing
the measured energies by the simulated activity gives the per-toggle energies of the table
(`test_ice40_calibration_reproduces_the_table`, marked slow, checks it).
"""

import pathlib

from .gatesim import simulate_netlist
from .power import map_netlist

__all__ = ["TINYVISION", "calibrate_ice40"]


# tinyvision-ai-inc/ice40_power README (iCE40 UP5K, icestorm flow, core rail at 1.219 V, µA).
TINYVISION = {
    "core_v": 1.219, "clock_mhz": 12.0, "blank_ua": 85.6,
    "ext_counter_ua": 613.5, "ext_counter_x8_ua": 641.3, "counter_lc": 32, "counter_x8_lc": 228,
    "hfosc_counter_ua": 645.0, "math_luts_ua": 996.0, "math_dsp_ua": 882.0,
}


def _math_block():
    """tinyvision's "Math" block: two 8-bit counters (+3, +5 per cycle) and their 16-bit product.

    The original AND-reduces the product into one pin; today's ABC proves that reduction is
    constant (0xFFFF has no two 8-bit factors) and would delete the multiplier that the 2020
    flow built and measured (208 LC), so the product goes to the output in full."""
    from amaranth.hdl import Cat, Module, Signal, unsigned
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class Math(wiring.Component):
        latency = 0

        def __init__(self):
            super().__init__({"i": In(stream.Signature(unsigned(1))),
                              "o": Out(stream.Signature(unsigned(18)))})

        def elaborate(self, platform):
            m = Module()
            c1 = Signal(8, name="ctr1")
            c2 = Signal(8, name="ctr2")
            product = Signal(16, name="result")
            m.d.sync += [c1.eq(c1 + 3), c2.eq(c2 + 5)]
            m.d.comb += [product.eq(c1 * c2), self.o.valid.eq(1), self.i.ready.eq(1),
                         self.o.payload.eq(Cat(product, c1.all(), c2.all()))]
            return m
    return Math()


def calibrate_ice40(workdir, cycles=512):
    """Re-derive the iCE40 coefficients: simulate tinyvision's Math block as this flow maps it
    (LUT-only and with `-dsp`) and divide the measured energies by the simulated activity.

    Returns the inputs and results as a flat dict (pJ, toggles per cycle)."""
    m = TINYVISION
    to_pj = m["core_v"] / m["clock_mhz"]          # µA → pJ per cycle
    clock = (m["ext_counter_x8_ua"] - m["ext_counter_ua"]) * to_pj \
        / (m["counter_x8_lc"] - m["counter_lc"])
    out = {"ff_clock_pj": clock, "static_mw": m["blank_ua"] * m["core_v"] * 1e-3}
    workdir = pathlib.Path(workdir)
    results = {}
    for variant, mapping in (("luts", "lut"), ("dsp", "dsp")):
        netlist = map_netlist(_math_block(), "ice40", workdir / variant, mapping=mapping)
        sim = simulate_netlist(netlist, [0] * (cycles + 8), warmup=8, drain=2)
        logic = ffs = mac_in = 0.0
        for _, ctype, outs, ins in netlist.cells:
            if ctype == "SB_MAC16":
                mac_in += sum(sim.toggles.get(b, 0) for b in ins) / sim.cycles
            else:
                logic += sum(sim.toggles.get(b, 0) for b in outs) / sim.cycles
                ffs += ctype.startswith("SB_DFF")
        measured = (m[f"math_{variant}_ua"] - m["hfosc_counter_ua"]) * to_pj
        results[variant] = (measured, logic, ffs, mac_in)
        out.update({f"{variant}.measured_pj": measured, f"{variant}.logic_toggles": logic,
                    f"{variant}.ffs": ffs, f"{variant}.mac_input_toggles": mac_in,
                    f"{variant}.luts": netlist.counts.get("SB_LUT4", 0),
                    f"{variant}.mac16": netlist.counts.get("SB_MAC16", 0)})
    measured, logic, ffs, _ = results["luts"]
    toggle = (measured - ffs * clock) / logic
    measured, logic, ffs, mac_in = results["dsp"]
    out["logic_toggle_pj"] = toggle
    out["mac16_input_toggle_pj"] = (measured - ffs * clock - logic * toggle) / mac_in
    return out
