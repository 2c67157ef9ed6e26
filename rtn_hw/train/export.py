"""Export a trained RTN MLP or CNN to the weights format (rtn_hw.weights), with its fixed-point
formats chosen by `rtn_hw.model.fixed.choose_formats` (18-bit K constants, outputs of at most
24 bits), and evaluate the integer golden network on the test split.

BatchNorm with a negative γ [choice]: γ is not constrained in training; at export the channel's
K codes are negated (the hardware then computes -y, exactly, since K rounding is symmetric)
and its thresholds are folded with |γ| and -μ, so the encoder still computes T(BN(y)).
"""

import hashlib
from pathlib import Path

import numpy as np
import torch

from .. import model, weights
from ..files import write_atomic
# The format rule lives in the golden model, so a QONNX import chooses the same without torch.
from ..model.fixed import K_WIDTH, OUT_WIDTH, choose_formats  # noqa: F401


# The test splits shipped beside the weights: file name, and whether deflated (MNIST-5k's
# 1,000 images are 784 kB raw, about 1/5 of that deflated; digits stays byte-identical).
TEST_FILES = {"digits": (weights.DIGITS_TEST.name, False),
              "mnist5k": (weights.MNIST5K_TEST.name, True)}


def _np(tensor):
    return tensor.detach().cpu().double().numpy()


def _bn(b):
    return _np(b.weight), _np(b.bias), _np(b.running_mean), _np(b.running_var), b.eps


def _rtn_params(layer, act_q):
    """α_w, β_w of `layer`, α_a, β_a of its input quantizer `act_q`, and (k_fmt, out_fmt)."""
    t_w = _np(layer.trits()).astype(np.int8)
    alpha_w, beta_w = _np(layer.q.alpha), _np(layer.q.beta)
    alpha_a, beta_a = float(_np(act_q.alpha)), float(_np(act_q.beta))
    formats = choose_formats(alpha_w, beta_w, alpha_a, beta_a,
                             t_w.sum(axis=1, dtype=np.int64), t_w.shape[1])
    return (alpha_w, beta_w, alpha_a, beta_a) + formats


def conv_arrays(net):
    """(specs, arrays, the quantizer of the flattened output) of an RtnCNN's convolutions and
    2×2 max pools (format version 2)."""
    specs, arrays = [], {}
    act_q, shape = net.input_q, net.shape
    for i, (conv, bn) in enumerate(zip(net.convs, net.conv_bns)):
        t_w = _np(conv.kernel_trits()).astype(np.int8)
        pad = (conv.padding, conv.padding)
        spec, layer_arrays = weights.conv_record(f"conv{i + 1}", shape, t_w, (1, 1), pad,
                                                 *_rtn_params(conv, act_q), _bn(bn))
        shape = (t_w.shape[0],) + model.conv.conv_out_shape(shape, t_w.shape[2:], (1, 1), pad)
        pool, _ = weights.pool_record(f"pool{i + 1}", shape, (2, 2), (2, 2))
        shape = (t_w.shape[0], shape[1] // 2, shape[2] // 2)
        specs += [spec, pool]
        arrays.update(layer_arrays)
        act_q = net.conv_acts[i].q
    return specs, arrays, act_q


def network_arrays(net):
    """(layer specs for the manifest, arrays) of a trained quantized RtnMLP or RtnCNN."""
    if not net.variant.quantized:
        raise ValueError("Only a ternary variant can be exported, not the float one")
    specs, arrays, first_q = conv_arrays(net) if hasattr(net, "convs") else ([], {},
                                                                             net.input_q)
    act_q = [first_q] + [act.q for act in net.acts]
    last = len(net.fcs) - 1
    for i, fc in enumerate(net.fcs):
        t_w = _np(fc.trits()).astype(np.int8)
        spec, layer_arrays = weights.layer_record(f"fc{i + 1}", t_w, *_rtn_params(fc, act_q[i]),
                                                  _bn(net.bns[i]) if i < last else None)
        arrays.update(layer_arrays)
        specs.append(spec)
    return specs, arrays


def manifest_for(dataset, specs, arrays_file):
    return weights.new_manifest(dataset.shape, dataset.pixel_max, specs, arrays_file)


def export(result, dataset, out_json, float_accuracy, extra=None):
    """Write the manifest `out_json` and its .npz (and, for digits, the test split file)
    atomically; returns the validated Network loaded back from disk."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    net = result.model
    specs, arrays = network_arrays(net)
    manifest = manifest_for(dataset, specs, out_json.with_suffix(".npz").name)
    golden = weights.from_arrays(manifest, arrays, out_json, out_json.with_suffix(".npz"))
    correct, total = golden.accuracy(dataset.test_images, dataset.test_labels)
    manifest["training"] = {
        "seed": result.seed,
        "variant": result.variant,
        "epochs": result.epochs,
        "sizes": list(net.sizes),
        **({"channels": list(net.channels), "kernel": net.kernel} if hasattr(net, "convs")
           else {}),
        "dataset": {"name": dataset.name, "split": dataset.split,
                    "train_size": int(len(dataset.train_labels)), "test_size": total},
        "accuracy": {
            "float": float_accuracy,
            "train_torch": result.train_accuracy,
            "torch": result.test_accuracy,
            "golden": correct / total,
            "golden_correct": correct,
            "test_size": total,
        },
        "train_seconds": round(result.seconds, 1),
        "torch_version": torch.__version__,
        "error_bounds": [None if golden_layer.kind == "maxpool" else golden_layer.error_bound()
                         for golden_layer in golden.layers],
        **(extra or {}),
    }
    if dataset.name in TEST_FILES:
        name, compress = TEST_FILES[dataset.name]
        test_file = out_json.parent / name
        blob = weights.npz_bytes({"images": dataset.test_images.astype(np.uint8),
                                  "labels": dataset.test_labels.astype(np.uint8)}, compress)
        write_atomic(test_file, blob)
        manifest["training"]["dataset"].update(
            {"test_file": test_file.name, "test_sha256": hashlib.sha256(blob).hexdigest()})
    weights.save(out_json, manifest, arrays)
    loaded = weights.load(out_json)
    if loaded.accuracy(dataset.test_images, dataset.test_labels) != (correct, total):
        raise RuntimeError("The exported network does not reproduce its own accuracy")
    return loaded


def golden(result, dataset):
    """The integer golden network of a trained ternary model, in memory (no files)."""
    specs, arrays = network_arrays(result.model)
    return weights.from_arrays(manifest_for(dataset, specs, "memory.npz"), arrays)
