"""UartRx / UartTx in the Amaranth simulator: loopback, pin-level frames, errors, backpressure."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from helpers import assert_rejects
from rtn_hw.gateware.uart import UartRx, UartTx


@pytest.mark.parametrize("cls", [UartRx, UartTx], ids=["rx", "tx"])
@pytest.mark.parametrize("divisor", [3, 0, -8, 4.0, True, "8"])
def test_divisor_rejected(cls, divisor):
    assert_rejects(TypeError, "Divisor must be an integer of at least 4 (clock cycles per bit), "
                   f"not {divisor!r}", lambda: cls(divisor=divisor))


def test_divisor_property():
    assert UartRx(divisor=104).divisor == 104
    assert UartTx(divisor=5).divisor == 5


def _bits(byte, stop=1):
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


async def _drive_line(ctx, rx, bits, cycles_per_bit):
    """Put `bits` on the pin; `cycles_per_bit` may be fractional (a baud rate mismatch)."""
    at = 0.0
    for bit in bits:
        ctx.set(rx, bit)
        nxt = at + cycles_per_bit
        if int(round(nxt)) > int(round(at)):
            await ctx.tick().repeat(int(round(nxt)) - int(round(at)))
        at = nxt


def _run_rx(divisor, frames, *, cycles_per_bit=None, gap=2):
    """Drive `frames` (lists of bits) on UartRx's pin; return the bytes, framing errors and
    overruns seen (ready held high)."""
    dut = UartRx(divisor=divisor)
    got, errors, overruns = [], [], []

    async def line(ctx):
        await ctx.tick().repeat(5)
        for bits in frames:
            await _drive_line(ctx, dut.rx, bits, cycles_per_bit or divisor)
            if gap:
                await ctx.tick().repeat(gap)
        await ctx.tick().repeat(4 * divisor)

    async def monitor(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, valid, data, ferr, over in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.framing_error, dut.overrun):
            if valid:
                got.append(data)
            if ferr:
                errors.append(len(got))
            if over:
                overruns.append(len(got))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_process(monitor)
    sim.run()
    return got, errors, overruns


@pytest.mark.parametrize("divisor", [4, 5, 8, 13])
def test_loopback_random_bytes(divisor, rng):
    """TX → RX over a wire: random bytes with random gaps at TX and random stalls at RX (each
    shorter than a byte time, so nothing overruns) arrive intact and in order; bytes offered
    back to back leave exactly 10 bit times apart."""
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80] + [int(b) for b in rng.integers(0, 256, 60)]
    gaps = [0 if k < 12 else int(rng.integers(0, 3 * divisor)) for k in range(len(data))]
    m = Module()
    m.submodules.tx = tx = UartTx(divisor=divisor)
    m.submodules.rx = rx = UartRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    sent_at, got, overruns = [], [], []
    stall = np.random.default_rng(int(rng.integers(1 << 32)))

    async def producer(ctx):
        for byte, gap in zip(data, gaps):
            if gap:
                await ctx.tick().repeat(gap)
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            sent_at.append(ctx.get(cycle["n"]))
            ctx.set(tx.i.valid, 0)

    cycle = {"n": 0}

    async def consumer(ctx):
        while len(got) < len(data):
            ready = int(stall.random() > 0.5)
            ctx.set(rx.o.ready, ready)
            if ctx.get(rx.o.valid) and ready:
                got.append(ctx.get(rx.o.payload))
            if ctx.get(rx.overrun):
                overruns.append(len(got))
            await ctx.tick()
            cycle["n"] += 1
            assert cycle["n"] < 20 * divisor * len(data) + 1000, "loopback hung"

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == data
    assert overruns == []
    spacing = np.diff(sent_at[:12])
    assert list(spacing) == [10 * divisor] * 11


@pytest.mark.parametrize("divisor", [4, 16])
def test_tx_backpressure_and_line(divisor):
    """UartTx drops ready for exactly one frame per byte, and the pin carries start, LSB-first
    data and stop bits of `divisor` cycles each."""
    dut = UartTx(divisor=divisor)

    async def bench(ctx):
        assert ctx.get(dut.i.ready) == 1 and ctx.get(dut.tx) == 1
        for byte in (0x3C, 0xC5):
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().until(~dut.busy)
        assert ctx.get(dut.i.ready) == 1

    async def sampler(ctx):
        async for _, _, tx, busy in ctx.tick().sample(dut.tx, dut.busy):
            if busy:
                samples.append(tx)

    samples = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(sampler)
    sim.run_until(1e-6 * (25 * divisor + 20))
    expected = [b for byte in (0x3C, 0xC5) for b in _bits(byte) for _ in range(divisor)]
    assert samples[:len(expected)] == expected
    assert len(samples) == len(expected)


@pytest.mark.parametrize("divisor", [4, 8, 12])
def test_rx_back_to_back_and_baud_mismatch(divisor):
    """Frames with no idle bit between them, sent 3% fast and 3% slow, all arrive."""
    data = [0xA5, 0x00, 0xFF, 0x5A, 0x81, 0x7E]
    frames = [_bits(b) for b in data]
    for factor in (0.97, 1.0, 1.03):
        got, errors, overruns = _run_rx(divisor, frames, cycles_per_bit=divisor * factor, gap=0)
        assert (got, errors, overruns) == (data, [], []), factor


def test_rx_framing_error():
    """A low stop bit drops the byte and pulses framing_error once, even when the line then
    stays low (a break) for several byte times; the next good byte arrives."""
    divisor = 8
    frames = [_bits(0x11), _bits(0x22, stop=0), [0] * 30 + [1, 1], _bits(0x33)]
    got, errors, overruns = _run_rx(divisor, frames)
    assert got == [0x11, 0x33]
    assert errors == [1]
    assert overruns == []


def test_rx_glitch_is_no_start_bit():
    """A low pulse shorter than half a bit does not start a byte."""
    divisor = 16
    got, errors, _ = _run_rx(divisor, [[0] * 6 + [1] * 40, _bits(0x42)], cycles_per_bit=1)
    assert (got, errors) == ([], [])
    got, errors, _ = _run_rx(divisor, [_bits(0x42)])
    assert (got, errors) == ([0x42], [])


def test_rx_overrun():
    """A byte completing while the previous one waits in `o` is dropped and flagged."""
    divisor = 4
    dut = UartRx(divisor=divisor)
    seen = {"overrun": 0}

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        await ctx.tick().repeat(3)
        for byte in (0x12, 0x34):
            await _drive_line(ctx, dut.rx, _bits(byte), divisor)
        await ctx.tick().repeat(divisor)
        assert ctx.get(dut.o.valid) == 1
        assert ctx.get(dut.o.payload) == 0x12
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        assert ctx.get(dut.o.valid) == 0
        assert seen["overrun"] == 1

    async def monitor(ctx):
        async for _, _, over in ctx.tick().sample(dut.overrun):
            seen["overrun"] += over

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
