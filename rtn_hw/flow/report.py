"""Reports of the synthesis sweep: build/reports/synth.json, synth.md and PNG plots.

`compare` pairs every RTN run with every baseline run of the same group (the dot-product
units; the convolution stages) on the same target and lane count, at equal throughput. Every file is written atomically (`rtn_hw.files`), so a reader, or a run that
fails half way, only ever sees the previous report or the new one. The plots are
`rtn_hw.flow.plots`. Nothing here prints or exits.
"""

import pathlib

from ..files import write_atomic, write_json
from .plots import plot

__all__ = ["PAPER", "compare", "render_markdown", "write_reports"]

# The paper's claims against a full-precision convolution (Vivado, VC707).
PAPER = {"area_ratio": 89.17, "power_ratio": 46.46}


def _comparison_notes(c):
    notes = [] if c["fits"] else ["a side does not fit: yosys counts only"]
    if c.get("baseline_energy_from_lanes") not in (None, c["lanes"]):
        notes.append(f"baseline energy per MAC from its {c['baseline_energy_from_lanes']}-lane "
                     "run (per-lane linear)")
    return "; ".join(notes)


def _stimulus_text(settings):
    stim = settings.get("power_stimulus")
    if not stim:
        return "seeded stimulus"
    return (f"layer {stim['layer']} of the trained network {stim['weights']} on the first "
            f"{stim['images']} digits test images ({stim['cycles']} cycles; the baselines get "
            "the same layer's reparameterized values α·t + β in their own formats)")


# --- comparisons ------------------------------------------------------------------------------

def compare(runs):
    """RTN run × baseline run pairs of the same group ("dot" or "conv") on the same target and
    lane count.

    Ratios are at equal throughput: area per MAC/cycle, and energy per MAC (= power at the
    same MACs per cycle and the same clock). `area_ratio` and `power_ratio` are baseline/RTN,
    the sense of the paper's "89.17× less area"; the *_rtn_over_baseline fields invert them."""
    out = []
    ok = [r for r in runs if r.get("available")]
    for rtn in (r for r in ok if r["kind"] == "rtn"):
        for base in (r for r in ok if r["kind"] == "baseline"):
            if base["target"] != rtn["target"] or base["lanes"] != rtn["lanes"] \
                    or base.get("group", "dot") != rtn.get("group", "dot"):
                continue
            base_energy, energy_lanes = base["energy_pj_per_mac"], base["lanes"]
            if base_energy is None:
                # A baseline too big for its device has no power figure; its energy per MAC
                # is per-lane linear, so take the same unit's largest measured lane count.
                measured = [r for r in ok if (r["unit"], r["target"], r["mapping"])
                            == (base["unit"], base["target"], base["mapping"])
                            and r["energy_pj_per_mac"] is not None]
                if measured:
                    donor = max(measured, key=lambda r: r["lanes"])
                    base_energy, energy_lanes = donor["energy_pj_per_mac"], donor["lanes"]
            entry = {
                "group": rtn.get("group", "dot"),
                "rtn_unit": rtn["unit"], "baseline_unit": base["unit"],
                "baseline_mapping": base["mapping"], "target": rtn["target"],
                "lanes": rtn["lanes"], "rtn_macs_per_cycle": rtn["macs_per_cycle"],
                "baseline_macs_per_cycle": base["macs_per_cycle"],
                "rtn_area": rtn["area"], "baseline_area": base["area"],
                "area_ratio": _quotient(base["area_per_mac"], rtn["area_per_mac"]),
                "area_ratio_rtn_over_baseline": _quotient(rtn["area_per_mac"],
                                                       base["area_per_mac"]),
                "lut_ratio": _quotient(base["lut"] / base["macs_per_cycle"],
                                    rtn["lut"] / rtn["macs_per_cycle"]),
                "power_ratio": _quotient(base_energy, rtn["energy_pj_per_mac"]),
                "power_ratio_rtn_over_baseline": _quotient(rtn["energy_pj_per_mac"], base_energy),
                "baseline_energy_pj_per_mac": base_energy,
                "baseline_energy_from_lanes": energy_lanes,
                "rtn_fmax_mhz": rtn["fmax_mhz"], "baseline_fmax_mhz": base["fmax_mhz"],
                "paper_area_ratio": PAPER["area_ratio"],
                "paper_power_ratio": PAPER["power_ratio"],
                "fits": bool(rtn["fits"] is not False and base["fits"] is not False),
            }
            out.append(entry)
    return out


def _quotient(num, den):
    if num is None or den is None or not den:
        return None
    return round(num / den, 3)


# --- markdown ----------------------------------------------------------------------------------

def _fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100 or digits == 0:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(value):
    if value is None:
        return "–"
    return f"{value:.3g}×" if value < 10 else f"{value:,.1f}×"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def render_markdown(report, plots=()):
    """synth.md: settings, device table, per-target run tables, comparisons beside the paper."""
    settings, tools, paper = report["settings"], report["tool_versions"], report["paper"]
    out = ["# Synthesis sweep: RTN units against full-precision baselines", ""]
    out += [f"Generated {report['generated']} by `make synth` (rtn_hw.flow.synth). "
            f"{report['timing']['runs']} runs, {report['timing']['cached_runs']} from the "
            f"cache, {report['timing']['total_seconds']:.0f} s with {settings['jobs']} jobs.", ""]
    out += ["Tools: " + ", ".join(f"{k} `{v}`" for k, v in tools.items() if k != "seeds")
            + f"; power stimulus seed {tools['seeds']['power_stimulus']}.", ""]
    out += ["## How to read this", "",
            "- Counts are yosys `stat` of the unit's own module (kept as a separate module "
            "inside a register harness); the harness's cells are listed apart and not included.",
            f"- LUTs are LUT4 on ECP5 and iCE40, LUT6 on xilinx-lut6 (never mixed). Area is one "
            f"stated figure: {settings['area_definition']}.",
            "- Fmax is nextpnr's routed figure for the whole harnessed design (constraint per "
            f"target {settings['nextpnr_constraint_mhz']} MHz, `--timing-allow-fail`), the "
            "median over the row's seeds (three on the ECP5 RTN rows, one elsewhere; each "
            "seed's figure is in synth.json); the harness adds at most one LUT per path, so "
            "the critical path is the unit's.",
            f"- Power is the project's activity model (rtn_hw.flow.power: toggles of the "
            f"mapped netlist whose cells are counted here, times per-cell energies), at "
            f"{settings['clock_mhz']} MHz for every unit, fed {_stimulus_text(settings)}. "
            "It is a model, not a measurement; the ratio is the robust figure.",
            "- Ratios are at equal throughput: area per MAC/cycle and energy per MAC (= power "
            f"at the same MACs per cycle and clock). The RTN MAC array has P = "
            f"{settings['channels']} channels, so it does lanes × {settings['channels']} MACs "
            "per cycle; the network engine does a whole image's MACs every cycles-per-image "
            "cycles, and its energy per MAC counts its busy cycles.",
            f"- The paper claims {paper['area_ratio']}× less area and {paper['power_ratio']}× "
            "less power than a full-precision convolution (ASIC figures); ours are FPGA "
            "figures.", ""]

    out += ["## Devices", ""]
    rows = []
    for name, d in report["devices"].items():
        rows.append([name, d["device"], _fmt(d["lut4"]), _fmt(d["ff"]),
                     f"{_fmt(d['dsp'])} {d['dsp_cell']}", f"{_fmt(d['bram'])} {d['bram_cell']}",
                     _fmt(d["io"]), d["source"]])
    out += _table(["target", "device", "LUT", "FF", "DSP", "BRAM", "I/O", "source"], rows)
    out.append("")

    runs = report["runs"]
    for target in settings["targets"]:
        mine = [r for r in runs if r["target"] == target]
        if not mine:
            continue
        lut = mine[0]["lut_type"]
        out += [f"## {target}", ""]
        rows = []
        for r in mine:
            if not r.get("available"):
                rows.append([r["unit"], r["mapping"], r["lanes"], r["macs_per_cycle"]]
                            + ["–"] * 12 + ["; ".join(r["notes"])])
                continue
            h = r["harness"]
            rows.append([r["unit"], r["mapping"], r["lanes"], r["macs_per_cycle"],
                         _fmt(r["lut"]), _fmt(r["ff"]), _fmt(r["carry"]), _fmt(r["dsp"]),
                         _fmt(r["bram"]), _fmt(r["area"], 0), _fmt(r["area_per_mac"]),
                         _fmt(r["lut_per_lane"]), _fmt(r["fmax_mhz"]), _fmt(r["power_mw"], 2),
                         _fmt(r["energy_pj_per_mac"], 2), f"{h['lut']}/{h['ff']}",
                         "; ".join(r["notes"]) or ("fits" if r["fits"] else "–")])
        out += _table(["unit", "map", "lanes", "MAC/cyc", lut, "FF", "carry", "DSP", "BRAM",
                       "area (LC)", "LC/MAC", f"{lut}/lane", "Fmax MHz", "mW", "pJ/MAC",
                       f"harness {lut}/FF", "fit / notes"], rows)
        out.append("")

    header = ["target", "lanes", "RTN", "baseline", "area ratio", "RTN/base area", "LUT ratio",
              "paper area", "power ratio", "RTN/base power", "paper power", "notes"]

    def comparison_rows(group):
        return [[c["target"], c["lanes"], c["rtn_unit"],
                 f"{c['baseline_unit']} ({c['baseline_mapping']})",
                 _ratio(c["area_ratio"]), _ratio(c["area_ratio_rtn_over_baseline"]),
                 _ratio(c["lut_ratio"]), f"{c['paper_area_ratio']}×",
                 _ratio(c["power_ratio"]), _ratio(c["power_ratio_rtn_over_baseline"]),
                 f"{c['paper_power_ratio']}×", _comparison_notes(c)]
                for c in report["comparisons"] if c.get("group", "dot") == group]

    out += ["## RTN against the baselines (baseline ÷ RTN, at equal throughput)", ""]
    out += _table(header, comparison_rows("dot"))
    out.append("")
    conv = comparison_rows("conv")
    if conv:
        shape = next((r["params"] for r in runs if r.get("group") == "conv"
                      and r.get("available")), None)
        shape = (f"{shape['kernel']}×{shape['kernel']}, {shape['in_channels']} → "
                 f"{shape['out_channels']} convolution on a {shape['size']}×{shape['size']} map"
                 if shape else "convolution")
        out += ["## The paper's comparison as a convolution (baseline ÷ RTN, same shape and "
                "throughput)", "",
                f"One {shape} ('same' padding), built as the RTN "
                "`ConvStage` and as fp32 and int8 stages with the same window generator, the "
                "same L lanes × C channels (MACs per cycle) and the same cycles per image; "
                "area per MAC/cycle and energy per MAC of whole stages (line buffers, weight "
                "memories, accumulators included). The paper's figures are against a "
                "full-precision convolution too.", ""]
        out += _table(header, conv)
        out.append("")
    if plots:
        out += ["## Plots", ""]
        out += [f"![{pathlib.Path(p).stem}]({pathlib.Path(p).name})" for p in plots]
        out.append("")
    return "\n".join(out) + "\n"


def write_report_set(report, out_dir, stem, plot, render_markdown):
    """`stem`.json, `stem`.md and the plots `plot(report, out_dir)` draws, in `out_dir`;
    returns {kind: path or [paths]}. The JSON, which names the others, is written last."""
    out_dir = pathlib.Path(out_dir)
    plots = plot(report, out_dir)
    md = write_atomic(out_dir / f"{stem}.md", render_markdown(report, plots))
    files = {"json": str(out_dir / f"{stem}.json"), "markdown": str(md), "plots": plots}
    write_json(out_dir / f"{stem}.json", dict(report, files=files))
    return files


def write_reports(report, out_dir):
    """synth.json, synth.md and the plots in `out_dir`; returns {kind: path or [paths]}."""
    return write_report_set(report, out_dir, "synth", plot, render_markdown)
