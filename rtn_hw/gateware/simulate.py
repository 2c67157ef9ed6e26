"""Drive a stream component in the Amaranth simulator: one simulator, many vectors.

Every unit here has an input stream `i` and an output stream `o`. `run_stream` feeds a list of
payloads with seeded random `valid` gaps, takes outputs with seeded random `ready`
backpressure, and returns the outputs in order with the cycle of every handshake, so tests can
check values, latency, throughput and that nothing was lost or duplicated.
"""

import dataclasses

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator


@dataclasses.dataclass
class StreamRun:
    outputs: list        # output payloads, in order, as plain ints or dicts of ints
    in_cycles: list      # cycle of each input handshake
    out_cycles: list     # cycle of each output handshake
    cycles: int          # cycles simulated in all

    @property
    def latencies(self):
        return [o - i for i, o in zip(self.in_cycles, self.out_cycles)]


def plain(value):
    """A simulator value (int or lib.data.Const) → int, or a dict of plain values for structs."""
    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.StructLayout):
            return {name: plain(getattr(value, name)) for name, _ in layout}
        if isinstance(layout, data.ArrayLayout):
            return [plain(value[k]) for k in range(layout.length)]
        return value.as_value().value
    return int(value)


def run_stream(dut, inputs, *, seed, idle=0.0, stall=0.0, setup=None, extra_cycles=32,
               timeout=10_000, vcd=None, actions=None, steady=0, expected_outputs=None,
               steady_outputs=None):
    """Send `inputs` (payload values for `dut.i`) and collect as many outputs from `dut.o`.

    `idle` is the probability of holding `valid` low for a cycle before each input; `stall`
    the probability of holding `ready` low in a cycle. `setup`, if given, is an async
    function `setup(ctx)` run before the first input (e.g. to load weights). `actions`, if
    given, maps an input index to an async function `action(ctx)` that the producer awaits
    just before offering that input (e.g. to reload parameters between batches). The first
    `steady` inputs go without gaps and their outputs are taken with `ready` high, so one
    run measures throughput and latency before `idle` and `stall` apply (`steady_outputs`, if
    given, counts the outputs taken with `ready` high instead). `expected_outputs`, if given,
    is the number of outputs expected in all, for units that do not give one output per input
    (a CNN engine takes an image's pixels one per handshake). Raises
    AssertionError if an output arrives that no input accounts for, or outputs go missing.
    """
    rng = np.random.default_rng(seed)
    idle_draws = iter(rng.random(len(inputs) * 8 + 64) < idle)
    stall_rng = np.random.default_rng([seed, 1])
    in_cycles, out_cycles, outputs = [], [], []
    done = {"sent": False}

    # A free-running counter in the design, sampled at each handshake edge, gives exact cycles.
    top = Module()
    top.submodules.dut = dut
    cycle = Signal(32)
    top.d.sync += cycle.eq(cycle + 1)

    async def producer(ctx):
        if setup is not None:
            await setup(ctx)
        for index, payload in enumerate(inputs):
            if actions and index in actions:
                await actions[index](ctx)
            while index >= steady and next(idle_draws, False):
                await ctx.tick()
            ctx.set(dut.i.payload, payload)
            ctx.set(dut.i.valid, 1)
            at, = await ctx.tick().sample(cycle).until(dut.i.ready)
            in_cycles.append(at)
            ctx.set(dut.i.valid, 0)
        done["sent"] = True

    expected = len(inputs) if expected_outputs is None else expected_outputs

    async def consumer(ctx):
        quiet = 0
        while quiet < extra_cycles:
            ready = len(outputs) < (steady if steady_outputs is None else steady_outputs) \
                or not stall or stall_rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, at = await ctx.tick().sample(dut.o.valid, dut.o.payload, cycle)
            if ready and valid:
                if len(outputs) == expected:
                    raise AssertionError(f"Output {len(outputs)} arrived, but only "
                                         f"{expected} were expected")
                outputs.append(plain(payload))
                out_cycles.append(at)
            if done["sent"] and len(outputs) == expected:
                quiet += 1
            elif at - (in_cycles[-1] if in_cycles else 0) > timeout:
                raise AssertionError(f"Only {len(outputs)} of {expected} outputs arrived "
                                     f"within {timeout} cycles")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return StreamRun(outputs, in_cycles, out_cycles, at_end(out_cycles, in_cycles))


def at_end(out_cycles, in_cycles):
    return max(out_cycles[-1:] + in_cycles[-1:] + [0]) + 1
