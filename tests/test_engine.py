"""NetworkEngine against the integer golden network (`Network.forward`), bit for bit: the shipped
digits network at several (lanes, channels), including lanes that do not divide the layer
widths and a single channel; a synthetic network built for corner cases (saturated counts,
negative BatchNorm γ, clamped thresholds, a rounding shift in every layer, tied logits); the
cycle count; random valid gaps and ready backpressure; the parameter errors."""

import re

import numpy as np
import pytest

from rtn_hw import model, weights
from rtn_hw.units import UNITS, ParameterError
from rtn_hw.gateware.engine import (ENGINE_CONFIGS, NetworkEngine, cycles_per_image,
                                    drain_cycles)
from rtn_hw.gateware.simulate import run_stream

NETWORK = weights.load()
IMAGES, LABELS = weights.load_digits_test()


def run_engine(dut, images, *, seed, idle=0.0, stall=0.0):
    """(logits (B, classes), classes (B,), StreamRun) of `images` through one simulator."""
    run = run_stream(dut, [[int(p) for p in image] for image in images], seed=seed, idle=idle,
                     stall=stall, timeout=4 * dut.cycles_per_image + 100)
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    labels = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return logits, labels, run


def pick(rng, count):
    return IMAGES[np.sort(rng.choice(len(IMAGES), count, replace=False))]


# --- the shipped network ----------------------------------------------------------------------

@pytest.mark.parametrize("lanes, channels, count", [
    pytest.param(24, 1, 4, id="lanes24-ch1"),            # 64 and 128 are not multiples of 24
    pytest.param(*ENGINE_CONFIGS["ice40-up5k"].values(), 8, id="ice40-up5k"),
    pytest.param(*ENGINE_CONFIGS["ecp5-85k"].values(), 12, id="ecp5-85k"),
    pytest.param(40, 3, 6, id="lanes40-ch3"),             # 10 classes: a padded last group
])
def test_digits_match_golden_with_gaps_and_backpressure(lanes, channels, count, rng):
    images = pick(rng, count)
    dut = NetworkEngine(NETWORK, lanes=lanes, channels=channels)
    logits, labels, run = run_engine(dut, images, seed=int(rng.integers(1 << 31)), idle=0.3,
                                     stall=0.3)
    want_logits, want_labels = NETWORK.forward(images)
    assert np.array_equal(logits, want_logits)
    assert np.array_equal(labels, want_labels)
    assert min(run.latencies) >= dut.cycles_per_image


def test_cycle_count_back_to_back():
    """Ready always high, valid always high: every image takes exactly cycles_per_image, and the
    next one is taken the cycle after its result."""
    config = ENGINE_CONFIGS["ecp5-85k"]
    dut = NetworkEngine(NETWORK, **config)
    images = IMAGES[:4]
    logits, labels, run = run_engine(dut, images, seed=0)
    assert run.latencies == [dut.cycles_per_image] * 4
    assert np.diff(run.in_cycles).tolist() == [dut.cycles_per_image + 1] * 3
    assert np.array_equal(logits, NETWORK.forward(images)[0])


def test_cycles_per_image_formula():
    # 1 + A + Σ (ceil(P/ch)·ceil(N/lanes) + 8 + k) over 64→128, 128→128, 128→10, where k is
    # the core's register layers, one after every 4th of its levels (the lane logic, then the
    # compressor over 2·lanes bits: 6 levels at 4 lanes, 10 at 24 and 32, 12 at 64, 13 at 128),
    # and A the argmax's stages after the last acc': one per level of its tree over the
    # channels after the first, and the merge (1 for 1 or 2 channels, 3 for 8).
    assert [drain_cycles(n) for n in (4, 24, 32, 64, 128)] == [8, 9, 9, 9, 10]
    assert cycles_per_image(NETWORK, 32, 2) == 2 + (64 * 2 + 10) + (64 * 4 + 10) + (5 * 4 + 10)
    assert cycles_per_image(NETWORK, 24, 1) == 2 + (128 * 3 + 10) + (128 * 6 + 10) + (10 * 6 + 10)
    assert cycles_per_image(NETWORK, 64, 8) == 4 + (16 * 1 + 10) + (16 * 2 + 10) + (2 * 2 + 10)
    assert cycles_per_image(NETWORK, 64, 8) == 86
    dut = NetworkEngine(NETWORK, lanes=32, channels=2)
    assert dut.latency == dut.cycles_per_image == 436


def test_properties():
    dut = NetworkEngine(NETWORK, lanes=32, channels=2)
    assert (dut.network, dut.lanes, dut.channels) == (NETWORK, 32, 2)
    assert (dut.features, dut.pixel_bits, dut.classes, dut.logit_width) == (64, 5, 10, 24)
    assert dut.memories == {"weights": (128, 404), "params": (dut.memories["params"][0], 133)}
    assert dut.i.payload.shape().size == 64 * 5
    assert dut.o.payload.shape().size == 10 * 24 + 4


# --- a synthetic network for the corners ------------------------------------------------------

def _formats(consts_args, n, k_width, out_width, out_frac_cut):
    """The export's rule (fewest integer bits), with `out_frac_cut` fewer output fraction bits
    than the K format so that every layer rounds (s > 0)."""
    for int_bits in range(1, k_width + 1):
        k_fmt = model.Q(int_bits, k_width - int_bits)
        try:
            consts = model.fold_constants(*consts_args, n, k_fmt)
            break
        except ValueError:
            continue
    for int_bits in range(1, out_width + 1):
        out_fmt = model.Q(int_bits, max(0, min(k_fmt.frac_bits - out_frac_cut,
                                               out_width - int_bits)))
        try:
            model.check_output_format(consts, out_fmt)
            return k_fmt, out_fmt, consts
        except ValueError:
            continue
    raise AssertionError("no output format")


def synthetic_network(rng, sizes=(13, 9, 7, 5), pixel_max=3):
    """A valid `weights.Network` (through `from_arrays`) with: all-(+1) and all-(-1) weight rows
    (D and S_a saturate for all-max or all-zero images), negative BatchNorm γ on some channels,
    thresholds clamped to the output range on others, s > 0 everywhere, and two identical last
    rows after the first (equal logits: the first maximum must win)."""
    specs, arrays = [], {}
    for i, (n, p) in enumerate(zip(sizes, sizes[1:])):
        name, last = f"l{i}", i == len(sizes) - 2
        t_w = rng.integers(-1, 2, (p, n)).astype(np.int8)
        t_w[0], t_w[1] = 1, -1
        alpha_w, beta_w = rng.uniform(0.2, 2.0, p), rng.uniform(-0.5, 0.5, p)
        alpha_a, beta_a = float(rng.uniform(0.5, 2.0)), float(rng.uniform(-0.5, 0.5))
        if last:
            t_w[3], alpha_w[3], beta_w[3] = t_w[2], alpha_w[2], beta_w[2]
        s_w = t_w.sum(axis=1, dtype=np.int64)
        k_fmt, out_fmt, _ = _formats((alpha_w, beta_w, alpha_a, beta_a, s_w), n, 14, 16, 3)
        bn = None
        if not last:
            gamma = rng.uniform(0.5, 2.0, p) * np.where(np.arange(p) % 3 == 1, -1, 1)
            bn_beta = rng.uniform(-0.5, 0.5, p)
            bn_beta[-1], bn_beta[-2] = 1e6, -1e6      # thresholds clamp: always +1 / -1
            bn = (gamma, bn_beta, rng.normal(0, 2, p), rng.uniform(0.5, 4.0, p), 1e-5)
        spec, layer_arrays = weights.layer_record(name, t_w, alpha_w, beta_w, alpha_a, beta_a,
                                                  k_fmt, out_fmt, bn)
        arrays.update(layer_arrays)
        specs.append(spec)
    lo, hi = weights.InputEncoding.thresholds(pixel_max)
    manifest = {"format": weights.FORMAT, "version": weights.VERSION,
                "arrays": {"file": "synthetic.npz"}, "delta": weights.DELTA,
                "input": {"shape": [sizes[0]], "pixel_max": pixel_max, "lo": lo, "hi": hi},
                "layers": specs}
    return weights.from_arrays(manifest, arrays)


@pytest.mark.parametrize("lanes, channels", [(4, 2), (13, 3), (5, 1), (32, 8)],
                         ids=lambda v: str(v))
def test_synthetic_corners_match_golden(lanes, channels, rng):
    net = synthetic_network(rng)
    features, pixel_max = net.input.features, net.input.pixel_max
    corners = np.array([np.zeros(features), np.full(features, pixel_max),
                        np.arange(features) % (pixel_max + 1),
                        np.full(features, net.input.lo), np.full(features, net.input.hi)])
    images = np.vstack([corners, rng.integers(0, pixel_max + 1, (20, features))])
    images = images.astype(np.int64)
    want_logits, want_labels = net.forward(images)
    trace = net.trace(images)
    # The corners are reached: saturated counts, and tied logits decided by the first maximum.
    assert np.abs(trace[0]["d"]).max() == features
    ties = want_logits[:, 2] == want_logits[:, 3]
    assert ties.all() and (want_labels != 3).all()
    dut = NetworkEngine(net, lanes=lanes, channels=channels)
    logits, labels, _ = run_engine(dut, images, seed=int(rng.integers(1 << 31)), idle=0.2,
                                   stall=0.2)
    assert np.array_equal(logits, want_logits)
    assert np.array_equal(labels, want_labels)


# --- parameters and the registry --------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"lanes": 0, "channels": 2}, TypeError, "Lane count must be a positive integer, not 0"),
    ({"lanes": 2.0, "channels": 2}, TypeError, "Lane count must be a positive integer, not 2.0"),
    ({"lanes": True, "channels": 2}, TypeError,
     "Lane count must be a positive integer, not True"),
    ({"lanes": 8, "channels": -1}, TypeError,
     "Channel count must be a positive integer, not -1"),
    ({"lanes": 8, "channels": "2"}, TypeError,
     "Channel count must be a positive integer, not '2'"),
])
def test_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message) + r"\Z"):
        NetworkEngine(NETWORK, **kwargs)


def test_network_type_error():
    with pytest.raises(TypeError, match=re.escape(
            "Network must be a rtn_hw.weights.Network, not dict") + r"\Z"):
        NetworkEngine({}, lanes=8, channels=2)


def test_registry_builds_and_rejects(tmp_path):
    built = UNITS["network_engine"].build({"lanes": "16", "channels": "4"})
    assert isinstance(built.component, NetworkEngine)
    assert (built.component.lanes, built.component.channels) == (16, 4)
    assert built.resolved["weights"] == "shipped"
    missing = tmp_path / "none.json"
    with pytest.raises(ParameterError, match=re.escape(
            f"network_engine: weights={missing}: {missing}: (file): cannot read: "
            f"No such file or directory") + r"\Z"):
        UNITS["network_engine"].build({"weights": str(missing)})
    with pytest.raises(ParameterError, match=re.escape(
            "network_engine: channels=0: Channel count must be a positive integer, not 0")):
        UNITS["network_engine"].build({"channels": "0"})
