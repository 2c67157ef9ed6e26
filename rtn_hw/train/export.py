"""Export a trained RTN MLP to the weights format (rtn_hw.weights), with its fixed-point
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


def _np(tensor):
    return tensor.detach().cpu().double().numpy()


def network_arrays(net):
    """(layer specs for the manifest, arrays) of a trained quantized RtnMLP."""
    if not net.variant.quantized:
        raise ValueError("Only a ternary variant can be exported, not the float one")
    specs, arrays = [], {}
    act_q = [net.input_q] + [act.q for act in net.acts]
    last = len(net.fcs) - 1
    for i, fc in enumerate(net.fcs):
        name = f"fc{i + 1}"
        t_w = _np(fc.trits()).astype(np.int8)
        n = t_w.shape[1]
        s_w = t_w.sum(axis=1, dtype=np.int64)
        alpha_w, beta_w = _np(fc.q.alpha), _np(fc.q.beta)
        alpha_a, beta_a = float(_np(act_q[i].alpha)), float(_np(act_q[i].beta))
        k_fmt, out_fmt = choose_formats(alpha_w, beta_w, alpha_a, beta_a, s_w, n)
        bn = None
        if i < last:
            b = net.bns[i]
            bn = (_np(b.weight), _np(b.bias), _np(b.running_mean), _np(b.running_var), b.eps)
        spec, layer_arrays = weights.layer_record(name, t_w, alpha_w, beta_w, alpha_a, beta_a,
                                                  k_fmt, out_fmt, bn)
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
        "error_bounds": [golden_layer.error_bound() for golden_layer in golden.layers],
        **(extra or {}),
    }
    if dataset.name == "digits":
        test_file = out_json.parent / weights.DIGITS_TEST.name
        blob = weights.npz_bytes({"images": dataset.test_images.astype(np.uint8),
                                  "labels": dataset.test_labels.astype(np.uint8)})
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
