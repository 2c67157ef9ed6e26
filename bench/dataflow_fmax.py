"""Routed figures of the dataflow engine on the ECP5-85k: LUT4, FF, DSP, block RAM, Fmax and
images/s at the routed Fmax, per II target (the sweep's folding for it, `rtn_hw.fold.fewest_lanes`).

Each II is an ordinary sweep run (`rtn_hw.flow.synth.run_sweep`: yosys, nextpnr, the same
cache), without the power estimate, reported into build/reports/dataflow_synth/ so the main
synth report is left alone. images/s = Fmax / II.

    .venv/bin/python bench/dataflow_fmax.py [--ii 32 8] [--seeds 1]
    .venv/bin/python bench/dataflow_fmax.py --route --ii 32

The sweep gives nextpnr 20 minutes a seed; on a loaded machine that is not enough for these
designs. `--route` routes the netlist a sweep left (build/synth/ecp5-85k/dataflow_engine-II-dsp)
again with no time limit and prints the routed Fmax.
"""

import argparse

from rtn_hw.flow import devices, nextpnr, plan, synth, yosys
from rtn_hw.gateware.dataflow import parse_foldings, predicted_ii
from rtn_hw.weights import load

OUT_DIR = "build/reports/dataflow_synth"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ii", type=int, nargs="+", default=[32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--route", action="store_true",
                        help="route the sweep's netlist again, without a time limit")
    args = parser.parse_args()
    if args.route:
        target, network = devices.TARGETS["ecp5-85k"], load()
        for row in args.ii:
            workdir = yosys.build_dir("synth", "ecp5-85k", f"dataflow_engine-{row}-dsp")
            folding = plan.UNITS["dataflow_engine"].params(row)["folding"]
            ii = predicted_ii(network, parse_foldings(folding, network))
            for seed in args.seeds:
                result = nextpnr.run_nextpnr(target.family, workdir, target.pnr_args, seed=seed,
                                             freq_mhz=target.freq_mhz,
                                             report=f"route{seed}.json", log=f"route{seed}.log")
                fmax = result.fmax_mhz
                rate = f"{fmax * 1e6 / ii:,.0f} images/s" if fmax else result.error
                print(f"II {ii} ({folding}) seed {seed}: Fmax {fmax} MHz, {rate} "
                      f"({result.seconds:.0f} s)", flush=True)
        return
    report = synth.run_sweep(["ecp5-85k"], ["dataflow_engine"], args.ii, args.jobs,
                             progress=print, seeds=tuple(args.seeds), out_dir=OUT_DIR,
                             power=False)
    network = load()
    for run in report["runs"]:
        folding = plan.UNITS["dataflow_engine"].params(run["lanes"])["folding"]
        ii = predicted_ii(network, parse_foldings(folding, network))
        fmax = run.get("fmax_mhz")
        rate = f"{fmax * 1e6 / ii:,.0f} images/s" if fmax else "no Fmax"
        print(f"II {ii} ({folding}): LUT4 {run.get('lut')} FF {run.get('ff')} "
              f"CCU2C {run.get('carry')} DSP {run.get('dsp')} DP16KD {run.get('bram')} "
              f"Fmax {fmax} MHz, {rate}; notes {run.get('notes')}")


if __name__ == "__main__":
    main()
