"""`make explore` / `rtn-hw explore`: a design-space sweep over unit parameters, targets and
nextpnr seeds, from a small spec file (TOML or JSON, docs/synth.md) or options.

A spec names targets, seeds and mappings (defaults for every entry) and a list of units; each
unit entry names a sweep unit (`rtn_hw.flow.plan.UNITS`), its lane counts, and registry
parameters whose values are lists: the entry expands to every combination. Engine foldings are
registry parameters of `network_engine` like any other (today `channels`), so a new folding
parameter of the engine needs no change here:

    targets = ["ice40-up5k"]
    seeds = [1, 2, 3]
    [[units]]
    unit = "ternary_dot"
    lanes = [16, 32]
    params = { pipeline = [1, 3, 6] }

Every run is an ordinary sweep run (`rtn_hw.flow.synth.execute`): the same cache, the same
records as synth.json, on the same Dask executor. The report (`rtn_hw.flow.explore_report`)
adds Pareto fronts and per-seed Fmax statistics. Bad specs raise one-line ValueErrors.
"""

import datetime
import itertools
import json
import pathlib
import time

from .devices import TARGETS
from .plan import MAX_LANES, UNITS, Run

__all__ = ["load_spec", "parse_spec", "spec_from_options", "runs_of", "run_explore",
           "DEFAULT_SPEC"]

DEFAULT_SPEC = "docs/explore.toml"
_TOP_KEYS = ("targets", "seeds", "mappings", "units")
_UNIT_KEYS = ("unit", "lanes", "params", "targets", "seeds", "mappings")


def _load_text(path):
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the spec ({error.strerror or error})") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:             # Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML ({error})") from None
    raise ValueError(f"{path}: expected a spec file ending in .toml or .json")


def load_spec(path):
    """The spec in file `path` (.toml or .json), checked: see `parse_spec`."""
    return parse_spec(_load_text(path), where=str(path))


def _list(value, where, what, check):
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"{where}: {what} is empty")
    out = []
    for item in items:
        if not check(item):
            raise ValueError(f"{where}: {what}: {item!r} is not valid")
        if item not in out:
            out.append(item)
    return out


def _int_in(lo, hi):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _keys(table, valid, where):
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a table, not {table!r}")
    for key in table:
        if key not in valid:
            raise ValueError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")


def parse_spec(data, *, where="spec"):
    """A spec (dict, as read from TOML/JSON) → the normalized spec: every unit entry with its
    targets, seeds, mappings, lanes and parameter value lists filled in; raises ValueError
    naming the entry and the bad value."""
    from ..units import UNITS as REGISTRY, ParameterError
    _keys(data, _TOP_KEYS, where)
    targets = _list(data.get("targets", list(TARGETS)), where, "targets",
                    lambda t: t in TARGETS)
    seeds = _list(data.get("seeds", [1]), where, "seeds", _int_in(1, 65535))
    mappings = _list(data.get("mappings", ["dsp"]), where, "mappings",
                     lambda m: m in ("dsp", "lut"))
    units = data.get("units")
    if not isinstance(units, list) or not units:
        raise ValueError(f"{where}: expected units = a list of unit tables ([[units]])")
    entries = []
    for index, entry in enumerate(units):
        at = f"{where}: units[{index}]"
        _keys(entry, _UNIT_KEYS, at)
        name = entry.get("unit")
        if name not in UNITS:
            raise ValueError(f"{at}: unknown unit {name!r}; valid units: {', '.join(UNITS)}")
        at = f"{at} ({name})"
        sweep = UNITS[name]
        params = entry.get("params", {})
        _keys(params, [p.name for p in REGISTRY[sweep.registry].params if p.name != "lanes"],
              f"{at}: params")
        values = {k: [str(v).lower() if isinstance(v, bool) else str(v)
                      for v in _list(v, at, f"params.{k}", lambda x: isinstance(
                          x, (int, float, str)))]
                  for k, v in sorted(params.items())}
        mine = {
            "unit": name,
            "targets": _list(entry.get("targets", targets), at, "targets",
                             lambda t: t in TARGETS),
            "seeds": _list(entry.get("seeds", seeds), at, "seeds", _int_in(1, 65535)),
            "mappings": _list(entry.get("mappings", mappings), at, "mappings",
                              lambda m: m == "dsp" or (m == "lut" and sweep.lut_mapping)),
            "lanes": None if "lanes" not in entry else _list(
                entry["lanes"], at, "lanes", _int_in(1, MAX_LANES)),
            "params": values,
        }
        entries.append(mine)
        # Every combination's parameters resolve in the registry (names, types, ranges)
        # before anything runs.
        for lanes, overrides in _combinations(mine):
            try:
                REGISTRY[sweep.registry].resolve(sweep.params(lanes, overrides))
            except ParameterError as error:
                raise ValueError(f"{at}: {error}") from None
            except LookupError as error:
                raise ValueError(f"{at}: lanes={lanes}: {error}") from None
    return {"targets": targets, "seeds": seeds, "mappings": mappings, "units": entries}


def _lanes_of(entry, target=None):
    if entry["lanes"] is not None:
        return entry["lanes"]
    unit = UNITS[entry["unit"]]
    targets = [target] if target else entry["targets"]
    return sorted({n for t in targets for n in unit.lanes_for(t)})


def _combinations(entry, target=None):
    names = list(entry["params"])
    for lanes in _lanes_of(entry, target):
        for values in itertools.product(*(entry["params"][n] for n in names)):
            yield lanes, tuple(zip(names, values))


def runs_of(spec):
    """The runs of a normalized spec, in spec order, each once."""
    runs = []
    for entry in spec["units"]:
        for target in entry["targets"]:
            for lanes, overrides in _combinations(entry, target):
                for mapping in entry["mappings"]:
                    run = Run(entry["unit"], lanes, target, mapping, tuple(entry["seeds"]),
                              overrides)
                    if run not in runs:
                        runs.append(run)
    return runs


def spec_from_options(spec=None, *, targets=None, units=None, lanes=None, seeds=None,
                      params=None):
    """A spec dict from command-line options, over `spec` (a raw dict) if given: targets,
    seeds replace the spec's; units keeps only those entries (or makes one per unit without a
    spec); lanes replaces every entry's lane counts; params (name → [values]) is added to
    every entry."""
    out = json.loads(json.dumps(spec)) if spec else {}
    if targets:
        out["targets"] = list(targets)
    if seeds:
        out["seeds"] = list(seeds)
    entries = out.get("units") or []
    if units:
        entries = [e for e in entries if isinstance(e, dict) and e.get("unit") in units] \
            if spec else [{"unit": u} for u in units]
        if not entries:
            raise ValueError(f"--units {','.join(units)}: no such unit in the spec")
    for entry in entries:
        if lanes:
            entry["lanes"] = list(lanes)
        if params:
            entry["params"] = {**entry.get("params", {}), **params}
    out["units"] = entries
    return out


def run_explore(spec, *, out_dir=None, progress=None, write=True, **execute_args):
    """Run a normalized spec and write build/reports/explore.{json,md} and PNGs (never when no
    run has figures); returns the report. `execute_args` go to `rtn_hw.flow.synth.execute`
    (jobs, scheduler, bar, cache_results, power, run_seconds, run_memory_mb)."""
    from . import explore_report, synth, yosys
    started = time.monotonic()
    say = progress or (lambda line: None)
    runs = runs_of(spec)
    out_dir = pathlib.Path(out_dir) if out_dir else yosys.build_dir("reports")
    records, facts = synth.execute(runs, progress=progress, **execute_args)
    seconds = time.monotonic() - started
    report = {
        "format": 1,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "make explore (rtn-hw explore)",
        "tool_versions": synth.tool_versions(),
        "spec": spec,
        "settings": {"clock_mhz": synth.CLOCK_MHZ, "executor": facts,
                     "nextpnr_constraint_mhz": {t.name: t.freq_mhz for t in TARGETS.values()}},
        "runs": records,
        "timing": synth._timing(records, seconds, facts),
    }
    report.update(explore_report.analyse(records))
    if write and any(r.get("available") for r in records):
        report["files"] = explore_report.write(report, out_dir)
    elif write:
        say(f"explore: no run has figures; the reports in {out_dir} are left as they were")
    failed = report["timing"]["failed_runs"]
    say(f"explore: {len(records)} runs ({report['timing']['cached_runs']} cached"
        f"{f', {failed} failed' if failed else ''}) in {seconds:.0f} s; reports in {out_dir}")
    return report
