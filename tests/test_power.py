"""The activity-based power model: VCD toggle counting, gate-level simulation of mapped
netlists (iCE40 on Icarus, ECP5 on Verilator), stimulus, and the coefficient table."""

import json
import re
import shutil

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from rtn_hw.flow import calibration, coefficients, gatesim, power, stimulus, vcd
from rtn_hw.flow.yosys import build_dir
from rtn_hw.model import int_dot, unpack
from rtn_hw.units import UNITS


def _unit(name, **params):
    """A unit from the registry (its constructor's keywords may change; its name does not)."""
    return UNITS[name].build({k: str(v) for k, v in params.items()}).component


# --- VCD parser --------------------------------------------------------------------------------

TRACE = """$date today $end
$timescale 1ps $end
$scope module tb $end
$var wire 1 ! clk $end
$scope module dut $end
$var wire 1 " a $end
$var wire 4 # bus [3:0] $end
$var wire 1 " a_alias $end
$var wire 1 $ x $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
$dumpvars
0!
0"
b0 #
x$
$end
#10
1!
1"
b101 #
0$
#20
0!
0"
b1010 #
1$
#30
1!
b1 #
x$
#40
1$
0"
"""


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "t.vcd"
    path.write_text(TRACE)
    return path


def test_vcd_counts_every_bit(trace):
    parsed = vcd.parse_vcd(trace)
    assert parsed.timescale_ps == 1.0
    assert parsed.toggles["tb.clk"] == [3]
    # a: 0→1 at 10, 1→0 at 20, unchanged at 40 (0→0): two toggles; an alias shares them.
    assert parsed.toggles["tb.dut.a"] == [2]
    assert parsed.toggles["tb.dut.a_alias"] == [2]
    # bus 0000 → 0101 → 1010 → 0001 (b1: short form, zero-extended):
    # bit 0: 1,1,1; bit 1: 0,1,1; bit 2: 1,1,0; bit 3: 0,1,1.
    assert parsed.toggles["tb.dut.bus"] == [3, 2, 2, 2]
    # x → 0 and 1 → x are not toggles; 0 → 1 is one; x → 1 is not.
    assert parsed.toggles["tb.dut.x"] == [1]
    assert parsed.widths["tb.dut.bus"] == 4


def test_vcd_window_and_scope(trace):
    parsed = vcd.parse_vcd(trace, scope="tb.dut", start=10, end=30)
    assert set(parsed.toggles) == {"a", "bus", "a_alias", "x"}
    assert parsed.toggles["a"] == [1]                 # only the change at 20
    assert parsed.toggles["bus"] == [2, 2, 1, 2]      # changes at 20 and 30
    assert parsed.toggles["x"] == [1]


# --- coefficient table -------------------------------------------------------------------------

def test_shipped_table_is_valid_and_sourced():
    table = coefficients.load_coefficients()
    assert table["version"]
    for family, device in coefficients.POWER_DEVICES.items():
        assert table["static"][device]["tag"] in coefficients.TAGS
        assert any(e["family"] == family for e in table["cells"])
    for entry in table["cells"]:
        assert entry["tag"] in coefficients.TAGS and entry["source"]
        assert entry["tag"] != "derived" or entry["derivation"]


def _write_table(tmp_path, edit):
    table = json.loads(coefficients.COEFFICIENTS_PATH.read_text())
    edit(table)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(table))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["cells"][0].update(tag="guess"),
     "bad.json: cells[0]: tag must be one of measured, datasheet, derived, model, not 'guess'"),
    (lambda t: t.pop("version"), "bad.json: missing 'version'"),
    (lambda t: t["cells"][1].update(value=-1.0),
     "bad.json: cells[1]: value must be a finite number >= 0, not -1.0"),
    (lambda t: t["cells"][0].update(unit="pJ/cycle"),
     "bad.json: cells[0]: unit must be 'pJ/toggle' for basis output_toggle, not 'pJ/cycle'"),
    (lambda t: t["cells"][0].pop("derivation"), "bad.json: cells[0]: missing 'derivation'"),
    (lambda t: t["static"].pop("ecp5-85k"), "bad.json: no static power for device 'ecp5-85k'"),
], ids=["tag", "version", "negative", "unit", "derivation", "static"])
def test_malformed_table_is_rejected(tmp_path, edit, message):
    path = _write_table(tmp_path, edit)
    with pytest.raises(coefficients.CoefficientError, match=f"^{re.escape(message)}$"):
        coefficients.load_coefficients(path)


def test_unreadable_table_is_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{")
    with pytest.raises(coefficients.CoefficientError) as info:
        coefficients.load_coefficients(path)
    assert str(info.value).startswith("bad.json: cannot read: ")
    assert "\n" not in str(info.value)


def test_uncovered_cell_type_is_an_error():
    cells = [("u0", "LUT4", [2], [3]), ("u1", "EHXPLLL", [4], [])]
    netlist = gatesim.MappedNetlist("ecp5", {}, cells, {}, {}, None, set())
    with pytest.raises(ValueError, match=re.escape(
            "No power coefficient for ecp5 cell type(s) EHXPLLL; add them to "
            "power_coefficients.json")):
        power.activity_energy(netlist, coefficients.load_coefficients(), {2: 5}, 10)


def test_activity_energy_bases():
    """Output toggles, input toggles and instance cycles each meet their own coefficient."""
    netlist = gatesim.MappedNetlist(
        "ecp5", {}, [("l", "LUT4", [2], [3, 4]), ("f", "TRELLIS_FF", [5], [2]),
                     ("m", "MULT18X18D", [6, 7], [3, 4, 5])], {}, {}, None, set())
    table = coefficients.load_coefficients()
    value = {e["name"]: e["value"] for e in table["cells"] if e["family"] == "ecp5"}
    toggles = {2: 10, 3: 20, 4: 0, 5: 4, 6: 8, 7: 8}
    energy, out_t, in_t, bits = power.activity_energy(netlist, table, toggles, 10)
    assert energy["logic output"] == pytest.approx(value["logic output"] * (1.0 + 0.4))
    assert energy["FF clock"] == pytest.approx(value["FF clock"])
    assert energy["DSP input"] == pytest.approx(value["DSP input"] * 2.4)
    assert out_t == {"LUT4": 1.0, "TRELLIS_FF": 0.4, "MULT18X18D": 1.6}
    assert in_t["MULT18X18D"] == pytest.approx(2.4) and bits["MULT18X18D"] == 2


# --- stimulus ----------------------------------------------------------------------------------

def test_stimulus_shares_one_set_of_floats(seed):
    ops = stimulus.operands(64, 400, seed=seed)
    again = stimulus.operands(64, 400, seed=seed)
    assert np.array_equal(ops.a, again.a) and np.array_equal(ops.w, again.w)
    sparsity = ops.sparsity
    assert abs(sparsity["activations"] - 0.5) < 0.01
    assert abs(sparsity["weights"] - 0.424) < 0.02
    # Ternary payloads are the packed ternarization of the very same floats.
    tern = stimulus.ternary_payloads(ops)
    for plane in ("a", "w"):
        nz = np.array([[p[plane]["nz"]] for p in tern], dtype=np.uint64)
        sg = np.array([[p[plane]["sg"]] for p in tern], dtype=np.uint64)
        assert np.array_equal(unpack(nz, sg, 64), ops.ta if plane == "a" else ops.tw)
    # fp32 payloads are the floats rounded to binary32; int8 ones a scaled copy of them.
    fp = stimulus.fp32_payloads(ops)
    assert np.array_equal(np.array(fp[3]["b"], dtype=np.uint32).view(np.float32),
                          ops.w[3].astype(np.float32))
    ints = np.array([p["a"] for p in stimulus.int_payloads(ops, 8)])
    assert np.abs(ints).max() == 127
    assert np.corrcoef(ints.ravel(), ops.a.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("lanes", [16, 256])
def test_network_source_streams_the_trained_layer(lanes, seed):
    """Rows are the trained fc2's (image, channel) pairs cut into lanes-wide chunks: the
    layer's real input trits and weight trits, and α·t + β as the baselines' floats."""
    from rtn_hw import weights
    net = weights.load()
    images, _ = weights.load_digits_test()
    layer = net.layers[1]
    ops = stimulus.operands(lanes, 40, seed=seed,
                            source=stimulus.network_source(net, images[:3], 1))
    t_a = net.layer_inputs(images[:3])[1]
    pairs = [(b, p) for b in range(3) for p in range(layer.out_features)]
    flat_a = np.concatenate([t_a[b] for b, p in pairs])[:40 * lanes]
    flat_w = np.concatenate([layer.t_w[p] for b, p in pairs])[:40 * lanes]
    assert np.array_equal(ops.ta.ravel(), flat_a) and np.array_equal(ops.tw.ravel(), flat_w)
    alpha = np.concatenate([np.full(128, layer.alpha_w[p]) for b, p in pairs])[:40 * lanes]
    beta = np.concatenate([np.full(128, layer.beta_w[p]) for b, p in pairs])[:40 * lanes]
    assert np.allclose(ops.w.ravel(), alpha * flat_w + beta)
    assert np.allclose(ops.a.ravel(), layer.alpha_a * flat_a + layer.beta_a)
    tern = stimulus.ternary_payloads(ops)
    nz = np.array([[p["a"]["nz"] >> (64 * k) & (2**64 - 1) for k in range(-(-lanes // 64))]
                   for p in tern], dtype=np.uint64)
    sg = np.array([[p["a"]["sg"] >> (64 * k) & (2**64 - 1) for k in range(-(-lanes // 64))]
                   for p in tern], dtype=np.uint64)
    assert np.array_equal(unpack(nz, sg, lanes), ops.ta)
    # One input vector per pair, for units that compute all channels at once.
    ops = stimulus.operands(lanes, 40, seed=seed, source=stimulus.network_source(
        net, images[:3], 1, per_channel=False))
    flat_a = np.concatenate([t_a[k % 3] for k in range(40 * lanes // 128 + 1)])[:40 * lanes]
    assert np.array_equal(ops.ta.ravel(), flat_a)


def test_stimulus_errors_and_flat_payloads(seed):
    ops = stimulus.operands(4, 3, seed=seed)
    for call in (lambda: stimulus.golden(ops, "int4"),
                 lambda: stimulus.for_unit("int4", 4, 3, seed=seed)):
        with pytest.raises(ValueError, match=re.escape(
                "Stimulus kind must be one of 'ternary', 'fp32', 'int8', 'int16', not 'int4'")):
            call()
    with pytest.raises(ValueError, match=re.escape(
            "Source must return two (3, 4) arrays, not (3, 4) and (4, 3)")):
        stimulus.operands(4, 3, seed=seed,
                          source=lambda rng, n, k: (np.zeros((n, k)), np.zeros((k, n))))
    from amaranth.hdl import signed, unsigned
    from amaranth.lib import data
    layout = data.StructLayout({"lo": unsigned(4), "hi": signed(4)})
    assert stimulus.flat_payloads(layout, [{"lo": 3, "hi": -1}, 0x5a]) == [0xf3, 0x5a]
    assert stimulus.flat_payloads(signed(6), [-1, 5]) == [63, 5]


def test_layer_source_streams_rows(seed):
    w = np.arange(6.0).reshape(3, 2)
    a = -np.arange(4.0).reshape(2, 2)
    ops = stimulus.operands(2, 7, seed=seed, source=stimulus.layer_source(w, a))
    assert np.array_equal(ops.w[:4], w[[0, 1, 2, 0]])
    assert np.array_equal(ops.a[:4], a[[0, 0, 0, 1]])
    with pytest.raises(ValueError, match=re.escape("Layer has 2 lanes, not 3")):
        stimulus.operands(3, 7, seed=seed, source=stimulus.layer_source(w, a))


# --- gate-level simulation of a real unit ------------------------------------------------------

def _int_case(lanes, count, seed):
    dut = _unit("int_dot", lanes=lanes, width=8)
    payloads, golden, _ = stimulus.for_unit("int8", lanes, count, seed=seed)
    assert golden == [int(int_dot(np.array(p["a"]), np.array(p["b"]), 8)) for p in payloads]
    return dut, payloads, golden


@pytest.fixture
def workdir(request):
    path = build_dir("test_power", re.sub(r"\W", "_", request.node.name))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("target", ["ice40", "ecp5"])
def test_netlist_computes_and_toggles_follow_data(target, seed, workdir):
    """The mapped netlist's outputs equal the golden model's; all-zero operands leave the
    datapath still, random ones do not."""
    count = 80
    dut, payloads, golden = _int_case(3, count, seed)
    report = power.estimate_power(dut, payloads, target=target, clock_mhz=50, macs_per_input=3,
                                  workdir=workdir, seed=seed, expected=golden)
    assert report["trace_coverage"] > 0.95
    assert report["cycles"] == count - dut.latency - 2
    assert report["stall_cycles"] == 0
    toggles = sum(v for k, v in report.items() if k.startswith("toggles_per_cycle."))
    assert toggles > 10
    energies = sum(v for k, v in report.items() if k.startswith("energy_pj_per_cycle."))
    assert report["dynamic_mw"] == pytest.approx(energies * 50e-3)
    assert report["total_mw"] == pytest.approx(report["static_mw"] + report["dynamic_mw"])
    assert report["dynamic_pj_per_mac"] == pytest.approx(energies / 3)
    if target == "ecp5":
        assert report["cells.MULT18X18D"] == 3
        assert report["input_toggles_per_cycle.MULT18X18D"] > 0

    # The same netlist (and, on ECP5, the same compiled simulator) with zero operands.
    netlist = power.map_netlist(dut, target, workdir)
    zeros = gatesim.simulate_netlist(netlist, [0] * count, warmup=dut.latency + 2,
                                   drain=dut.latency + 4)
    assert zeros.outputs == [0] * count
    assert sum(zeros.toggles.values()) == 0
    energy, _, _, _ = power.activity_energy(netlist, coefficients.load_coefficients(), zeros.toggles,
                                            zeros.cycles)
    # Only the clock load of the registers remains.
    assert set(k for k, v in energy.items() if v) == {"FF clock"}


def test_ternary_dot_netlist_matches_golden(seed, workdir):
    """The RTN unit itself, mapped for ECP5: Eq. 8 outputs from the netlist equal the golden
    model's, and the ternary stimulus has the documented sparsity."""
    payloads, golden, ops = stimulus.for_unit("ternary", 16, 60, seed=seed)
    assert abs(ops.sparsity["activations"] - 0.5) < 0.05
    report = power.estimate_power(_unit("ternary_dot", lanes=16, pipeline=2), payloads,
                                  target="ecp5",
                                  clock_mhz=100, macs_per_input=16, workdir=workdir, seed=seed,
                                  expected=golden)
    assert report["trace_coverage"] > 0.9
    assert report["dynamic_pj_per_mac"] > 0
    assert report["cells.CCU2C"] > 0 and "cells.MULT18X18D" not in report


class _Rom(wiring.Component):
    """A stream of addresses in, the words of a block-RAM-sized ROM out (one cycle later)."""
    def __init__(self, words, width):
        self.words, self.width, self.latency = words, width, 1
        super().__init__({"i": In(stream.Signature(range(len(words)))),
                          "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = memory.Memory(shape=self.width, depth=len(self.words),
                                               init=self.words)
        port = rom.read_port()
        take = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready), port.addr.eq(self.i.payload),
                     port.en.eq(take), self.o.payload.eq(port.data)]
        with m.If(take):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


@pytest.mark.parametrize("width, depth", [(36, 512), (18, 1024), (9, 2048)])
def test_ecp5_block_ram_model(width, depth, seed, rng, workdir):
    """yosys's DP16KD is a black box; the behavioural model gatesim supplies reads every word
    where synth_ecp5 put it (INITVAL layout, 9/18/36-bit modes), so a mapped ROM returns its
    contents at random addresses."""
    words = [int(x) for x in rng.integers(0, 1 << width, depth, dtype=np.uint64)]
    addresses = [int(x) for x in rng.integers(0, depth, 300)] + [0, depth - 1]
    report = power.estimate_power(_Rom(words, width), addresses, target="ecp5", clock_mhz=50,
                                  macs_per_input=1, workdir=workdir, seed=seed,
                                  expected=[words[a] for a in addresses])
    assert report["cells.DP16KD"] == 1  # (estimate_power raises on any output mismatch)


# Each Verilator build costs ~15 s of CPU; the IntDot one runs with `make sim` (its
# MULT18X18D model is also checked against the golden model by the test above).
@pytest.mark.parametrize("unit", [pytest.param("intdot", marks=pytest.mark.slow), "popcount"])
def test_ecp5_simulators_agree(unit, seed, rng, workdir):
    """The flattened netlist on Icarus (the default) and yosys's cell models on Verilator give
    the same outputs and the same toggles on every net: MULT18X18D and carry chains (IntDot),
    LUT4 and PFUMX logic (Popcount)."""
    if unit == "intdot":
        dut, payloads, golden = _int_case(2, 40, seed)
    else:
        dut = _unit("popcount", width=40)
        payloads = [int(x) for x in rng.integers(0, 1 << 40, 40, dtype=np.uint64)]
        golden = [bin(x).count("1") for x in payloads]
    netlist = power.map_netlist(dut, "ecp5", workdir)
    flat = stimulus.flat_payloads(dut.i.payload.shape(), payloads)
    runs = [gatesim.simulate_netlist(netlist, flat, warmup=4, drain=8, simulator=simulator)
            for simulator in ("icarus-flat", "verilator")]
    expected = stimulus.flat_payloads(dut.o.payload.shape(), golden)
    assert runs[0].outputs == runs[1].outputs == expected
    assert runs[0].cycles == runs[1].cycles == 36
    common = runs[0].traced_bits & runs[1].traced_bits
    assert len(common) >= 0.9 * len(runs[1].traced_bits)
    # A net only one simulator traces must be a constant (Icarus-flat leaves out some
    # constant nets, e.g. next to the popcount's `~~` chain operands): it never toggles.
    for run, other in ((runs[0], runs[1]), (runs[1], runs[0])):
        assert not any(run.toggles[b] for b in run.traced_bits - other.traced_bits)
    assert {b: runs[0].toggles[b] for b in common} == {b: runs[1].toggles[b] for b in common}
    assert sum(runs[0].toggles.values()) > 0


def test_gate_level_mismatch_is_reported(seed, workdir):
    dut, payloads, golden = _int_case(2, 30, seed)
    golden[5] ^= 1
    with pytest.raises(ValueError, match=re.escape(
            "Gate-level outputs differ from the expected values at output 5 "
            "(30 outputs, 30 expected)")):
        power.estimate_power(dut, payloads, target="ice40", clock_mhz=50, macs_per_input=2,
                             workdir=workdir, expected=golden)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(target="xc7"), ValueError, "Target must be one of 'ecp5', 'ice40', not 'xc7'"),
    (dict(clock_mhz=0), ValueError, "Clock frequency in MHz must be a positive number, not 0"),
    (dict(macs_per_input=-1), ValueError, "MACs per input must be a positive number, not -1"),
], ids=["target", "clock", "macs"])
def test_estimate_power_arguments(kwargs, error, message, workdir):
    args = dict(target="ice40", clock_mhz=10, macs_per_input=1, workdir=workdir)
    args.update(kwargs)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        # Arguments are checked before the component is touched.
        power.estimate_power(None, [], **args)


@pytest.mark.slow
def test_ice40_calibration_reproduces_the_table():
    """The iCE40 coefficients are what calibrate_ice40 derives with today's flow."""
    derived = calibration.calibrate_ice40(build_dir("test_power", "calibration"))
    entries = {e["name"]: e["value"] for e in coefficients.load_coefficients()["cells"]
               if e["family"] == "ice40"}
    assert derived["luts.luts"] == 180          # tinyvision's 208 LC minus its 28-LC counter
    assert entries["logic output"] == pytest.approx(derived["logic_toggle_pj"], rel=0.01)
    assert entries["FF clock"] == pytest.approx(derived["ff_clock_pj"], rel=0.01)
    assert entries["DSP input"] == pytest.approx(derived["mac16_input_toggle_pj"], rel=0.01)
