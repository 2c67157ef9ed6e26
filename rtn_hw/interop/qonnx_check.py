"""The bit-exact check: the golden integer network against qonnx's `execute_onnx` on images.

`consistent` in the report is true when every difference below is explained by the bounds
(and the engine, when simulated, equals the golden network bit for bit); the commands exit 1
otherwise.

For a QONNX graph and the golden network made from it (or exported to it), run both on the
same images and compare:

- classes: argmax of both (goal: 100 % agreement);
- hidden trits, per layer: the graph's Quant outputs decoded back to trits against the golden
  network's encoder outputs (a float32 pre-activation within rounding of a threshold can fall
  on the other side; the golden network is the hardware's); for a convolution, every output
  position's trit (or, where the graph pools before its Quant, every pooled one);
- logits, on the images whose hidden trits all agree: |graph logit - golden logit| against the
  bound = the fixed-point bound of the last layer (`model.error_bound`) + a float32 allowance
  γ_(n+8)·Σ|â_i·ŵ_i| for the graph's own arithmetic (n products summed in float32, plus the
  dequantization and elementwise steps), γ_k = k·u/(1 - k·u), u = 2^-24.
"""

import numpy as np

from .. import weights
from ..model.conv import pool_trits
from . import QonnxError

FLOAT32_STEPS = 8          # float32 roundings allowed beyond the n of a dot product
UNIT_ROUNDOFF = 2.0 ** -24
NEAR_CHUNK = 100           # images per chunk of the near-threshold test


def test_split(network):
    """(name, images, labels) of the shipped test split the network's input takes (the 8x8
    digits: 64 pixels 0..16; MNIST-5k: 784 pixels 0..255), or None."""
    size = (network.input.features, network.input.pixel_max)
    if size == (64, 16):
        return ("digits",) + weights.load_digits_test()
    if size == (784, 255):
        return ("mnist5k",) + weights.load_mnist5k_test()
    return None


def run_graph(wrapper, images):
    """Every tensor of the graph (execute_onnx's full context) for `images` (B, features)
    integer pixels, reshaped to the graph input's shape (batch B), as one batch."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes
    batch = len(images)
    try:
        model = wrapper.transform(ChangeBatchSize(batch)).transform(InferShapes())
        name = model.graph.input[0].name
        shape = model.get_tensor_shape(name)
        pixels = np.asarray(images, dtype=np.float32).reshape([batch] + list(shape[1:]))
        context = execute_onnx(model, {name: pixels}, return_full_exec_context=True)
    except Exception as error:  # onnxruntime and qonnx raise many types
        raise QonnxError(f"execute_onnx failed ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None
    return context, model.graph.output[0].name


def compare(wrapper, network, info, images, labels=None, engine=None):
    """The comparison report (a dict) of the graph in `wrapper` and the golden `network`;
    `info` is the importer's (its per-layer activation tensors and the logits' transform).
    `engine(images)`, when given, simulates the hardware on `images` (the first of them, if it
    runs fewer) and returns (integer logits, classes): they are compared too, under
    "engine" (an MLP or a CNN: `rtn-hw import --engine N` passes make demo's engine, the
    dataflow engine for a CNN)."""
    images = np.asarray(images)
    context, output = run_graph(wrapper, images)
    trace = network.trace(images)
    scale = info["logits_transform"]["scale"]
    offset = info["logits_transform"]["offset"]
    graph_logits = np.asarray(context[output], dtype=np.float64)
    graph_classes = np.argmax(graph_logits, axis=1)
    last = network.layers[-1]
    golden_logits = trace[-1]["y"] * last.out_fmt.lsb
    golden_classes = np.argmax(trace[-1]["y"], axis=1)

    batch = len(images)
    same_trits = np.ones(batch, dtype=bool)
    layers = []
    near = None                    # the last convolution's near-threshold mask (B, P, H, W)
    for step, layer, layer_info in zip(trace, network.layers, info["layers"]):
        entry = {key: layer_info[key] for key in ("name", "node", "k_fmt", "out_fmt",
                                                  "error_bound") if key in layer_info}
        if layer.kind == "maxpool":
            near = None if near is None else pool_trits(near.astype(np.int8), layer.kernel,
                                                        layer.stride).astype(bool)
        elif layer.hidden:
            near = _near_threshold(step, layer)
        act = layer_info.get("activation")
        if act is not None:
            value = np.asarray(context[act["tensor"]], dtype=np.float64)
            trits = np.round(value / act["scale"] + act["zero_point"]).astype(np.int8)
            equal = (trits.reshape(step["outputs"].shape) == step["outputs"]).reshape(batch, -1)
            entry["trit_agreement"] = float(equal.mean())
            entry["trits_differing"] = int((~equal).sum())
            # Where this layer's inputs agreed, a trit may differ only if the golden
            # pre-activation lies within the fixed-point bound (+ one threshold LSB and the
            # float32 allowance) of a threshold (after pooling: anywhere in its window).
            entry["differing_trits_near_threshold"] = bool(
                near.reshape(batch, -1)[same_trits[:, None] & ~equal].all())
            same_trits &= equal.all(axis=1)
        layers.append(entry)

    # Σ|â_i·ŵ_i| of the last layer, per image and class, for the float32 allowance.
    steps = last.in_features + FLOAT32_STEPS
    gamma = steps * UNIT_ROUNDOFF / (1 - steps * UNIT_ROUNDOFF)
    float_bound = gamma * _abs_products(last, trace[-1]["inputs"]) + 4 * UNIT_ROUNDOFF * (
        np.abs(graph_logits) + abs(offset)) / scale
    fixed_bound = last.error_bound()
    error = np.abs((graph_logits - offset) / scale - golden_logits)
    compared = same_trits
    within = bool((error[compared] <= fixed_bound + float_bound[compared]).all())
    # A class may differ only at a near-tie of the golden logits (or after a hidden trit
    # differed): the two classes' golden logits within twice the logit bound.
    rows = np.arange(batch)
    margin = np.abs(golden_logits[rows, golden_classes] - golden_logits[rows, graph_classes])
    unexplained = (graph_classes != golden_classes) & same_trits & (
        margin > 2 * (fixed_bound + float_bound.max(axis=1)))
    report = {
        "images": int(batch),
        "class_agreement": float((graph_classes == golden_classes).mean()),
        "classes_differing": np.flatnonzero(graph_classes != golden_classes).tolist(),
        "classes_differing_beyond_a_tie": np.flatnonzero(unexplained).tolist(),
        "hidden_trits_agree_on": int(same_trits.sum()),
        "layers": layers,
        "logits": {
            "compared_on": int(compared.sum()),
            "max_error": float(error[compared].max(initial=0.0)),
            "fixed_point_bound": fixed_bound,
            "float32_bound_max": float(float_bound.max(initial=0.0)),
            "within_bound": within,
            "max_error_all_images": float(error.max(initial=0.0)),
            "transform": {"scale": scale, "offset": offset},
        },
    }
    # Everything the fixed-point and float32 bounds explain: the command's exit status.
    report["consistent"] = bool(
        within and not unexplained.any()
        and all(layer.get("differing_trits_near_threshold", True) for layer in layers))
    if engine is not None:
        hw_logits, hw_classes = (np.asarray(v) for v in engine(images))
        count = len(hw_classes)
        same = (hw_logits == trace[-1]["y"][:count]).all(axis=1) \
            & (hw_classes == golden_classes[:count])
        report["engine"] = {"images": count, "simulator": getattr(engine, "description", None),
                            "golden_agreement": float(same.mean()),
                            "class_agreement_with_graph":
                                float((hw_classes == graph_classes[:count]).mean())}
        report["consistent"] &= bool(same.all())
    if labels is not None:
        labels = np.asarray(labels)
        report["accuracy"] = {"golden": float((golden_classes == labels).mean()),
                              "qonnx": float((graph_classes == labels).mean()),
                              "golden_correct": int((golden_classes == labels).sum())}
    return report


def _abs_products(layer, inputs):
    """Σ_i |â_i·ŵ_i| per output in the layout of the layer's y: (B, P) for a fully connected
    layer, (B, P, Ho, Wo) for a convolution (its patches, padded with trit 0 = β_a)."""
    t_w = layer.dense.t_w if layer.kind == "conv" else layer.t_w          # (P, n)
    w_hat = np.abs(layer.alpha_w[:, None] * t_w + layer.beta_w[:, None])
    if layer.kind != "conv":
        return np.abs(layer.alpha_a * inputs + layer.beta_a) @ w_hat.T
    patches = layer.patches(inputs)                       # (B, Ho, Wo, n)
    a_hat = np.abs(layer.alpha_a * patches.astype(np.float64) + layer.beta_a)
    return (a_hat @ w_hat.T).transpose(0, 3, 1, 2)


def _near_threshold(step, layer):
    """The golden pre-activation is within the layer's error bound, one threshold LSB and a
    float32 allowance of its lo or hi threshold: (B, P), or (B, P, Ho, Wo) for a
    convolution (thresholds per channel)."""
    lsb = layer.out_fmt.lsb
    steps = layer.in_features + FLOAT32_STEPS
    gamma = steps * UNIT_ROUNDOFF / (1 - steps * UNIT_ROUNDOFF)
    lo, hi = layer.lo, layer.hi
    if step["y"].ndim == 4:
        lo, hi = lo[:, None, None], hi[:, None, None]
    near = np.empty(step["y"].shape, dtype=bool)
    # In chunks of images: a convolution's patches in float64 are large (MNIST-5k conv2:
    # 1.8 KB per position).
    for start in range(0, len(near), NEAR_CHUNK):
        part = slice(start, start + NEAR_CHUNK)
        y = step["y"][part].astype(np.float64)
        slack = (layer.error_bound() + lsb + gamma * _abs_products(layer, step["inputs"][part])
                 + 4 * UNIT_ROUNDOFF * np.abs(y * lsb))
        near[part] = np.minimum(np.abs(y - lo), np.abs(y - hi)) * lsb <= slack
    return near


def integer_differences(a, b):
    """What differs between two golden networks as integer networks (input encoding, per
    layer its kind and window (convolution, pooling), the trits, K codes, formats and
    thresholds): a list of names, empty when equal."""
    found = []
    if a.input != b.input:
        found.append("input encoding")
    if len(a.layers) != len(b.layers):
        return found + [f"layer count {len(a.layers)} != {len(b.layers)}"]
    for x, y in zip(a.layers, b.layers):
        if x.kind != y.kind:
            found.append(f"{x.name} kind {x.kind} != {y.kind}")
            continue
        if x.kind != "linear":
            keys = ("in_shape", "kernel", "stride") + (("padding",) if x.kind == "conv" else ())
            if any(tuple(getattr(x, k)) != tuple(getattr(y, k)) for k in keys):
                found.append(f"{x.name} window")
                continue
            if x.kind == "maxpool":
                continue
        if x.t_w.shape != y.t_w.shape or (x.t_w != y.t_w).any():
            found.append(f"{x.name}.t_w")
            continue
        for key in ("k1", "k2", "k0"):
            if (getattr(x.consts, key) != getattr(y.consts, key)).any():
                found.append(f"{x.name}.{key}")
        if (x.k_fmt, x.out_fmt) != (y.k_fmt, y.out_fmt):
            found.append(f"{x.name} formats")
        if x.hidden != y.hidden or (x.hidden and ((x.lo != y.lo).any() or (x.hi != y.hi).any())):
            found.append(f"{x.name} thresholds")
    return found


def versions():
    from ..tools import package_versions
    return package_versions("qonnx", "onnx", "onnxruntime")
