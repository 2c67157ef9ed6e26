"""yosys cell counts of the dataflow engine building the shipped MNIST CNN on the ECP5-85k, per
folding, with its predicted II and images/s at a given clock (docs/units/conv_stage.md).

The same flow as bench/dataflow_area.py (`rtn_hw.flow.yosys`: the sweep's script, `synth_ecp5`
with DSPs, the unit's cells counted apart from its register harness); the counts go into
build/reports/dataflow_cnn_area.json under the folding's text. Work files go to
build/dataflow_cnn_area/.

    .venv/bin/python bench/dataflow_cnn_area.py [FOLDING ...] [--weights FILE] [--clock-mhz F]
"""

import argparse
import time

from rtn_hw import weights
from rtn_hw.files import update_json
from rtn_hw.flow import devices, yosys
from rtn_hw.gateware.dataflow import DataflowEngine, parse_foldings

TARGET = "ecp5-85k"
REPORT = "build/reports/dataflow_cnn_area.json"
DEFAULT_FOLDINGS = ("9x16:baked,144x8:logic,64x4,128x10:baked",)   # II 841


def measure(network, text, clock_mhz):
    foldings = parse_foldings(text, network)
    key = ",".join("pool" if f is None else str(f) for f in foldings)
    started = time.monotonic()
    dut = DataflowEngine(network, foldings)
    elab = yosys.elaborate(dut)
    workdir = yosys.build_dir("dataflow_cnn_area", key.replace(":", "-").replace(",", "_"))
    yosys.synthesize(elab, devices.TARGETS[TARGET].synth, workdir)
    cells, _ = devices.parse_stat((workdir / "stat.json").read_text())
    counts = devices.classify(devices.TARGETS[TARGET].family, cells)
    record = {"target": TARGET, "network": repr(network), "ii": dut.ii,
              "stage_iis": list(dut.stage_iis), "latency": dut.latency,
              "images_per_second": round(clock_mhz * 1e6 / dut.ii),
              "assumed_clock_mhz": clock_mhz, "counts": counts, "cells": cells,
              "seconds": round(time.monotonic() - started, 1)}
    update_json(REPORT, lambda report: {**report, key: record})
    return key, record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("foldings", nargs="*", default=list(DEFAULT_FOLDINGS))
    parser.add_argument("--weights", default=str(weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json"))
    parser.add_argument("--clock-mhz", type=float, default=100.0,
                        help="an assumed clock for images/s (no routed Fmax is measured)")
    args = parser.parse_args()
    network = weights.load(args.weights)
    for text in args.foldings:
        key, r = measure(network, text, args.clock_mhz)
        c = r["counts"]
        print(f"{key}: II {r['ii']} ({r['images_per_second']:,} images/s at "
              f"{args.clock_mhz:g} MHz), LUT4 {c['lut']} CCU2C {c['carry']} FF {c['ff']} "
              f"MULT18X18D {c['dsp']} DP16KD {c['bram']} LUTRAM {c['lutram']} "
              f"({r['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
