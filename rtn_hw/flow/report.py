"""Reports of the synthesis sweep: build/reports/synth.json, synth.md and PNG plots.

Every file is written atomically (a temporary file in the same folder, then `os.replace`), so
a reader, or a run that fails half way, only ever sees the previous report or the new one.
Nothing here prints or exits.
"""

import json
import os
import pathlib
import tempfile

__all__ = ["write_bytes", "write_text", "write_json", "render_markdown", "plot",
           "write_reports"]


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


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path, data):
    """Write `data` to `path` atomically; the folder is created if needed."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    return path


def write_text(path, text):
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, value):
    return write_text(path, json.dumps(value, indent=1, sort_keys=False) + "\n")


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
            + f"; seeds {tools['seeds']}.", ""]
    out += ["## How to read this", "",
            "- Counts are yosys `stat` of the unit's own module (kept as a separate module "
            "inside a register harness); the harness's cells are listed apart and not included.",
            f"- LUTs are LUT4 on ECP5 and iCE40, LUT6 on xilinx-lut6 (never mixed). Area is one "
            f"stated figure: {settings['area_definition']}.",
            "- Fmax is nextpnr's routed figure for the whole harnessed design (fixed seed "
            f"{tools['seeds']['nextpnr']}, constraint per target "
            f"{settings['nextpnr_constraint_mhz']} MHz, `--timing-allow-fail`); the harness "
            "adds at most one LUT per path, so the critical path is the unit's.",
            f"- Power is the project's activity model (rtn_hw.flow.power: toggles of the "
            f"technology-mapped netlist, times per-cell energies), at "
            f"{settings['clock_mhz']} MHz for every unit, fed {_stimulus_text(settings)}. "
            "It is a model, not a measurement; the ratio is the robust figure.",
            "- Ratios are at equal throughput: area per MAC/cycle and energy per MAC (= power "
            f"at the same MACs per cycle and clock). The RTN MAC array has P = "
            f"{settings['channels']} channels, so it does lanes × {settings['channels']} MACs "
            "per cycle.",
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

    out += ["## RTN against the baselines (baseline ÷ RTN, at equal throughput)", ""]
    rows = []
    for c in report["comparisons"]:
        rows.append([c["target"], c["lanes"], c["rtn_unit"],
                     f"{c['baseline_unit']} ({c['baseline_mapping']})",
                     _ratio(c["area_ratio"]), _ratio(c["area_ratio_rtn_over_baseline"]),
                     _ratio(c["lut_ratio"]), f"{c['paper_area_ratio']}×",
                     _ratio(c["power_ratio"]), _ratio(c["power_ratio_rtn_over_baseline"]),
                     f"{c['paper_power_ratio']}×", _comparison_notes(c)])
    out += _table(["target", "lanes", "RTN", "baseline", "area ratio", "RTN/base area",
                   "LUT ratio", "paper area", "power ratio", "RTN/base power", "paper power",
                   "notes"], rows)
    out.append("")
    if plots:
        out += ["## Plots", ""]
        out += [f"![{pathlib.Path(p).stem}]({pathlib.Path(p).name})" for p in plots]
        out.append("")
    return "\n".join(out) + "\n"


# --- plots -------------------------------------------------------------------------------------

def plot(report, out_dir):
    """Log-scale PNGs of area and power against lanes, one per target and metric; returns the
    paths written (none if matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    import io
    written = []
    runs = [r for r in report["runs"] if r.get("available")]
    for target in report["settings"]["targets"]:
        for metric, label in (("area", "area (logic cells)"), ("power_mw", "power (mW, model, "
                              f"{report['settings']['clock_mhz']} MHz)")):
            series = {}
            for r in runs:
                if r["target"] == target and r.get(metric) is not None:
                    series.setdefault(f"{r['unit']} ({r['mapping']})", []).append(
                        (r["lanes"], r[metric]))
            if not series:
                continue
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for name, points in sorted(series.items()):
                points.sort()
                style = "-o" if name.startswith(("ternary", "rtn")) else "--s"
                ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name)
            ax.set_xscale("log", base=2)
            lanes = sorted({p[0] for points in series.values() for p in points})
            ax.set_xticks(lanes, [str(n) for n in lanes])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("lanes")
            ax.set_ylabel(label)
            ax.set_title(f"{target}: {label.split(' (')[0]} against lanes")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            name = "area" if metric == "area" else "power"
            written.append(str(write_bytes(pathlib.Path(out_dir) / f"synth_{name}_{target}.png",
                                           buffer.getvalue())))
    return written


def write_reports(report, out_dir):
    """synth.json, synth.md and the plots in `out_dir`; returns {kind: path or [paths]}."""
    out_dir = pathlib.Path(out_dir)
    plots = plot(report, out_dir)
    md = write_text(out_dir / "synth.md", render_markdown(report, plots))
    files = {"json": str(out_dir / "synth.json"), "markdown": str(md), "plots": plots}
    write_json(out_dir / "synth.json", dict(report, files=files))
    return files
