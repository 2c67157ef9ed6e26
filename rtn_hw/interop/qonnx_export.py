"""An rtn-hw network (weights/NAME.json) as a QONNX graph: `rtn-hw export-qonnx`.

The graph computes exactly what the float RTN network computes (docs/qonnx.md):

    pixels ─Flatten─Div(pixel_max/2)─Add(-1)─Quant(scale 1)─Mul(α_a)─Add(β_a)─► â0   (input)
    â ─MatMul(ŵ)─► y ─BatchNormalization─Add(-z_a)─Mul(α_a)─Quant(α_a, z_a)─► â  (hidden)
    â ─MatMul(ŵ)─► logits                                                          (last)
    ŵ = Quant(initializer, scale α_w, zero point z_w), per output channel

A CNN reads NCHW pixels (no Flatten) and has, in place of a hidden MatMul,

    â ─[Pad(trit 0)]─Conv(ŵ)─► y ─BatchNormalization─...─Quant─► â ─[MaxPool]─►
    â ─Flatten─MatMul(ŵ)─►                                    (the first linear layer)

The weights format pads with trit 0, which decodes to β_a; ONNX's Conv pads with real zeros.
So a padded convolution is an explicit Pad whose value is what trit 0 decodes to there (the
Quant's own output for trit 0, computed by qonnx's quantizer), followed by a Conv without
padding. MaxPool pools α·t + β with α > 0, which is pooling the trits.

Every Quant is bitwidth 2, signed, narrow range (-1, 0, +1), rounding ROUND, so it is RTN's
T with Δ = 0.5: t = round(clip(x/s + z, -1, 1)) and the output is s·(t - z) = α·t + β with
α = s and the offset β = -s·z, RTN's β as a QONNX zero point (FINN accepts only zero).

The input quantizer has scale 1 and no zero point: T(2p/pixel_max - 1) is exact in float32
there, whereas a zero point would move the pixel ties (p = 12 of 16) by a rounding error.

Zero points are float32 in ONNX; z = -β/α rounded to float32 gives β' = -α·z ≠ β in general.
The exporter picks, per tensor (activations) or per channel (weights), a float32 z within a
few ULPs of -β/α for which every K code folded from β' equals the one folded from β, so
`rtn-hw import` gives back the same integer network. Where no such z exists the zero point is
0 and β follows the Quant as an Add (the other form Brevitas produces).
"""

from pathlib import Path

import numpy as np

from .. import model, weights
from . import QonnxError

QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 13
ZERO_POINT_ULPS = 16          # how far from -β/α the zero point search goes, in float32 ULPs


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise QonnxError(f"QONNX export needs the onnx extra (pip install -e '.[onnx]'): "
                         f"{error}") from None
    return onnx


def _f32(values):
    return np.asarray(values, dtype=np.float32)


def _candidates(target):
    """float32 values near `target` (an array): the nearest first, then ±1, ±2, ... ULPs."""
    nearest = _f32(target)
    yield nearest
    up = down = nearest
    for _ in range(ZERO_POINT_ULPS):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        yield up
        yield down


def _codes(layer, beta_w, beta_a):
    consts = model.fold_constants(layer.alpha_w, beta_w, layer.alpha_a, beta_a,
                                  layer.t_w.sum(axis=1, dtype=np.int64), layer.in_features,
                                  layer.k_fmt)
    return np.stack([consts.k1, consts.k2, consts.k0])


def activation_zero_point(layer):
    """float32 z_a for the input of `layer` (a hidden layer's output), or None when no z near
    -β_a/α_a keeps the layer's K codes (β then goes in an Add)."""
    if layer.beta_a == 0:
        return np.float32(0)
    want = _codes(layer, layer.beta_w, layer.beta_a)
    alpha = float(np.float32(layer.alpha_a))
    for z in _candidates(-layer.beta_a / layer.alpha_a):
        if (_codes(layer, layer.beta_w, -alpha * float(z)) == want).all():
            return z
    return None


def weight_zero_points(layer, beta_a):
    """float32 z_w per output channel (P,), and a mask of the channels for which no z near
    -β_w/α_w keeps the K codes (their z is 0 and β_w goes in an Add)."""
    want = _codes(layer, layer.beta_w, beta_a)
    alpha = layer.alpha_w.astype(np.float32).astype(np.float64)
    chosen = np.zeros(layer.out_features, dtype=np.float32)
    found = layer.beta_w == 0
    for z in _candidates(-layer.beta_w / layer.alpha_w):
        ok = (_codes(layer, -alpha * z.astype(np.float64), beta_a) == want).all(axis=0) & ~found
        chosen[ok] = z[ok]
        found |= ok
        if found.all():
            break
    return chosen, ~found


class _Graph:
    """Nodes, initializers and unique names for one exported graph."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.inits, self.count = onnx, [], [], {}

    def name(self, stem):
        self.count[stem] = self.count.get(stem, 0) + 1
        return f"{stem}{self.count[stem] - 1}" if self.count[stem] > 1 else stem

    def const(self, stem, value):
        name = self.name(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(_f32(value), name))
        return name

    def node(self, op, inputs, stem, domain="", **attrs):
        out = self.name(stem)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=f"{op}_{out}",
                                                     domain=domain, **attrs))
        return out

    def quant(self, x, scale, zero_point, stem):
        """Quant: bitwidth 2, signed, narrow range (-1, 0, +1), half-even rounding (T's
        |x| ≤ 0.5 → 0)."""
        return self.node("Quant", [x, self.const(f"{stem}_scale", scale),
                                   self.const(f"{stem}_zeropt", zero_point),
                                   self.const(f"{stem}_bitwidth", 2.0)], stem,
                         domain=QONNX_DOMAIN, signed=1, narrow=1, rounding_mode="ROUND")


def _bn(manifest, arrays, layer):
    spec = next(s for s in manifest["layers"] if s["name"] == layer.name)
    return ([arrays[f"{layer.name}.{key}"] for key in ("bn_gamma", "bn_beta", "bn_mean", "bn_var")],
            float(spec["bn_eps"]))


def _dense(layer):
    """The fully connected form of a linear layer or convolution (t_w (P, n), n = C·kh·kw)."""
    return layer.dense if layer.kind == "conv" else layer


def _trit_zero(scale, zero_point):
    """The float32 value a Quant(scale, zero point) outputs for trit 0, computed by qonnx's
    own quantizer: a Pad with this value pads exactly with trit 0."""
    from qonnx.custom_op.general.quant import quant
    s, z = np.float32(scale), np.float32(zero_point)
    x = np.asarray([-z * s], dtype=np.float32)              # x/s + z ≈ 0: trit 0
    return np.float32(np.asarray(quant(x, np.asarray(s), np.asarray(z), np.asarray(
        np.float32(2)), signed=True, narrow=True, rounding_mode="ROUND")).ravel()[0])


def to_qonnx(network, arrays):
    """The QONNX ModelProto of a validated `network` (rtn_hw.weights.load) and its raw arrays
    (rtn_hw.weights.read_raw: BatchNorm is not part of the golden Network), plus a summary
    {"zero_points": [...], "offsets_as_add": [...]} of how each offset was written.

    A CNN takes NCHW pixels (1, C, H, W); a padded convolution reads its input through a Pad
    whose value is what trit 0 decodes to there (the weights format pads with trit 0, ONNX's
    Conv would pad with real zeros), and max pooling pools α·t + β (α > 0), i.e. the trits."""
    onnx = _onnx()
    helper = onnx.helper
    g = _Graph(onnx)
    manifest = network.manifest
    layers = network.layers
    rtn = [layer for layer in layers if layer.kind != "maxpool"]
    shape = list(network.input.shape)
    pixels = "pixels"
    x = pixels
    if network.convolutional:
        graph_shape = list(layers[0].in_shape)                     # (C, H, W)
    else:
        graph_shape = shape
        if len(shape) > 1:
            x = g.node("Flatten", [x], "flat", axis=1)
    # T(2p/pixel_max - 1): pixel_max/2 and the tie 1.5 are exact in float32.
    x = g.node("Div", [x, g.const("input_half_range", network.input.pixel_max / 2)], "scaled")
    x = g.node("Add", [x, g.const("input_offset", -1.0)], "centered")
    first = rtn[0]
    x = g.quant(x, 1.0, 0.0, "input_trits")
    x = g.node("Mul", [x, g.const(f"{first.name}_in_alpha", first.alpha_a)], "input_scaled")
    x = g.node("Add", [x, g.const(f"{first.name}_in_beta", first.beta_a)], "input_act")
    summary = {"zero_points": [], "offsets_as_add": []}
    beta_a = first.beta_a
    trit_zero = np.float32(first.beta_a)          # 0·α_a + β_a in float32
    mapped = network.convolutional                # x is a (1, C, H, W) map
    for index, layer in enumerate(layers):
        if layer.kind == "maxpool":
            x = g.node("MaxPool", [x], f"{layer.name}_out", kernel_shape=list(layer.kernel),
                       strides=list(layer.stride))
            continue
        dense = _dense(layer)
        conv = layer.kind == "conv"
        z_w, fallback = weight_zero_points(dense, beta_a)
        alpha_w = _f32(dense.alpha_w)
        dequant = alpha_w[:, None] * (dense.t_w - z_w[:, None].astype(np.float64))   # (P, n)
        # Conv weights (P, C, kh, kw), per channel on axis 0; MatMul weights (n, P), axis 1.
        axes = (-1, 1, 1, 1) if conv else (1, -1)
        w_init = dequant.reshape(layer.t_w.shape) if conv else dequant.T
        w = g.const(f"{layer.name}_weight", w_init)
        w = g.quant(w, alpha_w.reshape(axes), z_w.reshape(axes), f"{layer.name}_wq")
        if fallback.any():
            w = g.node("Add", [w, g.const(f"{layer.name}_beta_w", np.where(
                fallback, dense.beta_w, 0).reshape(axes))], f"{layer.name}_w")
            summary["offsets_as_add"].append(f"{layer.name} weights ({int(fallback.sum())} of "
                                             f"{dense.out_features} channels)")
        summary["zero_points"].append(f"{layer.name} weights")
        stem = f"{layer.name}_out" if not layer.hidden else f"{layer.name}_y"
        if conv:
            ph, pw = layer.padding
            if ph or pw:
                pads = g.name(f"{layer.name}_pads")
                g.inits.append(onnx.numpy_helper.from_array(
                    np.asarray([0, 0, ph, pw, 0, 0, ph, pw], dtype=np.int64), pads))
                x = g.node("Pad", [x, pads, g.const(f"{layer.name}_trit_zero", trit_zero)],
                           f"{layer.name}_padded", mode="constant")
            y = g.node("Conv", [x, w], stem, kernel_shape=list(layer.kernel),
                       strides=list(layer.stride), pads=[0, 0, 0, 0])
        else:
            if mapped:
                x = g.node("Flatten", [x], f"{layer.name}_flat", axis=1)
                mapped = False
            y = g.node("MatMul", [x, w], stem)
        if not layer.hidden:
            x = y
            break
        (gamma, bn_beta, mean, var), eps = _bn(manifest, arrays, layer)
        v = g.node("BatchNormalization",
                   [y, g.const(f"{layer.name}_bn_gamma", gamma),
                    g.const(f"{layer.name}_bn_beta", bn_beta),
                    g.const(f"{layer.name}_bn_mean", mean),
                    g.const(f"{layer.name}_bn_var", var)], f"{layer.name}_bn", epsilon=eps)
        nxt = next(r for r in rtn if layers.index(r) > index)
        z_a = activation_zero_point(_dense(nxt))
        stem = f"{nxt.name}_in"
        if z_a is not None:
            u = g.node("Add", [v, g.const(f"{stem}_minus_zeropt", -z_a)], f"{stem}_shifted")
            u = g.node("Mul", [u, g.const(f"{stem}_alpha", nxt.alpha_a)], f"{stem}_scaled")
            x = g.quant(u, nxt.alpha_a, z_a, f"{stem}_act")
            beta_a = -float(np.float32(nxt.alpha_a)) * float(z_a)
            trit_zero = _trit_zero(nxt.alpha_a, z_a)
            summary["zero_points"].append(f"{nxt.name} input")
        else:
            u = g.node("Mul", [v, g.const(f"{stem}_alpha", nxt.alpha_a)], f"{stem}_scaled")
            x = g.quant(u, nxt.alpha_a, 0.0, f"{stem}_trits")
            x = g.node("Add", [x, g.const(f"{stem}_beta", nxt.beta_a)], f"{stem}_act")
            beta_a = nxt.beta_a
            trit_zero = np.float32(nxt.beta_a)
            summary["offsets_as_add"].append(f"{nxt.name} input")
    classes = layers[-1].out_features
    graph = helper.make_graph(
        g.nodes, f"rtn_hw_{layers[0].name}_{'cnn' if network.convolutional else 'mlp'}",
        [helper.make_tensor_value_info(pixels, onnx.TensorProto.FLOAT, [1] + graph_shape)],
        [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, [1, classes])], g.inits)
    proto = helper.make_model(
        graph, producer_name="rtn-hw", opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                      helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = 8
    training = manifest.get("training", {})
    helper.set_model_props(proto, {"rtn_hw.source": manifest["arrays"].get("sha256", ""),
                                   "rtn_hw.pixel_max": str(network.input.pixel_max),
                                   "rtn_hw.seed": str(training.get("seed", 0))})
    return proto, summary


def export_file(manifest_path, out_path, *, report=None):
    """weights/NAME.json → OUT.onnx (atomic), then checked: qonnx's cleanup and shape
    inference, `rtn-hw import` of the result gives back the same integer network, and
    execute_onnx on the digits test split against the golden network (merged into the JSON
    report `report` under "exports"). Returns the report entry."""
    from ..files import update_json, write_atomic
    from . import qonnx_check, qonnx_import
    out_path = Path(out_path)
    try:
        network = weights.load(manifest_path)
        _, arrays = weights.read_raw(manifest_path)
    except ValueError as error:
        raise QonnxError(str(error)) from None
    proto, summary = to_qonnx(network, arrays)
    try:
        _onnx().checker.check_model(proto)
    except Exception as error:  # onnx.checker.ValidationError; a bug here, not bad input
        raise QonnxError(f"{manifest_path}: the exported graph fails onnx.checker: "
                         f"{' '.join(str(error).split())[:200]}") from None
    _, _, info, back, wrapper = qonnx_import.import_model(proto, pixel_max=network.input.pixel_max,
                                                         where=str(out_path))
    differences = qonnx_check.integer_differences(network, back)
    if differences:
        raise QonnxError(f"{manifest_path}: the exported graph imports as a different integer "
                         f"network ({', '.join(differences)}); export-qonnx needs float32 "
                         f"parameters and the K formats of model.fixed.choose_formats")
    entry = {"weights": Path(manifest_path).name, "model": out_path.name, **summary,
             "round_trip": "identical integer network"}
    split = qonnx_check.test_split(network)
    if split is not None:
        entry["dataset"] = split[0]
        entry.update(qonnx_check.compare(wrapper, network, info, *split[1:]))
    entry["versions"] = qonnx_check.versions()
    write_atomic(out_path, proto.SerializeToString())
    if report is not None:
        update_json(report, lambda doc: {**doc, "format": 1,
                                         "exports": {**doc.get("exports", {}),
                                                     out_path.stem: entry}})
    return entry
