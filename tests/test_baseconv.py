"""The fp32 and int8/int16 convolution stages (rtn_hw.gateware.baseconv) against their golden
model (rtn_hw.model.baseline_conv): every output bit-exact on small random shapes (padding,
stride 2, ragged chunks and groups, binary32 specials), with random input gaps and output
backpressure; the first image back to back measures the stage's cycles per image. The
sweep's registry units build. One simulator per configuration."""

import re

import numpy as np
import pytest
from helpers import assert_rejects

from rtn_hw.gateware.baseconv import BaselineConv, weight_words
from rtn_hw.gateware.conv import emission_steps, window_grid
from rtn_hw.gateware.simulate import run_stream
from rtn_hw.model.baseline_conv import fp32_conv_bits, int_conv
from rtn_hw.units import UNITS, ParameterError

# name: (kind, C_in, P, size, kernel, stride, padding, lanes, channels)
SHAPES = {
    "fp32-3x3-pad1-ragged": ("fp32", 2, 6, (4, 5), 3, 1, 1, 4, 2),
    "fp32-one-group-per-stage": ("fp32", 1, 3, (3, 3), 3, 1, 1, 9, 1),
    "int8-3x3-pad1": ("int8", 3, 5, (5, 4), 3, 1, 1, 8, 2),
    "int8-stride2-nopad": ("int8", 2, 4, (5, 5), 2, 2, 0, 3, 4),
    "int16-1x1": ("int16", 4, 2, (2, 3), 1, 1, 0, 4, 1),
}


def _draw(kind, rng, shape, specials=False):
    if kind != "fp32":
        bits = int(kind[3:])
        return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape)
    values = rng.standard_normal(shape).astype(np.float32)
    if specials:
        # Signed zeros, subnormals, huge values (overflow to inf), an inf.
        picks = np.array([0.0, -0.0, 1e-40, -3e-39, 3e38, -3e38, np.inf], dtype=np.float32)
        mask = rng.random(shape) < 0.3
        values[mask] = rng.choice(picks, mask.sum())
    return values.view(np.uint32).astype(np.int64)


def _golden(kind, x, w, lanes, stride, padding):
    if kind == "fp32":
        return fp32_conv_bits(x, w, lanes=lanes, stride=stride, padding=padding).astype(
            np.int64)
    return int_conv(x, w, int(kind[3:]), stride=stride, padding=padding)


def _completing_input(size, kernel, stride, padding):
    """Index of the input position whose step emits the first window."""
    rows, cols = window_grid(size, kernel, stride, padding)
    first = emission_steps(size, kernel, stride, padding)[0]
    steps = [(u, v) for u in rows for v in cols][:first + 1]
    return sum(1 for u, v in steps if padding[0] <= u < padding[0] + size[0]
               and padding[1] <= v < padding[1] + size[1]) - 1


def _positions(x, width):
    b, c, h, w = x.shape
    mask = (1 << width) - 1
    return [[int(v) & mask for v in x[i, :, r, q]] for i in range(b) for r in range(h)
            for q in range(w)]


@pytest.mark.parametrize("specials", [False, True], ids=["normal", "specials"])
@pytest.mark.parametrize("name", SHAPES)
def test_conv_matches_golden(name, specials, rng):
    kind, cin, p, size, kernel, stride, padding, lanes, channels = SHAPES[name]
    if specials and kind != "fp32":
        pytest.skip("binary32 specials only")
    images = 2
    x = _draw(kind, rng, (images, cin) + size, specials)
    w = _draw(kind, rng, (p, cin, kernel, kernel), specials)
    dut = BaselineConv(kind=kind, weights=w, lanes=lanes, channels=channels, size=size,
                       stride=(stride, stride), padding=(padding, padding))
    want = _golden(kind, x, w, lanes, (stride,) * 2, (padding,) * 2)   # (B, P, Ho, Wo)
    _, _, ho, wo = want.shape
    groups = dut.groups
    seed = int(rng.integers(1 << 31))
    print(f"run_stream seed {seed}")
    run = run_stream(dut, _positions(x, 32 if kind == "fp32" else int(kind[3:])), seed=seed,
                     idle=0.3, stall=0.3, steady=size[0] * size[1],
                     expected_outputs=images * ho * wo * groups,
                     steady_outputs=ho * wo * groups, timeout=20_000)
    got = np.array(run.outputs, dtype=np.int64).reshape(images, ho, wo, groups * channels)
    got = got[..., :p].transpose(0, 3, 1, 2)
    assert np.array_equal(got, want)
    # The first image went back to back with the output ready: where the core is the
    # bottleneck its results end one window period apart.
    firsts = run.out_cycles[groups - 1:ho * wo * groups:groups]
    period = dut.chunks * dut.groups
    if stride == 1 and period > size[1] + 2:    # the core, not the generator, sets the pace
        assert all(b - a == period for a, b in zip(firsts[1:-1], firsts[2:])), firsts
    assert dut.cycles_per_image == max(dut.steps, ho * wo * period)
    # Latency from the handshake of the input completing the first window: exact without
    # padding; a padding step before it (a row's end) delays its step past its handshake (the
    # generator's input slice holds it), by a cycle here.
    done = _completing_input(size, (kernel,) * 2, (stride,) * 2, (padding,) * 2)
    assert run.out_cycles[0] - run.in_cycles[done] == dut.latency + (padding > 0)


def test_weight_words_layout():
    w = np.arange(2 * 1 * 1 * 3).reshape(2, 1, 1, 3) - 2      # P 2, N 3
    words = weight_words("int8", w, 2, 2)                      # K 2, G 1
    # Word (k, g): channel c's lanes at bits (c·L + l)·8.
    assert words == [0xFE | 0xFF << 8 | 0x01 << 16 | 0x02 << 24, 0x00 | 0x03 << 16]


def test_bad_parameters():
    w = np.zeros((4, 1, 3, 3), dtype=np.int64)

    def build(kind="int8", weights=w, lanes=1, channels=1):
        return lambda: BaselineConv(kind=kind, weights=weights, lanes=lanes, channels=channels,
                                    size=(4, 4))
    assert_rejects(ValueError, "conv: fp32 needs at least 3 groups (one per adder stage) to "
                               "accumulate without stalls, not 2 (4 channels / 2)",
                   build("fp32", lanes=9, channels=2))
    assert_rejects(ValueError, "conv: lanes must be at most 9 (C_in·kh·kw), not 10",
                   build(lanes=10))
    assert_rejects(ValueError, "Convolution kind must be one of 'fp32', 'int8', 'int16', "
                               "not 'int4'", build("int4"))
    assert_rejects(ValueError, "int8 weights must lie in [-128, 127]", build(weights=w + 200))


def _trit_payloads(maps):
    b, c, h, w = maps.shape
    out = []
    for i in range(b):
        for r in range(h):
            for q in range(w):
                t = maps[i, :, r, q]
                out.append({"nz": sum(1 << k for k in np.flatnonzero(t != 0)),
                            "sg": sum(1 << k for k in np.flatnonzero(t > 0))})
    return out


def test_registry_conv_stage_matches_its_layer(rng):
    """The sweep's RTN unit (a random ConvLayer from the registry, folded L x C, weights in
    block RAM) against the layer's golden output trits, with its latency."""
    built = UNITS["conv_stage"].build({"lanes": "4", "channels": "2", "in_channels": "2",
                                       "out_channels": "4", "size": "5", "seed": "3"})
    dut, layer = built.component, built.arguments["layer"]
    maps = rng.integers(-1, 2, (2, 2, 5, 5)).astype(np.int8)
    _, _, y = layer.preactivation(maps)
    want = layer.encode(y)                                         # (B, P, 5, 5)
    seed = int(rng.integers(1 << 31))
    print(f"run_stream seed {seed}")
    run = run_stream(dut, _trit_payloads(maps), seed=seed, idle=0.2, stall=0.2, steady=25,
                     expected_outputs=2 * 25, steady_outputs=25, timeout=20_000)
    got = np.array([[(1 if o["sg"] >> p & 1 else -1) if o["nz"] >> p & 1 else 0
                     for p in range(4)] for o in run.outputs]).reshape(2, 5, 5, 4)
    assert np.array_equal(got.transpose(0, 3, 1, 2), want)
    done = _completing_input((5, 5), (3, 3), (1, 1), (1, 1))
    assert run.out_cycles[0] - run.in_cycles[done] == dut.latency + 1     # as above


@pytest.mark.parametrize("unit", ["conv_stage", "fp32_conv", "int_conv"])
def test_registry_conv_units_refuse_bad_shapes(unit):
    for given, message in (
            ({"lanes": "200"}, "lanes must be at most in_channels·kernel² = 144, not 200"),
            ({"channels": "17"}, "channels must be at most out_channels = 16, not 17"),
            ({"kernel": "4"}, "kernel must be odd ('same' padding) and at most size 28, "
                              "not 4"),
            ({"size": "0"}, "size must be a positive integer, not 0")):
        text = " ".join(f"{k}={v}" for k, v in given.items())
        with pytest.raises(ParameterError, match=f"^{re.escape(f'{unit}: {text}: {message}')}$"):
            UNITS[unit].build(given)
    if unit == "int_conv":
        with pytest.raises(ParameterError, match=r"^int_conv: width=4: Integer width must be "
                                                 r"8 or 16, not 4$"):
            UNITS[unit].build({"width": "4"})
