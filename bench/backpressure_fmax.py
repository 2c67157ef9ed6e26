"""What bounds TernaryDot's routed Fmax on ECP5: the stall network of its backpressure.

Every unit's pipeline stalls as a whole (`rtn_hw.gateware.pipeline.Pipeline`): each stage
register loads only when `~o.valid | o.ready`, one net that drives the clock enable of every
flip-flop in the unit (950 at 64 lanes, `pipeline=12`). This script routes TernaryDot as it
ships and, for comparison, the same netlist with `o.ready` of its core tied high inside (no
backpressure: every register loads every cycle, the enable net is gone), with the sweep's
synthesis script and nextpnr settings, and prints the routed Fmax per seed and the first net
of each critical path. The second variant is not a usable unit (it drops outputs under
backpressure); it measures what a credit-based free-running pipeline could reach.

    .venv/bin/python bench/backpressure_fmax.py [--lanes 64] [--seeds 1 2 3]

Work files go to build/backpressure_fmax/.
"""

import argparse
import re
import statistics

from rtn_hw.flow import devices, nextpnr, yosys
from rtn_hw.gateware.dot import TernaryDot, dot_levels

TARGET = "ecp5-85k"


class _FreeRunningDot(TernaryDot):
    """TernaryDot whose core ignores `o.ready` (a measurement device, not a unit)."""
    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self._core.o.ready.eq(1)   # the later assignment wins
        return m


def _critical_source(log):
    """The first net of the clock's critical path in a nextpnr log."""
    section = log.split("Critical path report for clock", 1)[-1]
    match = re.search(r"routing\s+[\d.]+\s+[\d.]+\s+Net (\S+)", section)
    return match[1] if match else "?"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    target = devices.TARGETS[TARGET]
    pipeline = dot_levels(args.lanes)
    print(f"TernaryDot({args.lanes}, pipeline={pipeline}) on {TARGET}, nextpnr "
          f"--freq {target.freq_mhz}, seeds {args.seeds}")
    for name, cls in (("as shipped (stalls)", TernaryDot),
                      ("o.ready tied high", _FreeRunningDot)):
        workdir = yosys.build_dir("backpressure_fmax", cls.__name__.strip("_"))
        yosys.synthesize(yosys.elaborate(cls(args.lanes, pipeline=pipeline)), target.synth,
                         workdir, pnr_json=True)
        fmax = {}
        for seed in args.seeds:
            log = f"nextpnr-{seed}.log"
            result = nextpnr.run_nextpnr(target.family, workdir, target.pnr_args, seed=seed,
                                         freq_mhz=target.freq_mhz, report=f"report-{seed}.json",
                                         log=log)
            fmax[seed] = result.fmax_mhz
            print(f"  {name:<20} seed {seed}: {result.fmax_mhz:6.1f} MHz, critical path "
                  f"from {_critical_source((workdir / log).read_text())}")
        print(f"  {name:<20} median {statistics.median(fmax.values()):.1f} MHz")


if __name__ == "__main__":
    main()
