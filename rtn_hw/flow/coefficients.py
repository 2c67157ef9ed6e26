"""The power model's coefficient table (power_coefficients.json beside this file), validated.

The table gives the static power of each device and, per family, energies per entry of cell
types, each with a basis:
  * "output_toggle": energy per 0↔1 change of a bit driven by an output of such a cell;
  * "input_toggle": energy per change of a bit on an input pin of such a cell (clock excluded;
    VTR's basis for hard multipliers);
  * "instance_cycle": energy per instance per clock cycle (clock load of FFs, BRAM clocking).
Every value names its source and a tag (measured, datasheet, derived with its derivation, or
model). docs/power.md explains each figure.
"""

import json
import math
import pathlib

__all__ = ["COEFFICIENTS_PATH", "POWER_DEVICES", "BASES", "TAGS", "CoefficientError",
           "load_coefficients"]

COEFFICIENTS_PATH = pathlib.Path(__file__).with_name("power_coefficients.json")
# power target → the device of its static power figure (and of `rtn_hw.flow.devices`)
POWER_DEVICES = {"ecp5": "ecp5-85k", "ice40": "ice40-up5k"}
BASES = {"output_toggle": "pJ/toggle", "input_toggle": "pJ/toggle", "instance_cycle": "pJ/cycle"}
TAGS = ("measured", "datasheet", "derived", "model")


class CoefficientError(ValueError):
    """A malformed coefficient table; the message is one line."""


def _need(obj, key, kind, where):
    if not isinstance(obj, dict) or key not in obj:
        raise CoefficientError(f"{where}: missing {key!r}")
    value = obj[key]
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise CoefficientError(f"{where}: {key} must be a finite number >= 0, not {value!r}")
        return float(value)
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise CoefficientError(f"{where}: {key} must be a non-empty {kind.__name__}, "
                               f"not {value!r}")
    return value


def _check_sourced(entry, where):
    _need(entry, "source", str, where)
    tag = _need(entry, "tag", str, where)
    if tag not in TAGS:
        raise CoefficientError(f"{where}: tag must be one of {', '.join(TAGS)}, not {tag!r}")
    if tag == "derived":
        _need(entry, "derivation", str, where)


def load_coefficients(path=None):
    """Read and validate the coefficient table; raise CoefficientError (one line) if malformed."""
    path = pathlib.Path(path) if path is not None else COEFFICIENTS_PATH
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CoefficientError(f"{path.name}: cannot read: {str(error).splitlines()[0]}") \
            from None
    where = path.name
    _need(table, "version", str, where)
    static = _need(table, "static", dict, where)
    for device, entry in static.items():
        here = f"{where}: static[{device!r}]"
        _need(entry, "value", float, here)
        if entry.get("unit") != "mW":
            raise CoefficientError(f"{here}: unit must be 'mW', not {entry.get('unit')!r}")
        _check_sourced(entry, here)
    entries = _need(table, "cells", list, where)
    seen = set()
    for k, entry in enumerate(entries):
        here = f"{where}: cells[{k}]"
        family = _need(entry, "family", str, here)
        cells = _need(entry, "cells", list, here)
        if not cells or not all(isinstance(c, str) and c for c in cells):
            raise CoefficientError(f"{here}: cells must be a non-empty list of cell type names")
        basis = _need(entry, "basis", str, here)
        if basis not in BASES:
            raise CoefficientError(f"{here}: basis must be one of {', '.join(BASES)}, "
                                   f"not {basis!r}")
        _need(entry, "value", float, here)
        if entry.get("unit") != BASES[basis]:
            raise CoefficientError(f"{here}: unit must be {BASES[basis]!r} for basis {basis}, "
                                   f"not {entry.get('unit')!r}")
        _need(entry, "name", str, here)
        _check_sourced(entry, here)
        for cell in cells:
            if (family, cell, basis) in seen:
                raise CoefficientError(f"{here}: {family} {cell} {basis} is given twice")
            seen.add((family, cell, basis))
    for device in POWER_DEVICES.values():
        if device not in static:
            raise CoefficientError(f"{where}: no static power for device {device!r}")
    return table
