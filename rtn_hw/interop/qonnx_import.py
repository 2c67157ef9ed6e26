"""A QONNX graph → the rtn-hw weights format: `rtn-hw import MODEL.onnx -o weights/NAME.json`.

The graph must be an MLP or a CNN of ternary layers (docs/qonnx.md lists what maps):

    pixels ─[Flatten/Reshape, Mul/Div/Add/Sub]─ Quant ─[Mul/Add]─► â0
    â ─[Pad(β_a)]─Conv(ŵ)─[Add/Mul, BatchNormalization, MaxPool]─ Quant ─[Mul/Add, MaxPool]─► â
    â ─[Flatten/Reshape]─MatMul/Gemm(ŵ)─[Add/Mul, BatchNormalization]─ Quant ─[Mul/Add]─► â
    â ─MatMul/Gemm(ŵ)─[Add/Mul: one positive scale and offset for every class]─► logits
    ŵ = Quant or BipolarQuant of an initializer, [Transpose, Mul/Add per output channel]

A hidden layer's Quant may instead be a MultiThreshold with two thresholds per channel
(FINN's form after streamlining): t = [x ≥ θ1] + [x ≥ θ2] - 1.

Every Quant/IntQuant must be bitwidth 2, signed, narrow range (-1, 0, +1) and round half to
even (ROUND), so t = round(clip(x/s + z, -1, 1)) is RTN's T with Δ = 0.5, and its output
s·(t - z) is α·t + β with α = s, β = -s·z: a non-zero zero point is RTN's offset β. Constant
Mul/Add after a Quant scale and shift α and β; between a MatMul/Conv and the next Quant they
compose, with BatchNormalization, into the threshold of each channel, stored as an equivalent
BatchNorm (γ, β, μ, var, ε) that `weights.load` folds again into the integer thresholds.
Everything is composed in float64 from the graph's float32 constants; a graph made by
`rtn-hw export-qonnx` composes exactly (x·α/α, -z·α/α + z), so the BatchNorm comes back as it was.

Padding: ONNX's Conv pads its input with real zeros, the weights format pads with trit 0,
which decodes to β_a (rtn_hw.model.conv). The two agree only where β_a = 0, so a padded Conv
maps when its input's offset is 0; otherwise the graph must pad explicitly with a Pad node
whose value is β_a (what `rtn-hw export-qonnx` writes). MaxPool of α·t + β (α > 0) is the
pooling of the trits; a MaxPool between a Conv and its Quant maps when every channel's
composed scale is positive (then max commutes with the quantizer).

The input Quant must encode the pixels the way the weights format does, T(2p/pixel_max - 1):
its decision is checked on every integer pixel 0..pixel_max. The K constants' formats come
from `model.fixed.choose_formats`, as in training.

Anything else is refused with one line naming the node, its op type and why (QonnxError).
"""

import hashlib
import math
from pathlib import Path

import numpy as np

from .. import model, weights
from ..files import InputFileError, read_bounded
from ..model.conv import conv_out_shape
from ..model.fixed import choose_formats
from . import QonnxError

MAX_MODEL_BYTES = 256 << 20
QUANT_OPS = ("Quant", "IntQuant")
# Half-even (and half-down) send ±0.5 to 0, as T does (|x| ≤ Δ → 0).
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "HALF_DOWN")
SUPPORTED = ("Quant", "IntQuant", "BipolarQuant", "MultiThreshold", "MatMul", "Gemm", "Conv",
             "MaxPool", "Pad", "BatchNormalization", "Mul", "Div", "Add", "Sub", "Reshape",
             "Flatten", "Transpose", "Identity", "Constant")
CONV_ATTRS = {"kernel_shape", "strides", "pads", "group", "dilations", "auto_pad"}
POOL_ATTRS = {"kernel_shape", "strides", "pads", "dilations", "auto_pad", "ceil_mode",
              "storage_order"}
# A Pad's value is float32: it stands for trit 0 when within a few float32 ULPs of β_a.
PAD_VALUE_ULPS = 4
LAYER_PREFIX = {"linear": "fc", "conv": "conv", "maxpool": "pool"}   # the trainer's names


def _libs():
    try:
        import onnx
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.cleanup import cleanup_model
    except ImportError as error:
        raise QonnxError(f"QONNX import needs the onnx extra (pip install -e '.[onnx]'): "
                         f"{error}") from None
    return onnx, ModelWrapper, cleanup_model


# --- reading and structural checks --------------------------------------------------------------

def read_model(path):
    """The ModelProto in `path`, checked: parseable, one graph input, one output, every node
    input produced by something, no cycle (nodes returned in topological order)."""
    onnx, _, _ = _libs()
    try:
        blob = read_bounded(path, MAX_MODEL_BYTES)
    except (InputFileError, OSError) as error:
        raise QonnxError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") \
            from None
    return parse_model(blob, path)


def parse_model(blob, where="<model>"):
    onnx, _, _ = _libs()
    try:
        proto = onnx.ModelProto.FromString(blob)
    except Exception as error:  # protobuf's DecodeError and its relatives
        reason = " ".join(str(error).split()) or "not a ModelProto"
        raise QonnxError(f"{where}: malformed ONNX ({reason})") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise QonnxError(f"{where}: malformed ONNX (no graph, or a graph with no nodes)")
    _sort_nodes(proto.graph, where)
    return proto


def _sort_nodes(graph, where):
    """Reorder `graph.node` topologically; a dangling input or a cycle is a QonnxError."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producers = {}
    for node in graph.node:
        for out in node.output:
            producers.setdefault(out, node)
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            node = pending[0]
            missing = next(i for i in node.input if i not in available)
            if missing not in producers:
                raise QonnxError(f"{where}: node {_name(node)} ({node.op_type}): input "
                                 f"{missing!r} is made by no node, initializer or graph input")
            raise QonnxError(f"{where}: node {_name(node)} ({node.op_type}): the graph has a "
                             f"cycle through its input {missing!r}")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1 or outputs[0] not in available:
        raise QonnxError(f"{where}: the graph must have one output made by a node, not "
                         f"{outputs}")


def _name(node):
    return node.name or (node.output[0] if node.output else "?")


def clean(proto, where="<model>"):
    """qonnx's cleanup (qonnx.util.cleanup.cleanup_model) without its renaming, so errors name
    the nodes as the file does: shape inference, constant folding that keeps the quantizers,
    transposes folded into weight Quants, unused tensors and static graph inputs removed."""
    _, ModelWrapper, _ = _libs()
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import RemoveStaticGraphInputs, RemoveUnusedTensors
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit
    steps = [InferShapes(), FoldConstants(exclude_op_types=["Quant", "IntQuant", "BipolarQuant"]),
             FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs()]
    try:
        wrapper = ModelWrapper(proto)
        for quant in (n for n in wrapper.graph.node if n.op_type in QUANT_OPS + ("BipolarQuant",)):
            quant.domain = "qonnx.custom_op.general"       # as cleanup_model does for Brevitas
        for step in steps:
            wrapper = wrapper.transform(step)
        return wrapper
    except Exception as error:  # qonnx and onnx raise many types on bad graphs
        raise QonnxError(f"{where}: qonnx cannot clean up the graph "
                         f"({type(error).__name__}: {' '.join(str(error).split())[:200]})") \
            from None


# --- symbolic values ------------------------------------------------------------------------------

class _Const:
    def __init__(self, value):
        self.value = np.asarray(value, dtype=np.float64)


class _Ternary:
    """A constant ternary tensor: value = scale ⊙ t + offset, all three of one shape."""

    def __init__(self, t, scale, offset):
        self.t = t.astype(np.int8)
        self.scale = np.broadcast_to(scale, t.shape).astype(np.float64)
        self.offset = np.broadcast_to(offset, t.shape).astype(np.float64)

    def apply(self, f):
        return _Ternary(f(self.t), f(self.scale), f(self.offset))


class _Pixels:
    """The graph input, (B, *origin) pixels now seen as (B, *shape): a list of elementwise
    steps to replay on pixel values."""

    def __init__(self, origin, shape, steps=()):
        self.origin, self.shape, self.steps = tuple(origin), tuple(shape), list(steps)


class _Trits:
    """α·t + β of a ternary tensor, one α > 0 and β per tensor: (B, features) when `shape` is
    None, else a feature map (B, *shape), shape = (C, H, W), to be padded by `pad` (ph, pw)
    with trit 0 (a Pad node that must feed a Conv)."""

    def __init__(self, features, alpha, beta, shape=None, pad=(0, 0)):
        self.features, self.alpha, self.beta = features, alpha, beta
        self.shape, self.pad = shape, tuple(pad)

    def like(self, alpha, beta):
        return _Trits(self.features, alpha, beta, self.shape, self.pad)


class _Linear:
    """The output of a MatMul/Gemm or Conv, per channel: post(BN(pre(y))) with y = ŵ·â
    exactly; pre and post are (m, c) pairs of (P,) arrays, bn is None or (γ, β, μ, var, ε).
    A Conv's output is a map (B, *shape), shape = (P, H, W), after the MaxPools in `pools`."""

    def __init__(self, layer, shape=None):
        p = layer["t_w"].shape[0]
        self.layer, self.bn, self.shape, self.pools = layer, None, shape, []
        self.pre = (np.ones(p), np.zeros(p))
        self.post = (np.ones(p), np.zeros(p))

    @property
    def channels(self):
        return self.layer["t_w"].shape[0]


def _fail(node, why):
    raise QonnxError(f"node {_name(node)} ({node.op_type}): {why}")


def _const(values, node, index):
    if index >= len(node.input) or node.input[index] == "":
        _fail(node, f"input {index} is missing")
    value = values[node.input[index]]
    if not isinstance(value, _Const):
        _fail(node, f"input {node.input[index]!r} must be a constant (an initializer)")
    return value.value


def _finite(array, node, what):
    if not np.isfinite(array).all():
        _fail(node, f"{what} has a NaN or infinite value")
    return array


def _attrs(node):
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _scalar_of(array, node, what):
    """The one value of a per-tensor constant (every element equal)."""
    flat = np.asarray(array).ravel()
    if flat.size == 0 or (flat != flat[0]).any():
        _fail(node, f"{what} must be one value for the whole tensor (RTN's α_a, β_a are per "
                    f"tensor), not {flat.size} different values")
    return float(flat[0])


def _per_channel(array, channels, node, what, spatial=False):
    """A constant that broadcasts over (B, P) as a (P,) vector, or with `spatial` over
    (B, P, H, W) as (1, P, 1, 1): one value per channel (a (P,) vector would run along W)."""
    array = np.asarray(array)
    if spatial:
        dims = (1,) * (4 - array.ndim) + array.shape if array.ndim <= 4 else None
        ok = dims is not None and dims[0] == 1 and dims[2:] == (1, 1) \
            and dims[1] in (1, channels)
    else:
        ok = array.ndim <= 2 and not (array.ndim == 2 and array.shape[0] != 1) \
            and array.size in (1, channels)
    if not ok:
        _fail(node, f"{what} of shape {list(array.shape)} does not broadcast per channel over "
                    f"{channels} channels{' of a (B, C, H, W) map' if spatial else ''}")
    return np.broadcast_to(array.ravel(), (channels,)).astype(np.float64)


# --- the node handlers ----------------------------------------------------------------------------

def _quant_params(node, values):
    scale = _finite(_const(values, node, 1), node, "scale")
    if (scale <= 0).any():
        _fail(node, "scale must be positive (a zero or negative scale has no ternary meaning)")
    if node.op_type == "BipolarQuant":
        return scale, np.zeros(()), "BIPOLAR"
    zero = _finite(_const(values, node, 2), node, "zero point")
    bits = _const(values, node, 3)
    attrs = _attrs(node)
    if bits.size != 1 or bits.ravel()[0] != 2:
        _fail(node, f"bit width {bits.ravel().tolist()}: the hardware runs 2-bit (ternary) "
                    f"tensors only")
    if attrs.get("signed", 1) != 1 or attrs.get("narrow", 0) != 1:
        _fail(node, "must be signed with narrow range (-1, 0, +1); a 2-bit wide range holds -2")
    mode = attrs.get("rounding_mode", b"ROUND")
    mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
    if mode not in ROUNDING_MODES:
        _fail(node, f"rounding mode {mode}: the encoder sends ±0.5 to 0 (T with Δ = 0.5), so "
                    f"only {', '.join(ROUNDING_MODES)} map")
    return scale, zero, mode


def _ternarize(x):
    """round(clip(x, -1, 1)), half to even, as qonnx's Quant (x already x/s + z)."""
    return np.round(np.clip(x, -1.0, 1.0)).astype(np.int8)


def _quant(node, values, state):
    x = values[node.input[0]]
    scale, zero, mode = _quant_params(node, values)
    if isinstance(x, _Const):
        _finite(x.value, node, "a weight")
        if mode == "BIPOLAR":
            t = np.where(x.value / scale >= 0, 1, -1)
            return _Ternary(t, scale, 0.0)
        t = _ternarize(x.value / scale + zero)
        return _Ternary(t, scale, -scale * zero)
    if mode == "BIPOLAR":
        _fail(node, "a sign (BipolarQuant) activation has no zero trit; the encoder's "
                    "thresholds come from Δ = 0.5 (weights format v1), so only weights map")
    s = _scalar_of(scale, node, "the activation scale")
    z = _scalar_of(zero, node, "the activation zero point")
    if isinstance(x, _Pixels):
        state["input"] = _input_encoding(node, x, s, z, state)
        return _Trits(int(np.prod(x.shape)), s, -s * z,
                      tuple(x.shape) if len(x.shape) == 3 else None)
    if isinstance(x, _Linear):
        _close_hidden(node, x, s, z, state)
        return _activation(x, s, -s * z)
    _fail(node, "a Quant of an already ternary tensor")


def _activation(lin, alpha, beta):
    """The ternary tensor a closed hidden layer (and its pools) outputs."""
    if lin.shape is None:
        return _Trits(lin.channels, alpha, beta)
    return _Trits(int(np.prod(lin.shape)), alpha, beta, tuple(lin.shape))


def _check_pools(lin, slope, state):
    """A MaxPool between a Conv and its Quant commutes with the quantizer only where the map
    from the Conv's output to the Quant's input is increasing in every channel. Then record
    the conv layer, its pools after it, and the activation on the last pool's output."""
    if lin.pools and (slope <= 0).any():
        pool = lin.pools[0]
        raise QonnxError(f"node {pool['node']} (MaxPool): pools before the activation Quant, "
                         f"which commutes only with an increasing map, but channel "
                         f"{int(np.flatnonzero(slope <= 0)[0])}'s scale from the Conv to the "
                         f"Quant is negative (pool after the Quant)")
    state["layers"].append(lin.layer)
    if lin.pools:
        lin.pools[-1]["activation"] = lin.layer.pop("activation")
        state["layers"].extend(lin.pools)


def _multithreshold(node, values, state):
    """MultiThreshold with two thresholds θ1 ≤ θ2 per channel: t = [x ≥ θ1] + [x ≥ θ2] - 1,
    output out_scale·(t + 1) + out_bias = α·t + β (α = out_scale, β = out_bias + out_scale)."""
    x = values[node.input[0]]
    thresholds = _finite(_const(values, node, 1), node, "the thresholds")
    attrs = _attrs(node)
    scale = float(attrs.get("out_scale", 1.0))
    bias = float(attrs.get("out_bias", 0.0))
    if thresholds.ndim != 2 or thresholds.shape[1] != 2:
        _fail(node, f"thresholds of shape {list(thresholds.shape)}: a ternary activation has "
                    f"two per channel, (C, 2)")
    if (np.diff(thresholds, axis=1) <= 0).any():
        _fail(node, "each channel's two thresholds must increase (equal ones leave no zero "
                    "trit)")
    if not math.isfinite(scale) or scale <= 0 or not math.isfinite(bias):
        _fail(node, f"out_scale {scale} must be positive and out_bias {bias} finite")
    alpha, beta = scale, bias + scale
    if isinstance(x, _Linear):
        p = x.channels
        low = _per_channel(thresholds[:, 0], p, node, "the thresholds")
        high = _per_channel(thresholds[:, 1], p, node, "the thresholds")
        x.layer["activation"] = {"tensor": node.output[0], "scale": alpha,
                                 "zero_point": -beta / alpha}
        _close_hidden_thresholds(node, x, low, high, state)
        return _activation(x, alpha, beta)
    _fail(node, "MultiThreshold maps after a MatMul/Gemm/Conv (a hidden layer's "
                "pre-activation)")


def _close_hidden_thresholds(node, lin, low, high, state):
    """t = +1 where v ≥ θ2, -1 where v < θ1, v = A·y + B (pre, BatchNorm, post composed):
    on y the thresholds are u = (θ - B)/A; stored as the BatchNorm γ = 1/(u2 - u1), β = 0,
    μ = (u1 + u2)/2, var = 1, ε = 0, whose T thresholds are exactly u1 and u2 (γ < 0 where
    A < 0). The decision at y = u exactly is the encoder's (strict), not MultiThreshold's ≥."""
    m, c = lin.pre
    a, b = lin.post
    gamma, beta, mean, var, eps = lin.bn if lin.bn is not None else (
        np.ones_like(m), np.zeros_like(m), np.zeros_like(m), np.ones_like(m), 0.0)
    k = gamma / np.sqrt(var + eps)
    slope = a * k * m
    offset = a * (k * (c - mean) + beta) + b
    if (slope == 0).any():
        _fail(node, "a channel's pre-activation is scaled by 0 (its trit would be constant)")
    u1, u2 = (low - offset) / slope, (high - offset) / slope
    ones = np.ones_like(u1)
    lin.layer["bn"] = (1.0 / (u2 - u1), np.zeros_like(u1), (u1 + u2) / 2, ones, 0.0)
    _check_pools(lin, slope, state)


def _input_encoding(node, pixels, s, z, state):
    """Check that the Quant of the pixels is T(2p/pixel_max - 1) on every pixel 0..pixel_max."""
    pixel_max = state["pixel_max"]
    p = np.arange(pixel_max + 1, dtype=np.float64)
    x = np.broadcast_to(p[:, None], (p.size, int(np.prod(pixels.shape)))).copy()
    for step in pixels.steps:
        x = step(x)
    t = _ternarize(x / s + z)
    want = weights.InputEncoding(pixels.origin, pixel_max,
                                 *weights.InputEncoding.thresholds(pixel_max))
    expected = want.encode(np.broadcast_to(np.arange(pixel_max + 1)[:, None],
                                           (pixel_max + 1, want.features)).astype(np.int64))
    if not (t == expected).all():
        got = t[:, 0]
        _fail(node, f"the pixels' ternary code {got.tolist()} for pixels 0..{pixel_max} is not "
                    f"T(2p/{pixel_max} - 1) = {expected[:, 0].tolist()} (the weights format's "
                    f"input encoding; is --pixel-max right?)")
    return want


def _close_hidden(node, lin, s, z, state):
    """The Quant after a hidden layer: t = T(post(BN(pre(y)))/s + z), stored as a BatchNorm."""
    m, c = lin.pre
    a, b = lin.post
    a, b = a / s, b / s + z           # exact for the exporter's graph: α/α = 1, -zα/α + z = 0
    gamma, beta, mean, var, eps = lin.bn if lin.bn is not None else (
        np.ones_like(m), np.zeros_like(m), np.zeros_like(m), np.ones_like(m), 0.0)
    if (m == 0).any() or (a == 0).any() or (gamma == 0).any():
        _fail(node, "a channel's pre-activation is scaled by 0 (its trit would be constant)")
    lin.layer["bn"] = (a * gamma * m, a * beta + b, (mean - c) / m, var, eps)
    lin.layer["activation"] = {"tensor": node.output[0], "scale": s, "zero_point": z}
    _check_pools(lin, a * gamma * m, state)


def _affine(node, values, op):
    """Mul/Div/Add/Sub with one constant operand, on any symbolic value."""
    left, right = values[node.input[0]], values[node.input[1]]
    if isinstance(left, _Const) and isinstance(right, _Const):
        fn = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract}[op]
        with np.errstate(all="raise"):
            try:
                return _Const(fn(left.value, right.value))
            except FloatingPointError as error:
                _fail(node, f"constant arithmetic fails ({error})")
    if isinstance(right, _Const):
        x, c, swapped = left, right.value, False
    elif isinstance(left, _Const) and op in ("Mul", "Add", "Sub"):
        x, c, swapped = right, left.value, op == "Sub"
    else:
        _fail(node, "needs one constant operand (a per-tensor or per-channel scale or offset)")
    c = _finite(c, node, "the constant")
    # value' = k·value + d
    if op == "Mul":
        k, d = c, np.zeros_like(c)
    elif op == "Div":
        if (c == 0).any():
            _fail(node, "divides by zero")
        k, d = 1.0 / c, np.zeros_like(c)
    elif op == "Add":
        k, d = np.ones_like(c), c
    else:
        k, d = (-np.ones_like(c), c) if swapped else (np.ones_like(c), -c)
    if isinstance(x, _Ternary):
        return _Ternary(x.t, x.scale * k, x.offset * k + d)
    if isinstance(x, _Pixels):
        fn = {"Mul": lambda v: v * c, "Div": lambda v: v / c, "Add": lambda v: v + c,
              "Sub": (lambda v: c - v) if swapped else (lambda v: v - c)}[op]
        try:
            np.broadcast_shapes(np.shape(c), (1,) + x.shape)
        except ValueError:
            _fail(node, f"constant of shape {list(np.shape(c))} does not broadcast over the "
                        f"input {list(x.shape)}")
        return _Pixels(x.origin, x.shape, x.steps + [_on_features(fn, x.shape)])
    if isinstance(x, _Trits):
        k = _scalar_of(k, node, "the scale of a ternary activation")
        d = _scalar_of(d, node, "the offset of a ternary activation")
        if k <= 0:
            _fail(node, "scales a ternary activation by a non-positive factor (α_a must be > 0)")
        return x.like(x.alpha * k, x.beta * k + d)     # a Pad's trit 0 moves with β
    if isinstance(x, _Linear):
        p, spatial = x.channels, x.shape is not None
        k = _per_channel(k, p, node, "the scale", spatial)
        d = _per_channel(d, p, node, "the offset", spatial)
        if x.bn is None:
            x.pre = (x.pre[0] * k, x.pre[1] * k + d)
        else:
            x.post = (x.post[0] * k, x.post[1] * k + d)
        return x
    _fail(node, "has no operand it can fold")


def _on_features(fn, shape):
    """A step on (pixels, features) arrays of a function written for (B, *shape) tensors."""
    def step(x):
        return fn(x.reshape((x.shape[0],) + shape)).reshape(x.shape[0], -1)
    return step


def _batchnorm(node, values):
    x = values[node.input[0]]
    if not isinstance(x, _Linear):
        _fail(node, "BatchNormalization must follow a MatMul/Gemm/Conv (a hidden layer's "
                    "pre-activation)")
    p = x.channels
    gamma, beta, mean, var = (_per_channel(_finite(_const(values, node, i), node, what), p,
                                           node, what)
                              for i, what in ((1, "scale"), (2, "bias"), (3, "mean"),
                                              (4, "variance")))
    eps = float(_attrs(node).get("epsilon", 1e-5))
    if not math.isfinite(eps) or eps < 0 or (var + eps <= 0).any():
        _fail(node, "variance + epsilon must be positive")
    if (gamma == 0).any():
        _fail(node, "a zero scale makes the channel's trit constant")
    if x.bn is None and (x.post[0] == 1).all() and (x.post[1] == 0).all():
        x.bn = (gamma, beta, mean, var, eps)
    else:                                      # a second BatchNorm is one more affine step
        k = gamma / np.sqrt(var + eps)
        x.post = (x.post[0] * k, (x.post[1] - mean) * k + beta)
    return x


def _matmul(node, values, state):
    attrs = _attrs(node)
    x, w = values[node.input[0]], values[node.input[1]]
    if node.op_type == "Gemm":
        if attrs.get("transA", 0):
            _fail(node, "transA = 1 is not supported")
        if attrs.get("transB", 0) and isinstance(w, _Ternary):
            w = w.apply(np.transpose)
    if not isinstance(w, _Ternary):
        _fail(node, "the weights must be a Quant/BipolarQuant of an initializer (2-bit "
                    "ternary)")
    if not isinstance(x, _Trits):
        _fail(node, "its input must be a ternary activation (a Quant before every layer)")
    _unpadded(node, x)
    if x.shape is not None:
        _fail(node, f"its input is a {tuple(x.shape)} feature map: Flatten or Reshape it to "
                    f"(batch, features) first")
    if w.t.ndim != 2 or w.t.shape[0] != x.features:
        _fail(node, f"shapes do not chain: the input has {x.features} features, the weights "
                    f"are {list(w.t.shape)}")
    t_w, alpha_w, beta_w = _weight_channels(node, w.t.T, w.scale.T, w.offset.T)
    layer = {"kind": "linear", "t_w": t_w, "alpha_w": alpha_w, "beta_w": beta_w,
             "alpha_a": x.alpha, "beta_a": x.beta, "node": _name(node)}
    lin = _Linear(layer)
    if node.op_type == "Gemm":
        p = t_w.shape[0]
        alpha = float(attrs.get("alpha", 1.0))
        beta = float(attrs.get("beta", 1.0))
        if alpha <= 0:
            _fail(node, f"alpha {alpha} must be positive")
        bias = (_per_channel(_const(values, node, 2), p, node, "the bias") * beta
                if len(node.input) > 2 and node.input[2] else np.zeros(p))
        lin.pre = (np.full(p, alpha), _finite(bias, node, "the bias"))
    return lin


def _weight_channels(node, t, scale, offset):
    """(P, N) trits, scales and offsets of a weight tensor → (t_w int8, α_w, β_w) per output
    channel; a negative scale flips that channel's trits (α·t = |α|·(-t))."""
    if (scale != scale[:, :1]).any() or (offset != offset[:, :1]).any():
        _fail(node, "the weight scale or offset varies along the input dimension (RTN's α_w, "
                    "β_w are per output channel)")
    alpha_w, beta_w = scale[:, 0].copy(), offset[:, 0].copy()
    t_w = t.copy()
    t_w[alpha_w < 0] *= -1
    alpha_w = np.abs(alpha_w)
    if (alpha_w == 0).any():
        _fail(node, "a weight channel has scale 0")
    return t_w.astype(np.int8), alpha_w, beta_w


def _unpadded(node, x):
    if isinstance(x, _Trits) and x.pad != (0, 0):
        _fail(node, "its input is padded by a Pad node; a Pad must feed a Conv")


def _window(node, allowed):
    """(kernel, strides, pads) of a Conv or MaxPool over a (B, C, H, W) map: 2-D, symmetric
    padding (ph, pw), no dilation, one group; other attributes refused."""
    attrs = _attrs(node)
    unknown = sorted(set(attrs) - allowed)
    if unknown:
        _fail(node, f"attribute {unknown[0]} is not supported (maps: "
                    f"{', '.join(sorted(allowed))})")
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID"):
        _fail(node, f"auto_pad {auto_pad}: only explicit pads map")
    if attrs.get("group", 1) != 1:
        _fail(node, f"group {attrs['group']}: only group 1 (a full convolution) maps")
    if attrs.get("ceil_mode", 0) != 0:
        _fail(node, "ceil_mode 1: the weights format's windows end inside the map (floor)")
    pairs = {}
    for key, default in (("kernel_shape", None), ("strides", [1, 1]), ("dilations", [1, 1])):
        value = attrs.get(key, default)
        if value is not None and (len(value) != 2 or any(int(v) < 1 for v in value)):
            _fail(node, f"{key} {list(value)}: expected two positive integers (a 2-D window)")
        pairs[key] = None if value is None else tuple(int(v) for v in value)
    if pairs["dilations"] != (1, 1):
        _fail(node, f"dilations {list(pairs['dilations'])}: only 1 maps")
    pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4 or min(pads) < 0 or pads[:2] != pads[2:]:
        _fail(node, f"pads {pads}: only the same padding (ph, pw) on both sides of each axis "
                    f"maps")
    return pairs["kernel_shape"], pairs["strides"], tuple(pads[:2])


def _conv(node, values, state):
    x = values[node.input[0]]
    w = values[node.input[1]] if len(node.input) > 1 else None
    if not isinstance(w, _Ternary):
        _fail(node, "the weights must be a Quant/BipolarQuant of an initializer (2-bit "
                    "ternary)")
    if not isinstance(x, _Trits) or x.shape is None:
        _fail(node, "its input must be a ternary feature map (B, C, H, W) (a Quant before "
                    "every layer)")
    kernel, stride, pads = _window(node, CONV_ATTRS)
    if w.t.ndim != 4 or w.t.shape[1] != x.shape[0]:
        _fail(node, f"shapes do not chain: the input has {x.shape[0]} channels, the weights "
                    f"are {list(w.t.shape)}")
    if kernel is not None and kernel != w.t.shape[2:]:
        _fail(node, f"kernel_shape {list(kernel)} is not the weights' {list(w.t.shape[2:])}")
    kernel = tuple(w.t.shape[2:])
    if pads != (0, 0) and x.beta != 0:
        _fail(node, f"pads {list(pads)} with real zeros, but the input's trit 0 decodes to "
                    f"β_a = {x.beta:.6g}: the weights format pads in the trit domain (pad "
                    f"with a Pad of value β_a, or give the Quant before it zero point 0)")
    padding = (x.pad[0] + pads[0], x.pad[1] + pads[1])
    if any(pad >= k for pad, k in zip(padding, kernel)):
        _fail(node, f"padding {list(padding)} must be less than the kernel {kernel[0]}x"
                    f"{kernel[1]} on each axis")
    try:
        out = conv_out_shape(x.shape, kernel, stride, padding)
    except ValueError as error:
        _fail(node, f"{error} ({x.shape[1]}x{x.shape[2]} map, padding {list(padding)})")
    p = w.t.shape[0]
    t_w, alpha_w, beta_w = _weight_channels(node, w.t.reshape(p, -1), w.scale.reshape(p, -1),
                                            w.offset.reshape(p, -1))
    layer = {"kind": "conv", "t_w": t_w, "alpha_w": alpha_w, "beta_w": beta_w,
             "alpha_a": x.alpha, "beta_a": x.beta, "node": _name(node),
             "in_shape": tuple(x.shape), "kernel": kernel, "stride": stride,
             "padding": padding}
    lin = _Linear(layer, (p,) + out)
    if len(node.input) > 2 and node.input[2]:
        lin.pre = (np.ones(p), _finite(_per_channel(_const(values, node, 2), p, node,
                                                    "the bias"), node, "the bias"))
    return lin


def _maxpool(node, values, state):
    x = values[node.input[0]]
    kernel, stride, pads = _window(node, POOL_ATTRS)
    if kernel is None:
        _fail(node, "kernel_shape is missing")
    if pads != (0, 0):
        _fail(node, f"pads {list(pads)}: the weights format pools without padding")
    _unpadded(node, x)
    spatial = x.shape if isinstance(x, _Trits) else (
        x.shape if isinstance(x, _Linear) else None)
    if spatial is None:
        _fail(node, "MaxPool maps on a ternary feature map (B, C, H, W) or a Conv's "
                    "pre-activation")
    try:
        out = (spatial[0],) + conv_out_shape(spatial, kernel, stride, (0, 0))
    except ValueError as error:
        _fail(node, f"{error} ({spatial[1]}x{spatial[2]} map)")
    pool = {"kind": "maxpool", "in_shape": tuple(spatial), "kernel": kernel,
            "stride": stride, "node": _name(node)}
    if isinstance(x, _Linear):                 # before the Quant: checked when it closes
        x.pools.append(pool)
        x.shape = out
        return x
    # max(α·t + β) = α·max(t) + β for α > 0: pooling the real values pools the trits.
    state["layers"].append(pool)
    return _Trits(int(np.prod(out)), x.alpha, x.beta, out)


def _pad(node, values):
    x = values[node.input[0]]
    attrs = _attrs(node)
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode != "constant":
        _fail(node, f"mode {mode}: only constant padding maps")
    if len(node.input) > 3 and node.input[3]:
        _fail(node, "the axes input is not supported (pad all four axes)")
    pads = (_const(values, node, 1) if len(node.input) > 1 and node.input[1]
            else np.asarray(attrs.get("pads", []), dtype=np.float64)).ravel()
    value = (_const(values, node, 2).ravel() if len(node.input) > 2 and node.input[2]
             else np.asarray([attrs.get("value", 0.0)], dtype=np.float64))
    if not isinstance(x, _Trits) or x.shape is None:
        _fail(node, "Pad maps only on a ternary feature map (B, C, H, W) that feeds a Conv")
    if value.size != 1 or not np.isfinite(value).all():
        _fail(node, f"the pad value must be one finite number, not {value.tolist()}")
    if pads.size != 8 or (pads < 0).any() or (pads[:2] != 0).any() or (pads[4:6] != 0).any() \
            or (pads[2:4] != pads[6:8]).any():
        _fail(node, f"pads {pads.astype(np.int64).tolist()}: only the same padding of H and W "
                    f"on both sides maps (N and C unpadded)")
    v = float(value[0])
    if abs(v - x.beta) > PAD_VALUE_ULPS * 2.0 ** -24 * abs(x.beta):
        _fail(node, f"pads with {v:.9g}, but trit 0 decodes to β_a = {x.beta:.9g} here: the "
                    f"weights format pads with trit 0 (docs/qonnx.md)")
    return _Trits(x.features, x.alpha, x.beta, x.shape,
                  (x.pad[0] + int(pads[2]), x.pad[1] + int(pads[3])))


def _reshape(node, values):
    x = values[node.input[0]]
    if isinstance(x, _Const):
        if node.op_type == "Transpose":
            perm = _attrs(node).get("perm")
            return _Const(np.transpose(x.value, perm))
        if node.op_type == "Reshape":
            return _Const(x.value.reshape(_const(values, node, 1).astype(np.int64)))
        axis = _attrs(node).get("axis", 1)
        return _Const(x.value.reshape(int(np.prod(x.value.shape[:axis])), -1))
    if isinstance(x, _Ternary) and node.op_type == "Transpose":
        perm = _attrs(node).get("perm")
        return x.apply(lambda a: np.transpose(a, perm))
    if node.op_type == "Transpose":
        _fail(node, "only constant (weight) tensors may be transposed")
    if node.op_type == "Flatten" and _attrs(node).get("axis", 1) != 1:
        _fail(node, "only Flatten with axis 1 (keep the batch dimension) maps")
    if isinstance(x, _Linear) and x.shape is not None:
        _fail(node, "reshapes a Conv's pre-activation; flatten after its activation Quant")
    _unpadded(node, x)
    if not isinstance(x, (_Pixels, _Trits, _Linear)):
        _fail(node, "has nothing it can reshape")
    features = x.features if isinstance(x, _Trits) else (
        int(np.prod(x.shape)) if isinstance(x, _Pixels) else x.channels)
    target = None                                     # (batch, features)
    if node.op_type == "Reshape":
        shape = _const(values, node, 1).astype(np.int64).tolist()
        rest = _resolve(shape[1:], features)
        # (batch, C, H, W): the pixels, or the input's trits, as a feature map (C order).
        to_map = len(shape) == 4 and rest is not None and not isinstance(x, _Linear) \
            and (isinstance(x, _Pixels) or x.shape in (None, rest))
        if shape[:1] not in ([-1], [0], [1]) or not (
                to_map or (len(shape) == 2 and shape[1] in (-1, features))):
            _fail(node, f"only a reshape to (batch, features) or (batch, C, H, W) maps, not "
                        f"{shape}")
        target = tuple(rest) if to_map else None
    if isinstance(x, _Pixels):
        return _Pixels(x.origin, target or (features,), x.steps)
    if isinstance(x, _Trits):
        return _Trits(features, x.alpha, x.beta, target)
    return x


def _resolve(dims, features):
    """A Reshape's non-batch dims with one -1 resolved, or None if they do not hold
    `features` values."""
    known = int(np.prod([d for d in dims if d != -1]))
    if dims.count(-1) > 1 or known < 1 or any(d < -1 or d == 0 for d in dims) \
            or features % known:
        return None
    dims = tuple(features // known if d == -1 else d for d in dims)
    return dims if int(np.prod(dims)) == features else None


def _interpret(proto, pixel_max):
    import onnx
    graph = proto.graph
    values = {t.name: _Const(onnx.numpy_helper.to_array(t)) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in values]
    if len(inputs) != 1:
        raise QonnxError(f"the graph must have one input (the pixels), not "
                         f"{[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) < 2 or any(d < 1 for d in dims[1:]):
        raise QonnxError(f"graph input {inputs[0].name!r}: expected a static shape (batch, "
                         f"...), not {dims}")
    values[inputs[0].name] = _Pixels(dims[1:], dims[1:])
    state = {"layers": [], "pixel_max": pixel_max, "input": None}
    for node in graph.node:
        try:
            values[node.output[0]] = _interpret_node(node, values, state)
        except QonnxError:
            raise
        except (IndexError, KeyError, ValueError, TypeError, AttributeError) as error:
            # A node with missing inputs or attributes of the wrong kind.
            _fail(node, f"malformed ({type(error).__name__}: "
                        f"{' '.join(str(error).split())[:120]})")
    return _finish(graph, values, state)


def _interpret_node(node, values, state):
    import onnx
    op = node.op_type
    if len(node.output) != 1 and op != "BatchNormalization":
        _fail(node, "must have exactly one output")
    if op in QUANT_OPS or op == "BipolarQuant":
        return _quant(node, values, state)
    if op == "MultiThreshold":
        return _multithreshold(node, values, state)
    if op in ("Mul", "Div", "Add", "Sub"):
        return _affine(node, values, op)
    if op == "BatchNormalization":
        return _batchnorm(node, values)
    if op in ("MatMul", "Gemm"):
        return _matmul(node, values, state)
    if op == "Conv":
        return _conv(node, values, state)
    if op == "MaxPool":
        return _maxpool(node, values, state)
    if op == "Pad":
        return _pad(node, values)
    if op in ("Reshape", "Flatten", "Transpose"):
        return _reshape(node, values)
    if op == "Identity":
        return values[node.input[0]]
    if op == "Constant":
        return _Const(onnx.numpy_helper.to_array(_attrs(node)["value"]))
    _fail(node, f"not supported (the importer maps {', '.join(SUPPORTED)})")


def _finish(graph, values, state):
    result = values[graph.output[0].name]
    if not isinstance(result, _Linear) or result.layer["kind"] != "linear":
        raise QonnxError(f"graph output {graph.output[0].name!r}: must be the logits of a "
                         f"MatMul/Gemm (the last layer has no activation)")
    scale, offset = _logits_transform(result, graph.output[0].name)
    state["layers"].append(result.layer)
    if sum(layer["kind"] != "maxpool" for layer in state["layers"]) < 2:
        raise QonnxError("the graph has one layer; the weights format needs at least one "
                         "hidden layer")
    return state, (scale, offset)


def _logits_transform(lin, name):
    """The logits are A·y + B; argmax is unchanged only with one A > 0 and one B."""
    if lin.bn is not None:
        raise QonnxError(f"graph output {name!r}: a BatchNormalization on the logits cannot be "
                         f"folded (the weights format has no per-class bias)")
    a = lin.pre[0] * lin.post[0]
    b = lin.post[0] * lin.pre[1] + lin.post[1]
    if (a != a[0]).any() or (b != b[0]).any() or a[0] <= 0:
        raise QonnxError(f"graph output {name!r}: a per-class scale or bias on the logits "
                         f"cannot be folded (the weights format has no per-class bias)")
    return float(a[0]), float(b[0])


# --- building the weights ------------------------------------------------------------------------

def build(proto, *, pixel_max=16):
    """(manifest without training record, arrays, info) from a cleaned QONNX ModelProto.
    info: per layer the node it came from and its fixed-point error bound, and the logits'
    transform (scale, offset) between the golden logits and the graph's."""
    state, transform = _interpret(proto, pixel_max)
    if state["input"] is None:
        raise QonnxError("the pixels reach a MatMul/Gemm without a Quant (the input must be "
                         "ternary)")
    specs, arrays, layers_info = [], {}, []
    last = len(state["layers"]) - 1
    counts = {"linear": 0, "conv": 0, "maxpool": 0}
    for index, layer in enumerate(state["layers"]):
        kind = layer["kind"]
        counts[kind] += 1
        layer["name"] = f"{LAYER_PREFIX[kind]}{counts[kind]}"
        entry = {"name": layer["name"], "node": layer["node"], "kind": kind,
                 "activation": layer.get("activation") if index < last else None}
        if kind == "maxpool":
            spec, layer_arrays = weights.pool_record(layer["name"], layer["in_shape"],
                                                     layer["kernel"], layer["stride"])
            specs.append(spec)
            layers_info.append(entry)
            continue
        t_w = layer["t_w"]
        n = t_w.shape[1]
        where = f"node {layer['node']} (layer {layer['name']})"
        try:
            k_fmt, out_fmt = choose_formats(layer["alpha_w"], layer["beta_w"], layer["alpha_a"],
                                            layer["beta_a"], t_w.sum(axis=1, dtype=np.int64), n)
        except ValueError as error:
            raise QonnxError(f"{where}: {error}") from None
        bn = layer.get("bn") if index < last else None
        try:
            if kind == "conv":
                spec, layer_arrays = weights.conv_record(
                    layer["name"], layer["in_shape"],
                    t_w.reshape((t_w.shape[0], layer["in_shape"][0]) + layer["kernel"]),
                    layer["stride"], layer["padding"], layer["alpha_w"], layer["beta_w"],
                    layer["alpha_a"], layer["beta_a"], k_fmt, out_fmt, bn)
            else:
                spec, layer_arrays = weights.layer_record(
                    layer["name"], t_w, layer["alpha_w"], layer["beta_w"], layer["alpha_a"],
                    layer["beta_a"], k_fmt, out_fmt, bn)
        except ValueError as error:
            raise QonnxError(f"{where}: {error}") from None
        specs.append(spec)
        arrays.update(layer_arrays)
        layers_info.append({**entry, "in_features": n, "out_features": int(t_w.shape[0]),
                            "k_fmt": str(k_fmt), "out_fmt": str(out_fmt),
                            "error_bound": model.error_bound(n, k_fmt, out_fmt)})
    encoding = state["input"]
    shape = encoding.shape
    first = state["layers"][0]
    if first["kind"] != "linear":
        # A CNN's pixels as the map its first layer reads; one channel is stored as (H, W).
        shape = first["in_shape"][1:] if first["in_shape"][0] == 1 else first["in_shape"]
    manifest = weights.new_manifest(shape, encoding.pixel_max, specs, "memory.npz")
    return manifest, arrays, {"layers": layers_info,
                              "logits_transform": {"scale": transform[0],
                                                   "offset": transform[1]}}


def import_model(proto, *, pixel_max=16, where="<model>"):
    """(manifest, arrays, info, cleaned ModelWrapper): clean with qonnx, interpret, fold, and
    validate with `weights.from_arrays` (so the result loads)."""
    cleaned = clean(proto, where)
    _sort_nodes(cleaned.model.graph, where)
    try:
        manifest, arrays, info = build(cleaned.model, pixel_max=pixel_max)
    except QonnxError as error:
        raise QonnxError(f"{where}: {error}") from None
    try:
        network = weights.from_arrays(manifest, arrays)
    except ValueError as error:
        raise QonnxError(f"{where}: the folded network does not validate: {error}") from None
    return manifest, arrays, info, network, cleaned


def source_record(path, proto):
    blob = Path(path).read_bytes()
    return {"file": Path(path).name, "sha256": hashlib.sha256(blob).hexdigest(),
            "producer": f"{proto.producer_name} {proto.producer_version}".strip()}


def import_file(model_path, out_json, *, pixel_max=16, report=None, engine=None):
    """MODEL.onnx → weights OUT.json + OUT.npz (atomic), checked against execute_onnx on the
    shipped test split of its input size (digits or MNIST-5k, `qonnx_check.test_split`);
    returns (network, comparison). The comparison is also merged into the
    JSON report `report` (rtn_hw.files.update_json) under "imports", keyed by OUT's name.
    `engine(network, images)` → (logits, classes), when given, simulates the hardware for the
    comparison (the CLI passes the engine simulation of `make demo`; this module never imports
    the gateware). Nothing is written when the graph does not map (QonnxError)."""
    from ..files import update_json
    from . import qonnx_check
    model_path, out_json = Path(model_path), Path(out_json)
    proto = read_model(model_path)
    manifest, arrays, info, network, wrapper = import_model(proto, pixel_max=pixel_max,
                                                            where=str(model_path))
    split = qonnx_check.test_split(network)
    if split is None:
        raise QonnxError(f"{model_path}: the check runs on a shipped test split (the digits: "
                         f"64 pixels 0..16, MNIST-5k: 784 pixels 0..255); this graph takes "
                         f"{network.input.features} pixels 0..{network.input.pixel_max}")
    dataset, images, labels = split
    def simulate(batch):
        result = engine(network, batch)
        # The engine may name itself only once it knows the network (MLP or CNN).
        simulate.description = getattr(engine, "description", None)
        return result
    comparison = qonnx_check.compare(wrapper, network, info, images, labels,
                                     engine=None if engine is None else simulate)
    props = {p.key: p.value for p in proto.metadata_props}
    seed = props.get("rtn_hw.seed", "0")
    accuracy = comparison["accuracy"]
    manifest["arrays"]["file"] = out_json.with_suffix(".npz").name
    manifest["training"] = {
        "seed": int(seed) if seed.isdigit() else 0,
        "variant": "imported",
        "source": source_record(model_path, proto),
        "sizes": [network.input.features] + [layer.out_features for layer in network.layers
                                             if layer.kind == "linear"],
        "dataset": {"name": dataset, "test_size": comparison["images"]},
        "accuracy": {"float": accuracy["qonnx"], "torch": accuracy["qonnx"],
                     "golden": accuracy["golden_correct"] / comparison["images"],
                     "golden_correct": accuracy["golden_correct"],
                     "test_size": comparison["images"]},
        "accuracy_note": "float and torch: the QONNX graph run by qonnx execute_onnx "
                         "(float32); an imported model has no separate full-precision one",
        "error_bounds": [layer.error_bound() for layer in network.layers
                         if layer.kind != "maxpool"],
    }
    if network.convolutional:
        manifest["training"]["channels"] = [layer.out_channels for layer in network.layers
                                            if layer.kind == "conv"]
    weights.save(out_json, manifest, arrays)
    loaded = weights.load(out_json)
    entry = {"model": source_record(model_path, proto), "weights": out_json.name,
             "pixel_max": pixel_max, "dataset": dataset, **comparison,
             "versions": qonnx_check.versions()}
    if report is not None:
        update_json(report, lambda doc: {**doc, "format": 1,
                                         "imports": {**doc.get("imports", {}),
                                                     out_json.stem: entry}})
    return loaded, entry
