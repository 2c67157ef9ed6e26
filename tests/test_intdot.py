"""IntDot against `rtn_hw.model.int_dot`, bit for bit, with gaps, backpressure and corners; its
output width against a width derived here (the unit sizes itself with the model's
`int_dot_width`, so that function cannot check it)."""

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import signed
from amaranth.lib import data

from rtn_hw.gateware.intdot import IntDot
from rtn_hw.gateware.simulate import run_stream
from rtn_hw.model import int_dot

from helpers import assert_rejects

LANES = [1, 3, 16, 64, 256]
WIDTHS = [8, 16]
RANDOM_VECTORS = 2000
# Output widths by hand: the largest magnitude is lanes · 2^(2·width - 2), every lane being
# (-2^(width-1))², and it needs its bit length plus a sign bit (2^14 → 16 bits, 3·2^14 → 17).
OUT_WIDTHS = {(1, 8): 16, (3, 8): 17, (16, 8): 20, (64, 8): 22, (256, 8): 24,
              (1, 16): 32, (3, 16): 33, (16, 16): 36, (64, 16): 38, (256, 16): 40}


def limits(width):
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def minimal_signed_width(low, high):
    """Fewest two's-complement bits that hold every integer in [low, high]."""
    bits = 1
    while not -(1 << (bits - 1)) <= low <= high < (1 << (bits - 1)):
        bits += 1
    return bits


def payloads(dut, a, b):
    """Operand rows → lib.data constants (packed with NumPy: element k at bits k·width)."""
    unsigned = {8: "<u1", 16: "<u2"}[dut.width]
    layout = dut.i.payload.shape()
    half = dut.lanes * dut.width
    raw = []
    for row_a, row_b in zip(a, b):
        value_a = int.from_bytes(row_a.astype(unsigned).tobytes(), "little")
        value_b = int.from_bytes(row_b.astype(unsigned).tobytes(), "little")
        raw.append(data.Const(layout, value_a | value_b << half))
    return raw


def corner_vectors(lanes, width):
    low, high = limits(width)
    full = lambda v: np.full(lanes, v, dtype=np.int64)
    alternating = np.where(np.arange(lanes) % 2 == 0, low, high)
    ramp = np.clip(np.arange(lanes) - lanes // 2, low, high)
    pairs = [
        (full(0), full(0)),
        (full(low), full(low)),        # the largest magnitude: lanes · 2^(2·width - 2)
        (full(high), full(high)),
        (full(low), full(high)),       # the most negative sum
        (full(high), full(low)),
        (full(-1), full(-1)),
        (full(1), full(-1)),
        (alternating, alternating),
        (alternating, alternating[::-1].copy()),
        (full(low), full(0)),
        (ramp, full(low)),
    ]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def random_vectors(rng, count, lanes, width):
    """Half uniform, half drawn mostly from the extremes so carries and sign bits get exercised."""
    low, high = limits(width)
    uniform = rng.integers(low, high + 1, size=(2, count, lanes))
    extremes = np.array([low, low + 1, -1, 0, 1, high - 1, high])
    pick = extremes[rng.integers(0, len(extremes), size=(2, count, lanes))]
    use_extreme = (rng.random((2, count, lanes)) < 0.7) & (np.arange(count) % 2 == 1)[:, None]
    a, b = np.where(use_extreme, pick, uniform)
    return a, b


@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: f"int{w}")
@pytest.mark.parametrize("lanes", LANES, ids=lambda n: f"lanes{n}")
def test_matches_golden_with_gaps_and_backpressure(lanes, width, seed, rng):
    dut = IntDot(lanes, width)
    corner_a, corner_b = corner_vectors(lanes, width)
    rand_a, rand_b = random_vectors(rng, RANDOM_VECTORS, lanes, width)
    a = np.concatenate([corner_a, rand_a])
    b = np.concatenate([corner_b, rand_b])
    run = run_stream(dut, payloads(dut, a, b), seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == int_dot(a, b, width).tolist()
    assert min(run.latencies) >= dut.latency


@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: f"int{w}")
@pytest.mark.parametrize("lanes", LANES, ids=lambda n: f"lanes{n}")
def test_latency_and_throughput_without_gaps(lanes, width, seed, rng):
    dut = IntDot(lanes, width)
    assert dut.latency == 1 + int(np.ceil(np.log2(lanes)))
    a, b = random_vectors(rng, 40, lanes, width)
    run = run_stream(dut, payloads(dut, a, b), seed=seed)
    assert run.outputs == int_dot(a, b, width).tolist()
    assert run.latencies == [dut.latency] * len(a)
    assert np.diff(run.out_cycles).tolist() == [1] * (len(a) - 1)


@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: f"int{w}")
@pytest.mark.parametrize("lanes", LANES, ids=lambda n: f"lanes{n}")
def test_output_width_is_the_narrowest_exact_one(lanes, width):
    low, high = limits(width)
    products = [x * y for x in (low, high) for y in (low, high)]
    derived = minimal_signed_width(lanes * min(products), lanes * max(products))
    assert derived == OUT_WIDTHS[lanes, width]
    dut = IntDot(lanes, width)
    assert dut.out_width == derived
    assert dut.o.payload.shape() == signed(derived)


def test_extreme_sums_by_hand():
    # -128·-128 = 16384 per lane; 3 lanes make 49152, which needs 17 signed bits.
    dut = IntDot(3, 8)
    assert dut.out_width == 17
    a = np.array([[-128] * 3, [-128] * 3, [127] * 3])
    b = np.array([[-128] * 3, [127] * 3, [127] * 3])
    run = run_stream(dut, payloads(dut, a, b), seed=1)
    assert run.outputs == [49152, -48768, 48387]


def test_ports_and_properties():
    dut = IntDot(16, 16)
    operand = data.ArrayLayout(signed(16), 16)
    assert dut.i.payload.shape() == data.StructLayout({"a": operand, "b": operand})
    assert dut.o.payload.shape() == signed(36)      # 16 · 2^30 = 2^34 needs 35 bits + sign
    assert (dut.lanes, dut.width, dut.levels, dut.latency) == (16, 16, 4, 5)
    for name in ("lanes", "width", "latency", "out_width"):
        with pytest.raises(AttributeError):
            setattr(dut, name, 1)
    assert "product15" in rtlil.convert(dut)   # also elaborates it, as every dut must be


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"lanes": 0, "width": 8}, TypeError, "Lane count must be a positive integer, not 0"),
    ({"lanes": True, "width": 8}, TypeError, "Lane count must be a positive integer, not True"),
    ({"lanes": 2.0, "width": 8}, TypeError, "Lane count must be a positive integer, not 2.0"),
    ({"lanes": 4, "width": 12}, ValueError, "Integer width must be 8 or 16, not 12"),
    ({"lanes": 4, "width": 8.0}, ValueError, "Integer width must be 8 or 16, not 8.0"),
    ({"lanes": 4, "width": "8"}, ValueError, "Integer width must be 8 or 16, not '8'"),
], ids=["zero-lanes", "bool-lanes", "float-lanes", "width-12", "float-width", "str-width"])
def test_parameter_errors(kwargs, error, message):
    assert_rejects(error, message, lambda: IntDot(**kwargs))
