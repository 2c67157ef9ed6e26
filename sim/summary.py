"""The session summary of the cocotb benches: a table on the terminal and build/sim/summary.json.

Each bench case records its row as a pytest user property ("sim_row", JSON), which pytest-xdist
carries back from its workers; the terminal-summary hook in tests/conftest.py hands the reports
to `report`. summary.json keeps one row per (unit, params, simulator): rows from this session
replace older ones with the same key, others stay, so a quick `make test` does not erase the
figures of the last `make sim`. The file is replaced atomically.
"""

import json
import time
from pathlib import Path

from rtn_hw.files import update_json

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "build" / "sim" / "summary.json"

COLUMNS = [("unit", "unit", "<"), ("params", "params", "<"), ("simulator", "sim", "<"),
           ("vectors", "vectors", ">"), ("mismatches", "mismatches", ">"),
           ("cycles", "cycles", ">"), ("measured_latency", "latency", ">"),
           ("vectors_per_s", "vectors/s", ">"), ("build_s", "build s", ">"),
           ("run_s", "run s", ">")]

__all__ = ["rows_from_reports", "write", "table", "report"]


def rows_from_reports(stats):
    """Rows recorded by the bench cases, from pytest's terminalreporter.stats."""
    rows = []
    for reports in stats.values():
        for rep in reports:
            if getattr(rep, "when", None) != "call":
                continue
            for key, value in getattr(rep, "user_properties", ()):
                if key == "sim_row":
                    rows.append(json.loads(value))
    rows.sort(key=lambda r: (r["unit"], r["params"], r["simulator"]))
    return rows


def _key(row):
    return (row["unit"], row["params"], row["simulator"])


def write(rows, path=SUMMARY):
    """Merge `rows` into the summary file (atomically); return all rows it now holds."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def merge(summary):
        old = summary.get("rows") if isinstance(summary.get("rows"), list) else []
        merged = {_key(r): r for r in old if isinstance(r, dict)}
        merged.update({_key(r): dict(r, recorded=stamp) for r in rows})
        return {"format": 1, "rows": sorted(merged.values(), key=_key)}

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
    write(rows)
    terminalreporter.section("cocotb benches (build/sim/summary.json)")
    for text in table(rows):
        terminalreporter.write_line(text)
