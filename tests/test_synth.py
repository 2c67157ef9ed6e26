# amaranth: UnusedElaboratable=no
"""The synthesis sweep (rtn_hw.flow.synth): selection messages, parsers, area/ratio arithmetic,
the atomic report writer, the register harness, and (marked `synth`) yosys regression
baselines checked in per tool version under tests/synth_baselines/."""

import json
import os
import pathlib
import re

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from rtn_hw import files
from rtn_hw.flow import (cluster, devices, harness, nextpnr, plan, plots, report, selection,
                         synth, tables)

BASELINES = pathlib.Path(__file__).with_name("synth_baselines")
REPO = pathlib.Path(__file__).resolve().parents[1]
JOBS_VALID = f"integers from 1 to {cluster.local_cores()} (this machine's cores)"


# --- TARGETS / UNITS / LANES / JOBS ------------------------------------------------------------

def test_selection_defaults():
    assert selection.selection_from_env({}) == {
        "targets": ["ecp5-85k", "ice40-up5k", "xilinx-lut6"],
        "units": None, "lanes": None, "seeds": None, "jobs": cluster.local_cores()}
    assert selection.parse_targets(" xilinx-lut6, ecp5-85k ecp5-85k") == [
        "xilinx-lut6", "ecp5-85k"]
    assert selection.parse_units("fp32_dot") == ["fp32_dot"]
    assert selection.parse_lanes("64,16 16") == [16, 64]
    assert selection.parse_seeds("3 1,2") == (1, 2, 3)
    assert selection.parse_jobs("1") == 1


@pytest.mark.parametrize("env, message", [
    ({"TARGETS": "ecp5"},
     "TARGETS: unknown target 'ecp5'; valid targets: ecp5-85k, ice40-up5k, xilinx-lut6"),
    ({"UNITS": "ternary_dot,fp64_dot"},
     "UNITS: unknown unit 'fp64_dot'; valid units: ternary_dot, rtn_mac_array, "
     "network_engine, dataflow_engine, fp32_dot, int8_dot, int16_dot, rtn_conv, fp32_conv, "
     "int8_conv"),
    ({"LANES": "16,x"},
     "LANES: 'x' is not a lane count; valid lanes: integers from 1 to 1024 (default: "
     "16,64,256 for RTN units, 16,64 for baselines (fp32: 16, and 64 in the full sweep), "
     "the board configurations for network_engine, 8 for the conv stages)"),
    ({"LANES": "0"},
     "LANES: '0' is not a lane count; valid lanes: integers from 1 to 1024 (default: "
     "16,64,256 for RTN units, 16,64 for baselines (fp32: 16, and 64 in the full sweep), "
     "the board configurations for network_engine, 8 for the conv stages)"),
    ({"LANES": "2048"},
     "LANES: '2048' is not a lane count; valid lanes: integers from 1 to 1024 (default: "
     "16,64,256 for RTN units, 16,64 for baselines (fp32: 16, and 64 in the full sweep), "
     "the board configurations for network_engine, 8 for the conv stages)"),
    ({"JOBS": "two"}, f"JOBS: 'two' is not a job count; valid jobs: {JOBS_VALID}"),
    ({"JOBS": "1,2"}, f"JOBS: '1,2' is not a job count; valid jobs: {JOBS_VALID}"),
    ({"JOBS": "100000"}, f"JOBS: '100000' is not a job count; valid jobs: {JOBS_VALID}"),
    ({"SEEDS": "0"}, "SEEDS: '0' is not a nextpnr seed; valid seeds: integers from 1 to 65535 "
                     "(default: 1; the full sweep: 1,2,3 for the ECP5 RTN rows)"),
])
def test_selection_errors(env, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        selection.selection_from_env(env)


def test_plan_default_sweep():
    runs = plan.plan()
    ids = {r.id for r in runs}
    # RTN at 16/64/256; int8 with DSPs at 16/64, fp32 at 16, all-LUT at 16 on the ECP5
    # only; no int16; 3 targets; the network engine in its two board configurations; the
    # RTN and int8 conv stages at 8 lanes on the ECP5 and the LUT6 model, with DSPs only.
    assert len(runs) == 3 * (2 * 3 + 3) + 2 + 2 + 2 * 2
    assert "ecp5-85k/ternary_dot/256/dsp" in ids
    assert "ecp5-85k/fp32_dot/16/lut" in ids and "ecp5-85k/int8_dot/16/lut" in ids
    assert not {"ice40-up5k/fp32_dot/16/lut", "xilinx-lut6/fp32_dot/16/lut"} & ids
    assert "ecp5-85k/fp32_dot/64/dsp" not in ids and "ecp5-85k/int8_dot/64/dsp" in ids
    assert not any(r.unit == "int16_dot" for r in runs)
    assert [r.id for r in plan.plan(["ecp5-85k"], ["int16_dot"], [16])] == [
        "ecp5-85k/int16_dot/16/dsp", "ecp5-85k/int16_dot/16/lut"]
    assert {r.id for r in runs if r.unit == "network_engine"} == {
        "ecp5-85k/network_engine/64/dsp", "ice40-up5k/network_engine/32/dsp"}
    assert not any(r.mapping == "lut" for r in runs if plan.UNITS[r.unit].kind == "rtn")
    assert plan.UNITS["rtn_mac_array"].params(64) == {
        "lanes": "64", "channels": "16", "levels_per_stage": "2"}
    assert plan.UNITS["network_engine"].params(64) == {"lanes": "64", "channels": "8"}
    assert plan.UNITS["network_engine"].params(32) == {"lanes": "32", "channels": "2"}
    # The dataflow engine only when named; its lane counts are II targets.
    # (weight memories of <= 32 words go to logic on the ECP5: fold.LOGIC_MAX_WORDS)
    assert plan.UNITS["dataflow_engine"].params(32) == {
        "folding": "64x4:logic,128x4:logic,8x5:logic"}
    assert [r.id for r in plan.plan(["ecp5-85k"], ["dataflow_engine"], [1])] == [
        "ecp5-85k/dataflow_engine/1/dsp"]
    # One nextpnr seed a row; the fp32 conv stage in the full sweep only.
    assert {r.seeds for r in runs} == {(1,)}
    conv = sorted(r.id for r in runs if plan.UNITS[r.unit].group == "conv")
    assert conv == sorted(f"{t}/{u}/8/dsp" for t in ("ecp5-85k", "xilinx-lut6")
                          for u in ("rtn_conv", "int8_conv"))
    full_conv = sorted(r.id for r in plan.plan(full=True) if r.unit == "fp32_conv")
    assert full_conv == ["ecp5-85k/fp32_conv/8/dsp", "xilinx-lut6/fp32_conv/8/dsp"]
    assert plan.UNITS["fp32_conv"].params(8) == {"lanes": "8", "channels": "1"}
    # LANES= picks the conv stages' L, still on their targets only.
    assert [r.id for r in plan.plan(["ice40-up5k", "ecp5-85k"], ["int8_conv"], [16])] == [
        "ecp5-85k/int8_conv/16/dsp"]


def test_conv_throughput_and_power_window():
    """8 lanes x 1 channel on 3x3, 16 -> 16, 28x28: 144 x 16 MACs per position in 18 x 16
    cycles (8 MACs per cycle); the power stimulus is the burst up to the first window (row 0
    and two positions of row 1, step 30) with a margin, and three windows; the warm-up ends
    after the burst, long before the first window period ends."""
    params = {"lanes": 8, "channels": 1, "in_channels": 16, "out_channels": 16, "size": 28,
              "kernel": 3}
    assert plan.conv_throughput(params) == (2304, 288)
    count, warmup = plan.conv_power_inputs(params)
    assert count == 30 + plan.CONV_AHEAD + 1 + plan.CONV_POWER_WINDOWS
    assert warmup == 30 + plan.CONV_BURST < 288


def test_plan_full_sweep():
    """The full sweep (make synth-full): fp32 also at 64 lanes, int16, the all-LUT baselines
    on every target, three nextpnr seeds on the ECP5 RTN rows (median Fmax), one elsewhere."""
    runs = plan.plan(full=True)
    # + fp32 at 64 lanes (3), int16 (3 × 3), all-LUT fp32 and int8 on two more targets (4),
    # the fp32 conv stage (2).
    assert len(runs) == len(plan.plan()) + 3 + 9 + 4 + 2
    assert "ice40-up5k/fp32_dot/16/lut" in {r.id for r in runs}
    seeds = {r.id: r.seeds for r in runs}
    assert seeds["ecp5-85k/network_engine/64/dsp"] == (1, 2, 3)
    assert seeds["ecp5-85k/ternary_dot/64/dsp"] == (1, 2, 3)
    assert seeds["ecp5-85k/fp32_dot/64/dsp"] == (1,)
    assert seeds["ice40-up5k/ternary_dot/64/dsp"] == (1,)
    assert "xilinx-lut6/fp32_dot/64/dsp" in seeds and "xilinx-lut6/fp32_dot/64/lut" not in seeds
    assert [r.seeds for r in plan.plan(["ecp5-85k"], ["ternary_dot"], [16], (7,), full=True)] \
        == [(7,)]


def test_plan_selection():
    runs = plan.plan(["ecp5-85k"], ["network_engine", "ternary_dot"], [16, 64], (4, 5))
    assert [(r.id, r.seeds) for r in runs] == [
        ("ecp5-85k/network_engine/64/dsp", (4, 5)), ("ecp5-85k/ternary_dot/16/dsp", (4, 5)),
        ("ecp5-85k/ternary_dot/64/dsp", (4, 5))]
    assert plan.plan(["ecp5-85k"], ["network_engine"], [16]) == []


# --- parsers -----------------------------------------------------------------------------------

STAT = {
    "creator": "Yosys 0.70",
    "modules": {
        "\\top": {"num_cells": 103, "num_cells_by_type": {
            "LUT4": 7, "TRELLIS_FF": 94, "unit": 1, "$scopeinfo": 0}},
        "\\unit": {"num_cells": 151, "num_cells_by_type": {
            "CCU2C": 27, "LUT4": 1, "MULT18X18D": 4, "TRELLIS_FF": 119}},
    },
    "design": {"num_cells_by_type": {"CCU2C": 27, "LUT4": 8}},
}


def test_parse_stat_splits_unit_and_harness():
    unit, harness_cells = devices.parse_stat(json.dumps(STAT))
    assert unit == {"CCU2C": 27, "LUT4": 1, "MULT18X18D": 4, "TRELLIS_FF": 119}
    assert harness_cells == {"LUT4": 7, "TRELLIS_FF": 94}
    with pytest.raises(ValueError, match=r"^module 'dut' not in yosys stat "):
        devices.parse_stat(json.dumps(STAT), unit="dut")


def test_parse_stat_expands_unit_submodules():
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"FDRE": 5, "unit": 1}},
        "\\unit": {"num_cells_by_type": {"LUT2": 1, "unit.mul0": 2}},
        "\\unit.mul0": {"num_cells_by_type": {"LUT6": 3, "unit.mul0.rnd": 1}},
        "\\unit.mul0.rnd": {"num_cells_by_type": {"LUT3": 4, "CARRY4": 1}},
    }}
    unit, harness_cells = devices.parse_stat(json.dumps(stat))
    assert unit == {"LUT2": 1, "LUT6": 6, "LUT3": 8, "CARRY4": 2}
    assert harness_cells == {"FDRE": 5}


def test_classify_and_area():
    counts = devices.classify("ecp5", {"CCU2C": 27, "LUT4": 1, "MULT18X18D": 4,
                                     "TRELLIS_FF": 119, "DP16KD": 2, "PFUMX": 3})
    assert counts == {"lut": 1, "ff": 119, "carry": 27, "dsp": 4, "bram": 2, "lutram": 0,
                      "other": 3, "bram_kbits": 36}
    # LUTs + 2 per CCU2C + 36.74 per DSP + 3.18 per Kbit.
    assert devices.area_lc("ecp5", counts) == pytest.approx(1 + 54 + 4 * 36.740 + 36 * 3.1775,
                                                          abs=0.01)
    ice = devices.classify("ice40", {"SB_LUT4": 10, "SB_DFFER": 3, "SB_DFF": 2, "SB_CARRY": 5,
                                   "SB_MAC16": 1})
    assert (ice["lut"], ice["ff"], ice["carry"], ice["dsp"]) == (10, 5, 5, 1)
    assert devices.area_lc("ice40", ice) == pytest.approx(10 + devices.DSP_LC)
    xc = devices.classify("xilinx", {"LUT6": 4, "LUT2": 3, "FDRE": 7, "CARRY4": 2, "DSP48E1": 1,
                                   "MUXF7": 1})
    assert (xc["lut"], xc["ff"], xc["carry"], xc["dsp"], xc["other"]) == (7, 7, 2, 1, 1)


def test_check_fit_reasons():
    counts = {"lut": 5000, "ff": 6000, "carry": 0, "dsp": 64, "bram": 0}
    assert devices.check_fit("ice40-up5k", counts) == ["6000 FF > 5280", "64 SB_MAC16 > 8"]
    assert devices.check_fit("ecp5-85k", dict(counts, carry=40_000)) == [
        "85000 LUT4 > 83640"]
    assert devices.check_fit("xilinx-lut6", dict(counts, lut=10**7)) == []


def test_parse_nextpnr_report():
    text = json.dumps({
        "fmax": {"clk$glb": {"achieved": 143.5, "constraint": 200.0},
                 "other": {"achieved": 99.25, "constraint": 200.0}},
        "utilization": {"MULT18X18D": {"available": 156, "used": 4},
                        "DCCA": {"available": 56, "used": 0}},
    })
    parsed = nextpnr.parse_report(text)
    assert parsed.fmax_mhz == 99.25 and parsed.constraint_mhz == 200.0
    assert parsed.clocks == {"clk$glb": {"achieved": 143.5, "constraint": 200.0},
                             "other": {"achieved": 99.25, "constraint": 200.0}}
    assert parsed.utilization == {"MULT18X18D": {"used": 4, "available": 156}}
    empty = nextpnr.parse_report("{}")
    assert (empty.fmax_mhz, empty.constraint_mhz, empty.clocks, empty.utilization) == (
        None, None, {}, {})


def test_nextpnr_report_ignores_the_packer_clock():
    # nextpnr-ice40 times its constant net as a clock; it is not a design clock.
    text = json.dumps({"fmax": {"$PACKER_GND_NET": {"achieved": 12.0, "constraint": 12.0},
                                "clk": {"achieved": 25.5, "constraint": 12.0}}})
    assert nextpnr.parse_report(text).fmax_mhz == 25.5



def test_over_capacity_reads_the_utilisation_table():
    # Lines as nextpnr-ice40 0.11 logs them (tab after "Info:").
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    5512/   5280   104%\n"
           "Info: \t               SB_IO:       4/     39    10%\n"
           "ERROR: Failed to expand region (0, 0) |_> (25, 31) of 5512 ICESTORM_LCs\n")
    assert nextpnr.over_capacity(log) == ["ICESTORM_LC 5512/5280"]
    assert nextpnr.over_capacity(log.replace("5512/", "5280/")) == []

# --- comparisons -------------------------------------------------------------------------------

def _run(unit, kind, lanes, area, energy, macs=None, mapping="dsp", target="ecp5-85k"):
    macs = macs or lanes
    return {"available": True, "unit": unit, "kind": kind, "lanes": lanes, "target": target,
            "mapping": mapping, "macs_per_cycle": macs, "area": area, "lut": area,
            "area_per_mac": area / macs, "energy_pj_per_mac": energy, "fmax_mhz": 100.0,
            "fits": True}


def test_compare_at_equal_throughput():
    runs = [_run("ternary_dot", "rtn", 16, 160, 0.5),
            _run("rtn_mac_array", "rtn", 16, 1600, 0.25, macs=256),
            _run("fp32_dot", "baseline", 16, 8000, 20.0),
            _run("fp32_dot", "baseline", 16, 16000, None, mapping="lut"),
            _run("fp32_dot", "baseline", 64, 32000, 20.0),
            _run("fp32_dot", "baseline", 16, 8000, 20.0, target="ice40-up5k")]
    out = report.compare(runs)
    assert [(c["rtn_unit"], c["baseline_mapping"]) for c in out] == [
        ("ternary_dot", "dsp"), ("ternary_dot", "lut"), ("rtn_mac_array", "dsp"),
        ("rtn_mac_array", "lut")]
    dot, _, mac, mac_lut = out
    assert dot["area_ratio"] == 50.0 and dot["area_ratio_rtn_over_baseline"] == 0.02
    assert dot["power_ratio"] == 40.0 and dot["power_ratio_rtn_over_baseline"] == 0.025
    # The MAC array does 16× the MACs per cycle: area per MAC/cycle is 6.25 against 500.
    assert mac["area_ratio"] == 80.0 and mac["power_ratio"] == 80.0
    assert mac_lut["power_ratio"] is None
    assert dot["paper_area_ratio"] == 89.17 and dot["paper_power_ratio"] == 46.46
    assert dot["baseline_energy_from_lanes"] == 16


def test_compare_keeps_the_conv_stages_apart():
    """The convolution stages are compared with each other only, not with dot products of the
    same lane count, and the other way round."""
    runs = [dict(_run("rtn_conv", "rtn", 8, 800, 1.0), group="conv"),
            dict(_run("fp32_conv", "baseline", 8, 40000, 30.0), group="conv"),
            _run("ternary_dot", "rtn", 8, 80, 0.5),
            _run("int8_dot", "baseline", 8, 400, 5.0)]
    out = report.compare(runs)
    assert [(c["group"], c["rtn_unit"], c["baseline_unit"]) for c in out] == [
        ("conv", "rtn_conv", "fp32_conv"), ("dot", "ternary_dot", "int8_dot")]
    assert out[0]["area_ratio"] == 50.0 and out[0]["power_ratio"] == 30.0


def test_compare_borrows_energy_per_mac_from_a_measured_lane_count():
    """A baseline with no power figure (too big for the device) takes its energy per MAC from
    the same unit's largest measured lane count, and says so."""
    runs = [_run("ternary_dot", "rtn", 64, 640, 0.5),
            _run("fp32_dot", "baseline", 16, 8000, 20.0),
            _run("fp32_dot", "baseline", 64, 32000, None),
            _run("fp32_dot", "baseline", 64, 64000, None, mapping="lut")]
    dsp, lut = report.compare(runs)
    assert (dsp["power_ratio"], dsp["baseline_energy_from_lanes"]) == (40.0, 16)
    assert dsp["area_ratio"] == 50.0
    assert (lut["power_ratio"], lut["baseline_energy_from_lanes"]) == (None, 64)


# --- report writer -----------------------------------------------------------------------------

def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "synth.json"
    files.write_json(path, {"old": 1})
    assert json.loads(path.read_text()) == {"old": 1}

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        files.write_json(path, {"new": 2})
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.json"]


def test_write_fails_mid_write_keeps_old(tmp_path, monkeypatch):
    path = tmp_path / "synth.md"
    files.write_atomic(path, "old\n")
    real_fdopen = os.fdopen

    class Half:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[:3])
            raise OSError("killed mid-write")

    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: Half(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="killed mid-write"):
        files.write_atomic(path, "new text\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.md"]


def _report():
    runs = [dict(_run("ternary_dot", "rtn", 16, 160, 0.5), id="a", lut_type="LUT4", ff=10,
                 carry=1, dsp=0, bram=0, lut_per_lane=10.0, power_mw=1.25,
                 harness={"lut": 7, "ff": 94}, notes=[]),
            dict(_run("fp32_dot", "baseline", 16, 8000, 20.0), id="b", lut_type="LUT4",
                 ff=900, carry=5, dsp=64, bram=0, lut_per_lane=500.0, power_mw=32.0,
                 harness={"lut": 7, "ff": 1100}, notes=[], fits=False),
            {"available": False, "unit": "int8_dot", "mapping": "dsp", "lanes": 16,
             "macs_per_cycle": 16, "target": "ecp5-85k", "lut_type": "LUT4",
             "notes": ["unit not available: nope"]}]
    return {"generated": "now", "timing": {"runs": 3, "cached_runs": 1, "total_seconds": 2.0},
            "tool_versions": {"yosys": "Yosys 0.70",
                              "seeds": {"nextpnr": "per run", "power_stimulus": 1}},
            "settings": {"targets": ["ecp5-85k"], "jobs": 2, "clock_mhz": 100, "channels": 16,
                         "area_definition": "LUTs + 36.74 per DSP",
                         "nextpnr_constraint_mhz": {"ecp5-85k": 200}},
            "devices": {"ecp5-85k": devices.DEVICES["ecp5-85k"]}, "paper": report.PAPER,
            "runs": runs, "comparisons": report.compare(runs)}


def test_markdown_and_files(tmp_path):
    rep = _report()
    text = report.render_markdown(rep)
    assert ("| ecp5-85k | 16 | ternary_dot | fp32_dot (dsp) | 50.0× | 0.02× | 50.0× | 89.17× "
            "| 40.0× | 0.025× | 46.46× | a side does not fit: yosys counts only |") in text
    assert "| int8_dot | dsp | 16 | 16 | – |" in text
    assert "unit not available: nope" in text
    written_files = report.write_reports(rep, tmp_path)
    written = json.loads((tmp_path / "synth.json").read_text())
    assert written["comparisons"][0]["area_ratio"] == 50.0
    assert written["files"]["plots"] == written_files["plots"]
    assert (tmp_path / "synth.md").read_text().startswith("# Synthesis sweep")
    assert [pathlib.Path(p).name for p in written_files["plots"]] == [
        "synth_area_ecp5-85k.png", "synth_energy_ecp5-85k.png"]
    assert all(pathlib.Path(p).read_bytes()[:4] == b"\x89PNG" for p in written_files["plots"])


def test_plots_keep_one_colour_per_unit_and_the_legend_off_the_data():
    colours = [colour for colour, _, _ in plots.STYLE.values()]
    assert len(set(colours)) == len(colours)
    assert set(plots.STYLE) == set(plan.UNITS)
    assert [metric for metric, _, _ in plots.METRICS] == ["area_per_mac", "energy_pj_per_mac"]


# --- generated doc tables ----------------------------------------------------------------------

def _docs_report():
    def run(unit, lanes, area, macs, fmax, seeds, energy, **extra):
        return {"unit": unit, "target": "ecp5-85k", "lanes": lanes, "mapping": "dsp",
                "available": True, "fits": True, "macs_per_cycle": macs, "lut": 100,
                "ff": 50, "carry": 10, "dsp": 0, "area": area, "area_per_mac": area / macs,
                "fmax_mhz": fmax, "fmax_by_seed": seeds, "power_mw": 12.5,
                "energy_pj_per_mac": energy, "params": {"lanes": lanes}, "notes": [], **extra}
    runs = [run("ternary_dot", 64, 640.0, 64, 170.0, {"1": 162.0, "2": 170.0, "3": 175.5}, 4.2),
            run("ternary_dot", 256, 2304.0, 256, 150.0, {"1": 150.0}, 3.1),
            run("rtn_mac_array", 64, 2048.0, 1024, 90.0, {"1": 90.0}, 1.1),
            run("network_engine", 64, 3000.0, 319.2, 50.0, {"1": 50.0}, 2.0,
                params={"lanes": 64, "channels": 8}),
            run("fp32_dot", 16, 30000.0, 16, 44.4, {"1": 44.4}, 359.0),
            run("fp32_dot", 64, 114315.0, 64, None, {}, None, fits=False, power_mw=None,
                notes=["does not fit ecp5-85k: 256 MULT18X18D > 156; yosys counts only"])]
    return {"generated": "2026-12-03T17:00:00+00:00", "runs": runs, "comparisons": [],
            "tool_versions": {"yosys": "Yosys 0.70 (git sha1 x)",
                              "nextpnr-ecp5": "nextpnr-0.11.1"}}


def test_headline_table_from_the_report():
    lines = tables.render("synth-headline", _docs_report())
    assert lines[0] == ("| unit | LUT4 | FF | CCU2C | MULT18X18D | logic cells | routed Fmax | "
                        "power | pJ/MAC |")
    assert lines[2] == ("| TernaryDot (64 MAC/cycle) | 100 | 50 | 10 | 0 | 640 | 170.0 MHz "
                        "(162–176, 3 seeds) | 12.5 mW | 4.20 |")
    assert lines[4].startswith("| NetworkEngine 64 × 8 (319 MAC/cycle) |")
    assert lines[5] == ("| Fp32Dot (64 MAC/cycle) | 100 | 50 | 10 | 0 | 114,315 | does not fit "
                        "(256 MULT18X18D > 156); 44 MHz at 16 lanes | – | 359.0 (its 16-lane "
                        "run) |")
    assert lines[-1] == ("Measured by `make synth-full` (2026-12-03T17:00:00+00:00; Yosys 0.70, "
                         "nextpnr-0.11.1); table written by `make synth-docs` from "
                         "build/reports/synth.json.")


def test_goal_table_and_block_rewrite():
    text = ("# Doc\n<!-- generated:synth-goals -->\nold figures\n<!-- /generated:synth-goals -->"
            "\nkept\n")
    new = tables.rewrite(text, _docs_report())
    assert new.startswith("# Doc\n<!-- generated:synth-goals -->\n| figure | before (4b1f27d) | "
                          "measured | goal |")
    assert ("| TernaryDot with S_a, logic cells per lane, 64 / 256 lanes | 11.0 / – | 10.0 / 9.0 "
            "| ≤ 8 |") in new
    assert "| RtnMacArray P = 16, 64 lanes, logic cells per MAC | 4.3 | 2.00 | ≤ 2.5 |" in new
    assert new.endswith("<!-- /generated:synth-goals -->\nkept\n")
    assert tables.rewrite(new, _docs_report()) == new
    with pytest.raises(tables.TableError, match=r"^unknown generated block 'nope'; valid names: "
                                                r"synth-headline, synth-ratios, synth-goals$"):
        tables.rewrite("<!-- generated:nope -->\n<!-- /generated:nope -->", _docs_report())


def test_update_docs_needs_a_full_sweep_report(tmp_path):
    with pytest.raises(tables.TableError, match=r"cannot read .*; run `make synth-full` first$"):
        tables.update_docs(tmp_path / "synth.json", docs=())
    report = _docs_report()
    report["settings"] = {"sweep": "default"}
    (tmp_path / "synth.json").write_text(json.dumps(report))
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- generated:synth-goals -->\nold\n<!-- /generated:synth-goals -->\n")
    with pytest.raises(tables.TableError, match=r"synth.json is from the default sweep; the "
                                                r"docs' tables come from the full one: run "
                                                r"`make synth-full` first$"):
        tables.update_docs(tmp_path / "synth.json", docs=(doc,))
    report["settings"]["sweep"] = "full"
    (tmp_path / "synth.json").write_text(json.dumps(report))
    assert tables.update_docs(tmp_path / "synth.json", docs=(doc,)) == [str(doc)]
    assert "| ≤ 8 |" in doc.read_text()


def test_harness_instance_keeps_the_exported_port_names():
    """The synthesis harness instantiates the unit's own module, whose ports carry the
    exported Verilog's names (the power model drives them)."""
    from rtn_hw.flow import yosys
    elab = yosys.elaborate(_Standin())
    assert "cell \\unit \\unit" in elab.top_il
    for port in ("i__payload", "i__valid", "i__ready", "k__payload", "o__ready", "clk", "rst"):
        assert f"connect \\{port} " in elab.top_il
    assert elab.harness_bits == {"in": 11, "out": 9, "xor_levels": 2}


class _CombStandin(wiring.Component):
    """A combinational unit: its module has no clk or rst port."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(unsigned(4))),
                          "o": Out(stream.Signature(unsigned(4)))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.o.payload.eq(~self.i.payload), self.o.valid.eq(self.i.valid),
                     self.i.ready.eq(self.o.ready)]
        return m


def test_harness_instance_of_a_combinational_unit():
    from rtn_hw.flow import yosys
    elab = yosys.elaborate(_CombStandin())
    assert "connect \\clk " not in elab.top_il.split("cell \\unit")[1].split("end")[0]
    assert "cell \\unit \\unit" in elab.top_il


# --- register harness --------------------------------------------------------------------------

class _Standin(wiring.Component):
    """A stand-in unit: o = i + 1 registered, plus an extra input stream xored in."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(unsigned(6))),
                          "k": In(stream.Signature(unsigned(2))),
                          "o": Out(stream.Signature(unsigned(6)))})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.payload.eq(self.i.payload + 1 + self.k.payload),
                         self.o.valid.eq(self.i.valid)]
        m.d.comb += [self.i.ready.eq(self.o.ready | ~self.o.valid), self.k.ready.eq(1)]
        return m


def test_harness_shape_and_errors():
    h = harness.RegisterHarness(_Standin())
    # Inputs: i.payload 6 + i.valid + k.payload 2 + k.valid + o.ready = 11; outputs 6+1+1+1.
    assert (h.in_bits, h.out_bits, h.levels) == (11, 9, 2)
    with pytest.raises(TypeError, match=r"^Unit must be a wiring\.Component, not 3$"):
        harness.RegisterHarness(3)


def test_harness_reduces_every_output_bit():
    """sout is the XOR of all unit output bits, 1 + levels cycles after they appear."""
    dut = harness.RegisterHarness(_Standin())
    unit = dut.unit
    seen, outs = [], []

    async def bench(ctx):
        bits = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0] * 3
        for bit in bits:
            ctx.set(dut.sin, bit)
            await ctx.tick()
            value = (ctx.get(unit.o.payload) | ctx.get(unit.o.valid) << 6
                     | ctx.get(unit.i.ready) << 7 | ctx.get(unit.k.ready) << 8)
            seen.append(bin(value).count("1") & 1)
            outs.append(ctx.get(dut.sout))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    delay = 1 + dut.levels
    assert outs[delay:] == seen[:-delay]
    assert len(set(seen)) == 2


def test_harness_input_chains(monkeypatch):
    """The unit's input bits are the shift chains' bits; chain j's head takes sin ^ the head of
    chain j-1 (so no two flip-flops share a D input), each chain at most CHAIN_BITS long."""
    monkeypatch.setattr(harness, "CHAIN_BITS", 4)
    dut = harness.RegisterHarness(_Standin())
    unit = dut.unit
    bits = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0]
    got = []

    async def bench(ctx):
        for bit in bits:
            ctx.set(dut.sin, bit)
            await ctx.tick()
            got.append(ctx.get(unit.i.payload) | ctx.get(unit.i.valid) << 6
                       | ctx.get(unit.k.payload) << 7 | ctx.get(unit.k.valid) << 9
                       | ctx.get(unit.o.ready) << 10)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    chains = [[0] * 4, [0] * 4, [0] * 3]          # 11 input bits
    want = []
    for bit in bits:
        heads = [bit, bit ^ chains[0][0], bit ^ chains[1][0]]
        chains = [[head] + chain[:-1] for head, chain in zip(heads, chains)]
        flat = [b for chain in chains for b in chain]
        want.append(sum(b << k for k, b in enumerate(flat)))
    assert got == want


# --- yosys regression baselines ----------------------------------------------------------------

def _baseline_file():
    version = synth.tool_versions()["yosys"].split()[1]
    return BASELINES / f"yosys-{version}.json"


def compare_counts(case, rec, tolerance):
    """(worse, better) lines: worse = above the baseline by more than the tolerance."""
    worse, better = [], []
    for key, expected in case["counts"].items():
        got = rec[key]
        slack = max(tolerance["cells"], tolerance["fraction"] * expected)
        label = f"{case['target']} {case['unit']} lanes={case['lanes']} {key}"
        if got > expected + slack:
            worse.append(f"{label}: {got} > baseline {expected}")
        elif got < expected:
            better.append(f"{label}: {got} < baseline {expected}")
    return worse, better


def test_compare_counts_tolerance():
    case = {"target": "ecp5-85k", "unit": "u", "lanes": 4,
            "counts": {"lut": 200, "ff": 10, "dsp": 0}}
    tol = {"fraction": 0.02, "cells": 1}
    assert compare_counts(case, {"lut": 204, "ff": 11, "dsp": 1}, tol) == ([], [])
    assert compare_counts(case, {"lut": 205, "ff": 9, "dsp": 2}, tol) == (
        ["ecp5-85k u lanes=4 lut: 205 > baseline 200", "ecp5-85k u lanes=4 dsp: 2 > baseline 0"],
        ["ecp5-85k u lanes=4 ff: 9 < baseline 10"])


@pytest.mark.synth
def test_synth_regression_baselines():
    """Small subset, yosys counts only: a worse figure fails, a better one is printed."""
    path = _baseline_file()
    if not path.exists():
        pytest.skip(f"no baseline for this yosys ({path.name}); record one with "
                    f"`python -m tests.test_synth`")
    baseline = json.loads(path.read_text())
    tolerance = baseline["tolerance"]
    worse, better, skipped = [], [], []
    for case in baseline["cases"]:
        workdir = REPO / "build" / "test_synth" / f"{case['unit']}-{case['lanes']}-" \
                                                  f"{case['target']}-{case['mapping']}"
        rec = synth.synthesize_run(case["unit"], case["lanes"], case["target"],
                                   case["mapping"], workdir=workdir)
        if not rec.get("available"):
            skipped.append(f"{case['unit']}: {rec['notes'][0]}")
            continue
        w, b = compare_counts(case, rec, tolerance)
        worse += w
        better += [f"{line} (better; update {path.name})" for line in b]
    for line in better + skipped:
        print(line)
    assert not worse, "; ".join(worse)
    assert len(skipped) < len(baseline["cases"]), "no baseline case could be built"


def record_baselines():
    """Write the baseline file for the running yosys from the current units."""
    cases = [("ternary_dot", 16), ("int8_dot", 4), ("rtn_mac_array", 8)]
    out = {"yosys": synth.tool_versions()["yosys"],
           "note": "yosys stat of the unit alone (register harness, keep_hierarchy), ecp5",
           "tolerance": {"fraction": 0.02, "cells": 1}, "cases": []}
    for unit, lanes in cases:
        workdir = REPO / "build" / "test_synth" / f"{unit}-{lanes}-ecp5-85k-dsp"
        rec = synth.synthesize_run(unit, lanes, "ecp5-85k", "dsp", workdir=workdir)
        if rec.get("available"):
            out["cases"].append({"unit": unit, "lanes": lanes, "target": "ecp5-85k",
                                 "mapping": "dsp",
                                 "params": rec["params"],
                                 "counts": {k: rec[k] for k in ("lut", "ff", "carry", "dsp")}})
    files.write_json(_baseline_file(), out)
    return out


if __name__ == "__main__":
    print(json.dumps(record_baselines(), indent=1))
