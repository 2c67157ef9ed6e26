# amaranth: UnusedElaboratable=no
"""`make explore` and the Dask executor of every sweep (rtn_hw.flow.explore, .explore_report,
.cluster, .limits, .estimate, synth.execute).

The executor tests run a real LocalCluster of worker processes on fake, cheap runs (the worker
functions are replaced by ones that return made-up cell counts in a fraction of a second), so
they test the scheduling, retry, cache and interrupt paths in seconds, not the tools."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import cloudpickle
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtn_hw import cli, tools
from rtn_hw.flow import cluster, estimate, explore, explore_report, limits, synth, yosys
from rtn_hw.flow.plan import Run

# The fake workers below travel to the Dask workers by value: those processes cannot import
# this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --- specs ---------------------------------------------------------------------------------------

def test_spec_expands_every_combination(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('targets = ["ice40-up5k", "ecp5-85k"]\nseeds = [3, 1]\n'
                    '[[units]]\nunit = "ternary_dot"\nlanes = [16, 32]\n'
                    'params = { pipeline = [1, 2], activation_sum = [true, false] }\n'
                    '[[units]]\nunit = "int8_dot"\nlanes = [16]\nmappings = ["dsp", "lut"]\n'
                    'targets = ["ice40-up5k"]\n')
    spec = explore.load_spec(path)
    runs = explore.runs_of(spec)
    assert len(runs) == 2 * 2 * 2 * 2 + 2
    assert runs[0] == Run("ternary_dot", 16, "ice40-up5k", "dsp", (3, 1),
                          (("activation_sum", "true"), ("pipeline", "1")))
    assert runs[0].id == "ice40-up5k/ternary_dot/16/dsp/activation_sum=true/pipeline=1"
    assert runs[-1].id == "ice40-up5k/int8_dot/16/lut"
    # The same spec as JSON.
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps({"targets": ["ice40-up5k", "ecp5-85k"], "seeds": [3, 1],
                                   "units": [{"unit": "ternary_dot", "lanes": [16, 32],
                                              "params": {"pipeline": [1, 2],
                                                         "activation_sum": [True, False]}},
                                             {"unit": "int8_dot", "lanes": [16],
                                              "mappings": ["dsp", "lut"],
                                              "targets": ["ice40-up5k"]}]}))
    assert explore.runs_of(explore.load_spec(as_json)) == runs


def test_shipped_spec_and_engine_foldings():
    spec = explore.load_spec(synth.yosys.REPO / explore.DEFAULT_SPEC)
    assert len(explore.runs_of(spec)) == 12
    # An engine folding is a registry parameter like any other; without lanes, the board
    # configurations of each target.
    spec = explore.parse_spec({"targets": ["ice40-up5k"], "units": [
        {"unit": "network_engine", "params": {"channels": [1, 2, 4]}}]})
    assert [r.id for r in explore.runs_of(spec)] == [
        f"ice40-up5k/network_engine/32/dsp/channels={c}" for c in (1, 2, 4)]
    # Outside the board configurations the folding must be given.
    assert synth.UNITS["network_engine"].params(48, (("channels", "3"),)) == {
        "lanes": "48", "channels": "3"}
    with pytest.raises(LookupError):
        synth.UNITS["network_engine"].params(48)


@pytest.mark.parametrize("spec, message", [
    ({"units": [{"unit": "ternary_dot"}], "target": ["x"]},
     "s: unknown key 'target'; valid keys: targets, seeds, mappings, units"),
    ({"units": []}, "s: expected units = a list of unit tables ([[units]])"),
    ({"units": [{"unit": "fp64_dot"}]},
     "s: units[0]: unknown unit 'fp64_dot'; valid units: ternary_dot, rtn_mac_array, "
     "network_engine, dataflow_engine, fp32_dot, int8_dot, int16_dot, rtn_conv, fp32_conv, "
     "int8_conv"),
    ({"targets": ["ecp5"], "units": [{"unit": "ternary_dot"}]}, "s: targets: 'ecp5' is not valid"),
    ({"units": [{"unit": "ternary_dot", "lanes": [0]}]},
     "s: units[0] (ternary_dot): lanes: 0 is not valid"),
    ({"units": [{"unit": "ternary_dot", "mappings": ["lut"]}]},
     "s: units[0] (ternary_dot): mappings: 'lut' is not valid"),
    ({"units": [{"unit": "ternary_dot", "params": {"depth": [1]}}]},
     "s: units[0] (ternary_dot): params: unknown key 'depth'; valid keys: pipeline, "
     "activation_sum, tree"),
    ({"units": [{"unit": "ternary_dot", "params": {"tree": ["wallace"]}}]},
     "s: units[0] (ternary_dot): ternary_dot: tree=wallace: expected one of compressor, adder"),
    ({"units": [{"unit": "ternary_dot", "seeds": [0]}]},
     "s: units[0] (ternary_dot): seeds: 0 is not valid"),
])
def test_spec_errors(spec, message):
    with pytest.raises(ValueError) as info:
        explore.parse_spec(spec, where="s")
    assert str(info.value) == message


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("units: []")
    with pytest.raises(ValueError, match=r"s\.yaml: expected a spec file ending in \.toml or "
                                         r"\.json$"):
        explore.load_spec(bad)
    bad = tmp_path / "s.toml"
    bad.write_text("units = [")
    with pytest.raises(ValueError, match=r"s\.toml: not valid TOML \("):
        explore.load_spec(bad)


def test_cli_usage_errors(capsys, tmp_path):
    assert cli.main(["explore"]) == 2
    assert capsys.readouterr().err == "rtn-hw: error: explore: expected a SPEC file or --units\n"
    assert cli.main(["explore", "--units", "ternary_dot", "-p", "tree=wallace"]) == 2
    assert capsys.readouterr().err == ("rtn-hw: error: options: units[0] (ternary_dot): "
                                       "ternary_dot: tree=wallace: expected one of compressor, "
                                       "adder\n")
    assert cli.main(["explore", str(tmp_path / "none.toml")]) == 2
    assert "cannot read the spec" in capsys.readouterr().err
    assert cli.main(["synth", "--scheduler", "localhost"]) == 2
    assert capsys.readouterr().err == ("rtn-hw: error: --scheduler localhost: expected "
                                       "tcp://HOST:PORT\n")
    assert cli.main(["synth", "--time-limit", "0", "--units", "ternary_dot"]) == 2
    assert capsys.readouterr().err.startswith("rtn-hw: error: --time-limit 0: expected a")


def test_local_workers_are_capped():
    cores = cluster.local_cores()
    assert cluster.check_jobs(cores) == cores
    for jobs in (0, cores + 1, 100_000):
        with pytest.raises(ValueError, match=f"^JOBS: {jobs} is not a job count; valid jobs: "
                                             f"integers from 1 to {cores} "
                                             r"\(this machine's cores\)$"):
            cluster.check_jobs(jobs)


# --- Pareto fronts -------------------------------------------------------------------------------

def _record(id, lut, fmax, energy, seeds=None, target="ice40-up5k", unit="ternary_dot"):
    return {"id": id, "target": target, "unit": unit, "lanes": 16, "mapping": "dsp",
            "available": True, "lut": lut, "carry": 10, "area": lut, "macs_per_cycle": 16,
            "cycles_per_input": 1, "fmax_mhz": fmax,
            "fmax_by_seed": seeds or ({"1": fmax} if fmax else {}),
            "energy_pj_per_mac": energy, "energy_pj_per_input": None if energy is None
            else 16 * energy, "fits": True}


def test_pareto_fronts_and_seed_spread():
    records = [_record("a", 100, 50.0, 3.0), _record("b", 200, 80.0, 2.0),
               _record("c", 300, 70.0, 4.0),          # dominated on both
               _record("d", 200, 60.0, 2.5),          # same LUTs as b, worse
               _record("e", 400, 120.0, None, {"1": 110.0, "2": 120.0, "3": 130.0}),
               {"id": "f", "available": False, "notes": ["synthesis failed: boom"],
                "log": "build/x/yosys.log"}]
    got = explore_report.analyse(records)
    assert got["pareto"]["ice40-up5k"] == {
        "throughput_vs_lut4": ["a", "b", "e"],
        "energy_per_mac_vs_lut4": ["a", "b"],
        "energy_per_input_vs_lut4": ["a", "b"]}
    e = next(p for p in got["points"] if p["id"] == "e")
    assert e["fmax_seeds"] == {"by_seed": {"1": 110.0, "2": 120.0, "3": 130.0},
                               "median": 120.0, "min": 110.0, "max": 130.0,
                               "spread_mhz": 20.0, "spread_pct": 16.7}
    assert e["mmac_per_s"] == 16 * 120.0 and e["lut4"] == 400
    assert got["failed"] == [{"id": "f", "note": "synthesis failed: boom",
                              "log": "build/x/yosys.log"}]
    # An ECP5 CCU2C counts as two LUT4.
    assert explore_report.point(_record("g", 100, 50.0, 1.0, target="ecp5-85k"))["lut4"] == 120


def test_explore_report_files(tmp_path):
    records = [_record("a", 100, 50.0, 3.0), _record("b", 200, 80.0, 2.0)]
    report = {"generated": "now", "settings": {"clock_mhz": 100, "executor": {
        "workers": 2, "scheduler": "local"}}, "timing": {"runs": 2, "cached_runs": 0,
                                                         "failed_runs": 0,
                                                         "total_seconds": 3.0},
              "runs": records, **explore_report.analyse(records)}
    files = explore_report.write(report, tmp_path)
    assert json.loads((tmp_path / "explore.json").read_text())["pareto"] == report["pareto"]
    md = (tmp_path / "explore.md").read_text()
    assert "| ternary_dot 16 | 200 | 200.0 | 80.0 | 1,280.0 | 2.000 | 32.0 |" in md
    assert files["plots"] == [str(tmp_path / "explore_ice40-up5k.png")]
    assert (tmp_path / "explore_ice40-up5k.png").read_bytes()[:4] == b"\x89PNG"


# --- the "does not fit" bound --------------------------------------------------------------------

class _Mul(wiring.Component):
    def __init__(self, width):
        super().__init__({"a": In(width), "b": In(width), "y": Out(2 * width),
                          "z": Out(2 * width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.y.eq(self.a * self.b), self.z.eq(self.a * 3)]
        return m


def test_estimate_counts_variable_multipliers():
    text = yosys.rtlil_text(_Mul(24), name="unit")
    # The product with a constant operand is not counted (yosys folds it to adds).
    assert estimate.multipliers(text) == [(24, 24), (24, 0)]
    assert estimate.lower_bound(text, "ice40", "lut") == {"lut": 2 * 576, "dsp": 0}
    assert estimate.lower_bound(yosys.rtlil_text(_Mul(6), name="unit"), "ice40", "lut") == {
        "lut": 36, "dsp": 0}
    # 24 × 24 → 16 + 8 by 16 + 8 on the iCE40, 18 + 6 by 18 + 6 on ECP5: 4 tiles.
    assert estimate.lower_bound(text, "ice40", "dsp") == {"lut": 0, "dsp": 4}
    assert estimate.lower_bound(text, "ecp5", "dsp") == {"lut": 0, "dsp": 4}
    # A one-bit remainder goes to LUTs; so does an iCE40 piece of fewer than 11 product bits.
    assert estimate.lower_bound(yosys.rtlil_text(_Mul(19), name="unit"), "ecp5", "dsp") == {
        "lut": 0, "dsp": 1}
    assert estimate.lower_bound(yosys.rtlil_text(_Mul(20), name="unit"), "ice40", "dsp") == {
        "lut": 0, "dsp": 3}
    assert estimate.misfit("ice40-up5k", text, "lut") == []


def test_estimate_says_fp32_all_lut_does_not_fit_the_ice40():
    component, _ = synth._build("fp32_dot", 16)
    text = yosys.elaborate(component).unit_il
    assert estimate.misfit("ice40-up5k", text, "lut") == [
        "at least 18432 LUT4 for its multipliers > 5280"]
    assert estimate.misfit("ice40-up5k", text, "dsp") == ["at least 64 SB_MAC16 > 8"]
    # The ECP5 rows are synthesized all the same (the headline tables need their counts).
    assert estimate.misfit("ecp5-85k", text, "lut") == []
    assert estimate.misfit("xilinx-lut6", text, "lut") == []


# --- per-run limits ------------------------------------------------------------------------------

def test_time_limit_stops_the_tools():
    import subprocess
    start = time.monotonic()
    with pytest.raises(limits.LimitExceeded, match=r"^time limit of 1 s hit$"):
        with limits.watch(1, None, poll=0.1):
            subprocess.run([sys.executable, "-c", "import time; time.sleep(30)"])
    assert time.monotonic() - start < 10


def test_memory_limit_stops_the_tools():
    import subprocess
    with pytest.raises(limits.LimitExceeded,
                       match=r"^memory limit of 50 MB hit \(python\S* at \d+ MB\)$"):
        with limits.watch(None, 50, poll=0.1):
            subprocess.run([sys.executable, "-c",
                            "import time; x = bytearray(200 << 20); time.sleep(30)"])


def test_limits_leave_a_run_within_them_alone():
    import subprocess
    with limits.watch(30, 10_000, poll=0.1) as w:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert w.hit is None


# --- the Dask executor, on fake runs -------------------------------------------------------------

def _fake_elaborate(unit, lanes, overrides=()):
    files = yosys.Elaborated(f"# unit {unit} {lanes} {overrides}\n", "# top\n",
                             {"in": 4, "out": 4, "xor_levels": 1})
    return {"ok": True, "files": files.files(), "netlist_hash": files.netlist_hash,
            "component": "Fake", "params": {"lanes": lanes}, "latency": 1,
            "macs_per_input": lanes, "cycles_per_input": 1, "harness_bits": files.harness_bits,
            "seconds": 0.0, "cpu_seconds": 0.0}


def _fake_synth(marks, *, kill=None, crash=None, pause=0.0):
    """A fake `synth._synth`: made-up counts; the run with `kill` lanes waits to be killed on
    its first attempt (it writes its pid to marks/kill); `crash` lanes raise as yosys does."""
    def fake(run_fields, files, *, limit=(None, None), defer_routes=False):
        lanes = run_fields["lanes"]
        if lanes == kill:
            flag = marks / "kill"
            if not flag.exists():
                flag.write_text(str(os.getpid()))
                time.sleep(60)
        if lanes == crash:
            raise RuntimeError(f"yosys failed in build/fake (exit 1):\nERROR: fake crash {lanes}")
        time.sleep(pause)
        (marks / f"ran-{lanes}-{os.getpid()}-{time.monotonic_ns()}").write_text("")
        return {"cells": {"SB_LUT4": 10 * lanes, "SB_DFFE": lanes}, "harness_cells": {},
                "fits": True, "notes": [], "fmax_mhz": 100.0 + lanes,
                "fmax_by_seed": {"1": 100.0 + lanes}, "fmax_constraint_mhz": 100,
                "utilization": {}, "seconds": {"yosys": 0.01}, "cpu_seconds": 0.01}
    return fake


@pytest.fixture
def fake_flow(monkeypatch, tmp_path, seed):
    monkeypatch.setattr(synth, "_elaborate", _fake_elaborate)
    monkeypatch.setattr(synth, "tool_versions", lambda: {"yosys": "fake", "nextpnr-ice40": "x",
                                                         "nextpnr-ecp5": "x"})
    marks = tmp_path / "marks"
    marks.mkdir()
    # A seeded lane order: which run lands on which worker first varies with it.
    import random
    lanes = [3, 5, 7, 9, 11, 13]
    random.Random(seed).shuffle(lanes)
    runs = [Run("ternary_dot", n, "ice40-up5k", "dsp", (1,), (("tree", "adder"),))
            for n in lanes]
    return runs, marks, tmp_path / "cache"


def _execute(runs, cache_dir, **kw):
    return synth.execute(runs, jobs=min(2, cluster.local_cores()), power=False,
                         cache_dir=cache_dir, run_seconds=60, run_memory_mb=2000, **kw)


def _entries(cache_dir):
    return sorted(p for p in cache_dir.iterdir() if p.is_file())


def test_a_killed_worker_retries_its_run(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks, kill=runs[0].lanes))

    thread = threading.Thread(target=_kill_when_flagged, args=(marks,))
    thread.start()
    records, facts = _execute(runs, cache_dir)
    thread.join()
    assert [r["id"] for r in records] == [r.id for r in runs]
    assert all(r["available"] and not r.get("failed") for r in records), records
    assert records[0]["lut"] == 10 * runs[0].lanes
    # The killed run ran to the end once, on a worker other than the one killed.
    killed = int((marks / "kill").read_text())
    finished = [p.name.split("-") for p in marks.glob(f"ran-{runs[0].lanes}-*")]
    assert len(finished) == 1 and int(finished[0][2]) != killed
    # Every cache entry is whole JSON; no temporary file is left.
    entries = _entries(cache_dir)
    assert len(entries) == 2 * len(runs)        # an elaboration and a synthesis per run
    for path in entries:
        json.loads(path.read_text())
    assert not [p for p in cache_dir.rglob("*") if p.name.endswith(".tmp")]


def test_a_crashing_run_is_recorded_with_its_log_and_the_rest_go_on(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks, crash=runs[2].lanes))
    lines = []
    records, _ = _execute(runs, cache_dir, progress=lines.append)
    failed = [r for r in records if not r["available"]]
    assert [r["id"] for r in failed] == [runs[2].id]
    assert failed[0]["failed"] is True
    assert failed[0]["notes"] == ["synthesis failed: yosys failed in build/fake (exit 1): "
                                  f"ERROR: fake crash {runs[2].lanes}"]
    assert failed[0]["log"].endswith("yosys.log")
    assert "ERROR: fake crash" in failed[0]["log_tail"]
    assert sum(r["available"] for r in records) == len(runs) - 1
    assert len(lines) == len(runs)
    # A failure is not cached: a rerun tries it again (and the others come from the cache).
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks))
    records, _ = _execute(runs, cache_dir)
    assert [r["cached"] for r in records] == [i != 2 for i in range(len(runs))]


def test_ctrl_c_stops_and_a_rerun_skips_what_finished(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks, pause=0.3))
    seen = []

    def interrupt(line):
        seen.append(line)
        if len(seen) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _execute(runs, cache_dir, progress=interrupt)
    done = {line.split()[3] for line in seen}
    records, _ = _execute(runs, cache_dir)
    cached = {f"lanes={r['lanes']}" for r in records if r["cached"]}
    assert len(done) == 2 and done <= cached
    assert len(cached) < len(runs)
    assert all(r["available"] for r in records)
    # A third run has nothing left to do.
    records, _ = _execute(runs, cache_dir)
    assert all(r["cached"] for r in records)


def test_a_run_that_does_not_fit_is_not_synthesized(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks))
    monkeypatch.setattr(estimate, "misfit", lambda target, text, mapping:
                        ["at least 9216 LUT4 for its multipliers > 5280"]
                        if " 3 " in text else [])
    records, _ = _execute(runs, cache_dir)
    by_lanes = {r["lanes"]: r for r in records}
    assert by_lanes[3]["available"] is False and by_lanes[3]["fits"] is False
    assert by_lanes[3]["notes"] == ["does not fit ice40-up5k: at least 9216 LUT4 for its "
                                    "multipliers > 5280 (bound from the RTLIL); not synthesized"]
    assert not list(marks.glob("ran-3-*"))
    assert all(r["available"] for n, r in by_lanes.items() if n != 3)


def test_run_explore_writes_reports_and_an_empty_sweep_keeps_them(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    out = cache_dir.parent / "reports"
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks))
    spec = explore.parse_spec({"targets": ["ice40-up5k"], "units": [
        {"unit": "ternary_dot", "lanes": [3, 5], "params": {"tree": ["adder"]}}]})
    report = explore.run_explore(spec, out_dir=out, jobs=1, power=False, cache_dir=cache_dir)
    assert report["pareto"]["ice40-up5k"]["throughput_vs_lut4"] == [
        "ice40-up5k/ternary_dot/3/dsp/tree=adder", "ice40-up5k/ternary_dot/5/dsp/tree=adder"]
    before = (out / "explore.json").read_text()
    assert json.loads(before)["timing"]["runs"] == 2
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks, crash=3))
    lines = []
    report = explore.run_explore(spec, out_dir=out, jobs=1, power=False, cache_dir=None,
                                 cache_results=False, progress=lines.append)
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks, crash=5))
    report = explore.run_explore(
        explore.parse_spec({"targets": ["ice40-up5k"], "units": [
            {"unit": "ternary_dot", "lanes": [5], "params": {"tree": ["adder"]}}]}),
        out_dir=out, jobs=1, power=False, cache_results=False, progress=lines.append)
    assert report["timing"]["failed_runs"] == 1 and "files" not in report
    assert lines[-2] == f"explore: no run has figures; the reports in {out} are left as they were"
    assert re.fullmatch(r"explore: 1 runs \(0 cached, 1 failed\) in \d+ s; reports in .*",
                        lines[-1])


def test_an_existing_scheduler(fake_flow, monkeypatch):
    """--scheduler: the sweep's client connects to a cluster it did not start, by address, and
    leaves it running."""
    import logging
    from distributed import LocalCluster
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as outside:
        records, facts = synth.execute(runs[:2], scheduler=outside.scheduler_address,
                                       power=False, cache_dir=cache_dir)
        assert facts["scheduler"] == outside.scheduler_address and facts["workers"] == 1
        assert facts["run_memory_mb"] is None
        assert all(r["available"] for r in records)
        assert len(outside.scheduler_info["workers"]) == 1


def _slow_tool_body(run, files, workdir, route, defer_routes=False):
    """A fake `synth._synth_body` whose tool never finishes: the real `_synth` around it
    enforces the run's limits."""
    import subprocess
    subprocess.run([sys.executable, "-c", "import time; time.sleep(60)"])
    return {"cells": {}, "harness_cells": {}}


_REAL_SYNTH = synth._synth


def _synth_with_a_slow_tool(run_fields, files, **kwargs):
    """The real `synth._synth` (and its limits), in the worker, around `_slow_tool_body`."""
    synth._synth_body = _slow_tool_body
    return _REAL_SYNTH(run_fields, files, **kwargs)


def test_a_run_past_its_time_limit_is_reported(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _synth_with_a_slow_tool)
    start = time.monotonic()
    records, facts = synth.execute(runs[:1], jobs=1, power=False, cache_dir=cache_dir,
                                   run_seconds=1, run_memory_mb=2000)
    assert time.monotonic() - start < 40
    assert records[0]["failed"] is True
    assert records[0]["notes"] == ["synthesis failed: stopped: time limit of 1 s hit"]
    assert facts["run_seconds"] == 1


def test_cli_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(**kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(synth, "run_sweep", interrupted)
    assert cli.main(["synth", "--units", "ternary_dot", "--targets", "ice40-up5k"]) == 130
    assert capsys.readouterr().err == "rtn-hw: interrupted\n"


def _kill_when_flagged(marks):
    flag = marks / "kill"
    for _ in range(600):
        if flag.exists() and flag.read_text():
            os.kill(int(flag.read_text()), signal.SIGKILL)
            return
        time.sleep(0.05)


def test_a_run_that_keeps_killing_its_worker_is_given_up(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _fake_synth(marks, kill=runs[1].lanes))
    monkeypatch.setattr(cluster, "ALLOWED_FAILURES", 0)     # one death is one too many
    thread = threading.Thread(target=_kill_when_flagged, args=(marks,))
    thread.start()
    records, _ = _execute(runs[:3], cache_dir)
    thread.join()
    assert [r["available"] for r in records] == [True, False, True]
    assert records[1]["notes"] == ["synthesis failed: its worker died running it (1 time; "
                                   "killed, or out of memory)"]


def _fake_deferring_synth(run_fields, files, *, limit=(None, None), defer_routes=False):
    assert defer_routes == (len(run_fields["seeds"]) > 1)
    return {"cells": {"SB_LUT4": 100, "SB_DFFE": 10}, "harness_cells": {}, "fits": True,
            "notes": [], "fmax_mhz": None, "fmax_by_seed": {}, "fmax_constraint_mhz": None,
            "utilization": None, "seconds": {"yosys": 1.0}, "cpu_seconds": 1.0,
            "routes_pending": list(run_fields["seeds"])}


def _fake_route_seed(run_fields, files, seed, *, limit=(None, None)):
    time.sleep(0.2)
    if run_fields["lanes"] == 5 and seed == 2:
        return {"seed": seed, "ok": False, "fmax_mhz": None, "constraint_mhz": None,
                "utilization": {}, "error": "ERROR: Unable to place cell", "capacity": True,
                "seconds": 2.0, "cpu_seconds": 2.0}
    return {"seed": seed, "ok": True, "fmax_mhz": 100.0 + seed, "constraint_mhz": 100.0,
            "utilization": {"ICESTORM_LC": {"used": seed, "available": 5280}},
            "error": None, "capacity": False, "seconds": 2.0, "cpu_seconds": 2.0}


def test_the_seeds_of_a_row_route_as_tasks_of_their_own(fake_flow, monkeypatch):
    runs, marks, cache_dir = fake_flow
    monkeypatch.setattr(synth, "_synth", _fake_deferring_synth)
    monkeypatch.setattr(synth, "_route_seed", _fake_route_seed)
    rows = [Run("ternary_dot", n, "ice40-up5k", "dsp", (3, 1, 2), (("tree", "adder"),))
            for n in (3, 5)]
    records, facts = _execute(rows, cache_dir)
    good, bad = records
    assert good["fmax_by_seed"] == {"3": 103.0, "1": 101.0, "2": 102.0}
    assert good["fmax_mhz"] == 102.0 and good["utilization"] == {
        "ICESTORM_LC": {"used": 2, "available": 5280}}     # the last seed's, as in one task
    assert good["seconds"]["nextpnr"] == 6.0 and good["cpu_seconds"]["synth"] == 7.0
    # ΣT counts every seed; T_1, the longest chain, one seed (yosys 1 + nextpnr 2).
    assert facts["run_seconds_total"] == 2 * (1 + 6) and facts["longest_run_seconds"] == 3.0
    # The first failing seed in the row's order makes it yosys counts only, as in one task.
    assert bad["fits"] is False and bad["fmax_by_seed"] == {} and bad["fmax_mhz"] is None
    assert bad["notes"] == ["does not fit (seed 2: ERROR: Unable to place cell); yosys counts "
                            "only"]
    # The merged result is the cache entry a rerun finds.
    again, _ = _execute(rows, cache_dir)
    assert [r["cached"] for r in again] == [True, True]
    assert again[0]["fmax_by_seed"] == good["fmax_by_seed"]


def test_an_unreachable_scheduler_is_one_line(monkeypatch, capsys, tmp_path):
    import socket
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    with socket.socket() as sock:                 # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"targets": ["ice40-up5k"], "units": [
        {"unit": "ternary_dot", "lanes": [3], "params": {"tree": ["adder"]}}]}))
    monkeypatch.setattr(synth, "tool_versions", lambda: {"yosys": "fake", "nextpnr-ice40": "x",
                                                         "nextpnr-ecp5": "x"})
    monkeypatch.setattr(synth.yosys, "build_dir", lambda *parts: tmp_path.joinpath(*parts))
    assert cli.main(["explore", str(spec), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    assert re.fullmatch(rf"rtn-hw: error: --scheduler tcp://127.0.0.1:{port}: cannot connect "
                        r"\(Timed out trying to connect to .*\)\n", capsys.readouterr().err)


@pytest.mark.skipif(tools.tied_to_parent(["true"]) == ["true"],
                    reason="no util-linux setpriv here: tools are not tied to their parent")
def test_a_tool_dies_with_its_killed_worker():
    """A sweep worker that is SIGKILLed takes its tool run along (tools.tied_to_parent), so
    no yosys or nextpnr is left running until its own timeout."""
    import psutil
    script = ("import pathlib, subprocess, time\n"
              "from rtn_hw import tools\n"
              "child = subprocess.Popen(tools.tied_to_parent(['sleep', '120']))\n"
              "while 'sleep' not in pathlib.Path(f'/proc/{child.pid}/comm').read_text():\n"
              "    time.sleep(0.01)   # setpriv has exec'd the tool\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(120)\n")
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                          text=True) as worker:
        tool = psutil.Process(int(worker.stdout.readline()))
        worker.kill()
    gone = psutil.wait_procs([tool], timeout=10)[0]
    assert gone or tool.status() == psutil.STATUS_ZOMBIE
