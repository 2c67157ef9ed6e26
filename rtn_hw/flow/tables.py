"""Measured tables in the docs, generated from build/reports/synth.json instead of copied.

A document marks a generated block with a pair of HTML comments, which Markdown does not show:

    <!-- generated:synth-headline -->
    ... rewritten by `make synth-docs` (rtn-hw synth --docs) ...
    <!-- /generated:synth-headline -->

`update_docs()` rewrites every such block in README.md and docs/synth.md from the last
`make synth` report; a block whose name is unknown, or whose figures the report does not
hold, is an error that names it. Supported names: see `TABLES`.
"""

import json
import pathlib
import re

from ..files import write_atomic

__all__ = ["TABLES", "TableError", "render", "rewrite", "update_docs", "DOCS", "REPORT"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
REPORT = ROOT / "build" / "reports" / "synth.json"
DOCS = (ROOT / "README.md", ROOT / "docs" / "synth.md")
HEADLINE_TARGET, HEADLINE_LANES = "ecp5-85k", 64
NAMES = {"ternary_dot": "TernaryDot", "rtn_mac_array": "RtnMacArray, P = 16",
         "network_engine": "NetworkEngine", "fp32_dot": "Fp32Dot", "int8_dot": "IntDot-8",
         "int16_dot": "IntDot-16"}
_BLOCK = re.compile(r"(<!-- generated:([\w-]+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


class TableError(ValueError):
    """A generated block that cannot be rendered; one line."""


def _num(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _fmax(run):
    """"162 MHz" or, over several seeds, "162 MHz (158–170, 3 seeds)"."""
    if run.get("fmax_mhz") is None:
        return "–"
    seeds = [f for f in (run.get("fmax_by_seed") or {}).values() if f is not None]
    text = f"{run['fmax_mhz']:.1f} MHz"
    if len(seeds) > 1:
        text += f" ({min(seeds):.0f}–{max(seeds):.0f}, {len(seeds)} seeds)"
    return text


def _find(report, unit, target, lanes, mapping="dsp"):
    for run in report["runs"]:
        if (run["unit"], run["target"], run["lanes"], run["mapping"]) == (unit, target, lanes,
                                                                          mapping):
            return run
    return None


def _source(report):
    versions = report.get("tool_versions", {})
    yosys = (versions.get("yosys") or "").split(" (")[0]
    return (f"Measured by `make synth-full` ({report.get('generated', '?')}; {yosys}, "
            f"{versions.get('nextpnr-ecp5', 'nextpnr ?')}); table written by `make synth-docs` "
            f"from build/reports/synth.json.")


def _largest_measured(report, run, key):
    """The same unit's run with the most lanes that has `key` (for a row too big to route or
    to simulate), or None."""
    same = [r for r in report["runs"] if r.get(key) is not None
            and (r["unit"], r["target"], r["mapping"]) == (run["unit"], run["target"],
                                                           run["mapping"])]
    return max(same, key=lambda r: r["lanes"]) if same else None


def _misfit(run):
    """"does not fit (256 MULT18X18D > 156)" from the run's note."""
    for note in run.get("notes", []):
        match = re.match(r"does not fit [\w-]+: (.*?); yosys counts only", note)
        if match:
            return f"does not fit ({match[1]})"
    return "does not fit"


def _headline(report):
    rows = ["| unit | LUT4 | FF | CCU2C | MULT18X18D | logic cells | routed Fmax | power | "
            "pJ/MAC |", "|---|---|---|---|---|---|---|---|---|"]
    for unit, name in NAMES.items():
        run = _find(report, unit, HEADLINE_TARGET, HEADLINE_LANES)
        if run is None or not run.get("available"):
            continue
        if unit == "network_engine":
            name = f"{name} {run['params'].get('lanes')} × {run['params'].get('channels')}"
        label = f"{name} ({_num(run['macs_per_cycle'])} MAC/cycle)"
        fmax, energy = _fmax(run), _num(run.get("energy_pj_per_mac"), 2)
        if run.get("fits") is False:
            fmax = _misfit(run)
            routed = _largest_measured(report, run, "fmax_mhz")
            if routed:
                fmax += f"; {routed['fmax_mhz']:.0f} MHz at {routed['lanes']} lanes"
        if run.get("energy_pj_per_mac") is None:
            donor = _largest_measured(report, run, "energy_pj_per_mac")
            if donor:
                energy = f"{donor['energy_pj_per_mac']:.1f} (its {donor['lanes']}-lane run)"
        power = "–" if run.get("power_mw") is None else f"{run['power_mw']:.1f} mW"
        rows.append(f"| {label} | {_num(run['lut'])} | {_num(run['ff'])} | "
                    f"{_num(run['carry'])} | {_num(run['dsp'])} | {_num(run['area'])} | "
                    f"{fmax} | {power} | {energy} |")
    if len(rows) == 2:
        raise TableError(f"synth-headline: no {HEADLINE_TARGET} run at {HEADLINE_LANES} lanes "
                         f"in {REPORT.name}")
    return rows


def _ratios(report):
    rows = ["| lanes | RTN unit | baseline | area ratio (per MAC/cycle) | energy ratio (per "
            "MAC) |", "|---|---|---|---|---|"]
    for c in report.get("comparisons", []):
        if c["target"] != HEADLINE_TARGET or c["baseline_mapping"] != "dsp":
            continue
        rows.append(f"| {c['lanes']} | {NAMES.get(c['rtn_unit'], c['rtn_unit'])} | "
                    f"{NAMES.get(c['baseline_unit'], c['baseline_unit'])} | "
                    f"{_num(c['area_ratio'], 1)}× | {_num(c['power_ratio'], 1)}× |")
    if len(rows) == 2:
        raise TableError(f"synth-ratios: no {HEADLINE_TARGET} comparison in {REPORT.name}")
    return rows


def _goals(report):
    """The figures issue 12 sets goals for, on the ECP5-85k."""
    def lc_per_lane(run):
        return None if run is None else run["area"] / run["lanes"]

    def pick(unit, lanes):
        run = _find(report, unit, HEADLINE_TARGET, lanes)
        return run if run and run.get("available") else None

    dot64, dot256 = pick("ternary_dot", 64), pick("ternary_dot", 256)
    mac64, engine = pick("rtn_mac_array", 64), pick("network_engine", 64)
    # "before": the same figures from `make synth` at commit 4b1f27d, before the MAC core.
    rows = ["| figure | before (4b1f27d) | measured | goal |", "|---|---|---|---|",
            f"| TernaryDot, 64 lanes, routed Fmax | 162 MHz | "
            f"{_fmax(dot64) if dot64 else '–'} | ≥ 250 MHz |",
            f"| TernaryDot with S_a, logic cells per lane, 64 / 256 lanes | 11.0 / – | "
            f"{_num(lc_per_lane(dot64), 1)} / {_num(lc_per_lane(dot256), 1)} | ≤ 8 |",
            f"| RtnMacArray P = 16, 64 lanes, logic cells per MAC | 4.3 | "
            f"{_num(mac64['area_per_mac'] if mac64 else None, 2)} | ≤ 2.5 |",
            f"| network engine 64 × 8, routed Fmax | 49.6 MHz | "
            f"{_fmax(engine) if engine else '–'} | ≥ 100 MHz |"]
    return rows


TABLES = {"synth-headline": _headline, "synth-ratios": _ratios, "synth-goals": _goals}


def render(name, report):
    """The Markdown lines of generated block `name` (the source line last)."""
    if name not in TABLES:
        raise TableError(f"unknown generated block {name!r}; valid names: {', '.join(TABLES)}")
    return TABLES[name](report) + ["", _source(report)]


def rewrite(text, report):
    """`text` with every generated block rendered from `report`."""
    def block(match):
        body = "\n".join(render(match[2], report))
        return f"{match[1]}{body}\n{match[4]}"
    return _BLOCK.sub(block, text)


def update_docs(report_path=REPORT, docs=DOCS):
    """Rewrite the generated blocks of `docs` from `report_path`; returns the files changed."""
    try:
        report = json.loads(pathlib.Path(report_path).read_text())
    except (OSError, ValueError) as error:
        raise TableError(f"{report_path}: cannot read ({str(error).splitlines()[0]}); run "
                         f"`make synth-full` first") from None
    # Reports from before the two sweeps have no "sweep": theirs was today's full one.
    sweep = report.get("settings", {}).get("sweep", "full")
    if sweep != "full":
        raise TableError(f"{report_path} is from the {sweep} sweep; the docs' tables come from "
                         f"the full one: run `make synth-full` first")
    changed = []
    for path in docs:
        text = pathlib.Path(path).read_text()
        new = rewrite(text, report)
        if new != text:
            write_atomic(path, new)
            changed.append(str(path))
    return changed

