"""RTN quantization-aware training (skipped unless the `train` extra is installed)."""

import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from rtn_hw import weights  # noqa: E402
from rtn_hw.train import __main__ as cli, data, export, qat  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.fixture(scope="module")
def short_run(digits):
    return qat.train(digits, "rtn", seed=0, epochs=3, hidden=(32, 32))


def test_split_is_stratified_seeded_and_matches_the_shipped_one(digits):
    assert (len(digits.train_labels), len(digits.test_labels)) == (1438, 359)
    counts = np.bincount(digits.test_labels)
    assert counts.min() >= 35 and counts.max() <= 37
    images, labels = weights.load_digits_test()
    assert (images == digits.test_images).all() and (labels == digits.test_labels).all()


def test_short_training_improves_accuracy(digits, short_run):
    untrained = qat.RtnMLP((64, 32, 32, 10), qat.VARIANTS["rtn"], seed=0)
    x = untrained.inputs(digits.test_images, digits.pixel_max)
    y = torch.as_tensor(digits.test_labels.astype(np.int64))
    before = qat.accuracy(untrained, x, y)
    assert before < 0.4
    assert short_run.test_accuracy > 0.8
    assert short_run.losses[-1] < short_run.losses[0]


def test_training_is_deterministic(digits):
    a = qat.train(digits, "rtn", seed=3, epochs=1, hidden=(16, 16))
    b = qat.train(digits, "rtn", seed=3, epochs=1, hidden=(16, 16))
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_ste_passes_gradient_only_inside_the_clip():
    x = torch.tensor([-2.0, -1.0, -0.7, -0.5, 0.0, 0.5, 0.51, 1.0, 3.0], requires_grad=True)
    t = qat.ternary_ste(x)
    assert t.tolist() == [-1, -1, -1, 0, 0, 0, 1, 1, 1]
    t.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 0]


def test_activation_alpha_beta_get_gradients_where_the_ste_saturates():
    act = qat.ActQuant(qat.VARIANTS["rtn"])
    z = torch.tensor([[-3.0, 2.0, 1.5, -1.2]], requires_grad=True)  # all |z| > 1: saturated
    upstream = torch.tensor([[0.5, -1.0, 2.0, 0.25]])
    (act(z) * upstream).sum().backward()
    assert (z.grad == 0).all()
    t = torch.tensor([[-1.0, 1.0, 1.0, -1.0]])
    sigmoid = torch.sigmoid(act.q.rho.detach())  # dα/dρ of α = softplus(ρ)
    assert act.q.rho.grad == pytest.approx(float((upstream * t).sum() * sigmoid))
    assert act.q.beta.grad == pytest.approx(float(upstream.sum()))
    assert act.q.rho.grad != 0 and act.q.beta.grad != 0


def test_weight_alpha_beta_get_gradients_where_the_ste_saturates():
    variant = qat.VARIANTS["rtn"]
    fc = qat.TernaryLinear(4, 3, variant, torch.Generator().manual_seed(0))
    with torch.no_grad():
        fc.latent.copy_(torch.tensor([[1.5, -2.0, 1.2, -1.1]] * 3))  # all saturated
    x = torch.tensor([[1.0, -1.0, 0.5, 2.0], [0.0, 1.0, 1.0, -1.0]])
    fc(x).sum().backward()
    assert (fc.latent.grad == 0).all()
    assert (fc.q.rho.grad != 0).all() and (fc.q.beta.grad != 0).all()


@pytest.mark.parametrize("variant, frozen", [("scale_only", ("beta",)),
                                             ("frozen", ("rho", "beta"))])
def test_variants_freeze_what_they_say(digits, variant, frozen):
    result = qat.train(digits, variant, seed=0, epochs=1, hidden=(16, 16))
    for name, param in result.model.named_parameters():
        if name.rsplit(".", 1)[-1] in frozen:
            initial = qat.RtnMLP((64, 16, 16, 10), qat.VARIANTS[variant], 0)
            assert torch.equal(param, initial.state_dict()[name]), name
            if name.endswith("beta"):
                assert (param == 0).all()


def test_export_golden_tracks_torch_even_with_negative_gamma(digits, short_run, tmp_path):
    net = short_run.model
    with torch.no_grad():  # flip half of the BatchNorm scales: folded by negating K
        for bn in net.bns:
            bn.weight[::2] *= -1
    x = net.inputs(digits.test_images, digits.pixel_max)
    net.eval()
    with torch.no_grad():
        torch_classes = net(x).argmax(dim=1).numpy()
    short_run.test_accuracy = float((torch_classes == digits.test_labels).mean())
    loaded = export.export(short_run, digits, tmp_path / "rtn_digits.json", 0.5)
    assert (loaded.layers[0].sign[::2] == -1).all() and (loaded.layers[0].sign[1::2] == 1).all()
    _, classes = loaded.forward(digits.test_images)
    assert (classes == torch_classes).mean() >= 0.98
    acc = loaded.manifest["training"]["accuracy"]
    assert abs(acc["golden"] - acc["torch"]) <= 0.02
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits_test.npz", "rtn_digits.json",
                                                          "rtn_digits.npz"]


def test_choose_formats_maximises_fraction_bits():
    k_fmt, out_fmt = export.choose_formats([0.3, 0.2], [0.1, -0.05], 1.2, 0.1, np.array([3, -2]),
                                           64)
    assert (k_fmt.int_bits, k_fmt.frac_bits) == (1, 17)  # every K < 1
    assert out_fmt.width <= 24 and out_fmt.frac_bits <= 17


def test_compare_cli_writes_the_table(tmp_path, capsys):
    report = tmp_path / "train.json"
    cli.main(["--compare", "--epochs", "1", "--seeds", "0", "--quiet", "--report", str(report)])
    table = json.loads(report.read_text())
    assert list(table["variants"]) == ["float", "rtn", "scale_only", "frozen"]
    assert "| RTN, learnable α and β |" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error, message", [
    ({"variant": "twn"}, ValueError, "Variant must be one of float, rtn, scale_only, frozen, "
                                     "not 'twn'"),
    ({"epochs": 0}, TypeError, "Epoch count must be a positive integer, not 0"),
    ({"batch": 1}, ValueError, "Batch size must be at least 2 (BatchNorm), not 1"),
])
def test_train_rejects_bad_parameters(digits, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        qat.train(digits, **kwargs)


def _write_idx(path, array, compress=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big")
                                                       for d in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if compress:
        import gzip
        blob, path = gzip.compress(blob), path.with_name(path.name + ".gz")
    path.write_bytes(blob)


def test_mnist_idx_folder_trains_and_exports(tmp_path, rng):
    """A tiny synthetic MNIST-format folder (IDX files, one gzip-compressed) through the CLI."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, count in (("train", 40), ("t10k", 12)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte",
                   rng.integers(0, 256, (count, 28, 28)), compress=prefix == "t10k")
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    dataset = data.load_mnist(folder)
    assert (dataset.shape, dataset.pixel_max, dataset.train_images.shape) == ((28, 28), 255,
                                                                              (40, 784))
    out = tmp_path / "rtn_mnist.json"
    cli.main(["--mnist", str(folder), "--epochs", "1", "--quiet", "--out", str(out)])
    net = weights.load(out)
    assert (net.input.lo, net.input.hi, net.layers[0].in_features) == (64, 191, 784)
    assert net.manifest["training"]["dataset"]["name"] == "mnist"


def test_idx_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match=re.escape(f"{path}: header says (5,) but holds 3 bytes")):
        data.read_idx(path)
