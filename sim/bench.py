"""The cocotb tests every exported unit runs, on Icarus and on Verilator.

The unit under test is the one named by the sidecar (`RTN_SIM_SIDECAR`); its bench module
(`units.<unit>`) supplies stimulus, golden outputs and notation, and everything else here is
shared: a TB that owns the clock, reset and stream components, and three tests:

* `test_stream`: corner vectors, then seeded random ones, with idle gaps on `valid` and
  random backpressure on `ready`; every output checked in order by the scoreboard, then a
  drain period proving nothing extra arrives.
* `test_throughput`: `ready` always high and no gaps: one vector per cycle in and out (one per
  II cycles for a unit whose bench names an initiation interval, `UnitBench.interval`, e.g.
  the dataflow engine), and every vector's latency equals the sidecar's.
* `test_reset`: a fresh run, then reset asserted mid-stream with vectors in flight, then the
  fresh run again; the outputs after reset equal the first run's (values and timing).

Settings come from the environment, resolved by the launcher (tests/test_cocotb.py):
RTN_SIM_VECTORS, RTN_SIM_SEED, RTN_SIM_SPARSITY, RTN_SIM_IDLE, RTN_SIM_STALL, RTN_SIM_LABEL,
and RTN_SIM_STATS, a JSON file receiving each test's counts and timing. RTN_SIM_FAULT
("corrupt:K", "drop:K" or "repeat:K") sabotages input K of `test_stream` (all bits flipped,
never sent, sent twice), so tests/test_cocotb.py can show that each kind of error is caught.
"""

import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First
from cocotb.utils import get_sim_steps

from rtn_hw.files import write_json

import units
from scoreboard import Scoreboard
from sidecar import Sidecar
from streams import Backpressure, Clocking, StreamDriver, StreamMonitor, sample
from trits import concat, length

SIDECAR = Sidecar(os.environ["RTN_SIM_SIDECAR"])
VECTORS = int(os.environ.get("RTN_SIM_VECTORS", "1000"))
SEED = int(os.environ.get("RTN_SIM_SEED", "20261129"))
SPARSITY = float(os.environ.get("RTN_SIM_SPARSITY", "0.5"))
IDLE = float(os.environ.get("RTN_SIM_IDLE", "0.2"))
STALL = float(os.environ.get("RTN_SIM_STALL", "0.2"))
LABEL = os.environ.get("RTN_SIM_LABEL", SIDECAR.unit)
STATS = os.environ.get("RTN_SIM_STATS")
FAULT = os.environ.get("RTN_SIM_FAULT")
PERIOD_NS = 10
# Cycles between vectors at full rate: 1, or the unit's initiation interval.
II = units.interval(SIDECAR)
# Input handshakes per vector: 1, or a CNN engine's pixel positions per image; latency and
# input spacing count from a vector's first handshake.
PER = units.handshakes(SIDECAR)

# A safety net only: every wait below has its own cycle budget with a readable failure.
TIMEOUT_US = ((VECTORS * 40 + 2_000) * II + 200_000) * PERIOD_NS / 1000

_stats = {}


def _record(test, **values):
    """Add one test's figures to the stats file (atomically replaced)."""
    _stats[test] = values
    if not STATS:
        return
    write_json(STATS, {"label": LABEL, "seed": SEED, "latency": SIDECAR.latency, "ii": II,
                       "tests": _stats}, indent=2)


def _rng(*tag):
    """An independent generator per purpose, all derived from SEED."""
    return np.random.default_rng([SEED, *tag])


class TB:
    """Clock, reset and the stream components around the DUT."""

    def __init__(self, dut, tag):
        self.dut = dut
        self.tag = tag
        self.clk = getattr(dut, SIDECAR.clock)
        self.rst = getattr(dut, SIDECAR.reset)
        # The C++ clock of the GPI: no Python coroutine per clock edge.
        Clock(self.clk, PERIOD_NS, unit="ns", impl="gpi").start()
        self.clocking = Clocking(self.clk, get_sim_steps(PERIOD_NS, "ns"))
        self.bench = units.load(SIDECAR, _rng(tag, 0), SPARSITY, VECTORS)
        self.inputs = [s for s in SIDECAR.streams.values() if s.direction == "input"]
        self.out = SIDECAR.stream("o")
        for stream in self.inputs:
            getattr(dut, stream.valid).value = 0
        getattr(dut, self.out.ready).value = 0
        self.rst.value = 1

    async def cycles(self, n):
        await ClockCycles(self.clk, n)

    async def reset(self, cycles=3):
        for stream in self.inputs:
            getattr(self.dut, stream.valid).value = 0
        self.rst.value = 1
        await self.cycles(cycles)
        self.rst.value = 0
        await self.clocking.edge

    async def load(self):
        """Send the bench's side-stream loads (thresholds, weights) one by one."""
        for name, value in self.bench.loads():
            driver = StreamDriver(self.dut, SIDECAR.stream(name), self.clocking,
                                  rng=_rng(self.tag, 1))
            await driver.send([value])

    def budget(self, count, idle, stall):
        """Generous cycle budget for `count` vectors: 4× the expected cycles, plus slack."""
        per_vector = (II + PER * idle / max(1e-9, 1 - idle)) / max(1e-9, 1 - stall)
        return int(4 * count * per_vector) + 4 * SIDECAR.latency + 1000

    async def run(self, stim, *, idle, stall, tag, fault=None):
        """Stream `stim` through the DUT; return the scoreboard, driver and monitor."""
        bench = self.bench
        inputs, expected = bench.inputs(stim), bench.expected(stim)
        if fault:
            _sabotage(inputs, fault, SIDECAR.stream("i").payload.width)
        board = Scoreboard(expected, describe=lambda k: bench.describe(stim, k),
                           show=bench.show, seed=SEED, label=LABEL)
        driver = StreamDriver(self.dut, SIDECAR.stream("i"), self.clocking,
                              rng=_rng(self.tag, tag, 2), idle=idle)
        monitor = StreamMonitor(self.dut, self.out, self.clocking, board.check)
        pressure = Backpressure(self.dut, self.out, self.clocking, rng=_rng(self.tag, tag, 3),
                                stall=stall)
        start = self.clocking.cycle()
        tasks = [cocotb.start_soon(monitor.run()), cocotb.start_soon(pressure.run()),
                 cocotb.start_soon(driver.send(inputs))]
        await First(board.finished.wait(),
                    ClockCycles(self.clk, self.budget(-(-len(inputs) // PER), idle, stall)))
        # The scoreboard finishes in a ReadOnly phase; writes wait for the next edge.
        await self.clocking.edge
        if not board.failed:
            # Anything arriving now was duplicated or invented.
            await self.cycles(SIDECAR.latency + 16)
        for task in tasks:
            task.cancel()
        getattr(self.dut, SIDECAR.stream("i").valid).value = 0
        return board, driver, monitor, self.clocking.cycle() - start


def _sabotage(inputs, fault, width):
    kind, _, index = fault.partition(":")
    k = int(index)
    if kind == "corrupt":
        inputs[k] ^= (1 << width) - 1
    elif kind == "drop":
        del inputs[k]
    elif kind == "repeat":
        inputs.insert(k, inputs[k])
    else:
        raise ValueError(f"RTN_SIM_FAULT={fault}: expected corrupt:K, drop:K or repeat:K")


def _latencies(driver, monitor):
    return [o - i for i, o in zip(driver.accepted[::PER], monitor.cycles)]


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_stream(dut):
    """Corner vectors, then seeded random ones, with idle gaps and backpressure."""
    tb = TB(dut, 1)
    await tb.reset()
    await tb.load()
    corners = tb.bench.corners()
    stim = concat(corners, tb.bench.random(max(0, VECTORS - length(corners))))
    began = time.perf_counter()
    board, driver, monitor, cycles = await tb.run(stim, idle=IDLE, stall=STALL, tag=1,
                                                  fault=FAULT)
    wall = time.perf_counter() - began
    latencies = _latencies(driver, monitor)
    _record("stream", vectors=length(stim), corners=length(corners), outputs=board.received,
            mismatches=len(board.mismatches) + len(board.extra), cycles=cycles,
            latency_min=min(latencies, default=None), wall_s=wall,
            vectors_per_s=length(stim) / wall if wall else None)
    assert not board.failed, board.verdict()
    # A vector of several handshakes meets the idle gaps between them: never shorter.
    assert min(latencies) == SIDECAR.latency or PER > 1 and min(latencies) > SIDECAR.latency, (
        f"{LABEL}: shortest latency {min(latencies)} cycles, sidecar says {SIDECAR.latency}")


def _spacings(cycles):
    return sorted(set(np.diff(cycles).tolist()))


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_throughput(dut):
    """Ready always high, no gaps: one vector per II cycles (1 for most units) in and out,
    each with the sidecar's latency."""
    tb = TB(dut, 2)
    await tb.reset()
    await tb.load()
    stim = tb.bench.random(tb.bench.throughput_vectors)
    board, driver, monitor, cycles = await tb.run(stim, idle=0.0, stall=0.0, tag=1)
    latencies = _latencies(driver, monitor)
    spacings = _spacings(monitor.cycles)
    _record("throughput", vectors=length(stim), outputs=board.received,
            mismatches=len(board.mismatches) + len(board.extra), cycles=cycles,
            latency_min=min(latencies, default=None), latency_max=max(latencies, default=None),
            latency_first=latencies[0] if latencies else None,
            in_span=driver.accepted[-1] - driver.accepted[0] + 1 if driver.accepted else None,
            in_spacings=_spacings(driver.accepted[::PER]),
            out_span=monitor.cycles[-1] - monitor.cycles[0] + 1 if monitor.cycles else None,
            ii_measured=max(spacings, default=None))
    assert not board.failed, board.verdict()
    n, every = length(stim), "every cycle" if II == 1 else f"every {II} cycles"
    # A vector of several handshakes (a CNN's image) may start early while the engine's FIFOs
    # fill, and then wait longer: its first vector's latency is the sidecar's, the others'
    # never shorter, and the inputs settle at II.
    firsts = _spacings(driver.accepted[::PER])
    assert firsts == [II] or PER > 1 and max(firsts) == II, (
        f"{LABEL}: {n} inputs taken {firsts} cycles apart, not {every}")
    assert spacings == [II], (
        f"{LABEL}: {n} outputs {spacings} cycles apart, not {every}")
    assert set(latencies) == {SIDECAR.latency} or PER > 1 and latencies[0] == min(
        latencies) == SIDECAR.latency, (
        f"{LABEL}: latencies {sorted(set(latencies))} cycles, sidecar says {SIDECAR.latency}")


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def test_reset(dut):
    """Reset mid-stream with vectors in flight; afterwards the unit behaves as if fresh."""
    tb = TB(dut, 3)
    await tb.reset()
    await tb.load()
    vectors = tb.bench.reset_vectors
    fresh_stim = tb.bench.random(vectors)
    fresh, f_driver, f_monitor, f_cycles = await tb.run(fresh_stim, idle=IDLE, stall=STALL,
                                                        tag=1)
    assert not fresh.failed, fresh.verdict()

    # Interrupt a second stream halfway, while the pipeline holds vectors.
    stim = tb.bench.random(vectors)
    inputs, expected = tb.bench.inputs(stim), tb.bench.expected(stim)
    driver = StreamDriver(dut, SIDECAR.stream("i"), tb.clocking, rng=_rng(3, 2, 2), idle=IDLE)
    monitor = StreamMonitor(dut, tb.out, tb.clocking)
    pressure = Backpressure(dut, tb.out, tb.clocking, rng=_rng(3, 2, 3), stall=STALL)
    tasks = [cocotb.start_soon(monitor.run()), cocotb.start_soon(pressure.run()),
             cocotb.start_soon(driver.send(inputs))]
    for _ in range(tb.budget(vectors, IDLE, STALL)):
        if driver.count >= vectors * PER // 2:
            break
        await tb.clocking.edge
    tasks[2].cancel()
    accepted = driver.count
    await tb.reset()
    # Hold ready high: a stale vector surviving the reset would show up now.
    tasks[1].cancel()
    pressure.hold(1)
    await tb.cycles(SIDECAR.latency + 16)
    tasks[0].cancel()
    before = monitor.values
    assert len(before) <= -(-accepted // PER), (
        f"{LABEL}: {len(before)} outputs around a reset after only {accepted} inputs")
    assert before == expected[:len(before)], (
        f"{LABEL}: outputs before the reset differ from the golden model")
    valid = sample(getattr(dut, tb.out.valid))
    assert valid == 0, f"{LABEL}: o.valid is {valid} after reset with no input"

    await tb.load()
    again, a_driver, a_monitor, a_cycles = await tb.run(fresh_stim, idle=IDLE, stall=STALL,
                                                        tag=1)
    _record("reset", vectors=2 * vectors + -(-accepted // PER), outputs=fresh.received
            + len(before) + again.received, mismatches=len(again.mismatches)
            + len(again.extra), cycles=f_cycles + a_cycles, interrupted_after=accepted,
            drained_before_reset=len(before))
    assert not again.failed, again.verdict()
    relative = lambda cycles: [c - cycles[0] for c in cycles]
    assert relative(a_monitor.cycles) == relative(f_monitor.cycles), (
        f"{LABEL}: output timing after reset differs from the fresh run")
