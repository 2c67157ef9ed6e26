"""The exploration's report: Pareto fronts and per-seed Fmax, as explore.json, .md and PNGs.

Per target (LUT counts of different families do not compare), each available run becomes a
point: LUT4 (an ECP5 CCU2C counts as the two LUT4s it holds, as `devices.check_fit` does),
throughput (MMAC/s = MACs per cycle × routed Fmax; inputs per second = Fmax / cycles per
input) and energy (pJ per MAC and per input, from the power model at its fixed clock). A point
is on a front when no other point has at most its LUT4 and at least as good a figure, one of
the two strictly better. Fmax per seed is reported with its median and spread (max − min, and
as a share of the median): one seed moves Fmax by up to 10 %. Every file is written atomically
(`rtn_hw.files`). Nothing here prints or exits.
"""

import io
import pathlib
import statistics

from ..files import write_atomic
from .devices import TARGETS

__all__ = ["FRONTS", "point", "pareto", "analyse", "render_markdown", "plot", "write"]

# name → (figure, better: "max" or "min", label)
FRONTS = {
    "throughput_vs_lut4": ("mmac_per_s", "max", "throughput (MMAC/s at routed Fmax)"),
    "energy_per_mac_vs_lut4": ("energy_pj_per_mac", "min", "energy per MAC (pJ)"),
    "energy_per_input_vs_lut4": ("energy_pj_per_input", "min", "energy per input (pJ)"),
}


def point(record):
    """The figures of one available run record that the fronts and tables use."""
    carry = record["carry"] if TARGETS[record["target"]].family == "ecp5" else 0
    fmax = record.get("fmax_mhz")
    found = [f for f in (record.get("fmax_by_seed") or {}).values() if f is not None]
    seeds = None
    if found:
        median = statistics.median(found)
        seeds = {"by_seed": record["fmax_by_seed"], "median": round(median, 2),
                 "min": min(found), "max": max(found),
                 "spread_mhz": round(max(found) - min(found), 2),
                 "spread_pct": round(100 * (max(found) - min(found)) / median, 1)}
    return {
        "id": record["id"], "target": record["target"], "unit": record["unit"],
        "lanes": record["lanes"], "mapping": record["mapping"],
        "overrides": record.get("overrides", {}),
        "lut4": record["lut"] + 2 * carry, "area": record["area"],
        "macs_per_cycle": record["macs_per_cycle"], "fmax_mhz": fmax,
        "mmac_per_s": None if fmax is None else round(record["macs_per_cycle"] * fmax, 1),
        "minputs_per_s": None if fmax is None else round(fmax / record["cycles_per_input"], 3),
        "energy_pj_per_mac": record.get("energy_pj_per_mac"),
        "energy_pj_per_input": record.get("energy_pj_per_input"),
        "fits": record.get("fits"), "fmax_seeds": seeds,
    }


def pareto(points, figure, better):
    """Ids of the points on the front of (fewest LUT4, best `figure`), by LUT4."""
    have = [p for p in points if p[figure] is not None]

    def beats(q, p):
        good = q[figure] >= p[figure] if better == "max" else q[figure] <= p[figure]
        strict = q["lut4"] < p["lut4"] or q[figure] != p[figure]
        return q["lut4"] <= p["lut4"] and good and strict

    front = [p for p in have if not any(beats(q, p) for q in have if q is not p)]
    return [p["id"] for p in sorted(front, key=lambda p: (p["lut4"], p["id"]))]


def analyse(records):
    """{"points", "pareto" {target: {front: [ids]}}, "failed" [ids + notes]} of the runs."""
    points = [point(r) for r in records if r.get("available")]
    fronts = {}
    for target in dict.fromkeys(p["target"] for p in points):
        mine = [p for p in points if p["target"] == target and p["fits"] is not False]
        fronts[target] = {name: pareto(mine, figure, better)
                          for name, (figure, better, _) in FRONTS.items()}
    failed = [{"id": r["id"], "note": (r.get("notes") or [""])[0], "log": r.get("log")}
              for r in records if not r.get("available")]
    return {"points": points, "pareto": fronts, "failed": failed}


def _fmt(value, digits=1):
    return "–" if value is None else f"{value:,.{digits}f}"


def _name(p):
    tail = " ".join(f"{k}={v}" for k, v in p["overrides"].items())
    return f"{p['unit']} {p['lanes']}" + (f" {p['mapping']}" if p["mapping"] != "dsp" else "") \
        + (f" ({tail})" if tail else "")


def render_markdown(report, plots=()):
    by_id = {p["id"]: p for p in report["points"]}
    out = ["# Design-space exploration (`make explore`)", "",
           f"Generated {report['generated']}; {report['timing']['runs']} runs "
           f"({report['timing']['cached_runs']} cached, {report['timing']['failed_runs']} "
           f"failed) in {report['timing']['total_seconds']:.0f} s on "
           f"{report['settings']['executor'].get('workers')} Dask workers "
           f"({report['settings']['executor'].get('scheduler')}). Energy at "
           f"{report['settings']['clock_mhz']} MHz (power model).", ""]
    for target, fronts in report["pareto"].items():
        out += [f"## {target}", ""]
        for name, (figure, _, label) in FRONTS.items():
            ids = fronts[name]
            if not ids:
                continue
            out += [f"Pareto front, LUT4 against {label}:", "",
                    "| run | LUT4 | logic cells | Fmax (MHz) | MMAC/s | pJ/MAC | pJ/input |",
                    "|---|---|---|---|---|---|---|"]
            for i in ids:
                p = by_id[i]
                out.append(f"| {_name(p)} | {p['lut4']:,} | {_fmt(p['area'])} | "
                           f"{_fmt(p['fmax_mhz'])} | {_fmt(p['mmac_per_s'])} | "
                           f"{_fmt(p['energy_pj_per_mac'], 3)} | "
                           f"{_fmt(p['energy_pj_per_input'], 1)} |")
            out.append("")
        seeds = [p for p in report["points"] if p["target"] == target and p["fmax_seeds"]]
        if seeds:
            out += ["Routed Fmax per nextpnr seed:", "",
                    "| run | Fmax per seed (MHz) | median | spread |", "|---|---|---|---|"]
            for p in seeds:
                s = p["fmax_seeds"]
                shown = ", ".join(f"{k}: {_fmt(v)}" for k, v in s["by_seed"].items())
                out.append(f"| {_name(p)} | {shown} | {_fmt(s['median'])} | "
                           f"{_fmt(s['spread_mhz'])} MHz ({_fmt(s['spread_pct'])} %) |")
            out.append("")
    if report["failed"]:
        out += ["## Runs without figures", "", "| run | why | log |", "|---|---|---|"]
        out += [f"| {f['id']} | {f['note']} | {f['log'] or '–'} |" for f in report["failed"]]
        out.append("")
    out += [f"![{pathlib.Path(p).stem}]({pathlib.Path(p).name})" for p in plots]
    return "\n".join(out) + "\n"


def plot(report, out_dir):
    """One PNG per target: LUT4 against throughput and against energy per MAC, front points
    joined; returns the paths written (none without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from .plots import STYLE, _OTHER
    written = []
    for target, fronts in report["pareto"].items():
        points = [p for p in report["points"] if p["target"] == target]
        panels = [(n, FRONTS[n]) for n in ("throughput_vs_lut4", "energy_per_mac_vs_lut4")
                  if any(p[FRONTS[n][0]] is not None for p in points)]
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
        for ax, (name, (figure, _, label)) in zip(axes[0], panels):
            for p in points:
                if p[figure] is None:
                    continue
                colour, marker, _ = STYLE.get(p["unit"], _OTHER)
                on = p["id"] in fronts[name]
                ax.plot(p["lut4"], p[figure], marker=marker, color=colour, linestyle="none",
                        alpha=1.0 if on else 0.35, label=p["unit"])
            front = [next(q for q in points if q["id"] == i) for i in fronts[name]]
            ax.step([q["lut4"] for q in front], [q[figure] for q in front], where="post",
                    color="black", linewidth=0.8, label="Pareto front")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("LUT4")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper center",
                      bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False)
        fig.suptitle(f"{target}: design-space exploration")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        path = pathlib.Path(out_dir) / f"explore_{target}.png"
        written.append(str(write_atomic(path, buffer.getvalue())))
    return written


def write(report, out_dir):
    """explore.json, explore.md and the PNGs in `out_dir`; returns {kind: path or [paths]}."""
    from .report import write_report_set
    return write_report_set(report, out_dir, "explore", plot, render_markdown)
