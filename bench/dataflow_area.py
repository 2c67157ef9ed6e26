"""yosys cell counts of the dataflow engine on the ECP5-85k, per folding: the data the folding
solver's resource model is fitted to (`rtn_hw.fold.CALIBRATION`).

Each folding of the shipped digits network is elaborated, synthesized with the sweep's script
(`rtn_hw.flow.yosys`, `synth_ecp5` with DSPs, the register harness counted apart) and its
unit's cells classified; the counts go into build/reports/dataflow_area.json under the
folding's text, beside the model's estimate, so the model's error is one command away.

    .venv/bin/python bench/dataflow_area.py [FOLDING ...]     (default: DEFAULT_FOLDINGS)
    .venv/bin/python bench/dataflow_area.py --fit

`--fit` synthesizes nothing: it prints the report's counts as `CALIBRATION` entries, the
coefficients fitted to `fold.CALIBRATION` with the report's counts, and the model's error per
folding, in-sample and leave-one-out (fitted to the other foldings).

Work files go to build/dataflow_area/.
"""

import argparse
import time

from rtn_hw import fold, weights
from rtn_hw.files import update_json
from rtn_hw.flow import devices, yosys
from rtn_hw.gateware.dataflow import DataflowEngine, parse_foldings

TARGET = "ecp5-85k"
REPORT = "build/reports/dataflow_area.json"
DEFAULT_FOLDINGS = (
    "smallest",
    "64x1,128x1,2x5",                               # fold.fewest_lanes(network, 128)
    "64x4,128x4,8x5",                               # II 32
    "16x4,32x4,8x5",                                # lanes against channels
    "4x16,8x16,8x5",
    "64x4:logic,128x4:logic,8x5:logic",
    "64x16:logic,128x16:logic,32x5:logic",       # II 8
    "64x4,128x4,128x10:baked",
    "unfolded",
)


def measure(network, text):
    foldings = parse_foldings(text, network)
    key = ",".join(map(str, foldings))
    started = time.monotonic()
    elab = yosys.elaborate(DataflowEngine(network, foldings))
    workdir = yosys.build_dir("dataflow_area", key.replace(":", "-").replace(",", "_"))
    yosys.synthesize(elab, devices.TARGETS[TARGET].synth, workdir)
    cells, _ = devices.parse_stat((workdir / "stat.json").read_text())
    counts = devices.classify(devices.TARGETS[TARGET].family, cells)
    model = fold.estimate(network, foldings)
    record = {"target": TARGET, "counts": counts, "cells": cells,
              "features": fold.features(network, foldings),
              "seconds": round(time.monotonic() - started, 1)}
    update_json(REPORT, lambda report: {**report, key: record})
    return key, counts, model


def show_fit(network):
    """The model fitted to `fold.CALIBRATION` and the counts in REPORT (if any; they win), and
    its error per folding, in-sample and leave-one-out."""
    import json
    import pathlib
    try:
        report = json.loads(pathlib.Path(REPORT).read_text())
    except (OSError, ValueError):
        report = {}
    calibration = {**fold.CALIBRATION,
                   **{key: (r["counts"]["lut"] + 2 * r["counts"]["carry"], r["counts"]["ff"])
                      for key, r in report.items()}}
    for key, r in report.items():
        c = r["counts"]
        print(f'    "{key}": ({c["lut"]} + 2 * {c["carry"]}, {c["ff"]}),')
    print(fold.fit(network, calibration))
    saved = fold.CALIBRATION
    try:
        for key, (lut4, ff) in calibration.items():
            fold._model.cache_clear()
            fold.CALIBRATION = calibration
            inside = fold.estimate(network, parse_foldings(key, network))
            fold._model.cache_clear()
            fold.CALIBRATION = {k: v for k, v in calibration.items() if k != key}
            outside = fold.estimate(network, parse_foldings(key, network))
            print(f"{key}: LUT4 {lut4} model {inside.lut4} "
                  f"({100 * (inside.lut4 / lut4 - 1):+.1f} %), leave-one-out {outside.lut4} "
                  f"({100 * (outside.lut4 / lut4 - 1):+.1f} %); FF {ff} model {inside.ff} "
                  f"({100 * (inside.ff / ff - 1):+.1f} %), leave-one-out {outside.ff} "
                  f"({100 * (outside.ff / ff - 1):+.1f} %)")
    finally:
        fold.CALIBRATION = saved
        fold._model.cache_clear()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("foldings", nargs="*", default=DEFAULT_FOLDINGS)
    parser.add_argument("--fit", action="store_true", help="fit the model, synthesize nothing")
    args = parser.parse_args()
    network = weights.load()
    if args.fit:
        show_fit(network)
        return
    for text in args.foldings:
        key, counts, model = measure(network, text)
        print(f"{key}: LUT4 {counts['lut']} FF {counts['ff']} CCU2C {counts['carry']} "
              f"DSP {counts['dsp']} DP16KD {counts['bram']} LUTRAM {counts['lutram']} | model "
              f"LUT4 {model.lut4} FF {model.ff} DSP {model.dsp} BRAM {model.bram}", flush=True)


if __name__ == "__main__":
    main()
