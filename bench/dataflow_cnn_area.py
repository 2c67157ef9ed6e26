"""yosys cell counts of the dataflow engine building the shipped MNIST CNN on the ECP5-85k, per
folding, with its predicted II and images/s at a given clock, and with `--route` its routed
Fmax (docs/units/conv_stage.md).

The same flow as bench/dataflow_area.py (`rtn_hw.flow.yosys`: the sweep's script, `synth_ecp5`
with DSPs, the unit's cells counted apart from its register harness); the counts go into
build/reports/dataflow_cnn_area.json under the folding's text. Work files go to
build/dataflow_cnn_area/. `--route` places and routes the same netlist once with the sweep's
nextpnr arguments and constraint (`rtn_hw.flow.nextpnr.run_nextpnr`, seed 1), under its own
`--timeout` rather than the sweep's 20 minutes: placing this design alone took 13 minutes on
the loaded machine. The record then holds the routed Fmax, images/s at it, the nextpnr
seconds, the tool versions and the load average before and after.

    .venv/bin/python bench/dataflow_cnn_area.py [FOLDING ...] [--weights FILE] [--clock-mhz F]
                                                [--route] [--seed N] [--timeout S]
"""

import argparse
import os
import time

from rtn_hw import weights
from rtn_hw.files import update_json
from rtn_hw.flow import devices, nextpnr, synth, yosys
from rtn_hw.gateware.dataflow import DataflowEngine, parse_foldings

TARGET = "ecp5-85k"
REPORT = "build/reports/dataflow_cnn_area.json"
DEFAULT_FOLDINGS = ("9x16:baked,144x8:logic,64x4,128x10:baked",)   # II 841


def measure(network, text, clock_mhz, route=None):
    """Synthesize (and with `route` = (seed, timeout), place and route) one folding; its
    record, also merged into REPORT."""
    foldings = parse_foldings(text, network)
    key = ",".join("pool" if f is None else str(f) for f in foldings)
    load_before = os.getloadavg()
    started = time.monotonic()
    dut = DataflowEngine(network, foldings)
    elab = yosys.elaborate(dut)
    workdir = yosys.build_dir("dataflow_cnn_area", key.replace(":", "-").replace(",", "_"))
    target = devices.TARGETS[TARGET]
    yosys.synthesize(elab, target.synth, workdir, pnr_json=route is not None)
    cells, _ = devices.parse_stat((workdir / "stat.json").read_text())
    counts = devices.classify(target.family, cells)
    record = {"target": TARGET, "network": repr(network), "ii": dut.ii,
              "stage_iis": list(dut.stage_iis), "latency": dut.latency,
              "images_per_second": round(clock_mhz * 1e6 / dut.ii),
              "assumed_clock_mhz": clock_mhz, "counts": counts, "cells": cells,
              "lut4_places": counts["lut"] + 2 * counts["carry"],
              "yosys_seconds": round(time.monotonic() - started, 1)}
    if route is not None:
        seed, timeout = route
        print(f"{key}: yosys done in {record['yosys_seconds']:.0f} s; nextpnr seed {seed}",
              flush=True)
        pnr = nextpnr.run_nextpnr(target.family, workdir, target.pnr_args, seed=seed,
                                  freq_mhz=target.freq_mhz, timeout=timeout,
                                  report=f"report-{seed}.json", log=f"nextpnr-{seed}.log")
        record["route"] = {
            "ok": pnr.ok, "fmax_mhz": None if pnr.fmax_mhz is None else round(pnr.fmax_mhz, 2),
            "images_per_second": round(pnr.fmax_mhz * 1e6 / dut.ii) if pnr.fmax_mhz else None,
            "error": pnr.error, "seed": seed, "constraint_mhz": target.freq_mhz,
            "args": list(target.pnr_args), "timeout_seconds": timeout,
            "seconds": round(pnr.seconds, 1), "log": str(workdir / f"nextpnr-{seed}.log"),
            "utilization": pnr.utilization}
        record["tool_versions"] = synth.tool_versions()
    record["seconds"] = round(time.monotonic() - started, 1)
    record["load_average"] = {"before": [round(v, 2) for v in load_before],
                              "after": [round(v, 2) for v in os.getloadavg()]}
    update_json(REPORT, lambda report: {**report, key: record})
    return key, record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("foldings", nargs="*", default=list(DEFAULT_FOLDINGS))
    parser.add_argument("--weights", default=str(weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json"))
    parser.add_argument("--clock-mhz", type=float, default=100.0,
                        help="an assumed clock for the unrouted images/s figure")
    parser.add_argument("--route", action="store_true",
                        help="also place and route (nextpnr, the sweep's arguments)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr seed (with --route)")
    parser.add_argument("--timeout", type=int, default=2400,
                        help="nextpnr time limit in seconds (with --route)")
    args = parser.parse_args()
    network = weights.load(args.weights)
    for text in args.foldings:
        key, r = measure(network, text, args.clock_mhz,
                         (args.seed, args.timeout) if args.route else None)
        c = r["counts"]
        routed = r.get("route")
        fmax = ("" if routed is None else
                f", routed {routed['fmax_mhz']} MHz = {routed['images_per_second']} images/s"
                if routed["ok"] else f", not routed: {routed['error']}")
        print(f"{key}: II {r['ii']} ({r['images_per_second']:,} images/s at "
              f"{args.clock_mhz:g} MHz), LUT4 {c['lut']} CCU2C {c['carry']} FF {c['ff']} "
              f"MULT18X18D {c['dsp']} DP16KD {c['bram']} LUTRAM {c['lutram']}{fmax} "
              f"({r['seconds']:.0f} s, load {r['load_average']['before'][0]} -> "
              f"{r['load_average']['after'][0]})", flush=True)


if __name__ == "__main__":
    main()
