"""The sweep's cache: what a result depends on, as a key, and the files under build/cache/synth.

* an **elaboration** (the unit's and the harness's RTLIL) is keyed by the unit, its parameters
  and the hash of every source that shapes a netlist (gateware, model, harness, the synthesis
  script's module) and the Amaranth version;
* a **synthesis** (yosys counts, nextpnr Fmax per seed) by the RTLIL's hash, the target, the
  mapping, the script, the nextpnr arguments, seeds and timeout, and the tool versions;
* a **power** estimate by the hash of the mapped netlist it simulates, the clock, the
  stimulus data itself and the power model's own code and coefficients.

So a change reruns exactly what it can change. Every entry is a JSON file written atomically.
"""

import functools
import hashlib
import json
import pathlib

from ..files import write_json

__all__ = ["FLOW_VERSION", "digest", "source_hash", "power_source_hash", "get", "put"]

FLOW_VERSION = 3          # bump when the scripts or the meaning of a cached result change
_ROOT = pathlib.Path(__file__).parents[1]
# The power model's code: a change to any of these reruns every power estimate.
_POWER_SOURCES = ("power.py", "gatesim.py", "vcd.py", "coefficients.py", "testbench.py",
                  "power_coefficients.json")


def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _hash_files(paths):
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def source_hash():
    """Hash of every source that shapes a unit's netlist, and the Amaranth version."""
    from amaranth import __version__ as amaranth_version
    files = sorted([*_ROOT.joinpath("gateware").rglob("*.py"), *_ROOT.joinpath("model").rglob("*.py"),
                    _ROOT / "units.py", _ROOT / "weights.py", _ROOT / "flow" / "harness.py",
                    _ROOT / "flow" / "yosys.py"])
    return digest([_hash_files(files), amaranth_version])


@functools.cache
def power_source_hash():
    return _hash_files([_ROOT / "flow" / name for name in _POWER_SOURCES])


def get(cache_dir, key):
    """The cached value of `key`, or None."""
    if cache_dir is None:
        return None
    try:
        return json.loads((pathlib.Path(cache_dir) / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def put(cache_dir, key, value):
    if cache_dir is not None:
        write_json(pathlib.Path(cache_dir) / f"{key}.json", value)
