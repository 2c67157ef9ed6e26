"""Popcount (carry-chain compressor tree and naive chain) against a plain bit count."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from rtn_hw.gateware.popcount import (Popcount, adder_tree, compress, compress_levels,
                                      popcount, popcount_levels, popcount_stages, tree_levels)
from rtn_hw.gateware.simulate import run_stream

from helpers import assert_rejects

WIDTHS = [1, 3, 16, 64, 256]
RANDOM = 2000


def corners(width):
    ones = (1 << width) - 1
    alt = int("01" * width, 2) & ones
    vectors = [0, ones, alt, ones ^ alt, 1, 1 << (width - 1), ones >> 1, ones ^ 1]
    vectors += [((1 << k) - 1) for k in range(width + 1)][:: max(1, width // 8)]
    return vectors


def random_vectors(rng, width, count):
    """Each vector with its own density, from almost empty to almost full."""
    density = rng.random(count)
    bits = rng.random((count, width)) < density[:, None]
    return [int("".join("1" if b else "0" for b in row[::-1]), 2) for row in bits]


def sync_stage(m):
    """A `stage` callback for the builders: each value through a register in m's sync domain."""
    def stage(value, name):
        reg = Signal.like(value, name=name)
        m.d.sync += reg.eq(value)
        return reg
    return stage


def expected(vectors):
    return [bin(v).count("1") for v in vectors]


@pytest.mark.parametrize("style", ["tree", "chain"])
@pytest.mark.parametrize("width", WIDTHS)
def test_popcount_matches_count(width, style, seed, rng):
    dut = Popcount(width, style=style)
    vectors = corners(width) + random_vectors(rng, width, RANDOM)
    run = run_stream(dut, vectors, seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == expected(vectors)


@pytest.mark.parametrize("style,levels_per_stage", [("tree", 1), ("tree", 2), ("tree", 3),
                                                    ("chain", 5)])
@pytest.mark.parametrize("width", [16, 64])
def test_pipelined_popcount(width, style, levels_per_stage, seed, rng):
    dut = Popcount(width, style=style, levels_per_stage=levels_per_stage)
    assert dut.latency == popcount_stages(width, levels_per_stage, style) + 1
    assert dut.latency == (popcount_levels(width, style) - 1) // levels_per_stage + 1
    vectors = corners(width) + random_vectors(rng, width, 400)
    run = run_stream(dut, vectors, seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == expected(vectors)


@pytest.mark.parametrize("style,levels_per_stage", [("tree", None), ("tree", 1), ("tree", 2),
                                                    ("chain", None), ("chain", 4)])
@pytest.mark.parametrize("width", [3, 64])
def test_latency_and_throughput(width, style, levels_per_stage, seed, rng):
    dut = Popcount(width, style=style, levels_per_stage=levels_per_stage)
    vectors = random_vectors(rng, width, 64)
    run = run_stream(dut, vectors, seed=seed)
    assert run.outputs == expected(vectors)
    assert run.latencies == [dut.latency] * len(vectors)
    assert run.out_cycles == list(range(run.out_cycles[0], run.out_cycles[0] + len(vectors)))


def test_stage_counts():
    assert popcount_levels(1) == 0 and popcount_stages(1, 1) == 0
    assert popcount_levels(5, "chain") == 4
    assert popcount_stages(64, None) == 0
    for width in (2, 16, 64, 256):
        levels = popcount_levels(width)
        assert levels == compress_levels(width)
        assert [popcount_stages(width, k) for k in (1, 2, levels)] == \
            [levels - 1, (levels - 1) // 2, 0]


def test_builder_reports_its_stages():
    """The builder inside another module: stages_used equals popcount_stages."""
    m = Module()
    bits = Signal(100)
    value, stages = popcount(m, bits, stage=sync_stage(m), levels_per_stage=2)
    assert stages == popcount_stages(100, 2) > 0
    assert len(value) == 7
    _, none = popcount(m, bits)
    assert none == 0


def test_compress_terms_and_bits(rng):
    """compress() with mixed multi-bit terms and single bits, combinationally."""
    m = Module()
    a, b, c = Signal(3), Signal(5), Signal(2)
    bits = Signal(9)
    value, top, stages = compress(m, [bits[k] for k in range(9)], [(a, 7), (b, 31), (c, 3)])
    assert (top, stages, len(value)) == (50, 0, 6)
    out = Signal(6)
    m.d.comb += out.eq(value)
    cases = [tuple(int(x) for x in rng.integers(0, (8, 32, 4, 512))) for _ in range(300)]
    cases += [(7, 31, 3, 511), (0, 0, 0, 0)]

    async def bench(ctx):
        for va, vb, vc, vbits in cases:
            ctx.set(a, va)
            ctx.set(b, vb)
            ctx.set(c, vc)
            ctx.set(bits, vbits)
            assert ctx.get(out) == va + vb + vc + bin(vbits).count("1")

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_parameters_are_read_only_properties():
    dut = Popcount(16, style="chain", levels_per_stage=3)
    assert (dut.width, dut.style, dut.levels_per_stage) == (16, "chain", 3)
    with pytest.raises(AttributeError):
        dut.width = 8


@pytest.mark.parametrize("kwargs,error,message", [
    ({"width": 0}, TypeError, "Popcount width must be a positive integer, not 0"),
    ({"width": 2.0}, TypeError, "Popcount width must be a positive integer, not 2.0"),
    ({"width": True}, TypeError, "Popcount width must be a positive integer, not True"),
    ({"width": 8, "style": "wallace"}, ValueError,
     "Popcount style must be one of 'tree', 'chain', not 'wallace'"),
    ({"width": 8, "levels_per_stage": 0}, TypeError,
     "Levels per stage must be a positive integer, not 0"),
])
def test_parameter_errors(kwargs, error, message):
    assert_rejects(error, message, lambda: Popcount(**kwargs))


def test_function_errors():
    assert_rejects(ValueError, "Popcount style must be one of 'tree', 'chain', not 'adder'",
                   lambda: popcount_levels(8, "adder"))
    assert_rejects(TypeError, "Levels per stage must be a positive integer, not -1",
                   lambda: popcount_stages(8, -1))


def test_random_vectors_vary_in_density(rng):
    counts = np.array(expected(random_vectors(rng, 64, 200)))
    assert counts.min() < 8 and counts.max() > 56


@pytest.mark.parametrize("cuts", [frozenset(), frozenset({1, 2})], ids=["comb", "staged"])
def test_adder_tree(cuts, rng):
    """The plain adder tree the MAC array builds on: sum of (value, max) terms."""
    m = Module()
    inputs = [Signal(3, name=f"x{k}") for k in range(5)]
    value, top, stages = adder_tree(m, [(x, 7) for x in inputs], stage=sync_stage(m), cuts=cuts)
    assert (top, stages, len(value)) == (35, len(cuts), 6)
    assert tree_levels(5) == 3 and tree_levels(1) == 0
    out = Signal(6)
    m.d.comb += out.eq(value)
    cases = [[int(v) for v in rng.integers(0, 8, 5)] for _ in range(100)] + [[7] * 5]

    async def bench(ctx):
        for case in cases:
            for x, v in zip(inputs, case):
                ctx.set(x, v)
            if cuts:
                await ctx.tick().repeat(len(cuts))
            assert ctx.get(out) == sum(case)

    sim = Simulator(m)
    if cuts:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
