"""A UART model on the simulated board's pins, and the byte transport the host driver uses.

`UartLine` drives the board's `rx` pin (8N1, LSB first) and decodes its `tx` pin in a
background task, both at `divisor` clock cycles per bit. `SimTransport` exposes it with the
interface of `rtn_hw.host.SerialTransport` (write / read / reset_input) as blocking calls, so
`rtn_hw.host.BoardClient` runs unchanged in a `cocotb.task.bridge` thread.
"""

import collections

import cocotb
from cocotb.task import resume
from cocotb.triggers import FallingEdge, Timer
from cocotb.utils import get_sim_time

__all__ = ["UartLine", "SimTransport"]


class UartLine:
    """Bit times are Timers of `divisor` clock periods (`period_ps`): one simulator callback
    per bit, where ClockCycles would wake Python on every clock edge."""

    def __init__(self, clk, rx, tx, divisor, period_ps):
        self.clk, self.rx, self.tx, self.divisor = clk, rx, tx, divisor
        self.period_ps = period_ps
        self.bit_ps = divisor * period_ps
        self.received = collections.deque()
        self.framing_errors = 0
        self.rx.value = 1
        self._task = cocotb.start_soon(self._receive())

    async def send(self, data):
        """Put the bytes on the board's rx pin back to back; returns after the last stop bit."""
        for byte in data:
            for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                self.rx.value = bit
                await Timer(self.bit_ps, unit="ps")

    async def idle(self, cycles):
        self.rx.value = 1
        await Timer(cycles * self.period_ps, unit="ps")

    async def _receive(self):
        # tx changes on rising clock edges; sampling half a clock period off them avoids a
        # race with the edge.
        half = (self.divisor // 2) * self.period_ps + self.period_ps // 2
        while True:
            await FallingEdge(self.tx)
            await Timer(half, unit="ps")
            if int(self.tx.value):
                continue  # shorter than half a bit: no start bit
            byte = 0
            for k in range(8):
                await Timer(self.bit_ps, unit="ps")
                byte |= int(self.tx.value) << k
            await Timer(self.bit_ps, unit="ps")
            if int(self.tx.value):
                self.received.append(byte)
            else:
                self.framing_errors += 1


class SimTransport:
    """The host driver's transport on a UartLine. `timeout_cycles` plays the role of the
    serial port's read timeout (simulated clock cycles)."""

    def __init__(self, line, *, timeout_cycles):
        self.line = line
        self.timeout_cycles = timeout_cycles
        self.bytes_written = 0
        self.bytes_read = 0

    @resume
    async def write(self, data):
        self.bytes_written += len(data)
        await self.line.send(bytes(data))

    @resume
    async def read(self, size):
        # Poll once a byte time: a reply byte is at most one byte time late, which the
        # simulated throughput includes (a real serial port has a USB latency instead).
        step = 10 * self.line.divisor
        waited = 0
        received = self.line.received
        while len(received) < size and waited < self.timeout_cycles:
            await Timer(step * self.line.period_ps, unit="ps")
            waited += step
        out = bytes(received.popleft() for _ in range(min(size, len(received))))
        self.bytes_read += len(out)
        return out

    @resume
    async def clock(self):
        """Simulated seconds: the host driver's deadlines count simulated time, as a real host
        counts wall time (a simulator runs far slower than the board)."""
        return get_sim_time("ps") * 1e-12

    @resume
    async def wait(self, cycles):
        """Let the line idle (the host sleeping); not part of the serial interface."""
        await self.line.idle(cycles)

    def reset_input(self):
        self.line.received.clear()

    def close(self):
        pass
