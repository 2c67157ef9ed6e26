"""`rtn-hw verilog --interface axis`: the wrapper's Verilog ports and parameters, the sidecar's
tdata layout, component.xml read back (IP-XACT 1685-2014 structure, bus interfaces, ports,
files, parameters), the FuseSoC .core checked by FuseSoC itself (core-info, and a Verilator
lint run), and the one-line errors. The wrapped units' behaviour is checked by the
cocotbext-axi benches (tests/test_axis.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import numpy as np
from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from rtn_hw import cli, tools, units
from rtn_hw.flow import verilog as flow
from rtn_hw.ip import ipxact
from rtn_hw.ip.axis import AxisWrapper
from rtn_hw.units import INT, Param, ParameterError, Unit

AXIS_PORTS = {"aclk": ("input", 1), "aresetn": ("input", 1), "s_axis_tvalid": ("input", 1),
              "s_axis_tready": ("output", 1), "m_axis_tvalid": ("output", 1),
              "m_axis_tready": ("input", 1)}

# The children of ipxact:component in the order of the 2014 schema's sequence (IEEE 1685-2014,
# component.xsd), written out here independently of the writer.
COMPONENT_ORDER = ["vendor", "library", "name", "version", "busInterfaces",
                   "indirectInterfaces", "channels", "remapStates", "addressSpaces",
                   "memoryMaps", "model", "componentGenerators", "choices", "fileSets",
                   "whiteboxElements", "cpus", "otherClockDrivers", "resetTypes", "description",
                   "parameters", "assertions", "vendorExtensions"]


def export(unit, params=None, **kwargs):
    return flow.export(unit, {k: str(v) for k, v in (params or {}).items()}, interface="axis",
                       **kwargs)


# (unit, params, s_axis tdata width, m_axis tdata width)
WIDTHS = [
    ("ternary_dot", {"lanes": 13}, 56, 16),          # 4 × 13 = 52 → 56; 2 × 5 = 10 → 16
    ("int_dot", {"lanes": 5, "width": 16}, 160, 40),  # signed 34 → 40, sign-extended
    ("popcount", {"width": 16}, 16, 8),
    ("ternary_decoder", {"lanes": 3}, 8, 48),
    ("rtn_mac_array", {"lanes": 9, "channels": 3}, 24, 96),
]


@pytest.mark.parametrize("unit, params, s_width, m_width", WIDTHS,
                         ids=[f"{u}-{s}-{m}" for u, _, s, m in WIDTHS])
def test_ports_are_axis_names_and_bytes(unit, params, s_width, m_width):
    result = export(unit, params)
    ports = flow.verilog_ports(result.verilog, unit)
    assert ports == {**AXIS_PORTS, "s_axis_tdata": ("input", s_width),
                     "m_axis_tdata": ("output", m_width)}
    assert {p["name"]: (p["direction"], p["width"]) for p in result.sidecar["ports"]} == ports
    axis = result.sidecar["axis"]
    assert (axis["s_axis"]["tdata_width"], axis["m_axis"]["tdata_width"]) == (s_width, m_width)
    for side in ("s_axis", "m_axis"):
        fields = axis[side]["fields"]
        assert sum(f["width"] for f in fields) == axis[side]["payload_width"]
        assert max(f["offset"] + f["width"] for f in fields) <= axis[side]["tdata_width"]
    assert result.sidecar["latency"] == result.sidecar["wrapped"]["latency"]


def test_signed_result_sign_extended_in_sidecar():
    m_axis = export("int_dot", {"lanes": 5, "width": 16}).sidecar["axis"]["m_axis"]
    assert m_axis["padding"] == "sign-extended"
    assert m_axis["fields"] == [{"name": "", "offset": 0, "width": 34, "signed": True}]
    assert export("ternary_dot", {"lanes": 4}).sidecar["axis"]["m_axis"]["padding"] == "zero"


@pytest.mark.parametrize("unit, params, side, width", [
    ("ternary_encoder", {"lanes": 8}, "t", 272),                        # 2 × 8 × 17 = 272
    ("rtn_mac_array", {"lanes": 9, "channels": 3, "weights": "load"}, "load", 80),
], ids=["encoder-t", "mac-load"])
def test_side_streams_are_slave_interfaces(unit, params, side, width):
    result = export(unit, params)
    ports = flow.verilog_ports(result.verilog, unit)
    name = f"s_axis_{side}"
    assert {k: v for k, v in ports.items() if k.startswith(name + "_t")} == {
        f"{name}_tdata": ("input", width), f"{name}_tvalid": ("input", 1),
        f"{name}_tready": ("output", 1)}
    assert list(result.sidecar["axis"]) == ["s_axis", name, "m_axis"]
    doc = ipxact.parse(result.package_files("top.v")["component.xml"])
    assert doc["bus_interfaces"][name]["mode"] == ["slave"]
    assert doc["bus_interfaces"]["aclk"]["parameters"]["ASSOCIATED_BUSIF"] == (
        f'"s_axis:{name}:m_axis"')


def test_engine_frames_images_with_tlast():
    result = export("network_engine")
    ports = flow.verilog_ports(result.verilog, "network_engine")
    assert ports == {**AXIS_PORTS, "s_axis_tdata": ("input", 64), "s_axis_tlast": ("input", 1),
                     "m_axis_tdata": ("output", 248), "m_axis_tlast": ("output", 1)}
    s_axis = result.sidecar["axis"]["s_axis"]
    assert (s_axis["beats"], s_axis["elements"], s_axis["elements_per_beat"],
            s_axis["element_bytes"], s_axis["tlast"]) == (8, 64, 8, 1, True)
    assert [f["offset"] for f in s_axis["fields"]] == [8 * k for k in range(8)]
    # One cycle for the frame register in front of the engine.
    assert result.sidecar["latency"] == result.sidecar["wrapped"]["latency"] + 1
    assert result.sidecar["localparams"]["BEATS_PER_FRAME"] == 8


def test_localparams_in_header_and_module():
    result = export("ternary_dot", {"lanes": 13, "pipeline": 2})
    params = result.sidecar["localparams"]
    assert params == {"LANES": 13, "PIPELINE": 2, "ACTIVATION_SUM": True, "TREE": "compressor",
                      "S_AXIS_TDATA_WIDTH": 56, "M_AXIS_TDATA_WIDTH": 16, "BEATS_PER_FRAME": 1,
                      "LATENCY": 2}
    text = result.verilog
    header = text[:text.index("module ternary_dot(")]
    body = text[text.index("module ternary_dot("):text.index("endmodule")]
    for name, value in (("LANES", "13"), ("ACTIVATION_SUM", "1"), ("TREE", '"compressor"'),
                        ("LATENCY", "2")):
        assert f"//   {name} = {value}\n" in header
        assert f"  localparam {name} = {value};\n" in body


def test_export_is_deterministic(tmp_path):
    first, second = export("int_dot", {"lanes": 3}), export("int_dot", {"lanes": 3})
    assert (first.verilog, first.sidecar_text()) == (second.verilog, second.sidecar_text())
    assert first.package_files("a.v") == second.package_files("a.v")


def _write(tmp_path, unit, params=None, stem=None):
    paths = flow.write(export(unit, params), tmp_path / f"{stem or unit}.v")
    return {p.name: p for p in paths}


@pytest.mark.parametrize("unit, params", [("ternary_dot", {"lanes": 13}),
                                          ("network_engine", {})])
def test_component_xml_reads_back(tmp_path, unit, params):
    files = _write(tmp_path, unit, params, stem="top")
    assert sorted(files) == ["component.xml", "top.core", "top.json", "top.v"]
    doc = ipxact.parse(files["component.xml"].read_text(encoding="utf-8"))
    verilog_text = files["top.v"].read_text(encoding="utf-8")
    ports = flow.verilog_ports(verilog_text, unit)
    assert (doc["vendor"], doc["library"], doc["name"], doc["module"]) == (
        "rtn-hw", "rtn_hw", unit, unit)
    # Schema order: the children appear as a subsequence of the 2014 sequence.
    positions = [COMPONENT_ORDER.index(tag) for tag in doc["children"]]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert doc["ports"] == {name: ("in" if d == "input" else "out", w)
                            for name, (d, w) in ports.items()}
    buses = doc["bus_interfaces"]
    assert sorted(buses) == ["aclk", "aresetn", "m_axis", "s_axis"]
    framed = unit == "network_engine"
    for name, mode in (("s_axis", ["slave"]), ("m_axis", ["master"])):
        bus = buses[name]
        assert bus["bus_type"] == ("xilinx.com", "interface", "axis", "1.0")
        assert bus["abstraction"] == ("xilinx.com", "interface", "axis_rtl", "1.0")
        assert bus["mode"] == mode
        roles = ["TDATA", "TVALID", "TREADY"] + (["TLAST"] if framed else [])
        assert bus["port_maps"] == {role: f"{name}_{role.lower()}" for role in roles}
    assert buses["aclk"]["port_maps"] == {"CLK": "aclk"}
    assert buses["aclk"]["parameters"] == {"ASSOCIATED_BUSIF": '"s_axis:m_axis"',
                                           "ASSOCIATED_RESET": '"aresetn"'}
    assert buses["aresetn"]["parameters"] == {"POLARITY": '"ACTIVE_LOW"'}
    mapped = {p for bus in buses.values() for p in bus["port_maps"].values()}
    assert mapped == set(ports)
    assert doc["files"] == [("top.v", "verilogSource")]
    sidecar = flow.export(unit, {k: str(v) for k, v in params.items()}, interface="axis").sidecar
    assert set(doc["parameters"]) == set(sidecar["localparams"])
    assert doc["parameters"]["LATENCY"] == str(sidecar["latency"])
    if unit == "ternary_dot":
        assert (doc["parameters"]["ACTIVATION_SUM"], doc["parameters"]["TREE"]) == (
            "1", '"compressor"')


def test_parse_rejects_other_documents():
    with pytest.raises(ValueError, match="not an IP-XACT 1685-2014 component"):
        ipxact.parse('<component xmlns="http://www.spiritconsortium.org/XMLSchema/SPIRIT/1.5"/>')


def _fusesoc(args, cwd):
    tool = Path(sys.executable).with_name("fusesoc")
    env = dict(os.environ, **tools.verilator_env())
    # FuseSoC is a third-party tool in a process of its own: make test's PYTHONWARNINGS=error
    # is for our code, and a deprecation inside FuseSoC or edalize must not fail the check.
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([str(tool), "--cores-root", ".", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_fusesoc_reads_and_lints_the_core(tmp_path):
    _write(tmp_path, "int_dot", {"lanes": 3}, stem="dot3")
    info = _fusesoc(["core-info", "rtn-hw:rtn_hw:int_dot"], tmp_path)
    assert info.returncode == 0, info.stdout + info.stderr
    assert re.search(r"Name:\s+rtn-hw:rtn_hw:int_dot:\d", info.stdout)
    lint = _fusesoc(["run", "--build-root", "fsbuild", "--target", "lint",
                     "rtn-hw:rtn_hw:int_dot"], tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # The check can fail: a core whose Verilog is broken does not lint.
    (tmp_path / "dot3.v").write_text("module int_dot(input a);\n  assign b = ;\nendmodule\n")
    broken = _fusesoc(["run", "--build-root", "fsbuild2", "--target", "lint",
                       "rtn-hw:rtn_hw:int_dot"], tmp_path)
    assert broken.returncode != 0


class Busy(wiring.Component):
    """A stream unit with a plain status output, which no AXI4-Stream interface carries."""

    def __init__(self, *, lanes):
        super().__init__({"i": In(stream.Signature(lanes)), "o": Out(stream.Signature(lanes)),
                          "busy": Out(1)})

    latency = 0

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid),
                     self.i.ready.eq(self.o.ready), self.busy.eq(self.o.valid)]
        return m


@pytest.fixture
def busy_unit(monkeypatch):
    monkeypatch.setitem(units.UNITS, "busy", Unit("busy", Busy, "A stand-in with a status bit.",
                                                  (Param("lanes", INT, "4", "Lanes."),)))


ERRORS = [
    (["verilog", "int_dot", "--interface", "axi4"],
     "unknown interface 'axi4'; valid interfaces: native, axis"),
    (["verilog", "busy", "-p", "lanes=3", "--interface", "axis"],
     "busy: lanes=3: cannot be wrapped for --interface axis: the AXI4-Stream wrapper takes a "
     "unit whose ports are an output stream o, an input stream i and other input streams; "
     "this one has ports busy, i, o"),
]


@pytest.mark.parametrize("argv, message", ERRORS, ids=["interface", "status-port"])
def test_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys, busy_unit):
    status = cli.main([*argv, "-o", str(tmp_path / "x.v")])
    out, err = capsys.readouterr()
    assert (status, out, err) == (2, "", f"rtn-hw: error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_export_errors():
    with pytest.raises(ParameterError, match=re.escape(ERRORS[0][1])):
        flow.export("int_dot", {}, interface="axi4")


def test_cli_writes_the_package(tmp_path, capsys):
    out = tmp_path / "engine.v"
    assert cli.main(["verilog", "network_engine", "--interface", "axis", "-o", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "component.xml", "engine.core", "engine.json", "engine.v"]
    core = (tmp_path / "engine.core").read_text(encoding="utf-8")
    assert core.startswith("CAPI=2:\n") and '- "engine.v"' in core
    # Native stays the default: no package files.
    native = tmp_path / "native"
    native.mkdir()
    assert cli.main(["verilog", "popcount", "-o", str(native / "pc.v")]) == 0
    assert sorted(p.name for p in native.iterdir()) == ["pc.json", "pc.v"]


# -- the framing contract, fast, in the Amaranth simulator ----------------------------------------

class Echo(wiring.Component):
    """One register stage passing an array payload through (the engine's shape, small)."""

    def __init__(self, *, elements=6, bits=3):
        layout = data.ArrayLayout(unsigned(bits), elements)
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    latency = 1

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        return m


def framing_model(beats, per_frame):
    """The frames the wrapper passes on, by docs/ip.md: a frame is `per_frame` beats with tlast
    on the last; a tlast too early drops the frame; a missing one drops beats up to and
    including the next tlast. `beats`: (elements, last) pairs."""
    frames, current, skip = [], [], False
    for elements, last in beats:
        if skip:
            skip = not last
            continue
        current.append(elements)
        if len(current) == per_frame:
            if last:
                frames.append([e for beat in current for e in beat])
            else:
                skip = True
            current = []
        elif last:
            current = []
    return frames


def random_beats(rng, count, per_frame, per_beat, bits):
    """Mostly good frames, some a beat short or long, as (elements, last) beats; the bytes above
    each element's bits carry junk the wrapper must ignore."""
    beats = []
    for _ in range(count):
        # Good, one short, one or a whole frame long (its second half must not pass), one beat.
        length = per_frame + int(rng.choice([0, 0, 0, 0, 0, -1, 1, per_frame, 1 - per_frame]))
        for k in range(length):
            elements = [int(v) for v in rng.integers(0, 256, per_beat)]
            beats.append((elements, k == length - 1))
    return beats


def run_framed(beats, *, per_beat, bits, seed, idle, stall):
    """Beats into an `AxisWrapper(Echo)`, results out: a list of element lists."""
    dut = AxisWrapper(Echo(elements=6, bits=bits), per_beat=per_beat)
    top = Module()
    top.domains.axi = ClockDomain()
    top.submodules.dut = dut
    top.d.comb += [dut.aclk.eq(ClockSignal("axi")), dut.aresetn.eq(~ResetSignal("axi"))]
    rng = np.random.default_rng(seed)
    results, finished = [], []

    async def source(ctx):
        for elements, last in beats:
            while rng.random() < idle:
                await ctx.tick("axi")
            ctx.set(dut.s_axis_tdata, sum(e << (8 * k) for k, e in enumerate(elements)))
            ctx.set(dut.s_axis_tlast, last)
            ctx.set(dut.s_axis_tvalid, 1)
            await ctx.tick("axi").until(dut.s_axis_tready)
            ctx.set(dut.s_axis_tvalid, 0)
        finished.append(True)

    async def sink(ctx):
        quiet = 0
        while quiet < 20:
            ready = rng.random() >= stall
            ctx.set(dut.m_axis_tready, ready)
            _, _, valid, value, last = await ctx.tick("axi").sample(
                dut.m_axis_tvalid, dut.m_axis_tdata, dut.m_axis_tlast)
            if ready and valid:
                assert last == 1
                results.append([(value >> (bits * k)) & ((1 << bits) - 1) for k in range(6)])
            quiet = quiet + 1 if finished else 0

    sim = Simulator(top)
    sim.add_clock(1e-8, domain="axi")
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return results


@pytest.mark.parametrize("per_beat", [1, 2, 3, 6])
def test_framed_wrapper_matches_the_framing_contract(per_beat, rng, seed):
    bits, per_frame = 3, 6 // per_beat
    beats = random_beats(rng, 60, per_frame, per_beat, bits)
    want = [[e & ((1 << bits) - 1) for e in frame]
            for frame in framing_model(beats, per_frame)]
    got = run_framed(beats, per_beat=per_beat, bits=bits, seed=seed, idle=0.3, stall=0.3)
    assert len(want) >= 25          # mostly good frames: the check is not vacuous
    assert got == want


def test_framing_model_drops_bad_frames():
    good = [([1], False), ([2], True)]
    assert framing_model(good + [([3], True)] + good, 2) == [[1, 2], [1, 2]]          # short
    assert framing_model(good + [([3], False), ([4], False), ([5], True)] + good, 2) == [
        [1, 2], [1, 2]]                                                                 # long
