"""`make synth` selections (TARGETS= UNITS= LANES= SEEDS= JOBS=, or the `rtn-hw synth` options)
→ keyword arguments of `rtn_hw.flow.synth.run_sweep`; one-line ValueErrors name the bad word
and the valid ones."""

import re

from .devices import TARGETS
from .plan import MAX_LANES, UNITS

__all__ = ["parse_targets", "parse_units", "parse_lanes", "parse_seeds", "parse_jobs",
           "selection_from_env"]


def _words(text):
    return [w for w in re.split(r"[\s,]+", text.strip()) if w]


def _choose(text, valid, what):
    if text is None or not text.strip():
        return list(valid)
    chosen = []
    for word in _words(text):
        if word not in valid:
            raise ValueError(f"{what.upper()}: unknown {what[:-1]} {word!r}; valid {what}: "
                             f"{', '.join(valid)}")
        if word not in chosen:
            chosen.append(word)
    return chosen


def parse_targets(text):
    """"ecp5-85k,xilinx-lut6" → list of target names; None or "" → all."""
    return _choose(text, TARGETS, "targets")


def parse_units(text):
    """"ternary_dot fp32_dot" → list of unit names; None or "" → None: the sweep's own choice
    (`rtn_hw.flow.plan.plan`: not the units swept only when named, nor, in the default sweep,
    the full sweep's extras)."""
    if text is None or not text.strip():
        return None
    return _choose(text, UNITS, "units")


def _integers(text, name, what, valid, lo, hi):
    if text is None or not str(text).strip():
        return None
    out = []
    for word in _words(str(text)):
        if not re.fullmatch(r"[0-9]+", word) or not lo <= int(word) <= hi:
            raise ValueError(f"{name}: {word!r} is not {what}; valid {name.lower()}: {valid}")
        if int(word) not in out:
            out.append(int(word))
    return sorted(out)


def parse_lanes(text):
    """"16,64" → [16, 64]; None or "" → None (each unit's default lane counts)."""
    return _integers(text, "LANES", "a lane count",
                     f"integers from 1 to {MAX_LANES} (default: 16,64,256 for RTN units, "
                     f"16,64 for baselines (fp32: 16, and 64 in the full sweep), the board "
                     f"configurations for network_engine, 8 for the conv stages)",
                     1, MAX_LANES)


def parse_seeds(text):
    """"1,2,3" → (1, 2, 3); None or "" → None (the sweep's own: rtn_hw.flow.plan)."""
    seeds = _integers(text, "SEEDS", "a nextpnr seed",
                      "integers from 1 to 65535 (default: 1; the full sweep: 1,2,3 for the "
                      "ECP5 RTN rows)", 1, 65535)
    return None if seeds is None else tuple(seeds)


def parse_jobs(text):
    """"2" → 2; None or "" → the number of cores. More workers than this machine's cores is
    an error (local workers are processes: a typo must not start 100,000 of them)."""
    from .cluster import local_cores
    cores = local_cores()
    valid = f"integers from 1 to {cores} (this machine's cores)"
    jobs = _integers(text, "JOBS", "a job count", valid, 1, cores)
    if jobs is not None and len(jobs) > 1:
        raise ValueError(f"JOBS: {str(text).strip()!r} is not a job count; valid jobs: {valid}")
    return jobs[0] if jobs else cores


def selection_from_env(environ):
    """TARGETS, UNITS, LANES, SEEDS, JOBS from an environment mapping → keyword arguments of
    `run_sweep`; raises ValueError (one line) on a bad value."""
    return {"targets": parse_targets(environ.get("TARGETS")),
            "units": parse_units(environ.get("UNITS")),
            "lanes": parse_lanes(environ.get("LANES")),
            "seeds": parse_seeds(environ.get("SEEDS")),
            "jobs": parse_jobs(environ.get("JOBS"))}
