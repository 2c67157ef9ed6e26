"""Every registered unit, at a small and a medium size, exports Verilog that Icarus compiles
(-g2005) and Verilator lints without errors, with a sidecar that matches the module's ports,
and the same parameters give the same bytes, in this process and in a fresh one."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtn_hw import tools
from rtn_hw.flow import testbench, verilog as flow
from rtn_hw.units import UNITS

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_UNITS = {"popcount", "ternary_dot", "ternary_encoder", "ternary_decoder", "int_dot",
                  "fp32_dot", "rtn_mac_array", "network_engine", "dataflow_engine",
                  "conv_stage", "fp32_conv", "int_conv"}

# (small, medium) parameters per unit; the two sizes cover each unit's modes between them.
SIZES = {
    "popcount": ({"width": "8"}, {"width": "64", "levels_per_stage": "2"}),
    "ternary_dot": ({"lanes": "4", "pipeline": "0"},
                    {"lanes": "64", "pipeline": "3", "activation_sum": "false"}),
    "ternary_encoder": ({"lanes": "4"},
                        {"lanes": "32", "in_fmt": "Q4.12", "thresholds": "random", "seed": "3"}),
    "ternary_decoder": ({"lanes": "4", "alpha": "0.75", "beta": "0.25"},
                        {"lanes": "32", "out_fmt": "Q6.10", "values": "random", "seed": "3"}),
    "int_dot": ({"lanes": "2", "width": "8"}, {"lanes": "16", "width": "16"}),
    "fp32_dot": ({"lanes": "1", "mul_stages": "1", "add_stages": "1"}, {"lanes": "4"}),
    "rtn_mac_array": ({"lanes": "4", "channels": "2", "weights": "load"},
                      {"lanes": "32", "channels": "4", "thresholds": "random", "seed": "3",
                       "levels_per_stage": "2"}),
    # The shipped digits network; the engine's own tests check its outputs.
    "network_engine": ({"lanes": "24", "channels": "1"}, {"lanes": "64", "channels": "8"}),
    # Block RAM, logic and baked layers between the two sizes.
    "dataflow_engine": ({"folding": "smallest"},
                        {"folding": "64x16:logic,32x16,128x10:baked"}),
    # Convolution stages: folded (window FIFO, several groups) and one window per cycle.
    "conv_stage": ({"lanes": "4", "channels": "2", "in_channels": "2", "out_channels": "4",
                    "size": "5"},
                   {"lanes": "18", "channels": "4", "in_channels": "2", "out_channels": "4",
                    "size": "6"}),
    "fp32_conv": ({"lanes": "2", "in_channels": "1", "out_channels": "3", "size": "4",
                   "add_stages": "1"},
                  {"lanes": "4", "in_channels": "2", "out_channels": "3", "size": "5"}),
    "int_conv": ({"lanes": "3", "in_channels": "1", "out_channels": "2", "size": "4"},
                 {"lanes": "9", "channels": "2", "in_channels": "2", "out_channels": "4",
                  "size": "6", "width": "16"}),
}

CASES = [pytest.param(unit, params, id=f"{unit}-{size}")
         for unit, sizes in SIZES.items() if unit in UNITS
         for size, params in zip(("small", "medium"), sizes)]


def lint(path):
    """(passed, output) of `verilator --lint-only -Wno-fatal` on one file."""
    exe, env = tools.verilator()
    proc = subprocess.run([exe, "--lint-only", "-Wno-fatal", path.name], cwd=path.parent,
                          env=env, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    return proc.returncode == 0 and "%Error" not in output, output


def compile_icarus(path):
    proc = subprocess.run([tools.iverilog(), "-g2005", "-o", "sim.vvp", path.name], cwd=path.parent,
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
    # emit_src=False: no source locations, so no absolute paths of this checkout.
    repo = str(Path(__file__).resolve().parents[1])
    assert repo not in result.verilog and "/tmp/" not in result.verilog

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
    # A unit with no register (latency 0) has no clock domain, hence no clk/rst.
    assert ({"clk", "rst"} <= set(names)) == (sidecar["latency"] > 0)

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
              "    text = e.verilog + e.sidecar_text()\n"
              "    out[unit] = hashlib.sha256(text.encode()).hexdigest()\n"
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


# -- the sidecar alone is enough to drive the Verilog ----------------------------------------------
# The one `$readmemh` testbench (rtn_hw.flow.testbench) reads packed input payloads from a hex
# file and logs the output payloads; packing and unpacking use nothing but the sidecar's port
# map (and, for baked arrays, its `arguments`), and the results are compared with the golden
# model.

def planes(trits, rng=None):
    """Trit vector → (nz, sg) plane ints (bit k = lane k). With `rng`, zeros get random
    (don't-care) sign bits; without, sign 0."""
    nz = sum(1 << k for k, t in enumerate(trits) if t)
    sg = sum(1 << k for k, t in enumerate(trits)
             if t > 0 or (t == 0 and rng is not None and rng.random() < 0.5))
    return nz, sg


def _popcount_case(sidecar, rng, count):
    width = sidecar["arguments"]["width"]
    words = [0, (1 << width) - 1, *rng.integers(0, 1 << width, count).tolist()]
    return words, [bin(w).count("1") for w in words]


def _int_dot_case(sidecar, rng, count):
    from rtn_hw.model import int_dot
    lanes, width = sidecar["arguments"]["lanes"], sidecar["arguments"]["width"]
    lo, hi = -(1 << (width - 1)), 1 << (width - 1)
    a = np.vstack([np.full(lanes, lo), rng.integers(lo, hi, (count, lanes))])
    b = np.vstack([np.full(lanes, lo), rng.integers(lo, hi, (count, lanes))])
    inputs = [{**{f"a[{k}]": x[k] for k in range(lanes)}, **{f"b[{k}]": y[k] for k in range(lanes)}}
              for x, y in zip(a, b)]
    return inputs, int_dot(a, b, width).tolist()


def _decoder_case(sidecar, rng, count):
    from rtn_hw.model import Q, decode
    args = sidecar["arguments"]
    lanes = args["lanes"]
    fmt = Q.parse(args["out_fmt"])
    t = rng.integers(-1, 2, (count, lanes))
    inputs = [dict(zip(("nz", "sg"), planes(row, rng))) for row in t]
    codes = decode(t, args["alpha"], args["beta"], fmt)
    return inputs, [{f"[{k}]": int(row[k]) for k in range(lanes)} for row in codes]


def _mac_case(sidecar, rng, count):
    from rtn_hw.model import Q, RtnConstants, encode, postprocess
    args = sidecar["arguments"]
    lanes = args["lanes"]
    k_fmt, out_fmt = (Q.parse(args[f]) for f in ("k_fmt", "out_fmt"))
    c = args["constants"]
    consts = RtnConstants(k1=np.array(c["k1"]), k2=np.array(c["k2"]), k0=np.array(c["k0"]),
                          fmt=k_fmt, n=c["n"])
    weights = np.array(args["weights"])
    t = np.vstack([np.ones(lanes, int), -np.ones(lanes, int),
                   rng.integers(-1, 2, (count, lanes))])
    y = postprocess(t @ weights.T, t.sum(axis=1), consts, out_fmt)
    inputs = [dict(zip(("nz", "sg"), planes(row, rng))) for row in t]
    if args["thresholds"] is None:
        return inputs, [{f"[{p}]": int(v) for p, v in enumerate(row)} for row in y]
    lo, hi = (np.array(x) for x in args["thresholds"])
    trits = encode(y, lo, hi)
    # A zero output's sign bit is 0 (sg = y > hi).
    return inputs, [dict(zip(("nz", "sg"), planes(row))) for row in trits]


def _fp32_dot_case(sidecar, rng, count):
    from rtn_hw.model import fp32_dot_bits
    lanes = sidecar["arguments"]["lanes"]
    a = rng.normal(0, 4, (count, lanes)).astype(np.float32).view(np.uint32)
    b = rng.normal(0, 4, (count, lanes)).astype(np.float32).view(np.uint32)
    inputs = [{**{f"a[{k}]": x[k] for k in range(lanes)}, **{f"b[{k}]": y[k] for k in range(lanes)}}
              for x, y in zip(a, b)]
    return inputs, [int(v) for v in fp32_dot_bits(a, b)]


def _encoder_case(sidecar, rng, count):
    from rtn_hw.model import Q, encode
    args = sidecar["arguments"]
    lanes = args["lanes"]
    fmt = Q.parse(args["in_fmt"])
    lo, hi = (np.array(x) for x in args["thresholds"])
    y = np.vstack([lo, hi, lo - 1, hi + 1,
                   rng.integers(fmt.min_int, fmt.max_int + 1, (count, lanes))])
    inputs = [{f"[{k}]": int(row[k]) for k in range(lanes)} for row in y]
    return inputs, [dict(zip(("nz", "sg"), planes(row))) for row in encode(y, lo, hi)]


def _dot_case(sidecar, rng, count):
    lanes = sidecar["arguments"]["lanes"]
    w = np.vstack([np.ones(lanes, int), np.ones(lanes, int),
                   rng.integers(-1, 2, (count, lanes))])
    a = np.vstack([np.ones(lanes, int), -np.ones(lanes, int),
                   rng.integers(-1, 2, (count, lanes))])
    inputs = [{"w.nz": wp[0], "w.sg": wp[1], "a.nz": ap[0], "a.sg": ap[1]}
              for wp, ap in ((planes(x, rng), planes(y, rng)) for x, y in zip(w, a))]
    return inputs, [{"d": int(x @ y), "s_a": int(y.sum())} for x, y in zip(w, a)]


def _engine_case(sidecar, rng, count):
    """Digits test images through the shipped network (the engine's sidecar names no arrays;
    its `weights` parameter is the shipped manifest)."""
    from rtn_hw import weights
    assert sidecar["parameters"]["resolved"]["weights"] == "shipped"
    images, _ = weights.load_digits_test()
    images = images[np.sort(rng.choice(len(images), count, replace=False))]
    logits, classes = weights.load().forward(images)
    inputs = [{f"[{k}]": int(p) for k, p in enumerate(image)} for image in images]
    return inputs, [{**{f"logits[{j}]": int(v) for j, v in enumerate(row)}, "label": int(c)}
                    for row, c in zip(logits, classes)]


DRIVEN = {
    "ternary_dot": ({"lanes": "7", "pipeline": "2"}, _dot_case),
    "fp32_dot": ({"lanes": "3", "mul_stages": "1", "add_stages": "2"}, _fp32_dot_case),
    "ternary_encoder": ({"lanes": "6", "in_fmt": "Q3.2", "thresholds": "random", "seed": "4"},
                        _encoder_case),
    "popcount": ({"width": "12"}, _popcount_case),
    "int_dot": ({"lanes": "3", "width": "8"}, _int_dot_case),
    "ternary_decoder": ({"lanes": "5", "out_fmt": "Q4.6", "values": "random", "seed": "2"},
                        _decoder_case),
    "rtn_mac_array": ({"lanes": "8", "channels": "3", "thresholds": "random", "seed": "5"},
                      _mac_case),
    # One image per 76 cycles: 40 images fit the testbench's 10,000-cycle timeout.
    "network_engine": ({"lanes": "64", "channels": "8"}, _engine_case),
    # II = 32 (layer 1), images overlapped in the stages.
    "dataflow_engine": ({"folding": "64x16,32x16,128x2"}, _engine_case),
}


@pytest.mark.parametrize("unit", [u for u in DRIVEN if u in UNITS])
def test_sidecar_drives_the_verilog(unit, tmp_path, rng):
    params, make_case = DRIVEN[unit]
    result = flow.export(unit, params)
    path, json_path = flow.write(result, tmp_path / "dut.v")
    sidecar = json.loads(json_path.read_text())
    ports = {p["name"]: p for p in sidecar["ports"]}
    inputs, expected = make_case(sidecar, rng, 40)
    words = [testbench.pack(ports["i__payload"], value) for value in inputs]
    testbench.write_inputs(tmp_path / testbench.INPUTS, words, ports["i__payload"]["width"])
    (tmp_path / "tb.v").write_text(testbench.testbench(sidecar["ports"], module=sidecar["module"],
                                                       count=len(words), timeout_cycles=10_000))
    testbench.simulate(tmp_path, ["tb.v", "dut.v"])
    _, outs = testbench.read_events(tmp_path / testbench.EVENTS)
    assert [testbench.unpack(ports["o__payload"], word) for _, word in outs] == expected


def test_testbench_needs_a_streaming_unit_and_known_fields():
    ports = [{"name": n, "direction": "input", "width": 1} for n in ("clk", "rst", "i__valid")]
    with pytest.raises(ValueError, match=r"^Module dut has no port 'i__ready'; a streaming unit "
                                         r"has clk, rst, i__valid, i__ready, o__valid and "
                                         r"o__ready$"):
        testbench.testbench(ports, module="dut", count=1)
    port = {"name": "i__payload", "width": 6, "signed": False,
            "fields": [{"name": "a", "offset": 0, "width": 3, "signed": True},
                       {"name": "b", "offset": 3, "width": 3, "signed": False}]}
    assert testbench.pack(port, {"a": -1, "b": 5}) == 0b101_111
    assert testbench.unpack(port, 0b101_111) == {"a": -1, "b": 5}
    with pytest.raises(ValueError, match=r"^Payload fields must be \['a', 'b'\], not \['a'\]$"):
        testbench.pack(port, {"a": 1})


def test_write_through_a_link_keeps_the_link(tmp_path):
    """`rtn-hw verilog -o link.v` replaces the file the link points to, not the link."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "dot.v").write_text("old\n")
    link = tmp_path / "dot.v"
    link.symlink_to(real / "dot.v")
    flow.write(flow.export("ternary_dot", {"lanes": "4"}), link)
    assert link.is_symlink() and "module ternary_dot" in (real / "dot.v").read_text()
    assert (tmp_path / "dot.json").exists()


def test_a_build_of_another_icarus_is_dropped(tmp_path):
    """cocotb's runner reuses sim.vvp while the sources are unchanged; one compiled by another
    iverilog (the OS's 11 before `make icarus` built 12) must be rebuilt, not run."""
    vvp = tmp_path / "sim.vvp"
    vvp.write_text("old")
    (tmp_path / "iverilog.txt").write_text("/usr/bin/iverilog 0")
    tools.drop_stale_icarus_build(tmp_path)
    assert not vvp.exists()
    vvp.write_text("new")
    tools.drop_stale_icarus_build(tmp_path)    # the same iverilog: kept
    assert vvp.read_text() == "new"
    assert (tmp_path / "iverilog.txt").read_text().startswith(tools.iverilog())


def test_the_project_icarus_is_found_first():
    """make icarus builds Icarus 12 into the venv; tools and cocotb's runner use it first."""
    if not (tools.ICARUS_BIN / "vvp").exists():
        pytest.skip("no .venv/icarus (make icarus builds it)")
    assert tools.vvp() == str(tools.ICARUS_BIN / "vvp")
    version = subprocess.run([tools.iverilog(), "-V"], capture_output=True, text=True).stdout
    assert version.startswith("Icarus Verilog version 12.0")
