"""The session summary of the simulation benches: a terminal table and build/sim/summary.json.

Each bench case (cocotb or high-volume) records its row as a pytest user property ("sim_row",
JSON), which pytest-xdist carries back from its workers; the terminal-summary hook in
tests/conftest.py hands the reports to `report`. summary.json keeps one row per (unit, params,
simulator, bench): rows from this session replace older ones with the same key, others stay,
so a quick `make test` does not erase the figures of the last `make sim`. `wall_seconds` and
`session` describe the last session that ran a bench (its tests' wall time, first start to
last stop, and the load average at its end). The file is replaced atomically.
`python sim/summary.py` prints it as a Markdown table.
"""

import json
import os
import sys
import time
from pathlib import Path

from rtn_hw.files import update_json

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "build" / "sim" / "summary.json"

COLUMNS = [("unit", "unit", "<"), ("params", "params", "<"), ("simulator", "sim", "<"),
           ("bench", "bench", "<"),
           ("vectors", "vectors", ">"), ("mismatches", "mismatches", ">"),
           ("cycles", "cycles", ">"), ("measured_latency", "latency", ">"),
           ("vectors_per_s", "vectors/s", ">"), ("build_s", "build s", ">"),
           ("run_s", "run s", ">")]

__all__ = ["rows_from_reports", "wall_seconds", "write", "table", "report"]


def rows_from_reports(stats):
    """Rows recorded by the bench cases, from pytest's terminalreporter.stats."""
    rows = []
    for reports in stats.values():
        for rep in reports:
            if getattr(rep, "when", None) != "call":
                continue
            for key, value in getattr(rep, "user_properties", ()):
                if key == "sim_row":
                    # The AXI4-Stream benches' rows name no bench: they are cocotb's.
                    rows.append({"bench": "cocotb", **json.loads(value)})
    rows.sort(key=lambda r: (r["unit"], r["params"], r["simulator"]))
    return rows


def _key(row):
    # Rows written before the high-volume mode have no "bench": they came from cocotb.
    return (row["unit"], row["params"], row["simulator"], row.get("bench", "cocotb"))


def wall_seconds(stats):
    """Wall time of the session's tests: first start to last stop over every report."""
    reports = [rep for reports in stats.values() for rep in reports
               if getattr(rep, "start", None) and getattr(rep, "stop", None)]
    if not reports:
        return None
    return round(max(r.stop for r in reports) - min(r.start for r in reports), 1)


def write(rows, path=SUMMARY, wall=None):
    """Merge `rows` into the summary file (atomically); return all rows it now holds.
    `wall`: the session's wall time, kept as `wall_seconds` with the session's row count."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def merge(summary):
        old = summary.get("rows") if isinstance(summary.get("rows"), list) else []
        merged = {_key(r): r for r in old if isinstance(r, dict)}
        merged.update({_key(r): dict(r, recorded=stamp) for r in rows})
        session = summary.get("session")
        if wall is not None:
            # The load average says how shared the machine was while the figures were taken.
            session = {"wall_seconds": wall, "rows": len(rows), "recorded": stamp,
                       "load_average": [round(x, 2) for x in os.getloadavg()]}
        return {"format": 1, "wall_seconds": (session or {}).get("wall_seconds"),
                "session": session, "rows": sorted(merged.values(), key=_key)}

    # Locked: two pytest sessions finishing at once keep each other's rows.
    return update_json(path, merge, indent=2)["rows"]


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows):
    """The rows as a fixed-width text table (list of lines)."""
    cells = [[_cell(r.get(key)) for key, _, _ in COLUMNS] for r in rows]
    widths = [max([len(title)] + [len(c[k]) for c in cells])
              for k, (_, title, _) in enumerate(COLUMNS)]
    line = lambda values: "  ".join(f"{v:{align}{w}}" for v, w, (_, _, align)
                                    in zip(values, widths, COLUMNS))
    return [line([title for _, title, _ in COLUMNS]), line(["-" * w for w in widths])] + \
        [line(c) for c in cells]


def report(terminalreporter):
    rows = rows_from_reports(terminalreporter.stats)
    if not rows:
        return
    wall = wall_seconds(terminalreporter.stats)
    write(rows, wall=wall)
    terminalreporter.section("cocotb benches (build/sim/summary.json)")
    for text in table(rows):
        terminalreporter.write_line(text)
    if wall is not None:
        terminalreporter.write_line(f"wall time of the session's tests: {wall:,.0f} s")


def markdown(summary, last=False):
    """summary.json as a Markdown table (lines), with the session's wall time and load;
    `last`: only the rows the last session recorded."""
    rows = summary.get("rows", [])
    session = summary.get("session") or {}
    if last:
        rows = [r for r in rows if r.get("recorded") == session.get("recorded")]
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(key)) for key, _, _ in COLUMNS) + " |" for r in rows]
    if session.get("wall_seconds") is not None:
        lines += ["", f"Last session: {session['rows']} rows, {session['wall_seconds']:,.0f} s "
                  f"wall, load average {' / '.join(map(str, session.get('load_average', [])))} "
                  f"(1 / 5 / 15 min) at {session['recorded']}."]
    return lines


if __name__ == "__main__":
    # python sim/summary.py [--last] [summary.json]: the figures as Markdown (docs/sim.md).
    args = [a for a in sys.argv[1:] if a != "--last"]
    path = Path(args[0]) if args else SUMMARY
    print("\n".join(markdown(json.loads(path.read_text()), last="--last" in sys.argv)))
