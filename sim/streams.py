"""cocotb stream components for `amaranth.lib.stream` ports: driver, monitor, backpressure.

A transfer happens at a rising edge where both `valid` and `ready` are high. Every component
works cycle by cycle in the same rhythm: it writes right after an edge, then samples in the
ReadOnly phase, when every combinational path has settled for the cycle that ends at the next
edge. So what a component samples is exactly what the design sees at that edge, on Icarus and
on Verilator alike, with no assumption about when a simulator updates registers relative to
the edge callback.

Randomness (idle gaps, stalls) comes from numpy generators the caller seeds, and is drawn up
front, so a run replays exactly from its seed.
"""

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["Clocking", "StreamDriver", "StreamMonitor", "Backpressure", "sample"]


class Clocking:
    """The clock and the cycle number of the current edge (sim time / period)."""

    def __init__(self, clk, period_steps):
        self.clk = clk
        self.edge = RisingEdge(clk)
        self.period = period_steps

    def cycle(self):
        return int(get_sim_time("step")) // self.period


def sample(handle):
    """A port value as an int, or its text (e.g. containing X) when it is not all 0/1."""
    value = handle.value
    try:
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)
    except ValueError:
        return str(value)


class StreamDriver:
    """Offers `values` on an input stream in order, each held until it is taken.

    Before each value the driver idles (valid low) for a geometric number of cycles with
    mean idle/(1 - idle); `idle=0` offers one value per cycle. `accepted` holds the cycle of
    every transfer, and `count` how many values were taken so far."""

    def __init__(self, dut, stream, clocking, *, rng, idle=0.0):
        self.valid = getattr(dut, stream.valid)
        self.ready = getattr(dut, stream.ready)
        self.payload = getattr(dut, stream.payload.name) if stream.payload else None
        self.clocking = clocking
        self.rng = rng
        self.idle = float(idle)
        self.accepted = []

    @property
    def count(self):
        return len(self.accepted)

    def idle_gaps(self, count):
        if self.idle <= 0:
            return np.zeros(count, dtype=np.int64)
        return self.rng.geometric(1.0 - self.idle, count) - 1

    def quiet(self):
        self.valid.value = 0

    async def send(self, values):
        """Offer every value; return when the last one has been taken (just after its edge)."""
        gaps = self.idle_gaps(len(values))
        edge, clocking = self.clocking.edge, self.clocking
        valid_now = None
        for value, gap in zip(values, gaps):
            if gap:
                if valid_now != 0:
                    self.valid.value = valid_now = 0
                for _ in range(int(gap)):
                    await edge
            if self.payload is not None:
                self.payload.value = value
            if valid_now != 1:
                self.valid.value = valid_now = 1
            while True:
                await ReadOnly()
                taken = self.ready.value == 1
                if taken:
                    self.accepted.append(clocking.cycle())
                await edge
                if taken:
                    break
        self.valid.value = 0


class StreamMonitor:
    """Records every transfer on an output stream: payload ints and their cycles.

    `on_item(index, value)` (optional) is called for each transfer, e.g. a scoreboard."""

    def __init__(self, dut, stream, clocking, on_item=None):
        self.valid = getattr(dut, stream.valid)
        self.ready = getattr(dut, stream.ready)
        self.payload = getattr(dut, stream.payload.name) if stream.payload else None
        self.clocking = clocking
        self.on_item = on_item
        self.values = []
        self.cycles = []

    async def run(self):
        edge, clocking = self.clocking.edge, self.clocking
        while True:
            await ReadOnly()
            if self.valid.value == 1 and self.ready.value == 1:
                value = sample(self.payload) if self.payload is not None else 0
                self.values.append(value)
                self.cycles.append(clocking.cycle())
                if self.on_item is not None:
                    self.on_item(len(self.values) - 1, value)
            await edge


class Backpressure:
    """Drives `ready` of an output stream: low with probability `stall` in each cycle
    (independent draws from `rng`), or always high with `stall=0`."""

    BLOCK = 4096

    def __init__(self, dut, stream, clocking, *, rng, stall=0.0):
        self.ready = getattr(dut, stream.ready)
        self.clocking = clocking
        self.rng = rng
        self.stall = float(stall)

    async def run(self):
        if self.stall <= 0:
            self.ready.value = 1
            return
        edge = self.clocking.edge
        current = None
        while True:
            for ready in (self.rng.random(self.BLOCK) >= self.stall).tolist():
                if ready != current:
                    self.ready.value = current = int(ready)
                await edge

    def hold(self, value):
        self.ready.value = int(value)
