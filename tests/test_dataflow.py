"""DataflowEngine against the integer golden network (`Network.forward`), bit for bit: the shipped
digits network fully unfolded with baked weights (II = 1), middle foldings with weights in
block RAM, in logic and mixed, lanes and channels that do not divide the layer widths, and the
smallest folding; a synthetic network for the corners (saturated counts, tied logits). One simulator per
configuration: the first images go back to back with the output always ready (the measured
latency and II must equal `latency` and `predicted_ii`), the rest with random input gaps and
output backpressure. All test images per configuration behind `slow`."""

import time

import numpy as np
import pytest
from helpers import assert_rejects
from test_engine import synthetic_network

from rtn_hw import weights
from rtn_hw.gateware.dataflow import (DataflowEngine, Folding, buffered, fifo_depths, latency,
                                      parse_foldings, predicted_ii, smallest, stage_latency,
                                      unfolded)
from rtn_hw.gateware.simulate import run_stream

NETWORK = weights.load()
IMAGES, LABELS = weights.load_digits_test()


def run_dataflow(dut, images, *, seed, steady, idle=0.3, stall=0.3):
    """(logits (B, classes), classes (B,), StreamRun) of `images` through one simulator."""
    started = time.perf_counter()
    run = run_stream(dut, [[int(p) for p in image] for image in images], seed=seed, idle=idle,
                     stall=stall, steady=steady,
                     timeout=4 * (dut.latency + 4 * len(dut.foldings) * dut.ii) + 200)
    print(f"{len(images)} images, {run.cycles} cycles, {time.perf_counter() - started:.1f} s")
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    labels = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return logits, labels, run


def check_against_golden(network, foldings, images, seed, steady, buffers="fifo"):
    dut = DataflowEngine(network, foldings, buffers)
    logits, labels, run = run_dataflow(dut, images, seed=seed, steady=steady)
    want_logits, want_labels = network.forward(images)
    assert np.array_equal(logits, want_logits)
    assert np.array_equal(labels, want_labels)
    # The first image crosses an empty engine; later ones may wait in FIFOs, never less.
    assert run.latencies[0] == dut.latency == latency(network, foldings, buffers)
    assert min(run.latencies) >= dut.latency
    # Back to back with the output always ready: one result every II cycles from the first.
    assert np.diff(run.out_cycles[:steady]).tolist() == [dut.ii] * (steady - 1)
    return dut, run


# --- the shipped network ----------------------------------------------------------------------

# (foldings, images in `make test`, of which back to back, buffers). The simulator runs a few
# thousand cycles per second here, so the folded designs see fewer images in `make test`.
CONFIGS = {
    "unfolded-baked": ("unfolded", 200, 60, "fifo"),                  # II = 1
    "middle-bram": ("64x16,32x16,128x2", 48, 16, "fifo"),             # II = 32 (layer 1)
    "mixed-logic-baked": ("64x8:logic,128x8:logic,128x10:baked", 48, 16, "fifo"),  # 16, 16, 1
    "ragged-bram-logic": ("24x5,40x3:logic,13x4", 12, 4, "fifo"),   # 3·26, 4·43, 10·3 → 172
    "smallest-bram": ("smallest", 2, 2, "fifo"),                      # II = 128·128 = 16,384
    # Hidden results in block RAM (the UP5K's): the UP5K foldings (II 512 and 1,024; fc1's
    # and fc2's constants read in two halves, at 4 and 8 chunks per group; fc3's in LUTs), two
    # chunks per group (the low half read at the first), words of 128 trits at II 1, and a
    # ragged folding where only fc1's channels (5) divide fc2's lanes (40).
    "up5k-buffers": ("8x1,16x1,2x1", 6, 3, "bram"),
    "ii512-buffers": ("16x1,32x1,3x1", 8, 4, "bram"),
    "ii256-buffers": ("32x1,64x1,6x1", 12, 6, "bram"),
    "unfolded-buffers": ("unfolded", 40, 20, "bram"),
    "ragged-buffers": ("24x5,40x3:logic,13x4", 12, 4, "bram"),
}


def _config_params(slow):
    params = []
    for name, (text, count, steady, buffers) in CONFIGS.items():
        if slow:
            # Every test image; the smallest folding's 16,384 cycles per image allow 12.
            count, steady = (12, 4) if text == "smallest" else (len(IMAGES), 100)
        params.append(pytest.param(text, count, steady, buffers, id=name,
                                   marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("text, count, steady, buffers", _config_params(slow=False))
def test_digits_match_golden(text, count, steady, buffers, rng):
    images = IMAGES[np.sort(rng.choice(len(IMAGES), count, replace=False))]
    check_against_golden(NETWORK, parse_foldings(text, NETWORK), images,
                         int(rng.integers(1 << 31)), steady, buffers)


@pytest.mark.parametrize("text, count, steady, buffers", _config_params(slow=True))
def test_digits_all_images_match_golden(text, count, steady, buffers, rng):
    check_against_golden(NETWORK, parse_foldings(text, NETWORK), IMAGES[:count],
                         int(rng.integers(1 << 31)), steady, buffers)


def test_ii_and_latency_formulas():
    """II = max_l ⌈N_l/L_l⌉·⌈P_l/C_l⌉; a stage's latency is G·K + 1 (chunk register) + 1 (weight
    word register, memories) + the core (k register layers + 1: k = 2 at 32 and 64 lanes, 3 at
    128) + 1 (accumulator) + 1 (constants' register, G > 1) + 2 (PostProcess) + 1 (result
    register; on the last layer the argmax instead, max(1, ⌈log2 C⌉) + 1) + 1 (FIFO)."""
    middle = parse_foldings("64x16,32x16,128x2", NETWORK)
    assert predicted_ii(NETWORK, middle) == max(1 * 8, 4 * 8, 1 * 5) == 32
    fc1, fc2, fc3 = NETWORK.layers
    assert stage_latency(fc1, middle[0], False) == 8 + 1 + 1 + 3 + 1 + 1 + 2 + 1 + 1 == 19
    assert stage_latency(fc2, middle[1], False) == 32 + 1 + 1 + 3 + 1 + 1 + 2 + 1 + 1 == 43
    assert stage_latency(fc3, middle[2], True) == 5 + 1 + 1 + 4 + 1 + 1 + 2 + 2 + 1 == 18
    # The engine's stages hold their input (no chunk register: one cycle fewer from the first
    # issue), and the input handshake is at stage 0's last issue, K·G - 1 cycles after it.
    held = [stage_latency(layer, f, k == 2, hold=True)
            for k, (layer, f) in enumerate(zip(NETWORK.layers, middle))]
    assert held == [18, 42, 17]
    assert latency(NETWORK, middle) == 18 + 42 + 17 - (8 - 1) == 70
    assert predicted_ii(NETWORK, unfolded(NETWORK)) == 1
    assert predicted_ii(NETWORK, smallest(NETWORK)) == 128 * 128
    # A result holds its place from the take to the next stage's last issue: max(2, ⌈(latency
    # + next stage's II) / II⌉) places (the last stage's next II is 1: its output is read at
    # once); 2 where II is long, latency + 1 at II = 1.
    assert fifo_depths(NETWORK, middle) == (2, 2, 2)
    assert fifo_depths(NETWORK, parse_foldings("8x1,16x1,2x1", NETWORK)) == (
        -(-(1033 + 1024) // 1024), -(-(1034 + 640) // 1024), 2) == (3, 2, 2)
    # Block-RAM buffers: a hidden stage writes each group as it comes (no result register),
    # one cycle fewer; fc2's 16 channels divide fc3's 128 lanes, fc1's 16 fc2's 32.
    assert buffered(NETWORK, middle, "bram") == (True, True, False)
    assert stage_latency(fc1, middle[0], False, hold=True, buffered=True) == 17
    assert latency(NETWORK, middle, "bram") == 17 + 41 + 17 - (8 - 1) == 68
    assert buffered(NETWORK, parse_foldings("24x5,40x3,13x4", NETWORK), "bram") == (
        True, False, False)
    full = unfolded(NETWORK)
    assert fifo_depths(NETWORK, full) == tuple(
        stage_latency(layer, f, k == 2, hold=True) + 1
        for k, (layer, f) in enumerate(zip(NETWORK.layers, full)))


def test_properties():
    dut = DataflowEngine(NETWORK, parse_foldings("64x16,32x16,128x2", NETWORK))
    assert dut.network is NETWORK
    assert dut.foldings == (Folding(64, 16), Folding(32, 16), Folding(128, 2))
    assert (dut.features, dut.pixel_bits, dut.classes, dut.logit_width) == (64, 5, 10, 24)
    assert (dut.ii, dut.stage_iis, dut.latency) == (32, (8, 32, 5), 70)
    assert dut.i.payload.shape().size == 64 * 5
    assert dut.o.payload.shape().size == 10 * 24 + 4
    assert str(dut.foldings[0]) == "64x16:bram"


# --- a synthetic network for the corners ------------------------------------------------------

@pytest.mark.parametrize("foldings, buffers", [
    ((Folding(5, 2), Folding(4, 3, "logic"), Folding(7, 5, "baked")), "fifo"),
    ((Folding(13, 9, "baked"), Folding(2, 7), Folding(3, 1, "logic")), "fifo"),
    ((Folding(1, 1), Folding(1, 1), Folding(1, 1)), "fifo"),
    # fc1's 2 channels divide fc2's 4 lanes (block RAM), fc2's 3 do not divide 7 (a FIFO).
    ((Folding(5, 2), Folding(4, 3, "logic"), Folding(7, 5, "baked")), "bram"),
    ((Folding(1, 1), Folding(1, 1), Folding(1, 1)), "bram"),
], ids=["ragged-mixed", "baked-first", "smallest", "ragged-buffers", "smallest-buffers"])
def test_synthetic_corners_match_golden(foldings, buffers, rng):
    net = synthetic_network(rng)
    features, pixel_max = net.input.features, net.input.pixel_max
    corners = np.array([np.zeros(features), np.full(features, pixel_max),
                        np.arange(features) % (pixel_max + 1),
                        np.full(features, net.input.lo), np.full(features, net.input.hi)])
    images = np.vstack([corners, rng.integers(0, pixel_max + 1, (40, features))])
    images = images.astype(np.int64)
    want_logits, want_labels = net.forward(images)
    # The corners are reached: saturated counts, and tied logits decided by the first maximum.
    assert np.abs(net.trace(images)[0]["d"]).max() == features
    assert (want_logits[:, 2] == want_logits[:, 3]).all() and (want_labels != 3).all()
    check_against_golden(net, foldings, images, int(rng.integers(1 << 31)), steady=10,
                         buffers=buffers)


# --- parameters -------------------------------------------------------------------------------

@pytest.mark.parametrize("build, error, message", [
    (lambda: Folding(0, 1), TypeError, "Lane count must be a positive integer, not 0"),
    (lambda: Folding(True, 1), TypeError, "Lane count must be a positive integer, not True"),
    (lambda: Folding(8, "2"), TypeError, "Channel count must be a positive integer, not '2'"),
    (lambda: Folding(8, 2, "rom"), ValueError,
     "Storage must be one of 'bram', 'logic', 'baked', not 'rom'"),
    (lambda: DataflowEngine({}, []), TypeError,
     "Network must be a rtn_hw.weights.Network, not dict"),
    (lambda: DataflowEngine(NETWORK, Folding(8, 2)), TypeError,
     "Foldings must be a list of one Folding per layer, not "
     "Folding(lanes=8, channels=2, storage='bram')"),
    (lambda: DataflowEngine(NETWORK, [Folding(8, 2)] * 2), ValueError,
     "Foldings must give one Folding per layer (3), not 2"),
    (lambda: DataflowEngine(NETWORK, [Folding(8, 2), (8, 2), Folding(8, 2)]), TypeError,
     "Folding of layer 1 must be a Folding, not (8, 2)"),
    (lambda: DataflowEngine(NETWORK, [Folding(65, 2), Folding(8, 2), Folding(8, 2)]),
     ValueError, "Layer 0 (fc1, 64→128): lanes must be at most 64, not 65"),
    (lambda: DataflowEngine(NETWORK, [Folding(8, 2), Folding(8, 2), Folding(8, 11)]),
     ValueError, "Layer 2 (fc3, 128→10): channels must be at most 10, not 11"),
    (lambda: DataflowEngine(NETWORK, [Folding(64, 128, "baked"), Folding(64, 128, "baked"),
                                      Folding(8, 2)]),
     ValueError, "Layer 1 (fc2, 128→128): baked weights need lanes=128 and channels=128 "
                 "(one weight word), not lanes=64, channels=128"),
    (lambda: parse_foldings("64x8,64x", NETWORK), ValueError,
     "expected unfolded, smallest or LANESxCHANNELS[:STORAGE] per layer, not '64x'"),
    (lambda: parse_foldings("64x8:rom,64x8,10x10", NETWORK), ValueError,
     "Storage must be one of 'bram', 'logic', 'baked', not 'rom'"),
    (lambda: DataflowEngine(NETWORK, smallest(NETWORK), "spram"), ValueError,
     "Buffers must be one of 'fifo', 'bram', not 'spram'"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_parameter_errors(build, error, message):
    assert_rejects(error, message, build)


def test_parse_foldings():
    assert parse_foldings(" unfolded ", NETWORK) == unfolded(NETWORK) == (
        Folding(64, 128, "baked"), Folding(128, 128, "baked"), Folding(128, 10, "baked"))
    assert parse_foldings("smallest", NETWORK) == (Folding(1, 1),) * 3
    assert parse_foldings("64x8:logic, 32x4,10x10:bram", NETWORK) == (
        Folding(64, 8, "logic"), Folding(32, 4), Folding(10, 10))
