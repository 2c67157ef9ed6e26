"""The sweep's plots, at equal throughput: area per MAC and energy per MAC against MACs per
cycle, one PNG per target and metric.

A unit that does 16 MACs per lane (the MAC array) sits at its real throughput on the x axis
instead of looking 16 times bigger than a one-MAC-per-lane baseline at the same lane count.
Every unit keeps one colour and marker in every plot (`STYLE`); the legend sits below the axes,
never over the data.
"""

import io
import pathlib

from ..files import write_atomic

__all__ = ["STYLE", "METRICS", "plot"]

# One colour (colour-blind safe, Okabe–Ito) and marker per unit, in every plot; RTN units
# solid, baselines dashed.
STYLE = {
    "ternary_dot": ("#0072B2", "o", "-"),
    "rtn_mac_array": ("#009E73", "s", "-"),
    "network_engine": ("#CC79A7", "*", "-"),
    "dataflow_engine": ("#000000", "P", "-"),
    "fp32_dot": ("#D55E00", "^", "--"),
    "int8_dot": ("#E69F00", "v", "--"),
    "int16_dot": ("#56B4E9", "D", "--"),
    # The convolution stages (Paul Tol's colour-blind safe teal, wine, olive), dash-dotted.
    "rtn_conv": ("#44AA99", "h", "-."),
    "fp32_conv": ("#882255", "p", "-."),
    "int8_conv": ("#999933", "X", "-."),
}
_OTHER = ("#555555", "x", ":")
METRICS = (("area_per_mac", "area per MAC/cycle (logic cells)", "area"),
           ("energy_pj_per_mac", "energy per MAC (pJ, power model)", "energy"))


def plot(report, out_dir):
    """Log-log PNGs of area and energy per MAC against MACs per cycle, one per target and
    metric; returns the paths written (none if matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    runs = [r for r in report["runs"] if r.get("available")]
    for target in report["settings"]["targets"]:
        for metric, label, stem in METRICS:
            series = {}
            for r in runs:
                if r["target"] == target and r.get(metric) is not None:
                    series.setdefault((r["unit"], r["mapping"]), []).append(
                        (r["macs_per_cycle"], r[metric], r["lanes"]))
            if not series:
                continue
            fig, ax = plt.subplots(figsize=(7, 5))
            for (unit, mapping), points in sorted(series.items()):
                points.sort()
                colour, marker, line = STYLE.get(unit, _OTHER)
                ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker,
                        linestyle=line if mapping == "dsp" else ":", color=colour,
                        fillstyle="full" if mapping == "dsp" else "none",
                        label=f"{unit}" + ("" if mapping == "dsp" else " (all-LUT)"))
                for x, y, lanes in points:
                    ax.annotate(str(lanes), (x, y), textcoords="offset points", xytext=(4, 4),
                                fontsize=7, color=colour)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("MACs per cycle (numbers at the points: lanes)")
            ax.set_ylabel(label)
            ax.set_title(f"{target}: {label.split(' (')[0]} at equal throughput")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3,
                      frameon=False)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            path = pathlib.Path(out_dir) / f"synth_{stem}_{target}.png"
            written.append(str(write_atomic(path, buffer.getvalue())))
    return written
