"""The dataflow engine's convolution stages (rtn_hw.gateware.conv) against the golden CNN: the
window generator against `ConvLayer.patches` (im2col of `pad_trits`) on small random shapes
(padding, stride 2, no padding, kernel = map, one column), the pool stage against
`pool_trits`, the shipped digits CNN end to end at four foldings and random CNNs (stride 2,
three input channels, negative γ) unfolded and ragged: every logit and label equals
`Network.forward`; the first images go back to back with the output always ready, so the
measured II and first latency must equal `predicted_ii` and `latency`; the rest go with
random input gaps and output backpressure. One simulator per configuration; every digits test
image and the MNIST CNN behind `slow`."""

import dataclasses
import time

import numpy as np
import pytest
from helpers import assert_rejects
from test_cnn import SHAPES as CNN_SHAPES
from test_cnn import random_cnn

from rtn_hw import weights
from rtn_hw.gateware.conv import ENGINE_GENERATOR, PoolStage, WindowGenerator, generator_steps
from rtn_hw.gateware.dataflow import (DataflowEngine, Folding, check_foldings, fifo_depths,
                                      latency, parse_foldings, predicted_ii, smallest, unfolded)
from rtn_hw.gateware.simulate import run_stream
from rtn_hw.model.conv import MaxPool, pad_trits, pool_trits
from rtn_hw.model.layers import im2col
from rtn_hw.model.network import Network

DIGITS_CNN = weights.load(weights.WEIGHTS_DIR / "rtn_digits_cnn.json")
DIGITS, DIGIT_LABELS = weights.load_digits_test()


def planes(trits):
    """A trit vector → the {nz, sg} payload (element k is bit k)."""
    trits = np.asarray(trits)
    return {"nz": sum(1 << k for k in np.flatnonzero(trits != 0)),
            "sg": sum(1 << k for k in np.flatnonzero(trits > 0))}


def trits_of(payload, n):
    nz, sg = payload["nz"], payload["sg"]
    return np.array([(1 if sg >> k & 1 else -1) if nz >> k & 1 else 0 for k in range(n)],
                    dtype=np.int8)


def positions(maps):
    """Trits (B, C, H, W) → payloads of the positions in raster order, image after image."""
    b, c, h, w = maps.shape
    return [planes(maps[i, :, y, x]) for i in range(b) for y in range(h) for x in range(w)]


# --- the window generator and the pool stage -------------------------------------------------

# (channels, size, kernel, stride, padding)
WINDOWS = {
    "3x3-pad1": (2, (5, 6), (3, 3), (1, 1), (1, 1)),
    "2x2-stride2-nopad": (3, (5, 5), (2, 2), (2, 2), (0, 0)),
    "3x2-stride2x1-pad1x0": (2, (7, 6), (3, 2), (2, 1), (1, 0)),
    "kernel-is-map": (2, (3, 3), (3, 3), (1, 1), (0, 0)),
    "1x1": (3, (3, 4), (1, 1), (1, 1), (0, 0)),
    "one-column": (2, (4, 1), (2, 1), (1, 1), (1, 0)),
    "3x3-pad2-stride3": (1, (6, 7), (3, 3), (3, 3), (2, 2)),
}


# The engine's generator options (ENGINE_GENERATOR: the line buffer read every cycle, a held
# step's column kept in a register, `real` a register) and the defaults; output backpressure
# of 30 % holds stage B often.
GENERATORS = {"default": {}, "engine": ENGINE_GENERATOR}


@pytest.mark.parametrize("options", GENERATORS.values(), ids=GENERATORS.keys())
@pytest.mark.parametrize("channels, size, kernel, stride, padding", WINDOWS.values(),
                         ids=WINDOWS.keys())
def test_window_generator_matches_patches(channels, size, kernel, stride, padding, options,
                                          rng):
    images = 4
    maps = rng.integers(-1, 2, (images, channels) + size).astype(np.int8)
    want = im2col(pad_trits(maps, padding), kernel, stride)        # (B, Ho, Wo, C·kh·kw)
    n = want.shape[-1]
    dut = WindowGenerator(channels, size, kernel, stride, padding, **options)
    run = run_stream(dut, positions(maps), seed=int(rng.integers(1 << 31)), idle=0.3,
                     stall=0.3, steady=2 * size[0] * size[1],
                     expected_outputs=want[0, ..., 0].size * images,
                     steady_outputs=2 * want[0, ..., 0].size)
    got = np.array([trits_of(out, n) for out in run.outputs]).reshape(want.shape)
    assert np.array_equal(got, want)
    # Back to back, a step a cycle: image 1's windows come `steps` cycles after image 0's.
    per_image = want[0, ..., 0].size
    assert run.out_cycles[per_image] - run.out_cycles[0] == dut.steps == \
        generator_steps(size, kernel, stride, padding)


POOLS = {
    "2x2-stride2": (3, (6, 6), (2, 2), (2, 2)),
    "3x3-stride2": (2, (5, 7), (3, 3), (2, 2)),
    "2x2-stride1": (2, (4, 4), (2, 2), (1, 1)),
}


@pytest.mark.parametrize("options", GENERATORS.values(), ids=GENERATORS.keys())
@pytest.mark.parametrize("channels, size, kernel, stride", POOLS.values(), ids=POOLS.keys())
def test_pool_stage_matches_pool_trits(channels, size, kernel, stride, options, rng):
    maps = rng.integers(-1, 2, (5, channels) + size).astype(np.int8)
    maps[0] = -1            # every window all -1: the maximum of -1s
    maps[1, :, ::2] = 0     # zeros among -1s and +1s
    want = pool_trits(maps, kernel, stride)
    dut = PoolStage(MaxPool("pool", (channels,) + size, kernel, stride), generator=options)
    run = run_stream(dut, positions(maps), seed=int(rng.integers(1 << 31)), idle=0.3,
                     stall=0.3, expected_outputs=want.size // channels)
    got = np.array([trits_of(out, channels) for out in run.outputs])
    assert np.array_equal(got, want.transpose(0, 2, 3, 1).reshape(-1, channels))


# --- the CNN engine against the golden network ------------------------------------------------

def run_cnn(network, foldings, images, *, seed, steady, idle=0.3, stall=0.3):
    """(dut, logits, labels, StreamRun) of `images` through one simulator, pixels in raster
    order one per handshake; the first `steady` images back to back with o.ready high."""
    dut = DataflowEngine(network, foldings)
    shape = network.layers[0].in_shape
    pixels = images.reshape((len(images),) + tuple(shape)).transpose(0, 2, 3, 1)
    inputs = [[int(p) for p in position] for position in pixels.reshape(-1, shape[0])]
    area = shape[1] * shape[2]
    started = time.perf_counter()
    run = run_stream(dut, inputs, seed=seed, idle=idle, stall=stall, steady=steady * area,
                     steady_outputs=steady, expected_outputs=len(images),
                     timeout=4 * (dut.latency + 4 * len(network.layers) * dut.ii) + 200)
    print(f"{len(images)} images, {run.cycles} cycles, {time.perf_counter() - started:.1f} s")
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    labels = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return dut, logits, labels, run


def check_cnn(network, foldings, images, seed, steady):
    dut, logits, labels, run = run_cnn(network, foldings, images, seed=seed, steady=steady)
    want_logits, want_labels = network.forward(images)
    assert np.array_equal(logits, want_logits)
    assert np.array_equal(labels, want_labels)
    # Back to back with the output always ready: one result every II cycles.
    assert np.diff(run.out_cycles[:steady]).tolist() == [dut.ii] * (steady - 1)
    # From the first image's first pixel to its result, the engine empty.
    first = run.out_cycles[0] - run.in_cycles[0]
    print(f"latency: measured {first}, predicted {dut.latency}")
    assert first == dut.latency
    return dut, run


# (foldings, images in `make test`, of which back to back)
DIGITS_CONFIGS = {
    # II 81: the first window generator's (8 + 1)² steps (right and bottom padding).
    "unfolded-baked": ("unfolded", 12, 6),
    # II 256: conv1 at 4 groups of 4 channels, 64 windows each.
    "folded-bram-logic": ("9x4,48x8,32x5:logic", 6, 3),
    # II 576: conv2 (16·9·4 cycles), fed by a pool that emits on every other row.
    "conv2-bound": ("9x16:baked,16x8,128x10:baked", 4, 3),
    # II 160: the linear layer (32·5 cycles), after the flatten.
    "linear-bound": ("9x16:baked,48x16,4x2", 5, 3),
    # II 96 (conv2): the linear layer's 20 lanes choose their chunk in spans of 8, 8 and 4
    # (conv.CHUNK_SPAN), the last of its 7 chunks 8 trits and 12 of padding.
    "chunk-spans": ("9x16:baked,48x16,20x5", 4, 3),
}


@pytest.mark.parametrize("text, count, steady", DIGITS_CONFIGS.values(),
                         ids=DIGITS_CONFIGS.keys())
def test_digits_cnn_matches_golden(text, count, steady, rng):
    images = DIGITS[np.sort(rng.choice(len(DIGITS), count, replace=False))]
    check_cnn(DIGITS_CNN, parse_foldings(text, DIGITS_CNN), images,
              int(rng.integers(1 << 31)), steady)


@pytest.mark.slow
def test_digits_cnn_all_images_match_golden(rng):
    """Every test image, unfolded (the simulator runs about 100 cycles a second here: 359
    images × 81 cycles take minutes; the folded designs' II of 160 to 576 would take hours)."""
    check_cnn(DIGITS_CNN, unfolded(DIGITS_CNN), DIGITS, int(rng.integers(1 << 31)), 12)


def ragged(network):
    """Lanes and channels that divide nothing, weights in block RAM and logic by turns."""
    return tuple(None if layer.kind == "maxpool" else
                 Folding(max(1, (layer.in_features + 1) // 3),
                         max(1, (layer.out_features + 1) // 2), ("bram", "logic")[k % 2])
                 for k, layer in enumerate(network.layers))


@pytest.mark.parametrize("shape", ["odd", "multichannel"])
@pytest.mark.parametrize("make", [unfolded, ragged], ids=["unfolded", "ragged"])
def test_synthetic_cnns_match_golden(shape, make, rng):
    """Random CNNs of tests/test_cnn.py: stride 2 with padding, 2×2 without, an overlapping
    pool, a hidden linear layer after the flatten (odd, 7×9); three input channels (three
    pixels per handshake), a 1×1 and a 5×5 convolution with padding 2, a 3×3 pool
    (multichannel); random BatchNorm signs (negative γ)."""
    input_shape, convs, hidden = CNN_SHAPES[shape]
    network, _, _ = random_cnn(rng, input_shape, convs, hidden)
    images = rng.integers(0, network.input.pixel_max + 1, (5,) + network.input.shape)
    images = images.reshape(5, -1)
    check_cnn(network, make(network), images, int(rng.integers(1 << 31)), 3)


# II 841 both: conv2 streamed from a logic ROM (4 words), or baked whole (the routed one).
MNIST_FOLDINGS = ("9x16:baked,144x8,64x4,128x10:baked",
                  "9x16:baked,144x32:baked,64x4,128x10:baked")


@pytest.mark.slow
@pytest.mark.parametrize("text", MNIST_FOLDINGS)
def test_mnist_cnn_matches_golden(text, rng):
    network = weights.load(weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json")
    images, _ = weights.load_mnist5k_test()
    images = images[np.sort(rng.choice(len(images), 4, replace=False))]
    check_cnn(network, parse_foldings(text, network), images, int(rng.integers(1 << 31)), 3)


# --- schedule and parameters ------------------------------------------------------------------

def test_ii_formulas():
    """A conv stage takes max(steps, H_out·W_out·K·G) cycles per image, a pool its steps;
    steps = (rows walked)·(columns walked) of the padded map."""
    full = unfolded(DIGITS_CNN)
    assert full == (Folding(9, 16, "baked"), None, Folding(144, 32, "baked"), None,
                    Folding(128, 10, "baked"))
    assert generator_steps((8, 8), (3, 3), (1, 1), (1, 1)) == 9 * 9
    assert generator_steps((8, 8), (2, 2), (2, 2), (0, 0)) == 64
    assert generator_steps((4, 4), (3, 3), (1, 1), (1, 1)) == 25
    dut = DataflowEngine(DIGITS_CNN, full)
    assert dut.stage_iis == (81, 64, 25, 16, 1) and dut.ii == 81
    folded = parse_foldings("9x4,48x8,32x5:logic", DIGITS_CNN)
    assert folded[1] is None and folded[3] is None
    # conv1 64·1·4, conv2 16·3·4, fc1 4·2.
    assert DataflowEngine(DIGITS_CNN, folded).stage_iis == (256, 64, 192, 16, 8)
    assert predicted_ii(DIGITS_CNN, folded) == 256
    assert predicted_ii(DIGITS_CNN, smallest(DIGITS_CNN)) == max(64 * 9 * 16, 16 * 144 * 32,
                                                                 128 * 10)
    assert len(fifo_depths(DIGITS_CNN, full)) == 5 and fifo_depths(DIGITS_CNN, full)[1] is None
    assert latency(DIGITS_CNN, full) > 0
    assert dut.pixels_per_handshake == 1 and dut.i.payload.shape().size == 5


def _with_layer(network, index, **changes):
    layers = list(network.layers)
    layers[index] = dataclasses.replace(layers[index], **changes)
    return Network(network.input, layers, network.manifest, network.source)


@pytest.mark.parametrize("build, error, message", [
    (lambda: WindowGenerator(2, (2, 2), (3, 3), name="conv9"), ValueError,
     "conv9: kernel 3x3 does not fit the 2x2 input"),
    (lambda: WindowGenerator(2, (4, 4), (3, 3), padding=(3, 0), name="conv9"), ValueError,
     "conv9: padding must be 0 .. kernel - 1 on each axis (3x3), not 3x0"),
    (lambda: WindowGenerator(0, (4, 4), (3, 3)), TypeError,
     "window: channel count must be a positive integer, not 0"),
    (lambda: DataflowEngine(_with_layer(DIGITS_CNN, 3, kernel=(5, 5)),
                            unfolded(DIGITS_CNN)), ValueError,
     "Layer 3 (pool2): kernel 5x5 does not fit the 4x4 input"),
    (lambda: DataflowEngine(_with_layer(DIGITS_CNN, 2, in_shape=(16, 5, 5)),
                            unfolded(DIGITS_CNN)), ValueError,
     "Layer 2 (conv2): input shape (16, 5, 5) does not match the previous output (16, 4, 4)"),
    (lambda: check_foldings(DIGITS_CNN, [Folding(9, 16)] * 5), TypeError,
     "Folding of layer 1 (pool1, maxpool) must be None, not "
     "Folding(lanes=9, channels=16, storage='bram')"),
    (lambda: parse_foldings("9x4,48x8", DIGITS_CNN), ValueError,
     "Foldings must give one Folding per conv or linear layer (3; max-pool layers take "
     "none), not 2"),
    (lambda: parse_foldings("10x4,48x8,32x5", DIGITS_CNN), ValueError,
     "Layer 0 (conv1, 9→16): lanes must be at most 9, not 10"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_parameter_errors(build, error, message):
    assert_rejects(error, message, build)


def test_cli_exports_the_cnn_engine(tmp_path, capsys):
    """`rtn-hw verilog dataflow_engine` builds a CNN from its manifest: one pixel a handshake,
    the sidecar's latency the CNN's; a folding that does not fit is one line and exit 2."""
    import json

    from rtn_hw import cli
    manifest = str(weights.WEIGHTS_DIR / "rtn_digits_cnn.json")
    out = tmp_path / "cnn.v"
    assert cli.main(["verilog", "dataflow_engine", "-p", f"weights={manifest}", "-p",
                     "folding=9x4,48x8,32x5:logic", "-o", str(out)]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    # The schedule model's latency (checked against simulation in the tests above).
    assert sidecar["latency"] == latency(DIGITS_CNN, parse_foldings("9x4,48x8,32x5:logic",
                                                                     DIGITS_CNN))
    assert {p["name"]: p["width"] for p in sidecar["ports"]}["i__payload"] == 5
    assert "module dataflow_engine" in out.read_text()
    capsys.readouterr()
    assert cli.main(["verilog", "dataflow_engine", "-p", f"weights={manifest}", "-p",
                     "folding=9x4,48x8", "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"rtn-hw: error: dataflow_engine: weights={manifest} folding=9x4,48x8: Foldings must "
        f"give one Folding per conv or linear layer (3; max-pool layers take none), not 2\n")
