"""QONNX import and export (rtn_hw.interop, `rtn-hw import`, `rtn-hw export-qonnx`).

Needs the `onnx` extra (make test installs it); skipped with that reason without it. The
Brevitas models in tests/data/ were made by `python -m rtn_hw.train.brevitas_mlp` and
`rtn_hw.train.brevitas_cnn` (see tests/data/README.md), so no torch is needed here.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

if "onnx" in os.environ.get("RTN_HW_REQUIRE", "").split(","):
    import qonnx  # noqa: F401  (a run that promises the extra fails without it, never skips)
else:
    pytest.importorskip("qonnx", reason="needs the onnx extra: pip install -e '.[onnx]' "
                                        "(make test installs it)")
import onnx  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from rtn_hw import cli, model, weights  # noqa: E402
from rtn_hw.interop import qonnx_check, qonnx_export, qonnx_import  # noqa: E402
from helpers import random_trits  # noqa: E402

DATA = Path(__file__).parent / "data"
BREVITAS = {"const": DATA / "brevitas_const.onnx",
            "zero_point": DATA / "brevitas_zero_point.onnx"}
BREVITAS_CNN = {"const": DATA / "brevitas_cnn_const.onnx",
                "zero_point": DATA / "brevitas_cnn_zero_point.onnx"}
CNN_MANIFESTS = {"digits": weights.WEIGHTS_DIR / "rtn_digits_cnn.json",
                 "mnist5k": weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json"}


@pytest.fixture(scope="module")
def shipped():
    net = weights.load()
    return net, weights.read_raw(weights.DEFAULT_MANIFEST)[1]


@pytest.fixture(scope="module")
def digits():
    return weights.load_digits_test()


def run(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _f32(values):
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def random_network(rng, sizes, shape, pixel_max=16):
    """A valid golden network with float32-valued parameters (as torch trains them): some
    zero offsets, some negative BatchNorm scales."""
    specs, arrays = [], {}
    for index, (n, p) in enumerate(zip(sizes[:-1], sizes[1:])):
        t_w = random_trits(rng, (p, n))
        alpha_w = _f32(rng.uniform(0.05, 1.0, p))
        beta_w = _f32(np.where(rng.random(p) < 0.2, 0.0, rng.normal(0, 0.1, p)))
        alpha_a = float(_f32(rng.uniform(0.5, 2.0)))
        beta_a = float(_f32(rng.normal(0, 0.3))) if index else float(_f32(rng.normal(0, 0.1)))
        k_fmt, out_fmt = model.fixed.choose_formats(alpha_w, beta_w, alpha_a, beta_a,
                                                    t_w.sum(axis=1, dtype=np.int64), n)
        bn = None
        if index < len(sizes) - 2:
            scale = np.sqrt(n) * alpha_w * alpha_a
            bn = (_f32(rng.choice([-1, 1], p) * rng.uniform(0.5, 2, p)),
                  _f32(rng.normal(0, 0.3, p)), _f32(rng.normal(0, 0.3, p) * scale),
                  _f32((rng.uniform(0.5, 1.5, p) * scale) ** 2), 1e-5)
        spec, layer_arrays = weights.layer_record(f"fc{index + 1}", t_w, alpha_w, beta_w,
                                                  alpha_a, beta_a, k_fmt, out_fmt, bn)
        specs.append(spec)
        arrays.update(layer_arrays)
    manifest = weights.new_manifest(shape, pixel_max, specs, "random.npz")
    return weights.from_arrays(manifest, arrays), manifest, arrays


def round_trip(network, arrays):
    proto, summary = qonnx_export.to_qonnx(network, arrays)
    onnx.checker.check_model(proto)
    _, _, info, back, wrapper = qonnx_import.import_model(
        proto, pixel_max=network.input.pixel_max)
    return back, info, wrapper, summary


# --- export, and import(export(w)) == w ---------------------------------------------------------

def test_shipped_network_round_trips_and_matches_execute_onnx(shipped, digits):
    net, arrays = shipped
    back, info, wrapper, summary = round_trip(net, arrays)
    assert qonnx_check.integer_differences(net, back) == []
    # Every offset went out as a zero point (the search found one within a few ULPs).
    assert summary["offsets_as_add"] == []
    assert len(summary["zero_points"]) == 5
    report = qonnx_check.compare(wrapper, back, info, *digits)
    print(json.dumps(report["logits"]))
    assert report["class_agreement"] == 1.0 and report["consistent"]
    assert report["accuracy"]["qonnx"] == report["accuracy"]["golden"]
    assert report["logits"]["within_bound"]
    assert all(layer.get("differing_trits_near_threshold", True) for layer in report["layers"])


@pytest.mark.parametrize("sizes, shape", [((16, 8, 8, 3), (4, 4)), ((36, 24, 12, 5), (36,)),
                                          ((64, 128, 64, 10), (8, 8))],
                         ids=["16-8-8-3", "36-24-12-5", "64-128-64-10"])
def test_random_networks_round_trip(rng, sizes, shape):
    net, _, arrays = random_network(rng, sizes, shape)
    back, info, wrapper, _ = round_trip(net, arrays)
    assert qonnx_check.integer_differences(net, back) == []
    assert (back.input.shape, back.input.pixel_max) == (tuple(shape), 16)
    images = rng.integers(0, 17, (200, sizes[0]))
    report = qonnx_check.compare(wrapper, back, info, images)
    assert report["logits"]["within_bound"]
    # Random rows can be all zero with β_w = 0: logits exactly 0, ties the golden network
    # breaks by the first maximum. Any other class difference fails.
    assert report["classes_differing_beyond_a_tie"] == []
    assert report["class_agreement"] >= 0.8
    assert all(layer.get("differing_trits_near_threshold", True) for layer in report["layers"])


def test_offsets_fall_back_to_add_nodes_and_still_round_trip(rng, monkeypatch):
    """No zero point keeps the K codes: β follows the Quant as an Add, as Brevitas also
    writes it, and the import composes it exactly."""
    net, _, arrays = random_network(rng, (16, 8, 8, 3), (16,))

    def never(target):
        yield np.full(np.shape(target), np.float32(1e-3))
    monkeypatch.setattr(qonnx_export, "_candidates", never)
    back, _, _, summary = round_trip(net, arrays)
    assert summary["offsets_as_add"] and all("input" in s or "weights" in s
                                             for s in summary["offsets_as_add"])
    assert qonnx_check.integer_differences(net, back) == []


def test_integer_differences_finds_a_changed_code(shipped):
    net, arrays = shipped
    edited = {k: v.copy() for k, v in arrays.items()}
    edited["fc2.t_w"][0, 0] = -edited["fc2.t_w"][0, 0] or 1
    manifest = net.manifest
    specs, new_arrays = [], {}
    for spec in manifest["layers"]:
        name = spec["name"]
        bn = None
        if spec["activation"] == "ternary":
            bn = tuple(edited[f"{name}.{k}"] for k in ("bn_gamma", "bn_beta", "bn_mean",
                                                       "bn_var")) + (spec["bn_eps"],)
        fmt = {key: model.Q(spec[key]["int_bits"], spec[key]["frac_bits"])
               for key in ("k_fmt", "out_fmt")}
        s, a = weights.layer_record(name, edited[f"{name}.t_w"], edited[f"{name}.alpha_w"],
                                    edited[f"{name}.beta_w"], spec["alpha_a"], spec["beta_a"],
                                    fmt["k_fmt"], fmt["out_fmt"], bn)
        specs.append(s)
        new_arrays.update(a)
    other = weights.from_arrays(weights.new_manifest((8, 8), 16, specs, "x.npz"), new_arrays)
    assert "fc2.t_w" in qonnx_check.integer_differences(net, other)


def test_export_cli_writes_a_graph_qonnx_accepts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rtn_digits.onnx"
    status, text, err = run(["export-qonnx", str(weights.DEFAULT_MANIFEST), "-o", str(out)],
                            capsys)
    assert (status, err) == (0, "")
    assert "class agreement 100.00 %" in text and "within" in text
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model
    cleaned = cleanup_model(ModelWrapper(proto))
    assert cleaned.check_all_tensor_shapes_specified()
    quants = [n for n in cleaned.graph.node if n.op_type == "Quant"]
    assert len(quants) == 6
    for node in quants:
        assert cleaned.get_initializer(node.input[3]) == 2
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert (attrs["signed"], attrs["narrow"]) == (1, 1)
    # RTN's offsets are non-zero zero points on the hidden activations and the weights.
    assert sum(bool((cleaned.get_initializer(n.input[2]) != 0).any()) for n in quants) == 5
    report = json.loads((tmp_path / "build/reports/import.json").read_text())
    assert report["exports"]["rtn_digits"]["class_agreement"] == 1.0


# --- real Brevitas models -------------------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(BREVITAS))
def test_brevitas_models_import(variant, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proto = onnx.load(str(BREVITAS[variant]))
    props = {p.key: p.value for p in proto.metadata_props}
    zero_points = [numpy_helper.to_array(i) for i in proto.graph.initializer
                   if i.name in {n.input[2] for n in proto.graph.node if n.op_type == "Quant"}]
    assert any((z != 0).any() for z in zero_points) == (variant == "zero_point")
    out = tmp_path / f"{variant}.json"
    status, text, err = run(["import", str(BREVITAS[variant]), "-o", str(out)], capsys)
    print(text)
    assert (status, err) == (0, "")
    net = weights.load(out)
    assert [(layer.in_features, layer.out_features) for layer in net.layers] \
        == [(64, 64), (64, 64), (64, 10)]
    entry = json.loads((tmp_path / "build/reports/import.json").read_text())["imports"][variant]
    assert entry["class_agreement"] == 1.0 and entry["logits"]["within_bound"]
    assert entry["consistent"]
    # The graph run by qonnx reproduces the accuracy torch measured when it was trained.
    assert round(entry["accuracy"]["qonnx"], 4) == float(props["rtn_hw.torch_accuracy"])
    assert net.manifest["training"]["seed"] == int(props["rtn_hw.seed"])
    assert net.manifest["training"]["accuracy"]["golden"] == entry["accuracy"]["golden"]


def test_brevitas_model_exports_back_to_the_same_network(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["import", str(BREVITAS["zero_point"]), "-o", "zp.json"], capsys)[0] == 0
    net = weights.load(tmp_path / "zp.json")
    back, _, _, _ = round_trip(net, weights.read_raw(tmp_path / "zp.json")[1])
    assert qonnx_check.integer_differences(net, back) == []


def test_imported_brevitas_model_runs_on_the_simulated_engine(tmp_path, capsys, monkeypatch):
    """The imported network through NetworkEngine (make demo --weights), bit for bit."""
    from rtn_hw import demo
    monkeypatch.chdir(tmp_path)
    assert run(["import", str(BREVITAS["zero_point"]), "-o", "zp.json"], capsys)[0] == 0
    assert demo.main(["--images", "12", "--simulator", "amaranth", "--weights", "zp.json",
                      "--out", "demo.json"]) == 0
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["hw_golden_agreement"] == 1.0 and report["samples"] == 12
    assert report["weights"]["manifest"] == "zp.json"


def test_import_can_run_the_engine_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, text, _ = run(["import", str(BREVITAS["const"]), "-o", "c.json", "--engine", "4"],
                          capsys)
    assert status == 0 and "engine (simulated, 4 images): golden agreement 100.00 %" in text
    engine = json.loads((tmp_path / "build/reports/import.json").read_text())["imports"]["c"][
        "engine"]
    assert engine["images"] == 4 and engine["golden_agreement"] == 1.0
    assert engine["class_agreement_with_graph"] == 1.0 and "Amaranth" in engine["simulator"]


def test_demo_refuses_a_bad_weights_file(tmp_path, capsys):
    from rtn_hw import demo
    (tmp_path / "w.json").write_text("{}")
    assert demo.main(["--weights", str(tmp_path / "w.json"), "--out",
                      str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err
    assert err == (f"python -m rtn_hw.demo: error: --weights {tmp_path / 'w.json'}: "
                   f"{tmp_path / 'w.json'}: format: must be 'rtn-hw-weights', not None\n")


# --- other forms the importer maps -------------------------------------------------------------

def _graph(nodes, inits, shape=(1, 16), out="logits", classes=3):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "pixels", onnx.TensorProto.FLOAT, list(shape))], [helper.make_tensor_value_info(
            out, onnx.TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                          helper.make_opsetid(
                                                              qonnx_export.QONNX_DOMAIN, 1)])
    model_proto.ir_version = 8
    return model_proto


def _quant(x, stem, out, scale=1.0, zero=0.0, bits=2.0, **attrs):
    attrs = {"signed": 1, "narrow": 1, "rounding_mode": "ROUND", **attrs}
    return (helper.make_node("Quant", [x, f"{stem}_s", f"{stem}_z", f"{stem}_b"], [out],
                             name=f"q_{stem}", domain=qonnx_export.QONNX_DOMAIN, **attrs),
            {f"{stem}_s": scale, f"{stem}_z": zero, f"{stem}_b": bits})


def exotic_graph(rng, bits=2.0):
    """Gemm (transB, bias) + per-channel Mul + BatchNorm + Quant with a zero point; a
    BipolarQuant weight through a Transpose; a positive scale and offset on the logits."""
    inits = {"half": 8.0, "one": 1.0,
             "w1": rng.normal(0, 1, (8, 16)), "w2": rng.normal(0, 1, (8, 3)),
             "bias1": rng.normal(0, 0.5, 8), "chan": rng.uniform(0.5, 2, 8),
             "g": rng.uniform(0.5, 2, 8) * rng.choice([-1, 1], 8), "b": rng.normal(0, 0.5, 8),
             "m": rng.normal(0, 1, 8), "v": rng.uniform(1, 4, 8),
             "out_scale": 2.0, "out_bias": 0.5, "w2_scale": 0.3}
    q0, i0 = _quant("centered", "in", "t0")
    qw, iw = _quant("w1", "w1q", "w1t", scale=0.7 * np.ones((8, 1)), zero=0.2 * np.ones((8, 1)))
    qa, ia = _quant("h", "act", "t1", scale=1.5, zero=-0.25, bits=bits)
    nodes = [helper.make_node("Div", ["pixels", "half"], ["scaled"], name="div"),
             helper.make_node("Sub", ["scaled", "one"], ["centered"], name="sub"), q0, qw,
             helper.make_node("Gemm", ["t0", "w1t", "bias1"], ["y1"], name="gemm", transB=1),
             helper.make_node("Mul", ["y1", "chan"], ["y1s"], name="chan_mul"),
             helper.make_node("BatchNormalization", ["y1s", "g", "b", "m", "v"], ["h"],
                              name="bn", epsilon=1e-5), qa,
             helper.make_node("Transpose", ["w2"], ["w2T"], name="tr", perm=[1, 0]),
             helper.make_node("BipolarQuant", ["w2T", "w2_scale"], ["w2b"], name="bq",
                              domain=qonnx_export.QONNX_DOMAIN),
             helper.make_node("Transpose", ["w2b"], ["w2bT"], name="tr2", perm=[1, 0]),
             helper.make_node("MatMul", ["t1", "w2bT"], ["y2"], name="mm"),
             helper.make_node("Mul", ["y2", "out_scale"], ["y2s"], name="out_mul"),
             helper.make_node("Add", ["y2s", "out_bias"], ["logits"], name="out_add")]
    return _graph(nodes, {**inits, **i0, **iw, **ia})


def test_exotic_graph_imports_and_matches_execute_onnx(rng):
    _, _, info, net, wrapper = qonnx_import.import_model(exotic_graph(rng))
    assert info["logits_transform"] == {"scale": 2.0, "offset": 0.5}
    assert net.layers[0].in_features == 16 and net.layers[1].out_features == 3
    assert set(np.unique(net.layers[1].t_w)) <= {-1, 1}          # BipolarQuant weights
    assert net.layers[0].beta_w == pytest.approx(-0.7 * 0.2)     # β = -scale·zero point
    images = rng.integers(0, 17, (300, 16))
    report = qonnx_check.compare(wrapper, net, info, images)
    # Eight ±0.3 weights per class: exact ties between classes are common, and the golden
    # network takes the first maximum where float32 rounding picks any of them.
    assert report["classes_differing_beyond_a_tie"] == []
    assert report["class_agreement"] >= 0.8 and report["logits"]["within_bound"]
    assert report["layers"][0]["trit_agreement"] == 1.0


def test_multithreshold_activation_imports_and_matches_execute_onnx(rng):
    """FINN's streamlined form: the BatchNorm and Quant of a hidden layer as a MultiThreshold
    with two thresholds per channel (one channel's pre-activation negated)."""
    def change(graph):
        bn = _node(graph, "bn")
        quant = _node(graph, "q_act")
        thresholds = np.sort(rng.normal(0, 2, (8, 2)), axis=1)
        graph.initializer.append(numpy_helper.from_array(thresholds.astype(np.float32), "thr"))
        graph.initializer.append(numpy_helper.from_array(
            np.where(np.arange(8) == 3, -1.0, 1.0).astype(np.float32), "flip"))
        flip = helper.make_node("Mul", ["y1s", "flip"], ["y1f"], name="flip")
        mt = helper.make_node("MultiThreshold", ["y1f", "thr"], ["t1"], name="mt",
                              domain=qonnx_export.QONNX_DOMAIN, out_dtype="INT2",
                              out_scale=1.5, out_bias=-1.2)
        index = list(graph.node).index(bn)
        graph.node.remove(bn)
        graph.node.remove(quant)
        graph.node.insert(index, mt)
        graph.node.insert(index, flip)
    _, _, info, net, wrapper = qonnx_import.import_model(_edit(exotic_graph(rng), change))
    assert (net.layers[1].alpha_a, net.layers[1].beta_a) == (1.5, pytest.approx(0.3))
    assert net.layers[0].sign[3] == -1 and (np.delete(net.layers[0].sign, 3) == 1).all()
    report = qonnx_check.compare(wrapper, net, info, rng.integers(0, 17, (300, 16)))
    assert report["classes_differing_beyond_a_tie"] == [] and report["logits"]["within_bound"]
    assert report["layers"][0]["trit_agreement"] == 1.0


def test_intquant_and_reshape_map(rng):
    """IntQuant is Quant's other name; images given as (1, 4, 4) reach the first layer
    through a Reshape to (batch, 16)."""
    def change(graph):
        _node(graph, "q_act").op_type = "IntQuant"
        graph.input[0].CopyFrom(helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT,
                                                              [1, 4, 4]))
        graph.initializer.append(numpy_helper.from_array(np.array([1, 16]), "flat_shape"))
        graph.node.insert(0, helper.make_node("Reshape", ["image", "flat_shape"], ["pixels"],
                                              name="flatten"))
    _, _, info, net, wrapper = qonnx_import.import_model(_edit(exotic_graph(rng), change))
    assert net.input.shape == (4, 4)
    report = qonnx_check.compare(wrapper, net, info, rng.integers(0, 17, (100, 16)))
    assert report["classes_differing_beyond_a_tie"] == [] and report["logits"]["within_bound"]


# --- bad input: one line, exit 2, nothing written -------------------------------------------------

def _edit(proto, change):
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    change(proto.graph)
    return proto


def _node(graph, name):
    return next(n for n in graph.node if n.name == name)


def _set_init(graph, name, value):
    init = next(i for i in graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))


def _retype(name, op):
    def change(graph):
        _node(graph, name).op_type = op
    return change


def _dangling(graph):
    _node(graph, "mm").input[1] = "nowhere"


def _cycle(graph):
    _node(graph, "div").input[0] = "logits"


def _no_inputs(graph):
    del _node(graph, "chan_mul").input[:]


BAD = {
    "dangling": (_dangling, "node mm (MatMul): input 'nowhere' is made by no node, initializer "
                            "or graph input"),
    "cycle": (_cycle, "node div (Div): the graph has a cycle through its input 'logits'"),
    "missing_inputs": (_no_inputs, "qonnx cannot clean up the graph (InferenceError: "
                                   "[ShapeInferenceError] (op_type:Mul, node name: chan_mul): "
                                   "Input 0 is out of bounds.)"),
    "unsupported_op": (_retype("chan_mul", "Relu"),
                       "node chan_mul (Relu): not supported (the importer maps Quant, "
                       "IntQuant, BipolarQuant, MultiThreshold, MatMul, Gemm, Conv, MaxPool, "
                       "Pad, BatchNormalization, Mul, Div, Add, Sub, Reshape, Flatten, "
                       "Transpose, Identity, Constant)"),
    "bit_width": (lambda g: _set_init(g, "act_b", 4.0),
                  "node q_act (Quant): bit width [4.0]: the hardware runs 2-bit (ternary) "
                  "tensors only"),
    "wide_range": (lambda g: _node(g, "q_act").attribute[1].CopyFrom(
        helper.make_attribute("narrow", 0)),
        "node q_act (Quant): must be signed with narrow range (-1, 0, +1); a 2-bit wide range "
        "holds -2"),
    "rounding": (lambda g: _node(g, "q_act").attribute[2].CopyFrom(
        helper.make_attribute("rounding_mode", "FLOOR")),
        "node q_act (Quant): rounding mode FLOOR: the encoder sends ±0.5 to 0 (T with "
        "Δ = 0.5), so only ROUND, HALF_EVEN, HALF_DOWN map"),
    "nan_scale": (lambda g: _set_init(g, "act_s", np.nan),
                  "node q_act (Quant): scale has a NaN or infinite value"),
    "nan_weight": (lambda g: _set_init(g, "w1", np.full((8, 16), np.nan)),
                   "node q_w1q (Quant): a weight has a NaN or infinite value"),
    "inf_scale": (lambda g: _set_init(g, "w1q_s", np.full((8, 1), np.inf)),
                  "node q_w1q (Quant): scale has a NaN or infinite value"),
    "zero_scale": (lambda g: _set_init(g, "act_s", 0.0),
                   "node q_act (Quant): scale must be positive (a zero or negative scale has no "
                   "ternary meaning)"),
    "negative_scale": (lambda g: _set_init(g, "w2_scale", -0.3),
                       "node bq (BipolarQuant): scale must be positive (a zero or negative "
                       "scale has no ternary meaning)"),
    "shapes": (lambda g: _set_init(g, "w2", np.ones((7, 3))),
               "node mm (MatMul): shapes do not chain: the input has 8 features, the weights "
               "are [7, 3]"),
    "per_class_bias": (lambda g: _set_init(g, "out_bias", [0.5, 0.1, 0.2]),
                       "graph output 'logits': a per-class scale or bias on the logits cannot "
                       "be folded (the weights format has no per-class bias)"),
    "sign_activation": (_retype("q_act", "BipolarQuant"),
                        "node q_act (BipolarQuant): a sign (BipolarQuant) activation has no "
                        "zero trit; the encoder's thresholds come from Δ = 0.5 (weights format "
                        "v1), so only weights map"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_graph_is_one_line_exit_2_nothing_written(case, rng, tmp_path, capsys,
                                                      monkeypatch):
    change, message = BAD[case]
    err = _import_refused(_edit(exotic_graph(rng), change), tmp_path, capsys, monkeypatch)
    assert err == f"rtn-hw: error: {tmp_path / 'bad.onnx'}: {message}\n"


def _import_refused(graph, tmp_path, capsys, monkeypatch):
    """`rtn-hw import` of `graph` as tmp_path/bad.onnx: exit 2, no stdout, one line on stderr
    (returned), nothing written beside the model."""
    monkeypatch.chdir(tmp_path)
    model_path = tmp_path / "bad.onnx"
    model_path.write_bytes(graph.SerializeToString())
    status, out, err = run(["import", str(model_path), "-o", "net.json"], capsys)
    assert (status, out) == (2, "") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]
    return err


def test_pixel_encoding_must_match_pixel_max(rng, tmp_path, capsys):
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(exotic_graph(rng).SerializeToString())
    status, _, err = run(["import", str(model_path), "-o", str(tmp_path / "n.json"),
                          "--pixel-max", "15"], capsys)
    assert status == 2
    assert err.startswith(f"rtn-hw: error: {model_path}: node q_in (Quant): the pixels' "
                          f"ternary code ") and "is --pixel-max right?" in err


@pytest.mark.parametrize("argv, message", [
    (["import", "x.onnx"], "import: -o NAME.json is required"),
    (["import", "x.onnx", "-o", "n.txt"], "-o n.txt: expected a file name ending in .json"),
    (["import", "x.onnx", "-o", "n.json", "--pixel-max", "0"],
     "--pixel-max 0: expected an integer from 1 to 255"),
    (["import", "x.onnx", "-o", "n.json", "--engine", "-1"],
     "--engine -1: expected an integer of at least 0"),
    (["import", "missing.onnx", "-o", "n.json"],
     "missing.onnx: cannot read: No such file or directory"),
    (["export-qonnx", "missing.json", "-o", "n.onnx"],
     "missing.json: (file): cannot read: No such file or directory"),
    (["export-qonnx", "w.json", "-o", "n.onx"], "-o n.onx: expected a file name ending in "
                                                ".onnx"),
], ids=["no_output", "output_suffix", "pixel_max", "engine", "missing_model",
        "missing_weights", "export_suffix"])
def test_command_line_errors(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(argv, capsys)
    assert (status, out, err) == (2, "", f"rtn-hw: error: {message}\n")


def test_unwritable_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.onnx").mkdir()
    status, out, err = run(["export-qonnx", str(weights.DEFAULT_MANIFEST), "-o", "taken.onnx"],
                           capsys)
    assert (status, out) == (2, "") and err.startswith("rtn-hw: error: -o taken.onnx: cannot "
                                                       "write (")


def test_malformed_onnx(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage\xff\xff")
    status, out, err = run(["import", "bad.onnx", "-o", "n.json"], capsys)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("rtn-hw: error: bad.onnx: malformed ONNX (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


# --- no torch needed; the Brevitas script (train extra) ------------------------------------------

def test_import_and_export_need_no_torch(tmp_path):
    import subprocess
    import sys
    code = ("import sys; from rtn_hw import weights; "
            "from rtn_hw.interop import qonnx_export, qonnx_import; "
            f"qonnx_export.export_file(weights.DEFAULT_MANIFEST, {str(tmp_path / 'a.onnx')!r}); "
            f"qonnx_import.import_file({str(BREVITAS['const'])!r}, {str(tmp_path / 'b.json')!r});"
            " sys.exit('torch' in sys.modules or 'brevitas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr


# Brevitas and torch's ONNX exporter warn about their own deprecations on import and export.
THIRD_PARTY_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                                  "ignore::UserWarning", "ignore::FutureWarning")


@pytest.mark.slow
@THIRD_PARTY_WARNINGS
def test_brevitas_script_exports_an_importable_model(tmp_path, capsys, monkeypatch):
    pytest.importorskip("brevitas", reason="needs the train extra (torch, brevitas)")
    from rtn_hw.train import brevitas_mlp
    monkeypatch.chdir(tmp_path)
    brevitas_mlp.main(["--variant", "zero-point", "--epochs", "1", "--hidden", "16", "16",
                       "-o", "small.onnx"])
    assert run(["import", "small.onnx", "-o", "small.json"], capsys)[0] == 0
    assert [layer.out_features for layer in weights.load(tmp_path / "small.json").layers] \
        == [16, 16, 10]


@pytest.mark.slow
@THIRD_PARTY_WARNINGS
@pytest.mark.parametrize("model", ["brevitas_const", "brevitas_zero_point", "brevitas_cnn_const",
                                   "brevitas_cnn_zero_point"])
def test_committed_brevitas_models_are_what_the_script_makes(model, tmp_path, monkeypatch):
    """tests/data/ regenerated by the recorded command, byte for byte (train extra)."""
    pytest.importorskip("brevitas", reason="needs the train extra (torch, brevitas)")
    import importlib
    proto = onnx.load(str(DATA / f"{model}.onnx"))
    command = {p.key: p.value for p in proto.metadata_props}["rtn_hw.command"].split()
    script = "rtn_hw.train.brevitas_cnn" if "cnn" in model else "rtn_hw.train.brevitas_mlp"
    assert command[:3] == ["python", "-m", script]
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    out = tmp_path / "again.onnx"
    args = command[3:]
    args[args.index("-o") + 1] = str(out)
    importlib.import_module(script).main(args)
    again = onnx.load(str(out))
    assert [(n.op_type, list(n.input)) for n in again.graph.node] \
        == [(n.op_type, list(n.input)) for n in proto.graph.node]
    arrays = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for init in again.graph.initializer:
        assert (numpy_helper.to_array(init) == arrays[init.name]).all(), init.name


@pytest.mark.slow
def test_mutated_graphs_import_or_fail_in_one_line(shipped, rng):
    """Random structural edits (op types, inputs, removed nodes and attributes, scaled, NaN
    or cut initializers) of both kinds of graph: the import succeeds or raises QonnxError
    with one line, nothing else (PYTHONWARNINGS=error makes numpy's warnings fail too)."""
    from rtn_hw.interop import QonnxError
    cnn = CNN_MANIFESTS["digits"]
    bases = [BREVITAS["zero_point"].read_bytes(),
             qonnx_export.to_qonnx(*shipped)[0].SerializeToString(),
             BREVITAS_CNN["const"].read_bytes(),
             qonnx_export.to_qonnx(weights.load(cnn), weights.read_raw(cnn)[1])[0]
             .SerializeToString()]
    ops = ["Relu", "Mul", "Add", "Div", "MatMul", "Gemm", "Quant", "BipolarQuant",
           "MultiThreshold", "Reshape", "Flatten", "Transpose", "BatchNormalization", "Conv",
           "MaxPool", "Pad"]
    for trial in range(300):
        proto = onnx.ModelProto.FromString(bases[trial % len(bases)])
        graph = proto.graph
        names = [n for node in graph.node for n in [*node.input, *node.output]]
        for _ in range(rng.integers(1, 3)):
            node = graph.node[rng.integers(len(graph.node))]
            kind = rng.integers(6)
            if kind == 0:
                node.op_type = ops[rng.integers(len(ops))]
            elif kind == 1 and node.input:
                node.input[rng.integers(len(node.input))] = names[rng.integers(len(names))]
            elif kind == 2:
                graph.node.remove(node)
            elif kind == 3 and node.attribute:
                del node.attribute[rng.integers(len(node.attribute))]
            else:
                init = graph.initializer[rng.integers(len(graph.initializer))]
                value = numpy_helper.to_array(init).astype(np.float32)
                value = (value * [0, -1, np.nan, 3][rng.integers(4)] if kind == 4
                         else value.reshape(-1)[:max(1, value.size // 2)].copy())
                init.CopyFrom(numpy_helper.from_array(value, init.name))
        try:
            qonnx_import.import_model(qonnx_import.parse_model(proto.SerializeToString()))
        except QonnxError as error:
            assert "\n" not in str(error)


def test_an_unexplained_difference_exits_1(tmp_path, capsys, monkeypatch):
    """A check that finds the graph and the golden network apart beyond the bounds: exit 1,
    the weights and the report still written (they record what was found)."""
    monkeypatch.chdir(tmp_path)
    real = qonnx_check.compare

    def shifted(*args, **kwargs):
        report = real(*args, **kwargs)
        return {**report, "consistent": False}
    monkeypatch.setattr(qonnx_check, "compare", shifted)
    status, text, err = run(["import", str(BREVITAS["const"]), "-o", "c.json"], capsys)
    assert (status, err) == (1, "") and "NOT CONSISTENT" in text
    assert (tmp_path / "c.json").exists()


def test_engine_disagreement_makes_the_report_inconsistent(shipped, digits):
    net, arrays = shipped
    _, info, wrapper, _ = round_trip(net, arrays)
    images = digits[0][:8]

    def engine(batch):
        logits, classes = net.forward(batch)
        return logits + (np.arange(len(batch)) == 3)[:, None], classes
    report = qonnx_check.compare(wrapper, net, info, images, engine=engine)
    assert report["engine"]["golden_agreement"] == 7 / 8 and not report["consistent"]


# --- CNNs (weights format v2) -----------------------------------------------------------------

def kinds(net):
    return [layer.kind for layer in net.layers]


def random_cnn(rng, pixel_max=16):
    """A valid golden CNN on 8x8 pixels with float32-valued parameters and non-zero offsets
    (so trit-domain padding differs from zero padding): conv 3x3 padding 1 → pool 2x2 →
    conv 3x3 stride 2 padding 1 → linear hidden → linear logits."""
    specs, arrays = [], {}

    def rtn(p, n, beta_a_scale):
        alpha_w = _f32(rng.uniform(0.05, 1.0, p))
        beta_w = _f32(np.where(rng.random(p) < 0.2, 0.0, rng.normal(0, 0.1, p)))
        return (alpha_w, beta_w, float(_f32(rng.uniform(0.5, 2.0))),
                float(_f32(rng.normal(0, beta_a_scale))))

    def bn(p, n, alpha_w, alpha_a):
        scale = np.sqrt(n) * alpha_w * alpha_a
        return (_f32(rng.choice([-1, 1], p) * rng.uniform(0.5, 2, p)), _f32(rng.normal(0, 0.3, p)),
                _f32(rng.normal(0, 0.3, p) * scale), _f32((rng.uniform(0.5, 1.5, p) * scale) ** 2),
                1e-5)

    shape = (1, 8, 8)
    for name, p, stride in (("conv1", 6, 1), ("conv2", 8, 2)):
        t_w = random_trits(rng, (p, shape[0], 3, 3))
        n = shape[0] * 9
        alpha_w, beta_w, alpha_a, beta_a = rtn(p, n, 0.1 if name == "conv1" else 0.3)
        k_fmt, out_fmt = model.fixed.choose_formats(alpha_w, beta_w, alpha_a, beta_a,
                                                    t_w.reshape(p, -1).sum(axis=1), n)
        spec, a = weights.conv_record(name, shape, t_w, (stride, stride), (1, 1), alpha_w,
                                      beta_w, alpha_a, beta_a, k_fmt, out_fmt,
                                      bn(p, n, alpha_w, alpha_a))
        specs.append(spec)
        arrays.update(a)
        shape = (p, (shape[1] + 2 - 3) // stride + 1, (shape[2] + 2 - 3) // stride + 1)
        if name == "conv1":
            specs.append(weights.pool_record("pool1", shape, (2, 2), (2, 2))[0])
            shape = (p, shape[1] // 2, shape[2] // 2)
    n = int(np.prod(shape))
    for index, (name, p) in enumerate((("fc1", 12), ("fc2", 4))):
        t_w = random_trits(rng, (p, n))
        alpha_w, beta_w, alpha_a, beta_a = rtn(p, n, 0.3)
        k_fmt, out_fmt = model.fixed.choose_formats(alpha_w, beta_w, alpha_a, beta_a,
                                                    t_w.sum(axis=1), n)
        spec, a = weights.layer_record(name, t_w, alpha_w, beta_w, alpha_a, beta_a, k_fmt,
                                       out_fmt, bn(p, n, alpha_w, alpha_a) if index == 0 else None)
        specs.append(spec)
        arrays.update(a)
        n = p
    manifest = weights.new_manifest((8, 8), pixel_max, specs, "random_cnn.npz")
    return weights.from_arrays(manifest, arrays), arrays


@pytest.mark.parametrize("which", sorted(CNN_MANIFESTS))
def test_shipped_cnns_round_trip_and_match_execute_onnx(which, digits):
    net = weights.load(CNN_MANIFESTS[which])
    back, info, wrapper, summary = round_trip(net, weights.read_raw(CNN_MANIFESTS[which])[1])
    assert qonnx_check.integer_differences(net, back) == []
    assert kinds(back) == kinds(net) and back.input == net.input
    # 100 test images keep this fast; `rtn-hw export-qonnx` checks the whole split.
    _, images, labels = qonnx_check.test_split(net)
    report = qonnx_check.compare(wrapper, back, info, images[:100], labels[:100])
    print(which, json.dumps(report["logits"]), summary)
    assert report["consistent"] and report["classes_differing_beyond_a_tie"] == []
    assert all(layer.get("differing_trits_near_threshold", True) for layer in report["layers"])
    assert "engine" not in report                  # no engine asked for, as for an MLP
    if which == "digits":
        assert report["class_agreement"] == 1.0
    else:
        # MNIST-5k's fc1 sums 1,568 products with 13 fraction bits (bound 0.19): float32
        # pre-activations near a threshold fall on the other side of it in a few hidden trits,
        # and one of the 100 images changes class after such trits (explained, consistent).
        assert report["class_agreement"] >= 0.98


def test_random_cnn_round_trips_with_trit_domain_padding(rng):
    net, arrays = random_cnn(rng)
    assert all(layer.beta_a != 0 for layer in net.layers if layer.kind != "maxpool")
    proto, _ = qonnx_export.to_qonnx(net, arrays)
    pads = [n for n in proto.graph.node if n.op_type == "Pad"]
    assert len(pads) == 2                          # both convolutions read through a Pad
    back, info, wrapper, _ = round_trip(net, arrays)
    assert qonnx_check.integer_differences(net, back) == []
    report = qonnx_check.compare(wrapper, back, info, rng.integers(0, 17, (300, 64)))
    assert report["logits"]["within_bound"] and report["classes_differing_beyond_a_tie"] == []
    assert report["class_agreement"] >= 0.8
    assert all(layer.get("differing_trits_near_threshold", True) for layer in report["layers"])
    # Zero padding in place of the Pad's trit 0 changes what the graph computes.
    zero = _edit(proto, lambda g: [_set_init(g, n.input[2], 0.0) for n in g.node
                                   if n.op_type == "Pad"])
    with pytest.raises(qonnx_import.QonnxError, match=r"node Pad_conv1_padded \(Pad\): pads "
                                                      r"with 0, but trit 0 decodes to β_a"):
        qonnx_import.import_model(zero)


def test_export_cli_writes_a_cnn_graph_qonnx_accepts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, text, err = run(["export-qonnx", str(CNN_MANIFESTS["digits"]), "-o", "cnn.onnx"],
                            capsys)
    print(text)
    assert (status, err) == (0, "")
    assert "class agreement 100.00 %" in text and "engine (simulated" not in text
    proto = onnx.load(str(tmp_path / "cnn.onnx"))
    onnx.checker.check_model(proto)
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model
    cleaned = cleanup_model(ModelWrapper(proto))
    assert cleaned.check_all_tensor_shapes_specified()
    ops = [n.op_type for n in cleaned.graph.node]
    assert ops.count("Conv") == 2 and ops.count("MaxPool") == 2 and ops.count("Pad") == 2
    entry = json.loads((tmp_path / "build/reports/import.json").read_text())["exports"]["cnn"]
    assert entry["class_agreement"] == 1.0 and entry["consistent"] and entry["images"] == 359
    assert "engine" not in entry


def cnn_graph(rng):
    """A hand-written CNN graph: Conv with a bias and zero padding on zero-offset trits, a
    per-channel Mul on NCHW, BatchNorm, MaxPool before the Quant; an explicit Pad with the
    value of trit 0 before a strided Conv; Flatten, MatMul, a scale on the logits."""
    s1, z1 = np.float32(1.2), np.float32(-0.3)
    inits = {"half": 8.0, "one": 1.0,
             "cw1": rng.normal(0, 1, (4, 1, 3, 3)), "cb1": rng.normal(0, 0.3, 4),
             "chan": rng.uniform(0.5, 2, (1, 4, 1, 1)),
             "g1": rng.uniform(0.5, 2, 4), "b1": rng.normal(0, 0.5, 4),
             "m1": rng.normal(0, 1, 4), "v1": rng.uniform(1, 4, 4),
             "cw2": rng.normal(0, 1, (6, 4, 3, 3)),
             "g2": rng.uniform(0.5, 2, 6) * rng.choice([-1, 1], 6), "b2": rng.normal(0, 0.5, 6),
             "m2": rng.normal(0, 1, 6), "v2": rng.uniform(1, 4, 6),
             "fw": rng.normal(0, 1, (24, 3)), "out_scale": 2.0,
             "pad_value": (np.float32(0) - z1) * s1}
    q0, i0 = _quant("centered", "in", "t0")
    qc1, ic1 = _quant("cw1", "cw1q", "cw1t", scale=0.5 * np.ones((4, 1, 1, 1)))
    qa1, ia1 = _quant("p1", "act1", "t1", scale=s1, zero=z1)
    qc2, ic2 = _quant("cw2", "cw2q", "cw2t", scale=0.4 * np.ones((6, 1, 1, 1)),
                      zero=0.1 * np.ones((6, 1, 1, 1)))
    qa2, ia2 = _quant("h2", "act2", "t2", scale=0.9, zero=0.2)
    qf, i_f = _quant("fw", "fwq", "fwt", scale=0.3)
    nodes = [helper.make_node("Div", ["pixels", "half"], ["scaled"], name="div"),
             helper.make_node("Sub", ["scaled", "one"], ["centered"], name="sub"), q0, qc1,
             helper.make_node("Conv", ["t0", "cw1t", "cb1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("Mul", ["c1", "chan"], ["c1s"], name="chan_mul"),
             helper.make_node("BatchNormalization", ["c1s", "g1", "b1", "m1", "v1"], ["h1"],
                              name="bn1", epsilon=1e-5),
             helper.make_node("MaxPool", ["h1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                              strides=[2, 2]), qa1,
             helper.make_node("Pad", ["t1", "pads2", "pad_value"], ["t1p"], name="pad2",
                              mode="constant"), qc2,
             helper.make_node("Conv", ["t1p", "cw2t"], ["c2"], name="conv2",
                              kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c2", "g2", "b2", "m2", "v2"], ["h2"],
                              name="bn2", epsilon=1e-5), qa2,
             helper.make_node("Flatten", ["t2"], ["f"], name="flat", axis=1), qf,
             helper.make_node("MatMul", ["f", "fwt"], ["y"], name="mm"),
             helper.make_node("Mul", ["y", "out_scale"], ["logits"], name="out_mul")]
    proto = _graph(nodes, {**inits, **i0, **ic1, **ia1, **ic2, **ia2, **i_f},
                   shape=(1, 1, 8, 8))
    proto.graph.initializer.append(numpy_helper.from_array(
        np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads2"))
    return proto


def test_hand_written_cnn_graph_imports_and_matches_execute_onnx(rng):
    _, _, info, net, wrapper = qonnx_import.import_model(cnn_graph(rng))
    assert kinds(net) == ["conv", "maxpool", "conv", "linear"]
    assert net.input.shape == (8, 8)
    assert [(layer.padding, layer.stride) for layer in net.layers if layer.kind == "conv"] \
        == [((1, 1), (1, 1)), ((1, 1), (2, 2))]
    assert net.layers[2].beta_a == pytest.approx(0.36)              # β = -s·z
    # The MaxPool before the Quant: the activation is compared after the pooling.
    assert info["layers"][0]["activation"] is None and info["layers"][1]["activation"]
    report = qonnx_check.compare(wrapper, net, info, rng.integers(0, 17, (300, 64)))
    assert report["classes_differing_beyond_a_tie"] == [] and report["logits"]["within_bound"]
    assert report["class_agreement"] >= 0.8 and report["consistent"]
    assert report["layers"][1]["trit_agreement"] == 1.0


def _attr(node_name, **attrs):
    def change(graph):
        node = _node(graph, node_name)
        for key, value in attrs.items():
            kept = [a for a in node.attribute if a.name != key]
            del node.attribute[:]
            node.attribute.extend(kept + ([helper.make_attribute(key, value)]
                                          if value is not None else []))
    return change


BAD_CNN = {
    "group": (_attr("conv2", group=2),
              "node conv2 (Conv): group 2: only group 1 (a full convolution) maps"),
    "dilations": (_attr("conv1", dilations=[2, 2]),
                  "node conv1 (Conv): dilations [2, 2]: only 1 maps"),
    "auto_pad": (_attr("conv2", auto_pad="SAME_UPPER"),
                 "node conv2 (Conv): auto_pad SAME_UPPER: only explicit pads map"),
    "asymmetric_pads": (_attr("conv1", pads=[1, 1, 0, 0]),
                        "node conv1 (Conv): pads [1, 1, 0, 0]: only the same padding (ph, pw) "
                        "on both sides of each axis maps"),
    "unknown_attribute": (_attr("pool1", foo=1),
                          "node pool1 (MaxPool): attribute foo is not supported (maps: "
                          "auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, "
                          "strides)"),
    "pool_padding": (_attr("pool1", pads=[1, 1, 1, 1]),
                     "node pool1 (MaxPool): pads [1, 1]: the weights format pools without "
                     "padding"),
    "ceil_mode": (_attr("pool1", ceil_mode=1),
                  "node pool1 (MaxPool): ceil_mode 1: the weights format's windows end inside "
                  "the map (floor)"),
    "channels_do_not_chain": (lambda g: _set_init(g, "cw2", np.ones((6, 3, 3, 3))),
                              "node conv2 (Conv): shapes do not chain: the input has 4 "
                              "channels, the weights are [6, 3, 3, 3]"),
    "kernel_larger_than_map": (lambda g: (_set_init(g, "cw2", np.ones((6, 4, 7, 7))),
                                          _attr("conv2", kernel_shape=[7, 7])(g)),
                               "node conv2 (Conv): kernel 7x7 does not fit the 6x6 padded "
                               "input (4x4 map, padding [1, 1])"),
    "pool_larger_than_map": (_attr("pool1", kernel_shape=[9, 9]),
                             "node pool1 (MaxPool): kernel 9x9 does not fit the 8x8 input "
                             "(8x8 map)"),
    "nan_conv_scale": (lambda g: _set_init(g, "cw1q_s", np.full((4, 1, 1, 1), np.nan)),
                       "node q_cw1q (Quant): scale has a NaN or infinite value"),
    "zero_conv_scale": (lambda g: _set_init(g, "cw2q_s", np.zeros((6, 1, 1, 1))),
                        "node q_cw2q (Quant): scale must be positive (a zero or negative scale "
                        "has no ternary meaning)"),
    "negative_act_scale": (lambda g: _set_init(g, "act1_s", -1.2),
                           "node q_act1 (Quant): scale must be positive (a zero or negative "
                           "scale has no ternary meaning)"),
    "per_w_mul": (lambda g: _set_init(g, "chan", np.ones(8)),
                  "node chan_mul (Mul): the scale of shape [8] does not broadcast per channel "
                  "over 4 channels of a (B, C, H, W) map"),
    "zero_padding_of_an_offset": (
        lambda g: (_attr("conv2", pads=[1, 1, 1, 1])(g),
                   _node(g, "conv2").input.__setitem__(0, "t1")),
        "node conv2 (Conv): pads [1, 1] with real zeros, but the input's trit 0 decodes to "
        "β_a = 0.36: the weights format pads in the trit domain (pad with a Pad of value "
        "β_a, or give the Quant before it zero point 0)"),
    "pad_value": (lambda g: _set_init(g, "pad_value", 0.5),
                  "node pad2 (Pad): pads with 0.5, but trit 0 decodes to β_a = 0.36"),
    "pool_before_quant_negative_slope": (lambda g: _set_init(g, "g1", -np.ones(4)),
                                         "node pool1 (MaxPool): pools before the activation "
                                         "Quant, which commutes only with an increasing map, "
                                         "but channel 0's scale from the Conv to the Quant is "
                                         "negative (pool after the Quant)"),
    "padding_not_less_than_kernel": (_attr("conv1", pads=[3, 3, 3, 3]),
                                     "node conv1 (Conv): padding [3, 3] must be less than the "
                                     "kernel 3x3 on each axis"),
    "pad_not_before_a_conv": (lambda g: _node(g, "flat").input.__setitem__(0, "t1p"),
                              "node flat (Flatten): its input is padded by a Pad node; a Pad "
                              "must feed a Conv"),
    "matmul_on_a_map": (lambda g: (_node(g, "mm").input.__setitem__(0, "t2"),
                                   _set_init(g, "fw", np.ones((2, 3)))),
                        "node mm (MatMul): its input is a (6, 2, 2) feature map: Flatten or "
                        "Reshape it to (batch, features) first"),
    "conv_output": (lambda g: g.output[0].CopyFrom(helper.make_tensor_value_info(
        "t2", onnx.TensorProto.FLOAT, [1, 6, 2, 2])),
        "graph output 't2': must be the logits of a MatMul/Gemm (the last layer has no "
        "activation)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CNN))
def test_bad_cnn_graph_is_one_line_exit_2_nothing_written(case, rng, tmp_path, capsys,
                                                          monkeypatch):
    change, message = BAD_CNN[case]
    err = _import_refused(_edit(cnn_graph(rng), change), tmp_path, capsys, monkeypatch)
    assert err.startswith(f"rtn-hw: error: {tmp_path / 'bad.onnx'}: {message}"), err


@pytest.mark.parametrize("variant", sorted(BREVITAS_CNN))
def test_brevitas_cnns_import_or_are_refused_for_zero_padding(variant, tmp_path, capsys,
                                                               monkeypatch):
    """Brevitas' padded QuantConv2d pads with real zeros: right for zero point 0 (const), not
    for a learned zero point, which is refused naming the Conv."""
    monkeypatch.chdir(tmp_path)
    proto = onnx.load(str(BREVITAS_CNN[variant]))
    props = {p.key: p.value for p in proto.metadata_props}
    assert [n.op_type for n in proto.graph.node].count("Conv") == 2
    status, text, err = run(["import", str(BREVITAS_CNN[variant]), "-o", "cnn.json"], capsys)
    print(text, err)
    if variant == "zero_point":
        assert (status, text) == (2, "") and err.count("\n") == 1
        assert "(Conv): pads [1, 1] with real zeros, but the input's trit 0 decodes to β_a" \
            in err
        assert sorted(p.name for p in tmp_path.iterdir()) == []
        return
    assert (status, err) == (0, "")
    net = weights.load(tmp_path / "cnn.json")
    assert kinds(net) == ["conv", "maxpool", "conv", "maxpool", "linear"]
    entry = json.loads((tmp_path / "build/reports/import.json").read_text())["imports"]["cnn"]
    assert entry["class_agreement"] == 1.0 and entry["consistent"]
    assert entry["logits"]["within_bound"] and "engine" not in entry
    # The graph run by qonnx reproduces the accuracy torch measured when it was trained.
    assert round(entry["accuracy"]["qonnx"], 4) == float(props["rtn_hw.torch_accuracy"])
    back, _, _, _ = round_trip(net, weights.read_raw(tmp_path / "cnn.json")[1])
    assert qonnx_check.integer_differences(net, back) == []


def test_import_of_a_cnn_runs_the_dataflow_engine(tmp_path, capsys, monkeypatch):
    """--engine N on a CNN: make demo's dataflow engine (its default folding, one pixel
    position per handshake, Amaranth simulator) on the first N test images, compared with the
    golden network and with execute_onnx's classes."""
    from rtn_hw import demo
    monkeypatch.chdir(tmp_path)
    status, text, err = run(["import", str(BREVITAS_CNN["const"]), "-o", "c.json", "--engine",
                             "3"], capsys)
    print(text)
    assert (status, err) == (0, "")
    assert "engine (simulated, 3 images): golden agreement 100.00 %" in text
    entry = json.loads((tmp_path / "build/reports/import.json").read_text())["imports"]["c"]
    engine = entry["engine"]
    assert engine["images"] == 3 and engine["golden_agreement"] == 1.0 and entry["consistent"]
    assert engine["class_agreement_with_graph"] == 1.0
    net = weights.load(tmp_path / "c.json")
    folding = ",".join(str(f) for f in demo.default_foldings(net) if f is not None)
    assert engine["simulator"] == (f"DataflowEngine({folding}), make demo's default folding, "
                                   f"Amaranth simulator")


@pytest.mark.slow
def test_mnist5k_cnn_exports_and_imports_back_on_its_test_split(tmp_path, capsys, monkeypatch):
    """The whole MNIST-5k split (1,000 images, pixels 0..255) both ways through the CLI."""
    monkeypatch.chdir(tmp_path)
    status, text, err = run(["export-qonnx", str(CNN_MANIFESTS["mnist5k"]), "-o", "m.onnx"],
                            capsys)
    assert (status, err) == (0, "") and "on 1000 mnist5k test images" in text
    status, text, err = run(["import", "m.onnx", "-o", "m.json", "--pixel-max", "255"], capsys)
    assert (status, err) == (0, "")
    net, back = weights.load(CNN_MANIFESTS["mnist5k"]), weights.load(tmp_path / "m.json")
    assert qonnx_check.integer_differences(net, back) == []
    entry = json.loads((tmp_path / "build/reports/import.json").read_text())["imports"]["m"]
    assert entry["dataset"] == "mnist5k" and entry["images"] == 1000 and entry["consistent"]
    assert back.manifest["training"]["dataset"]["name"] == "mnist5k"


def test_multithreshold_on_a_conv_map_imports_and_matches_execute_onnx(rng):
    """FINN's streamlined form on a (B, C, H, W) map: conv2's BatchNorm and Quant as one
    MultiThreshold, thresholds per channel (axis 1)."""
    def change(graph):
        thresholds = np.sort(rng.normal(0, 2, (6, 2)), axis=1)
        graph.initializer.append(numpy_helper.from_array(thresholds.astype(np.float32), "thr"))
        mt = helper.make_node("MultiThreshold", ["c2", "thr"], ["t2"], name="mt",
                              domain=qonnx_export.QONNX_DOMAIN, out_dtype="INT2",
                              out_scale=0.5, out_bias=-0.6)
        index = list(graph.node).index(_node(graph, "bn2"))
        graph.node.remove(_node(graph, "bn2"))
        graph.node.remove(_node(graph, "q_act2"))
        graph.node.insert(index, mt)
    _, _, info, net, wrapper = qonnx_import.import_model(_edit(cnn_graph(rng), change))
    assert kinds(net) == ["conv", "maxpool", "conv", "linear"]
    assert (net.layers[3].alpha_a, net.layers[3].beta_a) == (0.5, pytest.approx(-0.1))
    report = qonnx_check.compare(wrapper, net, info, rng.integers(0, 17, (200, 64)))
    assert report["classes_differing_beyond_a_tie"] == [] and report["logits"]["within_bound"]
    assert report["layers"][2]["trit_agreement"] == 1.0 and report["consistent"]


def test_an_engine_that_disagrees_on_a_cnn_makes_the_report_inconsistent(digits):
    """An engine given for a CNN is run and compared like an MLP's (here the golden network
    with one logit changed stands in)."""
    net = weights.load(CNN_MANIFESTS["digits"])
    _, info, wrapper, _ = round_trip(net, weights.read_raw(CNN_MANIFESTS["digits"])[1])
    images = digits[0][:6]

    def engine(batch):
        logits, classes = net.forward(batch)
        return logits + (np.arange(len(batch)) == 2)[:, None], classes
    report = qonnx_check.compare(wrapper, net, info, images, engine=engine)
    assert report["engine"]["golden_agreement"] == 5 / 6 and not report["consistent"]
