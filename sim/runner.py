"""Launch the cocotb benches from pytest: export, build once per simulator, run, report.

`run(unit, params, simulator, vectors=...)` exports the unit with `rtn_hw.flow.verilog` into
build/sim/verilog/<unit>-<params>/ (rewritten only when its bytes change, so a simulator's
build stays current), builds it once into build/sim/<simulator>/<unit>-<params>/, runs the
tests of bench.py there, moves cocotb's JUnit XML to build/sim/junit/, and returns one summary
row (see summary.py).

`interface="axis"` exports the unit behind its AXI4-Stream wrapper (rtn_hw.ip) instead and
runs the AXI4-Stream benches of axis/ (cocotbext-axi) on it.

Environment: NUM_VECTORS (per-configuration default given by the caller), SEED, SPARSITY,
IDLE, STALL, WAVES=1 (FST/VCD under build/waves/).
"""

import json
import os
import re
import sys
import time
from pathlib import Path

from rtn_hw import tools
from rtn_hw.files import write_if_changed

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "sim"
BUILD = ROOT / "build" / "sim"
WAVES = ROOT / "build" / "waves"
DEFAULT_SEED = 20261129
SIMULATORS = ("icarus", "verilator")

__all__ = ["run", "settings", "config_id", "SimulationFailed", "SIMULATORS"]


class SimulationFailed(AssertionError):
    pass


def _env_number(name, default, kind):
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={text}: expected {'an integer' if kind is int else 'a number'}")


def settings(vectors):
    """The run settings: environment values over the defaults (`vectors` for this config)."""
    values = {
        "vectors": _env_number("NUM_VECTORS", vectors, int),
        "seed": _env_number("SEED", DEFAULT_SEED, int),
        "sparsity": _env_number("SPARSITY", 0.5, float),
        "idle": _env_number("IDLE", 0.2, float),
        "stall": _env_number("STALL", 0.2, float),
        "waves": os.environ.get("WAVES", "0") not in ("", "0"),
    }
    for name in ("sparsity", "idle", "stall"):
        if not 0 <= values[name] < 1 or (name == "sparsity" and values[name] > 1):
            raise ValueError(f"{name.upper()}={values[name]}: expected a number in [0, 1)")
    if values["vectors"] < 1:
        raise ValueError(f"NUM_VECTORS={values['vectors']}: expected a positive integer")
    return values


def config_id(unit, params):
    """"ternary_dot-lanes64-pipeline2": the unit and its given parameters, file-name safe."""
    parts = [unit] + [f"{k}{v}" for k, v in params.items()]
    # ":" and "," (dataflow foldings) would upset make in Verilator's build folder.
    return "-".join(parts).translate(str.maketrans("/.:,", "____"))


def export(unit, params, interface="native"):
    """The unit's Verilog and sidecar under build/sim/verilog/<config>/: (verilog, sidecar)."""
    from rtn_hw.flow.verilog import export as export_unit
    folder = BUILD / "verilog" / _folder_name(unit, params, interface)
    folder.mkdir(parents=True, exist_ok=True)
    result = export_unit(unit, {k: str(v) for k, v in params.items()}, interface=interface)
    verilog = folder / f"{unit}.v"
    sidecar = folder / f"{unit}.json"
    write_if_changed(verilog, result.verilog)
    write_if_changed(sidecar, result.sidecar_text())
    return verilog, sidecar, result.sidecar


def _folder_name(unit, params, interface):
    name = config_id(unit, params)
    return name if interface == "native" else f"{name}-{interface}"


# The cocotb test module of each interface (sim/bench.py, sim/axis/bench.py).
TEST_MODULES = {"native": "bench", "axis": "axis.bench"}


def _icarus_dump(folder, module, waves_file):
    """A Verilog-2005 dump module (the runner's own uses SystemVerilog `string`)."""
    path = folder / "waves_dump.v"
    write_if_changed(path, f"module waves_dump();\ninitial begin\n"
                            f"  $dumpfile(\"{waves_file}\");\n  $dumpvars(0, {module});\n"
                            f"end\nendmodule\n")
    return path


def _top_public(folder, module):
    """A Verilator control file making only the top module's signals visible to cocotb."""
    path = folder / "public.vlt"
    write_if_changed(path, f'`verilator_config\npublic_flat_rw -module "{module}" -var "*"\n')
    return path


def _top_public_verilator():
    from cocotb_tools.runner import Verilator

    class TopPublicVerilator(Verilator):
        """cocotb's Verilator runner without `--public-flat-rw`, which makes every signal of
        every submodule public and keeps Verilator from optimizing any of them away (fp32_dot
        at 16 lanes: 208 s of C++ compilation with it, 40 s without). The benches touch only
        the top module's ports, which `public.vlt` keeps public."""

        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return TopPublicVerilator()


def run(unit, params, simulator, *, vectors, extra_env=None, interface="native"):
    """Build and run the benches for one configuration; return its summary row."""
    from cocotb_tools.runner import get_runner

    cfg = settings(vectors)
    name = _folder_name(unit, params, interface)
    verilog, sidecar_path, sidecar = export(unit, params, interface)
    module = sidecar["module"]
    folder = BUILD / simulator / (name + ("-waves" if cfg["waves"] else ""))
    folder.mkdir(parents=True, exist_ok=True)
    sources = [verilog]
    build_args, test_args, plusargs, build_env = [], [], [], {}
    waves_file = None
    if cfg["waves"]:
        WAVES.mkdir(parents=True, exist_ok=True)
    if simulator == "icarus":
        # Under Icarus's default -g2012 a combinational output whose inputs never change can
        # stay X (docs/sim.md); Amaranth's Verilog is plain Verilog-2005.
        build_args = ["-g2005"]
        if cfg["waves"]:
            waves_file = WAVES / f"{simulator}-{name}.fst"
            sources.append(_icarus_dump(folder, module, waves_file))
            build_args += ["-s", "waves_dump"]
    elif simulator == "verilator":
        build_args, build_env = tools.verilator_cocotb_build()
        sources.insert(0, _top_public(folder, module))  # the last source names the language
        if cfg["waves"]:
            # VCD: the wheel's FST writer needs lz4.h, which the OS may not have.
            waves_file = WAVES / f"{simulator}-{name}.vcd"
            build_args += ["--trace-structs"]
            test_args = ["--trace", "--trace-file", str(waves_file)]
    else:
        raise ValueError(f"simulator {simulator!r}: expected one of {', '.join(SIMULATORS)}")

    # The benches import each other and rtn_hw from the simulator's Python.
    if str(SIM) not in sys.path:
        sys.path.insert(0, str(SIM))
    stats = folder / "stats.json"
    stats.unlink(missing_ok=True)
    junit = BUILD / "junit" / f"{simulator}-{name}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    # The runner reads WAVES itself (waves are arranged here: Icarus needs its own dump), and
    # takes the build's environment from os.environ.
    with tools.environment({"WAVES": None, **build_env}):
        runner = _top_public_verilator() if simulator == "verilator" else get_runner(simulator)
        began = time.perf_counter()
        if simulator == "icarus":
            tools.drop_stale_icarus_build(folder)
        runner.build(sources=sources, hdl_toplevel=module, build_dir=folder,
                     build_args=build_args, timescale=("1ns", "1ps"),
                     waves=cfg["waves"] and simulator == "verilator",
                     log_file=folder / "build.log")
        built = time.perf_counter()
        env = {
            "RTN_SIM_SIDECAR": str(sidecar_path), "RTN_SIM_STATS": str(stats),
            "RTN_SIM_VECTORS": str(cfg["vectors"]), "RTN_SIM_SEED": str(cfg["seed"]),
            "RTN_SIM_SPARSITY": str(cfg["sparsity"]), "RTN_SIM_IDLE": str(cfg["idle"]),
            "RTN_SIM_STALL": str(cfg["stall"]), "RTN_SIM_LABEL": f"{name} on {simulator}",
            **(extra_env or {}),
        }
        failure = None
        try:
            runner.test(test_module=TEST_MODULES[interface], hdl_toplevel=module,
                        build_dir=folder, test_dir=folder, test_args=test_args, plusargs=plusargs,
                        extra_env=env, results_xml=str(junit),
                        waves=cfg["waves"], log_file=folder / "sim.log")
        except (SystemExit, RuntimeError) as error:
            # The runner exits (or raises) when a cocotb test fails or the simulator dies.
            failure = error
        ran = time.perf_counter()
    row = _row(unit, params, simulator, cfg, stats, built - began, ran - built)
    if interface != "native":
        # The summary keys rows by unit, params and simulator.
        row["params"] = ",".join(filter(None, [row["params"], f"interface={interface}"]))
    if waves_file is not None:
        row["waves"] = str(waves_file.relative_to(ROOT))
    if failure is not None:
        raise SimulationFailed(_failure_text(folder / "sim.log", name, simulator, cfg))
    return row


def _row(unit, params, simulator, cfg, stats_path, build_s, run_s):
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {"tests": {}}
    tests = stats["tests"]
    stream = tests.get("stream", {})
    throughput = tests.get("throughput", {})
    return {
        "unit": unit,
        "params": ",".join(f"{k}={v}" for k, v in params.items()),
        "simulator": simulator,
        "bench": "cocotb",
        "seed": cfg["seed"],
        "vectors": sum(t.get("vectors", 0) for t in tests.values()),
        "mismatches": sum(t.get("mismatches", 0) for t in tests.values()),
        "cycles": sum(t.get("cycles", 0) for t in tests.values()),
        "latency": stats.get("latency"),
        # The first vector's (all equal unless a vector takes several handshakes, bench.py).
        "measured_latency": throughput.get("latency_first", throughput.get(
            "latency_max", stream.get("latency_min"))),
        # Cycles between vectors at full rate: the bench's II and the widest output spacing.
        "ii": stats.get("ii"),
        "measured_ii": throughput.get("ii_measured"),
        "vectors_per_s": round(stream["vectors_per_s"], 1) if stream.get("vectors_per_s")
        else None,
        "build_s": round(build_s, 2),
        "run_s": round(run_s, 2),
        "tests_passed": len(tests),
    }


def _failure_text(log, name, simulator, cfg):
    """The failed tests' records from the simulator log, with the replay settings."""
    text = log.read_text(errors="replace") if log.exists() else ""
    records, current = [], []
    for line in text.splitlines():
        if re.match(r"^\s*(-\.--|[\d.]+)ns ", line):
            records.append(current)
            current = [line.strip()]
        else:
            current.append(line.strip())
    records.append(current)
    failed = ["\n".join(r) for r in records if r and (" failed" in r[0] or "ERROR" in r[0])]
    return (f"{name} on {simulator} failed (seed {cfg['seed']}; replay with "
            f"SEED={cfg['seed']} NUM_VECTORS={cfg['vectors']}); log: {log}\n"
            + "\n".join(failed))
