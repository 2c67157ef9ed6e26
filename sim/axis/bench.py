"""The cocotb tests of a unit behind its AXI4-Stream wrapper, driven by cocotbext-axi.

Third-party verification IP on our ports: cocotbext-axi's `AxiStreamSource` drives
`s_axis_*`, its `AxiStreamSink` takes `m_axis_*`, and an `AxiStreamMonitor` watches the
input side to time transfers. Stimulus and golden outputs are the ones of the unit's own bench
(sim/units/, from `rtn_hw.model` only) packed with the wrapped unit's field map; the network
engine gets digits and random images against `Network.forward`. Tests:

* `test_stream`: corners, then seeded random transfers, with random `tvalid` gaps (the
  source's pause generator) and `tready` backpressure (the sink's), every result checked in
  order by the scoreboard, then a drain period proving nothing extra arrives.
* `test_throughput`: no gaps, no backpressure: the shortest latency from the last input beat
  to the result equals the sidecar's, and a single-beat unit moves one transfer per cycle.
* `test_framing` (framed units): frames one beat short and one beat long between good ones,
  under gaps and backpressure: the bad ones are dropped whole, the good ones come out right.
* `test_reset`: `aresetn` low with transfers in flight; afterwards the same stream gives the
  same results.

Side streams (`s_axis_<name>`: the encoder's thresholds, the MAC array's weights) get a source
each, and every test sends the unit bench's loads on them after each reset.

Settings as for sim/bench.py (RTN_SIM_SIDECAR, RTN_SIM_VECTORS, RTN_SIM_SEED, RTN_SIM_IDLE,
RTN_SIM_STALL, RTN_SIM_STATS, RTN_SIM_LABEL). RTN_SIM_FAULT "corrupt:K" (every bit of input
K flipped) or "drop:K" (input K never sent) sabotages `test_stream`, so tests/test_axis.py can
show that the bench catches it.
"""

import json
import logging
import os
import time
import warnings
from pathlib import Path

# cocotbext-axi 0.1.28 still uses cocotb 1.x calls (immediate writes, Task.kill, edge
# triggers on the reset) that cocotb 2 deprecates; ours stay errors (PYTHONWARNINGS=error).
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotb_bus")  # its Bus

import cocotb  # noqa: E402
import numpy as np  # noqa: E402
from cocotb.clock import Clock  # noqa: E402
from cocotb.triggers import ClockCycles, First, RisingEdge  # noqa: E402
from cocotb.utils import get_sim_steps  # noqa: E402
from cocotbext.axi import (AxiStreamBus, AxiStreamFrame, AxiStreamMonitor,  # noqa: E402
                           AxiStreamSink, AxiStreamSource)

from rtn_hw.files import write_json  # noqa: E402

import units  # noqa: E402
from scoreboard import Scoreboard  # noqa: E402
from sidecar import Payload, Sidecar  # noqa: E402
from trits import concat, length  # noqa: E402

SIDECAR_PATH = Path(os.environ["RTN_SIM_SIDECAR"])
SIDECAR = json.loads(SIDECAR_PATH.read_text(encoding="utf-8"))
AXIS = SIDECAR["axis"]
VECTORS = int(os.environ.get("RTN_SIM_VECTORS", "300"))
SEED = int(os.environ.get("RTN_SIM_SEED", "20261129"))
SPARSITY = float(os.environ.get("RTN_SIM_SPARSITY", "0.5"))
IDLE = float(os.environ.get("RTN_SIM_IDLE", "0.2"))
STALL = float(os.environ.get("RTN_SIM_STALL", "0.2"))
LABEL = os.environ.get("RTN_SIM_LABEL", SIDECAR["unit"])
STATS = os.environ.get("RTN_SIM_STATS")
FAULT = os.environ.get("RTN_SIM_FAULT")
LATENCY = int(SIDECAR["latency"])
FRAMED = AXIS["s_axis"]["tlast"]
PERIOD_NS = 10
THROUGHPUT_VECTORS = 256
TIMEOUT_US = (VECTORS * (40 + 2 * LATENCY) + 200_000) * PERIOD_NS // 1000

_stats = {}


def _record(test, **values):
    _stats[test] = values
    if STATS:
        write_json(STATS, {"label": LABEL, "seed": SEED, "latency": LATENCY,
                           "tests": _stats}, indent=2)


def _rng(*tag):
    return np.random.default_rng([SEED, *tag])


def _wrapped_sidecar():
    """The wrapped unit's own sidecar (as `rtn-hw verilog` writes it natively), so the unit
    benches of sim/units pack and unpack its payloads unchanged."""
    native = {key: SIDECAR[key] for key in ("format", "unit", "parameters", "arguments")}
    native.update(module=f"{SIDECAR['module']}.unit", latency=SIDECAR["wrapped"]["latency"])
    native["ports"] = SIDECAR["wrapped"]["ports"] + [
        {"name": name, "path": [name], "direction": "input", "width": 1, "signed": False,
         "role": role} for name, role in (("clk", "clock"), ("rst", "reset"))]
    path = Path("wrapped.json")          # in the build folder (the simulator's cwd)
    path.write_text(json.dumps(native), encoding="utf-8")
    return Sidecar(path)


def _sabotage(frames, fault):
    kind, _, index = fault.partition(":")
    k = int(index)
    if kind == "corrupt":
        frames[k] = bytes(b ^ 0xFF for b in frames[k])
    elif kind == "drop":
        del frames[k]
    else:
        raise ValueError(f"RTN_SIM_FAULT={fault}: expected corrupt:K or drop:K")


def _sign_extend(value, bits, width):
    if value >> (bits - 1) & 1:
        value |= ((1 << width) - 1) ^ ((1 << bits) - 1)
    return value


class UnitCases:
    """A single-beat unit: its sim/units bench, payloads as whole tdata beats."""

    def __init__(self, rng):
        self.bench = units.load(_wrapped_sidecar(), rng, SPARSITY)
        m_axis = AXIS["m_axis"]
        self.bits, self.width = m_axis["payload_width"], m_axis["tdata_width"]
        self.extend = m_axis["padding"] == "sign-extended"
        self.in_bytes = AXIS["s_axis"]["tdata_width"] // 8

    def loads(self):
        """[(side stream, bytes)]: the unit bench's thresholds or weights, one beat each."""
        return [(name, value.to_bytes(AXIS[f"s_axis_{name}"]["tdata_width"] // 8, "little"))
                for name, value in self.bench.loads()]

    def corners(self):
        return self.bench.corners()

    def random(self, count):
        return self.bench.random(count)

    def frames(self, stim):
        return [v.to_bytes(self.in_bytes, "little") for v in self.bench.inputs(stim)]

    def expected(self, stim):
        values = self.bench.expected(stim)
        if self.extend:
            values = [_sign_extend(v, self.bits, self.width) for v in values]
        return values

    def describe(self, stim, k):
        return self.bench.describe(stim, k)

    def show(self, value):
        return self.bench.show(value & ((1 << self.bits) - 1)) + f" (tdata {value:#x})"


class EngineCases:
    """The network engine: images as frames of pixels, one element per `element_bytes`."""

    def __init__(self, rng):
        from rtn_hw import weights
        self.rng = rng
        source = SIDECAR["parameters"]["resolved"]["weights"]
        self.network = weights.load(weights.DEFAULT_MANIFEST if source == "shipped" else source)
        self.features = self.network.input.features
        self.pixel_max = self.network.input.pixel_max
        self.digits = weights.load_digits_test()[0]
        m_axis = AXIS["m_axis"]
        self.out = Payload({"name": "m_axis_tdata", "width": m_axis["payload_width"],
                            "signed": False, "fields": m_axis["fields"]})
        self.element_bytes = AXIS["s_axis"]["element_bytes"]

    def loads(self):
        return []

    def corners(self):
        images = [np.zeros(self.features), np.full(self.features, self.pixel_max),
                  np.arange(self.features) % (self.pixel_max + 1)]
        return {"images": np.array(images, dtype=np.int64)}

    def random(self, count):
        # Half digits (realistic logits), half uniform noise (anything the port accepts).
        picks = self.digits[self.rng.integers(0, len(self.digits), count - count // 2)]
        noise = self.rng.integers(0, self.pixel_max + 1, (count // 2, self.features))
        images = np.concatenate([picks.reshape(len(picks), -1), noise]).astype(np.int64)
        return {"images": images[self.rng.permutation(count)]}

    def frames(self, stim):
        return [b"".join(int(p).to_bytes(self.element_bytes, "little") for p in image)
                for image in stim["images"]]

    def expected(self, stim):
        logits, labels = self.network.forward(stim["images"])
        return self.out.pack({"logits": logits, "label": labels}, len(labels))

    def describe(self, stim, k):
        return "image " + " ".join(str(int(p)) for p in stim["images"][k])

    def show(self, value):
        fields = self.out.unpack(value)
        logits = [fields[f"logits[{c}]"] for c in range(len(self.out.group("logits")))]
        return f"label={fields['label']} logits={logits}"


def _pauses(rng, probability):
    """A cocotbext-axi pause generator: True (pause) with `probability` per cycle."""
    while True:
        for pause in rng.random(4096) < probability:
            yield bool(pause)


class TB:
    """Clock, reset and the cocotbext-axi components around the wrapped unit."""

    def __init__(self, dut, tag):
        self.dut = dut
        self.tag = tag
        Clock(dut.aclk, PERIOD_NS, unit="ns").start()
        self.period = get_sim_steps(PERIOD_NS, "ns")
        dut.aresetn.value = 0
        reset = dict(reset=dut.aresetn, reset_active_level=False)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk, **reset)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk, **reset)
        self.taken = AxiStreamMonitor(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk,
                                      **reset)
        # The unit's side streams (thresholds, weights): s_axis_<name>.
        self.sides = {key.removeprefix("s_axis_"): AxiStreamSource(
            AxiStreamBus.from_prefix(dut, key), dut.aclk, **reset)
            for key in AXIS if key.startswith("s_axis_")}
        # One INFO line per frame would swamp the log and the run time.
        for name in AXIS:
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        rng = _rng(tag, 0)
        self.cases = EngineCases(rng) if FRAMED else UnitCases(rng)

    async def reset(self, cycles=3):
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, cycles)
        self.dut.aresetn.value = 1
        await RisingEdge(self.dut.aclk)

    async def load(self):
        """Send the side streams' loads, each taken before the data starts; again after
        every reset."""
        for name, frame in self.cases.loads():
            await self.sides[name].send(AxiStreamFrame(frame))
            await self.sides[name].wait()

    def pace(self, idle, stall, tag):
        for component, p, k in ((self.source, idle, 1), (self.sink, stall, 2)):
            component.set_pause_generator(_pauses(_rng(self.tag, tag, k), p) if p else None)

    def budget(self, count, idle, stall):
        per = max(LATENCY if FRAMED else 1, AXIS["s_axis"]["beats"])
        slow = max(1e-9, (1 - idle) * (1 - stall))
        return int(4 * count * (per + 2) / slow) + 4 * LATENCY + 1000

    async def run(self, frames, expected, *, idle, stall, tag, describe, show):
        """Send `frames` (bytes each); check one result per entry of `expected` in order.
        Returns (scoreboard, results as AxiStreamFrames, cycles)."""
        board = Scoreboard(expected, describe=describe, show=show, seed=SEED, label=LABEL)
        self.pace(idle, stall, tag)
        results = []

        async def collect():
            while True:
                frame = await self.sink.recv()
                results.append(frame)
                # A result of several beats would be a longer int: a mismatch.
                board.check(len(results) - 1, int.from_bytes(bytes(frame.tdata), "little"))

        start = cocotb.utils.get_sim_time("step") // self.period
        collector = cocotb.start_soon(collect())
        for frame in frames:
            await self.source.send(AxiStreamFrame(frame))
        await First(board.finished.wait(),
                    ClockCycles(self.dut.aclk, self.budget(len(frames), idle, stall)))
        if not board.failed:
            # Anything arriving now was duplicated or invented.
            await ClockCycles(self.dut.aclk, LATENCY + 16)
        collector.cancel()
        self.pace(0, 0, tag)
        cycles = cocotb.utils.get_sim_time("step") // self.period - start
        return board, results, cycles

    def cycle(self, time):
        return int(time) // self.period


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_stream(dut):
    """Corners, then seeded random transfers, with tvalid gaps and tready backpressure."""
    tb = TB(dut, 1)
    await tb.reset()
    await tb.load()
    cases = tb.cases
    corners = cases.corners()
    stim = concat(corners, cases.random(max(0, VECTORS - length(corners))))
    frames = cases.frames(stim)
    if FAULT:
        _sabotage(frames, FAULT)
    began = time.perf_counter()
    board, results, cycles = await tb.run(
        frames, cases.expected(stim), idle=IDLE, stall=STALL, tag=1,
        describe=lambda k: cases.describe(stim, k), show=cases.show)
    wall = time.perf_counter() - began
    _record("stream", vectors=length(stim), corners=length(corners), outputs=board.received,
            beats=length(stim) * AXIS["s_axis"]["beats"],
            mismatches=len(board.mismatches) + len(board.extra), cycles=cycles, wall_s=wall)
    assert not board.failed, board.verdict()
    assert tb.taken.count() == len(frames), (
        f"{LABEL}: the input monitor saw {tb.taken.count()} frames, not {len(frames)}")


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_throughput(dut):
    """No gaps, no backpressure: the sidecar's latency, and one transfer per cycle when a
    transfer is one beat."""
    tb = TB(dut, 2)
    await tb.reset()
    await tb.load()
    cases = tb.cases
    count = 4 if FRAMED else THROUGHPUT_VECTORS
    stim = cases.random(count)
    board, results, cycles = await tb.run(
        cases.frames(stim), cases.expected(stim), idle=0.0, stall=0.0, tag=1,
        describe=lambda k: cases.describe(stim, k), show=cases.show)
    taken = [tb.taken.recv_nowait() for _ in range(tb.taken.count())]
    latencies = [tb.cycle(out.sim_time_start) - tb.cycle(inp.sim_time_end)
                 for inp, out in zip(taken, results)]
    out_cycles = [tb.cycle(out.sim_time_start) for out in results]
    _record("throughput", vectors=count, outputs=board.received,
            mismatches=len(board.mismatches) + len(board.extra), cycles=cycles,
            latency_min=min(latencies, default=None), latency_max=min(latencies, default=None),
            out_span=out_cycles[-1] - out_cycles[0] + 1 if out_cycles else None)
    assert not board.failed, board.verdict()
    assert min(latencies) == LATENCY, (
        f"{LABEL}: shortest latency {min(latencies)} cycles, sidecar says {LATENCY}")
    if FRAMED:
        # The next frame is collected while the unit works on this one: results come at the
        # unit's own back-to-back rate, one per latency + 1 cycles.
        gaps = {b - a for a, b in zip(out_cycles, out_cycles[1:])}
        assert gaps == {SIDECAR["wrapped"]["latency"] + 1}, (
            f"{LABEL}: results {sorted(gaps)} cycles apart, not "
            f"{SIDECAR['wrapped']['latency'] + 1}")
    else:
        assert set(latencies) == {LATENCY}, f"{LABEL}: latencies {sorted(set(latencies))}"
        assert out_cycles[-1] - out_cycles[0] == count - 1, (
            f"{LABEL}: {count} results took {out_cycles[-1] - out_cycles[0] + 1} cycles")


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us", skip=not FRAMED)
async def test_framing(dut):
    """A frame one beat short and one a beat long, between good frames: both dropped whole."""
    tb = TB(dut, 3)
    await tb.reset()
    await tb.load()
    cases = tb.cases
    stim = cases.random(4)
    good = cases.frames(stim)
    beat = AXIS["s_axis"]["tdata_width"] // 8
    short = good[1][:-beat]
    long = good[2] + good[2][:beat]
    frames = [good[0], short, good[1], long, good[2], good[3]]
    board, results, cycles = await tb.run(
        frames, cases.expected(stim), idle=IDLE, stall=STALL, tag=1,
        describe=lambda k: cases.describe(stim, k), show=cases.show)
    _record("framing", vectors=len(frames), outputs=board.received,
            mismatches=len(board.mismatches) + len(board.extra), cycles=cycles)
    assert not board.failed, board.verdict()


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_reset(dut):
    """aresetn low with transfers in flight; afterwards the same stream, the same results."""
    tb = TB(dut, 4)
    await tb.reset()
    await tb.load()
    cases = tb.cases
    count = 3 if FRAMED else 64
    stim = cases.random(count)
    frames, expected = cases.frames(stim), cases.expected(stim)
    # Interrupt: half the frames queued, reset once some are inside the wrapper or the unit.
    tb.pace(IDLE, 1.0, 1)                     # the sink stalls: results pile up inside
    for frame in frames[:count // 2 + 1]:
        await tb.source.send(AxiStreamFrame(frame))
    await ClockCycles(dut.aclk, 2 * AXIS["s_axis"]["beats"] + 4)
    dut.aresetn.value = 0
    await ClockCycles(dut.aclk, 3)
    for component in (tb.source, tb.sink, tb.taken, *tb.sides.values()):
        component.clear()
    dut.aresetn.value = 1
    await ClockCycles(dut.aclk, LATENCY + 16)
    assert tb.sink.empty(), f"{LABEL}: a result came out of a reset with the sink stalled"
    assert int(dut.m_axis_tvalid.value) == 0, f"{LABEL}: m_axis_tvalid high after reset"
    await tb.load()
    board, results, cycles = await tb.run(
        frames, expected, idle=IDLE, stall=STALL, tag=2,
        describe=lambda k: cases.describe(stim, k), show=cases.show)
    _record("reset", vectors=count, outputs=board.received,
            mismatches=len(board.mismatches) + len(board.extra), cycles=cycles)
    assert not board.failed, board.verdict()
