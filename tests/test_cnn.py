"""The golden integer CNN (rtn_hw.model.conv, weights format version 2) against the float
reference `model.conv2d` and brute-force loops, and the version 2 loader's rejections."""

import hashlib
import json

import numpy as np
import pytest

from rtn_hw import model, weights
from rtn_hw.model.fixed import choose_formats


def _f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def _rtn_params(rng, p, n, first):
    alpha_w = _f32(rng.uniform(0.05, 1.0, p))
    beta_w = _f32(np.where(rng.random(p) < 0.2, 0.0, rng.normal(0, 0.1, p)))
    alpha_a = float(_f32(rng.uniform(0.5, 2.0)))
    beta_a = float(_f32(rng.normal(0, 0.1 if first else 0.3)))
    return alpha_w, beta_w, alpha_a, beta_a


def _bn(rng, p, n, alpha_w, alpha_a):
    scale = np.sqrt(n) * alpha_w * alpha_a
    return (_f32(rng.choice([-1, 1], p) * rng.uniform(0.5, 2, p)), _f32(rng.normal(0, 0.3, p)),
            _f32(rng.normal(0, 0.3, p) * scale), _f32((rng.uniform(0.5, 1.5, p) * scale) ** 2),
            1e-5)


def random_cnn(rng, input_shape, convs, hidden=(), classes=10, pixel_max=16):
    """A seeded random CNN: `convs` lists (out_channels, kernel, stride, padding, pool) per
    convolution (pool: None or (kernel, stride) of a max pooling after it), then linear layers
    `hidden` and `classes`. Returns (Network, manifest, arrays)."""
    specs, arrays = [], {}
    shape = (1,) + tuple(input_shape) if len(input_shape) == 2 else tuple(input_shape)
    for index, (p, kernel, stride, padding, pool) in enumerate(convs):
        t_w = rng.integers(-1, 2, (p, shape[0], kernel, kernel)).astype(np.int8)
        n = t_w[0].size
        params = _rtn_params(rng, p, n, index == 0)
        k_fmt, out_fmt = choose_formats(*params, t_w.reshape(p, -1).sum(axis=1), n)
        spec, layer_arrays = weights.conv_record(
            f"conv{index + 1}", shape, t_w, (stride, stride), (padding, padding), *params, k_fmt,
            out_fmt, _bn(rng, p, n, params[0], params[2]))
        specs.append(spec)
        arrays.update(layer_arrays)
        shape = (p,) + model.conv.conv_out_shape(shape, (kernel, kernel), (stride, stride),
                                                 (padding, padding))
        if pool is not None:
            spec, _ = weights.pool_record(f"pool{index + 1}", shape, (pool[0], pool[0]),
                                          (pool[1], pool[1]))
            specs.append(spec)
            shape = (p,) + model.conv.conv_out_shape(shape, (pool[0],) * 2, (pool[1],) * 2,
                                                     (0, 0))
    n = int(np.prod(shape))
    sizes = list(hidden) + [classes]
    for index, p in enumerate(sizes):
        t_w = rng.integers(-1, 2, (p, n)).astype(np.int8)
        params = _rtn_params(rng, p, n, False)
        k_fmt, out_fmt = choose_formats(*params, t_w.sum(axis=1), n)
        last = index == len(sizes) - 1
        spec, layer_arrays = weights.layer_record(
            f"fc{index + 1}", t_w, *params, k_fmt, out_fmt,
            None if last else _bn(rng, p, n, params[0], params[2]))
        specs.append(spec)
        arrays.update(layer_arrays)
        n = p
    manifest = weights.new_manifest(input_shape, pixel_max, specs, "random.npz")
    return weights.from_arrays(manifest, arrays), manifest, arrays


# (input shape, convs, hidden): shapes from tiny to the MNIST CNN's.
SHAPES = {
    "digits": ((8, 8), [(8, 3, 1, 1, (2, 2)), (16, 3, 1, 1, (2, 2))], ()),
    "odd": ((7, 9), [(5, 3, 2, 1, None), (4, 2, 1, 0, (2, 1))], (6,)),
    "multichannel": ((3, 6, 5), [(4, 1, 1, 0, None), (3, 5, 1, 2, (3, 3))], ()),
    "mnist": ((28, 28), [(16, 3, 1, 1, (2, 2)), (32, 3, 1, 1, (2, 2))], (32,)),
}


def _images(rng, net, count):
    return rng.integers(0, net.input.pixel_max + 1, (count,) + net.input.shape)


def _direct_conv(t, t_w, stride, padding):
    """D and S_a by explicit loops over output positions (no im2col, no planes)."""
    padded = np.pad(t.astype(np.int64), ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    p, _, kh, kw = t_w.shape
    ho = (padded.shape[2] - kh) // stride + 1
    wo = (padded.shape[3] - kw) // stride + 1
    d = np.zeros((len(t), p, ho, wo), dtype=np.int64)
    s_a = np.zeros((len(t), ho, wo), dtype=np.int64)
    for i in range(ho):
        for j in range(wo):
            window = padded[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            d[:, :, i, j] = np.einsum("bchw,pchw->bp", window, t_w.astype(np.int64))
            s_a[:, i, j] = window.sum(axis=(1, 2, 3))
    return d, s_a


@pytest.mark.parametrize("case", SHAPES)
def test_conv_layers_match_direct_loops_and_float_conv2d(case, rng):
    input_shape, convs, hidden = SHAPES[case]
    net, _, _ = random_cnn(rng, input_shape, convs, hidden)
    assert net.convolutional
    steps = net.trace(_images(rng, net, 6))
    for layer, step in zip(net.layers, steps):
        t = step["inputs"]
        if layer.kind == "maxpool":
            continue
        if layer.kind == "linear":
            real = model.linear(t, layer.t_w, layer.alpha_w, layer.beta_w, layer.alpha_a,
                                layer.beta_a)
            got = layer.sign * layer.out_fmt.to_real(step["y"])
        else:
            (stride, _), (pad, _) = layer.stride, layer.padding
            d, s_a = _direct_conv(t, layer.t_w, stride, pad)
            np.testing.assert_array_equal(step["d"], d)
            np.testing.assert_array_equal(step["s_a"], s_a)
            real = model.conv2d(t, layer.t_w, layer.alpha_w, layer.beta_w, layer.alpha_a,
                                layer.beta_a, stride, pad)
            got = layer.sign[:, None, None] * layer.out_fmt.to_real(step["y"])
            assert step["outputs"].shape == (len(t),) + layer.out_shape
        assert np.abs(got - real).max() <= layer.error_bound()


@pytest.mark.parametrize("case", SHAPES)
def test_pooling_and_flatten(case, rng):
    input_shape, convs, hidden = SHAPES[case]
    net, _, _ = random_cnn(rng, input_shape, convs, hidden)
    steps = net.trace(_images(rng, net, 4))
    for index, (layer, step) in enumerate(zip(net.layers, steps)):
        if layer.kind == "maxpool":
            t, (kh, kw), (sh, sw) = step["inputs"], layer.kernel, layer.stride
            out = step["outputs"]
            assert out.shape[1:] == layer.out_shape
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    window = t[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    np.testing.assert_array_equal(out[:, :, i, j], window.max(axis=(2, 3)))
            # The layer after the pool sees exactly the pooled trits (flattened C, H, W).
            following = steps[index + 1]["inputs"]
            np.testing.assert_array_equal(following.reshape(out.shape), out)
        if layer.kind == "linear" and index and net.layers[index - 1].kind != "linear":
            assert step["inputs"].ndim == 2
            np.testing.assert_array_equal(step["inputs"],
                                          steps[index - 1]["outputs"].reshape(4, -1))


def test_pooling_commutes_with_encode_and_decode(rng):
    y = rng.integers(-40, 40, (50, 3, 6, 6))
    lo = rng.integers(-20, 10, 3)
    hi = lo + rng.integers(-1, 20, 3)  # lo > hi too (a threshold pair between two codes)
    kernel = stride = (2, 2)
    encode = model.encode(y.transpose(0, 2, 3, 1), lo, hi).transpose(0, 3, 1, 2)
    pooled_y = np.lib.stride_tricks.sliding_window_view(y, kernel, axis=(2, 3))[:, :, ::2, ::2]
    encode_max = model.encode(pooled_y.max(axis=(4, 5)).transpose(0, 2, 3, 1), lo, hi)
    np.testing.assert_array_equal(model.pool_trits(encode, kernel, stride),
                                  encode_max.transpose(0, 3, 1, 2))
    alpha, beta = 0.7, -0.3
    decoded = alpha * encode + beta
    windows = np.lib.stride_tricks.sliding_window_view(decoded, kernel, axis=(2, 3))
    np.testing.assert_array_equal(windows[:, :, ::2, ::2].max(axis=(4, 5)),
                                  alpha * model.pool_trits(encode, kernel, stride) + beta)


def test_hidden_trits_follow_batchnorm_within_error_bound(rng):
    net, _, arrays = random_cnn(rng, *SHAPES["digits"][:2], ())
    images = _images(rng, net, 32)
    for layer, step in zip(net.layers, net.trace(images)):
        if layer.kind != "conv":
            continue
        real = model.conv2d(step["inputs"], layer.t_w, layer.alpha_w, layer.beta_w,
                            layer.alpha_a, layer.beta_a, layer.stride[0], layer.padding[0])
        g, b, m, v = (arrays[f"{layer.name}.bn_{k}"][:, None, None]
                      for k in ("gamma", "beta", "mean", "var"))
        z = g * (real - m) / np.sqrt(v + 1e-5) + b
        want = model.ternarize(z)
        # Only where BN(ŵ·â) lies within the (scaled) error bound of ±Δ may the trits differ.
        margin = np.abs(g) / np.sqrt(v + 1e-5) * layer.error_bound() + 1e-12
        near = np.abs(np.abs(z) - 0.5) <= np.broadcast_to(margin, z.shape)
        assert (step["outputs"][~near] == want[~near]).all() and (~near).mean() > 0.9


def test_forward_accuracy_and_repr(rng):
    net, _, _ = random_cnn(rng, *SHAPES["digits"])
    images = _images(rng, net, 10)
    logits, classes = net.forward(images)
    assert logits.shape == (10, 10) and classes.shape == (10,)
    np.testing.assert_array_equal(net.forward(images.reshape(10, -1))[0], logits)
    assert net.accuracy(images, classes) == (10, 10)
    assert repr(net).startswith("Network(<manifest>, 64-conv8-maxpool8-conv16-maxpool16-10,")
    assert [t.shape[1:] for t in net.layer_inputs(images)] == [(1, 8, 8), (8, 8, 8),
                                                               (8, 4, 4), (16, 4, 4), (64,)]


def test_save_load_round_trip(tmp_path, rng):
    net, manifest, arrays = random_cnn(rng, *SHAPES["odd"])
    manifest["training"] = {"seed": 0, "accuracy": {"float": 0.5, "torch": 0.5, "golden": 0.5,
                                                    "golden_correct": 1, "test_size": 2}}
    weights.save(tmp_path / "cnn.json", manifest, arrays)
    loaded = weights.load(tmp_path / "cnn.json")
    assert loaded.manifest["version"] == 2
    images = _images(rng, net, 5)
    np.testing.assert_array_equal(loaded.forward(images)[0], net.forward(images)[0])


def test_mlp_manifests_stay_version_1(rng):
    spec, _ = weights.layer_record("fc1", np.ones((2, 4), np.int8), [1.0, 1.0], [0.0, 0.0],
                                   1.0, 0.0, model.Q(4, 8), model.Q(8, 8))
    assert weights.new_manifest((4,), 16, [spec], "x.npz")["version"] == 1
    assert "kind" not in weights.new_manifest((4,), 16, [spec], "x.npz")["layers"][0]
    assert not weights.load().convolutional


def _edit(index, **changes):
    def edit(manifest, arrays):
        manifest["layers"][index].update(changes)
    return edit


def _pop(index, key):
    def edit(manifest, arrays):
        manifest["layers"][index].pop(key)
    return edit


def _swap_last_two(manifest, arrays):
    manifest["layers"][-1] = manifest["layers"][0]


def _tw(name, value):
    def edit(manifest, arrays):
        arrays[name] = value
    return edit


# Edits of the "digits" CNN (conv1, pool1, conv2, pool2, fc1): (edit, field, message).
V2_CASES = {
    "kind_missing": (_pop(0, "kind"), "layers[0].kind", "missing field"),
    "kind_unknown": (_edit(1, kind="avgpool"), "layers[1].kind",
                     "must be 'linear', 'conv' or 'maxpool', not 'avgpool'"),
    "last_not_linear": (_swap_last_two, "layers[4].kind",
                        "must be 'linear' for the last layer (the logits), not 'conv'"),
    "unknown_field": (_edit(1, padding=[0, 0]), "layers[1].padding",
                      "unknown field (expected in_shape, kernel, kind, name, stride)"),
    "in_shape": (_edit(2, in_shape=[8, 8, 8]), "layers[2].in_shape",
                 "must be [8, 4, 4] (the output of maxpool layer pool1), not [8, 8, 8]"),
    "first_in_shape": (_edit(0, in_shape=[1, 8, 9]), "layers[0].in_shape",
                       "must be [1, 8, 8] (the output of the input), not [1, 8, 9]"),
    "kernel_too_big": (_edit(3, kernel=[5, 5]), "layers[3].kernel",
                       "kernel 5x5 does not fit the 4x4 input"),
    "padded_kernel_too_big": (_edit(2, kernel=[7, 7], padding=[1, 1]), "layers[2].kernel",
                              "kernel 7x7 does not fit the 6x6 padded input"),
    "kernel_not_pair": (_edit(0, kernel=[3]), "layers[0].kernel",
                        "must be a list of two integers in 1..64, not [3]"),
    "stride_zero": (_edit(1, stride=[0, 2]), "layers[1].stride",
                    "must be a list of two integers in 1..64, not [0, 2]"),
    "padding": (_edit(0, padding=[3, 1]), "layers[0].padding",
                "must be less than the kernel 3x3 on each axis, not [3, 1]"),
    "out_channels": (_edit(0, out_channels=0), "layers[0].out_channels",
                     "must be positive, not 0"),
    "activation": (_edit(2, activation="none"), "layers[2].activation",
                   "must be 'ternary' for a convolution, not 'none'"),
    "linear_in_features": (_edit(4, in_features=63), "layers[4].in_features",
                           "must be 64 (the previous layer's output), not 63"),
    "t_w_shape": (_tw("conv2.t_w", np.zeros((16, 8, 3, 2), np.int8)), "conv2.t_w",
                  "wrong shape (16, 8, 3, 2), expected (16, 8, 3, 3)"),
    "t_w_trit": (_tw("conv1.t_w", np.full((8, 1, 3, 3), 2, np.int8)), "conv1.t_w",
                 "value 2 at index (0, 0, 0, 0) is not a trit (-1, 0, +1)"),
}


@pytest.mark.parametrize("case", V2_CASES)
def test_version_2_rejections(case, rng, tmp_path):
    edit, field, message = V2_CASES[case]
    _, manifest, arrays = random_cnn(rng, *SHAPES["digits"])
    edit(manifest, arrays)
    file = "npz" if "." in field and not field.startswith("layers") else "json"
    expected = f"{'cnn.npz' if file == 'npz' else 'cnn.json'}: {field}: {message}"
    with pytest.raises(weights.WeightsError) as info:
        weights.from_arrays(manifest, arrays, "cnn.json", "cnn.npz")
    assert str(info.value) == expected


def test_version_1_refuses_version_2_layers(rng):
    _, manifest, arrays = random_cnn(rng, *SHAPES["digits"])
    manifest["version"] = 1
    with pytest.raises(weights.WeightsError, match=r"^cnn.json: layers\[0\]\.in_shape: "
                                                   r"unknown field \(expected activation, "):
        weights.from_arrays(manifest, arrays, "cnn.json", "cnn.npz")


def test_pooling_after_a_linear_layer_is_rejected(rng):
    _, manifest, arrays = random_cnn(rng, *SHAPES["odd"])  # conv1, conv2, pool2, fc1, fc2
    manifest["layers"].insert(4, dict(manifest["layers"][2], name="pool3"))
    with pytest.raises(weights.WeightsError) as info:
        weights.from_arrays(json.loads(json.dumps(manifest)), arrays, "cnn.json", "cnn.npz")
    assert str(info.value) == ("cnn.json: layers[4].kind: a maxpool layer needs a feature map "
                               "(C, H, W), not the 6 features of linear layer fc1")


GARBAGE = [None, True, -1, 0, 1, 2, 3, 10 ** 30, 0.5, float("nan"), "conv", "", [], [1], [0, 0],
           [3, 3], [1, 8, 8], [-1, 2, 2], [[1]], {}, {"int_bits": 1}]


def test_version_2_loader_rejects_garbage_with_one_line(rng):
    """Every field of every layer replaced by garbage: a one-line WeightsError or a valid
    network, never another exception."""
    _, manifest, arrays = random_cnn(rng, *SHAPES["odd"])
    text = json.dumps(manifest)
    fields = [(i, key) for i, spec in enumerate(manifest["layers"]) for key in spec]
    for i, key in fields:
        for value in GARBAGE:
            edited = json.loads(text)
            edited["layers"][i][key] = value
            try:
                weights.from_arrays(edited, arrays, "cnn.json", "cnn.npz")
            except weights.WeightsError as e:
                assert "\n" not in str(e) and str(e).startswith(("cnn.json: ", "cnn.npz: "))


@pytest.fixture(scope="module")
def mnist5k_cnn():
    return weights.load(weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json")


def test_shipped_mnist5k_cnn_classifies(mnist5k_cnn):
    images, labels = weights.load_mnist5k_test()
    correct, total = mnist5k_cnn.accuracy(images[::10], labels[::10])
    assert total == 100 and correct >= 90


@pytest.mark.slow
def test_shipped_mnist5k_cnn_scores_its_recorded_accuracy(mnist5k_cnn):
    net = mnist5k_cnn
    images, labels = weights.load_mnist5k_test()
    record = net.manifest["training"]
    assert record["dataset"]["test_sha256"] == hashlib.sha256(
        weights.MNIST5K_TEST.read_bytes()).hexdigest()
    assert [layer.kind for layer in net.layers] == ["conv", "maxpool", "conv", "maxpool",
                                                    "linear", "linear"]
    assert net.layers[0].in_shape == (1, 28, 28) and net.layers[4].in_features == 32 * 7 * 7
    correct, total = net.accuracy(images, labels)
    assert (correct, total) == (record["accuracy"]["golden_correct"], 1000)
    assert correct / total >= 0.97


def test_shipped_digits_cnn_scores_its_recorded_accuracy():
    net = weights.load(weights.WEIGHTS_DIR / "rtn_digits_cnn.json")
    images, labels = weights.load_digits_test()
    assert net.convolutional and net.layers[0].in_shape == (1, 8, 8)
    accuracy = net.manifest["training"]["accuracy"]
    assert net.accuracy(images, labels) == (accuracy["golden_correct"], 359)
