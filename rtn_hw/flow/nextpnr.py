"""Run yowasp-nextpnr (ECP5, iCE40) on a yosys JSON netlist and read back Fmax and utilisation.

Like yosys, the YoWASP nextpnr cannot open absolute paths under /tmp: it runs in its work
directory (under build/) with relative file names. Runs use a fixed `--seed` so a result can
be reproduced, and `--timing-allow-fail` so a design slower than the constraint still reports
its Fmax instead of failing. nextpnr sometimes fails to route at one seed a design that routes
at another (seen: `Failed to route arc 0.0 of net 'clk$TRELLIS_IO_IN'` on the fp32 ECP5 row at
seed 1, routed at seed 2), so `route_retrying` tries such a failure once more at seed +
`RETRY_SEED_OFFSET` and says which seed routed; a design that does not fit, or a timeout, is
not retried (another seed would not change the first, and would double the second).
"""

import dataclasses
import functools
import json
import pathlib
import re
import subprocess
import time

from .. import tools

__all__ = ["NextpnrResult", "Report", "nextpnr_version", "parse_report", "run_nextpnr",
           "route_retrying", "RETRY_SEED_OFFSET", "CAPACITY_PATTERNS", "over_capacity"]

RETRY_SEED_OFFSET = 100     # a failed route is tried once more at seed + this

# Log lines nextpnr prints when a design does not fit the device or package.
CAPACITY_PATTERNS = (
    r"Unable to place cell",
    r"not enough",
    r"too many",
    r"No BEL",
    r"Design uses more",
    r"Failed to find",
    r"Unable to find a placement",
)

# The device utilisation table nextpnr logs before placing, e.g. "ICESTORM_LC: 5512/ 5280 104%".
UTILIZATION_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def over_capacity(logtext):
    """The bel types the log shows used beyond the device's count, as "BEL used/available"."""
    return [f"{bel} {used}/{available}"
            for bel, used, available in UTILIZATION_LINE.findall(logtext)
            if int(used) > int(available)]


@dataclasses.dataclass
class NextpnrResult:
    ok: bool
    fmax_mhz: float | None          # slowest clock's achieved Fmax
    fmax_by_clock: dict             # clock net → achieved MHz
    constraint_mhz: float | None
    utilization: dict               # bel type → {"used", "available"} (used > 0 only)
    seconds: float
    error: str | None               # one line when not ok
    capacity: bool = False          # the failure was the design not fitting
    timed_out: bool = False
    seed: int | None = None         # the seed of the run that gave this result
    retried: str | None = None      # the first seed's error, when this is the retry


@functools.cache
def nextpnr_version(family):
    """e.g. "nextpnr-0.11.1" (YoWASP prints a 'Preparing to run' line first; skipped)."""
    proc = subprocess.run([tools.nextpnr(family), "--version"], capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    match = re.search(r"\(Version ([^)]+)\)", text)
    return match[1] if match else text.strip().splitlines()[-1]


@dataclasses.dataclass(frozen=True)
class Report:
    """nextpnr's `--report` JSON, read once for the sweep and the board builds."""
    clocks: dict            # clock net → {"achieved": MHz, "constraint": MHz or None}
    utilization: dict       # bel type → {"used", "available"}, used bels only

    @property
    def fmax_mhz(self):
        """The slowest clock's achieved Fmax; None without a register-to-register path."""
        return min((c["achieved"] for c in self.clocks.values()), default=None)

    @property
    def constraint_mhz(self):
        return min((c["constraint"] for c in self.clocks.values()
                    if c["constraint"] is not None), default=None)


def parse_report(text):
    """nextpnr's `--report` JSON text → `Report`. nextpnr-ice40 also times the packer's
    constant net as a clock ("$PACKER_..."); only real nets count."""
    report = json.loads(text)
    clocks = {name: {"achieved": float(entry["achieved"]),
                     "constraint": float(entry["constraint"]) if "constraint" in entry else None}
              for name, entry in report.get("fmax", {}).items()
              if not name.startswith("$PACKER")}
    used = {bel: {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in report.get("utilization", {}).items() if int(v["used"])}
    return Report(clocks, used)


def run_nextpnr(family, workdir, device_args, *, seed, freq_mhz, netlist="top.json",
                report="report.json", log="nextpnr.log", timeout=None):
    """Place and route `netlist` in `workdir`; never raises for a failed or too-big design."""
    workdir = pathlib.Path(workdir)
    (workdir / report).unlink(missing_ok=True)
    args = [tools.nextpnr(family), *device_args, "--json", netlist, "--report", report,
            "--seed", str(seed), "--freq", str(freq_mhz), "--timing-allow-fail", "-q",
            "-l", log]
    start = time.monotonic()
    try:
        proc = subprocess.run(tools.tied_to_parent(args), cwd=workdir, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return NextpnrResult(False, None, {}, None, {}, time.monotonic() - start,
                             f"nextpnr timed out after {timeout} s", timed_out=True, seed=seed)
    seconds = time.monotonic() - start
    logtext = (workdir / log).read_text(errors="replace") if (workdir / log).exists() else ""
    if proc.returncode != 0 or not (workdir / report).exists():
        lines = [line.strip() for line in (logtext + proc.stdout + proc.stderr).splitlines()
                 if line.strip().startswith("ERROR")]
        error = lines[0] if lines else f"nextpnr exited with status {proc.returncode}"
        capacity = any(re.search(p, error, re.I) for p in CAPACITY_PATTERNS)
        # The placer's own error can be indirect ("Failed to expand region"); an
        # over-full utilisation table says plainly that the design does not fit.
        overfull = over_capacity(logtext)
        if overfull:
            capacity, error = True, f"{error} ({', '.join(overfull)} used)"
        return NextpnrResult(False, None, {}, None, {}, seconds, error, capacity, seed=seed)
    parsed = parse_report((workdir / report).read_text())
    clocks = {name: c["achieved"] for name, c in parsed.clocks.items()}
    return NextpnrResult(True, parsed.fmax_mhz, clocks, parsed.constraint_mhz,
                         parsed.utilization, seconds, None, seed=seed)


def route_retrying(family, workdir, device_args, *, seed, freq_mhz, report="report.json",
                   log="nextpnr.log", timeout=None):
    """`run_nextpnr` at `seed`, and once more at seed + RETRY_SEED_OFFSET if that failed for
    a reason other than capacity or the timeout. The result's `seed` is the seed it came
    from, `retried` the first error when it is the retry's; `seconds` counts both runs."""
    first = run_nextpnr(family, workdir, device_args, seed=seed, freq_mhz=freq_mhz,
                        report=report, log=log, timeout=timeout)
    if first.ok or first.capacity or first.timed_out:
        return first
    again = seed + RETRY_SEED_OFFSET
    stem, dot, ext = log.rpartition(".")
    second = run_nextpnr(family, workdir, device_args, seed=again, freq_mhz=freq_mhz,
                         report=report, log=f"{stem}-retry{dot}{ext}" if dot else f"{log}-retry",
                         timeout=timeout)
    return dataclasses.replace(second, seconds=first.seconds + second.seconds,
                               retried=first.error)
