"""The shipped RTN weights, the validating loader and the integer golden network (no torch)."""

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from rtn_hw import files, model, weights


@pytest.fixture(scope="module")
def net():
    return weights.load()


@pytest.fixture(scope="module")
def digits():
    return weights.load_digits_test()


# --- the shipped model ------------------------------------------------------------------------

def test_shipped_golden_accuracy_is_the_recorded_one(net, digits):
    images, labels = digits
    acc = net.manifest["training"]["accuracy"]
    correct, total = net.accuracy(images, labels)
    assert (correct, total) == (acc["golden_correct"], acc["test_size"])
    assert correct / total == acc["golden"]
    # The torch-quantized model (float evaluation) agrees to within fixed-point effects.
    assert abs(acc["golden"] - acc["torch"]) <= 2 / total
    assert acc["golden"] > 0.9


def test_shipped_test_split_is_the_recorded_one(net):
    dataset = net.manifest["training"]["dataset"]
    assert hashlib.sha256(weights.DIGITS_TEST.read_bytes()).hexdigest() == dataset["test_sha256"]
    assert dataset["test_size"] == 359 and dataset["train_size"] == 1438


def test_shipped_architecture(net):
    assert [(layer.in_features, layer.out_features) for layer in net.layers] \
        == [(64, 128), (128, 128), (128, 10)]
    assert [layer.hidden for layer in net.layers] == [True, True, False]
    for layer in net.layers:
        assert layer.k_fmt.width == 18 and layer.out_fmt.width <= 24
        assert layer.t_w.dtype == np.int8 and not layer.t_w.flags.writeable
        # Every layer's fixed-point error is tiny next to its pre-activations' spread.
        assert layer.error_bound() < 0.01


def test_loader_does_not_import_torch():
    code = "import sys, rtn_hw.weights as w; w.load(); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_golden_matches_float_rtn_within_error_bound(net, digits):
    """Each layer's integer y against the exact four-term real ŵ·â (model.linear) on the same
    input trits; hidden trits against T(BN(·)) of the real value, except within the bound."""
    images, _ = digits
    manifest, arrays = weights.read_raw(weights.DEFAULT_MANIFEST)
    for layer, step in zip(net.layers, net.trace(images)):
        real = model.linear(step["inputs"], layer.t_w, layer.alpha_w, layer.beta_w,
                            layer.alpha_a, layer.beta_a)
        y = layer.out_fmt.to_real(step["y"]) * layer.sign
        bound = layer.error_bound()
        assert np.abs(y - real).max() <= bound
        if not layer.hidden:
            continue
        spec = next(s for s in manifest["layers"] if s["name"] == layer.name)
        gamma, beta, mean, var = (arrays[f"{layer.name}.bn_{k}"]
                                  for k in ("gamma", "beta", "mean", "var"))
        sigma = np.sqrt(var + spec["bn_eps"])
        z = gamma * (real - mean) / sigma + beta
        differ = step["outputs"] != model.ternarize(z)
        assert differ.mean() < 1e-3
        assert (np.abs(np.abs(z[differ]) - 0.5) <= (np.abs(gamma) / sigma * bound)
                [np.nonzero(differ)[1]] + 1e-9).all()


def test_forward_shapes_and_argmax(net, digits):
    images, _ = digits
    logits, classes = net.forward(images[:7])
    assert logits.shape == (7, 10) and logits.dtype == np.int64
    assert (classes == logits.argmax(axis=1)).all()
    logits_2d, _ = net.forward(images[:7].reshape(7, 8, 8))
    assert (logits_2d == logits).all()


def test_layer_inputs_are_the_trits_entering_each_layer(net, digits):
    images, _ = digits
    inputs = net.layer_inputs(images[:50])
    trace = net.trace(images[:50])
    assert [x.shape for x in inputs] == [(50, 64), (50, 128), (50, 128)]
    assert all(x.dtype == np.int8 and np.isin(x, (-1, 0, 1)).all() for x in inputs)
    assert (inputs[0] == net.encode_input(images[:50])).all()
    assert (inputs[1] == trace[0]["outputs"]).all() and (inputs[2] == trace[1]["outputs"]).all()
    # Realistic stimulus: neither all zero nor all non-zero.
    assert all(0.05 < np.mean(x != 0) < 0.95 for x in inputs)


def test_input_encoding_thresholds(net):
    # T(2p/16 - 1), delta 0.5: -1 for 0..3, 0 for 4..12, +1 for 13..16.
    pixels = np.zeros((17, 64), dtype=np.uint8)
    pixels[:, 0] = np.arange(17)
    assert net.encode_input(pixels)[:, 0].tolist() == [-1] * 4 + [0] * 9 + [1] * 4
    assert weights.InputEncoding.thresholds(255) == (64, 191)


@pytest.mark.parametrize("images, error, message", [
    (np.zeros((2, 63), dtype=np.uint8), ValueError,
     "Images must be (B, 64) or (B, 8, 8), not shape (2, 63)"),
    (np.full((2, 64), 17, dtype=np.uint8), ValueError, "Pixels must lie in 0..16, not 17..17"),
    (np.zeros((2, 64)), TypeError, "Images must be integer pixels 0..16, not dtype float64"),
])
def test_input_rejections(net, images, error, message):
    with pytest.raises(error, match=re.escape(message)):
        net.forward(images)


# --- writing ------------------------------------------------------------------------------------

def test_save_is_atomic_and_deterministic(tmp_path):
    manifest, arrays = weights.read_raw(weights.DEFAULT_MANIFEST)
    assert weights.npz_bytes(arrays) == weights.npz_bytes(dict(reversed(arrays.items())))
    weights.save(tmp_path / "rtn_digits.json", manifest, arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rtn_digits.json", "rtn_digits.npz"]
    assert (tmp_path / "rtn_digits.npz").read_bytes() == weights.DEFAULT_MANIFEST.with_suffix(
        ".npz").read_bytes()
    loaded = weights.load(tmp_path / "rtn_digits.json")
    assert loaded.manifest == weights.load().manifest


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """A write that fails as it replaces the file keeps the old file and leaves no temporary."""
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def explode(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", explode)
    with pytest.raises(OSError):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


# --- rejections: one per message, on corrupted copies ----------------------------------------

SHIPPED = weights.read_raw(weights.DEFAULT_MANIFEST)


def _copy(tmp_path, edit_manifest=None, edit_arrays=None):
    manifest, arrays = json.loads(json.dumps(SHIPPED[0])), {k: v.copy()
                                                            for k, v in SHIPPED[1].items()}
    manifest["arrays"]["file"] = "net.npz"
    if edit_arrays:
        edit_arrays(arrays)
    if edit_manifest:
        edit_manifest(manifest)
    path = tmp_path / "net.json"
    weights.save(path, manifest, arrays)
    return path


def _rejects(path, where, message):
    with pytest.raises(ValueError, match=f"^{re.escape(f'{where}: {message}')}$"):
        weights.load(path)


def _layer(manifest, index=0):
    return manifest["layers"][index]


def _fmt(index, key="k_fmt"):
    spec = SHIPPED[0]["layers"][index][key]
    return model.Q(spec["int_bits"], spec["frac_bits"])


def _set(name, index, value):
    def edit(arrays):
        arrays[name][index] = value
    return edit


JSON_CASES = {
    "format": (lambda m: m.update(format="other"),
               "format: must be 'rtn-hw-weights', not 'other'"),
    "version": (lambda m: m.update(version=3),
                "version: unsupported format version 3 (this loader reads 1 and 2)"),
    "version_missing": (lambda m: m.pop("version"), "version: missing field"),
    "version_type": (lambda m: m.update(version="1"),
                     "version: unsupported format version '1' (this loader reads 1 and 2)"),
    "delta": (lambda m: m.update(delta=0.25), "delta: must be 0.5, not 0.25"),
    "input_shape": (lambda m: m["input"].update(shape=[8, 0]),
                    "input.shape: must be a list of positive integers, not [8, 0]"),
    "input_lo": (lambda m: m["input"].update(lo=3),
                 "input.lo: must be 4 for pixel_max 16 (T(2p/pixel_max - 1), delta 0.5), not 3"),
    "layers_empty": (lambda m: m.update(layers=[]), "layers: must list at least one layer"),
    "layers_type": (lambda m: m.update(layers={}), "layers: must be a list, not dict"),
    "layer_type": (lambda m: m["layers"].__setitem__(0, 3),
                   "layers[0]: must be a JSON object, not int"),
    "name": (lambda m: _layer(m, 1).update(name="fc1"),
             "layers[1].name: must be a unique lower-case identifier, not 'fc1'"),
    "in_features": (lambda m: _layer(m, 1).update(in_features=127),
                    "layers[1].in_features: must be 128 (the previous layer's output), not 127"),
    "activation": (lambda m: _layer(m, 2).update(activation="ternary"),
                   "layers[2].activation: must be 'none' for the last layer, not 'ternary'"),
    "alpha_a_missing": (lambda m: _layer(m).pop("alpha_a"), "layers[0].alpha_a: missing field"),
    "alpha_a_nan": (lambda m: _layer(m).update(alpha_a=float("nan")),
                    "layers[0].alpha_a: must be finite, not nan"),
    "beta_a_inf": (lambda m: _layer(m).update(beta_a=float("inf")),
                   "layers[0].beta_a: must be finite, not inf"),
    "alpha_a_sign": (lambda m: _layer(m).update(alpha_a=-1.0),
                     "layers[0].alpha_a: must be positive, not -1.0"),
    "beta_a_type": (lambda m: _layer(m).update(beta_a="0"),
                    "layers[0].beta_a: must be a number, not '0'"),
    "k_fmt": (lambda m: _layer(m)["k_fmt"].update(int_bits=-1),
              "layers[0].k_fmt: Fixed-point int_bits must be a non-negative integer, not -1"),
    "k_fmt_wide": (lambda m: _layer(m)["k_fmt"].update(frac_bits=70),
                   f"layers[0].k_fmt: Fixed-point width must be 1..62 bits, not "
                   f"{_fmt(0).int_bits + 70} (Q{_fmt(0).int_bits}.70)"),
    "bn_eps": (lambda m: _layer(m).update(bn_eps=-1.0),
               "layers[0].bn_eps: must be non-negative, not -1.0"),
}


@pytest.mark.parametrize("case", JSON_CASES)
def test_rejects_manifest_field(tmp_path, case):
    edit, message = JSON_CASES[case]
    path = _copy(tmp_path, edit_manifest=edit)
    _rejects(path, path, message)


def _tw(arrays, name, value):
    arrays[name] = value


ARRAY_CASES = {
    "missing": (lambda a: a.pop("fc2.k0"), "fc2.k0", "missing array"),
    "dtype": (lambda a: _tw(a, "fc1.t_w", a["fc1.t_w"].astype(np.int16)), "fc1.t_w",
              "wrong dtype int16, expected int8"),
    "shape": (lambda a: _tw(a, "fc1.alpha_w", a["fc1.alpha_w"][:-1]), "fc1.alpha_w",
              "wrong shape (127,), expected (128,)"),
    "trit": (_set("fc1.t_w", (3, 5), 2), "fc1.t_w",
             "value 2 at index (3, 5) is not a trit (-1, 0, +1)"),
    "alpha_nan": (_set("fc2.alpha_w", 7, np.nan), "fc2.alpha_w", "non-finite value nan at index 7"),
    "beta_inf": (_set("fc3.beta_w", 2, -np.inf), "fc3.beta_w",
                 "non-finite value -inf at index 2"),
    "alpha_sign": (_set("fc1.alpha_w", 4, -0.5), "fc1.alpha_w",
                   "must be positive, not -0.5 at index 4"),
    "gamma_zero": (_set("fc1.bn_gamma", 9, 0.0), "fc1.bn_gamma", "must be non-zero, not 0.0 at "
                                                                 "index 9"),
    "var": (_set("fc2.bn_var", 1, -1.0), "fc2.bn_var",
            "variance + eps must be positive at index 1"),
    "k_overflow": (_set("fc1.k1", 2, 1 << 40), "fc1.k1",
                   f"code {1 << 40} at index 2 overflows {_fmt(0)} (range {_fmt(0).min_int} .. "
                   f"{_fmt(0).max_int})"),
    "threshold_overflow": (_set("fc2.hi", 0, -(1 << 40)), "fc2.hi",
                           f"code {-(1 << 40)} at index 0 overflows the thresholds of "
                           f"{_fmt(1, 'out_fmt')} (range {_fmt(1, 'out_fmt').min_int - 1} .. "
                           f"{_fmt(1, 'out_fmt').max_int + 1})"),
    "unexpected": (lambda a: _tw(a, "fc9.t_w", np.zeros(3, np.int8)), "fc9.t_w",
                   "unexpected array (no layer in the manifest uses it)"),
}


@pytest.mark.parametrize("case", ARRAY_CASES)
def test_rejects_array(tmp_path, case):
    edit, field, message = ARRAY_CASES[case]
    path = _copy(tmp_path, edit_arrays=edit)
    _rejects(path, tmp_path / "net.npz", f"{field}: {message}")


def test_rejects_k_that_does_not_match_alpha_beta(tmp_path):
    k0 = SHIPPED[1]["fc3.k0"][5]
    path = _copy(tmp_path, edit_arrays=_set("fc3.k0", 5, k0 + 1))
    _rejects(path, tmp_path / "net.npz", f"fc3.k0: does not match fold_constants(alpha_w, "
                                         f"beta_w, alpha_a, beta_a, S_w) at index 5 ({k0 + 1} "
                                         f"!= {k0})")


def test_rejects_threshold_that_does_not_match_batchnorm(tmp_path):
    lo = SHIPPED[1]["fc1.lo"][6]
    path = _copy(tmp_path, edit_arrays=_set("fc1.lo", 6, lo - 1))
    _rejects(path, tmp_path / "net.npz", f"fc1.lo: does not match fold_thresholds(BatchNorm, "
                                         f"delta) at index 6 ({lo - 1} != {lo})")


def test_rejects_k_format_too_narrow_for_alpha_beta(tmp_path):
    fmt = _fmt(1)
    path = _copy(tmp_path, edit_manifest=lambda m: _layer(m, 1)["k_fmt"].update(int_bits=1))
    with pytest.raises(ValueError, match="^" + re.escape(
            f"{tmp_path / 'net.npz'}: fc2.k") + r"[012]: code -?\d+ at index \d+ overflows "
            + re.escape(f"Q1.{fmt.frac_bits} (range -{1 << fmt.frac_bits} .. "
                        f"{(1 << fmt.frac_bits) - 1})") + "$"):
        weights.load(path)


def test_rejects_output_format_too_narrow(tmp_path):
    fmt = _fmt(2, "out_fmt")
    path = _copy(tmp_path, edit_manifest=lambda m: _layer(m, 2)["out_fmt"].update(int_bits=2))
    with pytest.raises(ValueError, match="^" + re.escape(
            f"{path}: layers[2].out_fmt: Output format Q2.{fmt.frac_bits} is too narrow for "
            f"n = 128: |y| can reach ") + r"[0-9.]+" + re.escape(", which needs int_bits >= ")
            + r"\d+$"):
        weights.load(path)


@pytest.mark.parametrize("edit, field, message", [
    (lambda m: m["training"]["accuracy"].update(golden=0.5), "training.accuracy.golden",
     "must equal golden_correct / test_size ({c}/359), not 0.5"),
    (lambda m: m["training"]["accuracy"].update(torch=1.5), "training.accuracy.torch",
     "must lie in [0, 1], not 1.5"),
    (lambda m: m["training"].pop("seed"), "training.seed", "missing field"),
    (lambda m: m["training"]["accuracy"].update(golden_correct=400),
     "training.accuracy.golden_correct", "must lie in 0..test_size, not 400 of 359"),
])
def test_rejects_training_record(tmp_path, edit, field, message):
    path = _copy(tmp_path, edit_manifest=edit)
    correct = SHIPPED[0]["training"]["accuracy"]["golden_correct"]
    _rejects(path, path, f"{field}: {message.format(c=correct)}")


def test_rejects_malformed_json(tmp_path):
    path = tmp_path / "net.json"
    path.write_text('{"format": "rtn-hw-weights",\n "version": 1,,}')
    _rejects(path, path, "(document): malformed JSON: Expecting property name enclosed in "
                         "double quotes at line 2 column 15")


def test_rejects_json_that_is_not_an_object(tmp_path):
    path = tmp_path / "net.json"
    path.write_text("[1, 2]")
    _rejects(path, path, "(document): must be a JSON object, not list")


def test_rejects_missing_manifest(tmp_path):
    _rejects(tmp_path / "absent.json", tmp_path / "absent.json",
             "(file): cannot read: No such file or directory")


def test_rejects_missing_archive(tmp_path):
    path = _copy(tmp_path)
    (tmp_path / "net.npz").unlink()
    _rejects(path, tmp_path / "net.npz", "(file): cannot read: No such file or directory")


def test_rejects_archive_changed_after_export(tmp_path):
    path = _copy(tmp_path)
    npz = tmp_path / "net.npz"
    npz.write_bytes(npz.read_bytes() + b"\0")
    _rejects(path, path, f"arrays.sha256: does not match {npz} (the pair was not written "
                         f"together)")


def test_rejects_unreadable_archive(tmp_path):
    path = _copy(tmp_path)
    (tmp_path / "net.npz").write_bytes(b"not a zip")
    manifest = json.loads(path.read_text())
    manifest["arrays"]["sha256"] = hashlib.sha256(b"not a zip").hexdigest()
    path.write_text(json.dumps(manifest))
    _rejects(path, tmp_path / "net.npz", "(archive): not a readable .npz file of plain arrays")


def test_rejects_archive_outside_the_directory(tmp_path):
    path = _copy(tmp_path, edit_manifest=lambda m: m["arrays"].update(file="../net.npz"))
    _rejects(path, path, "arrays.file: must be a .npz file name in the same directory, not "
                         "'../net.npz'")


# --- hostile files: bounded reads, one error type ---------------------------------------------

def _with_archive(tmp_path, blob):
    """The shipped manifest pointing at `blob` (its SHA-256 recorded, so the archive's own
    checks are what is tested)."""
    path = _copy(tmp_path)
    (tmp_path / "net.npz").write_bytes(blob)
    manifest = json.loads(path.read_text())
    manifest["arrays"]["sha256"] = hashlib.sha256(blob).hexdigest()
    path.write_text(json.dumps(manifest))
    return path


def _zip(members, *, compression=zipfile.ZIP_STORED, flag_bits=0):
    """A zip of {name: bytes} (names may repeat as (name, bytes) pairs); `flag_bits` are
    patched into every local and central header (zipfile's writer would clear them)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # zipfile warns on a duplicate name
        with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
            for name, data in (members.items() if isinstance(members, dict) else members):
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                archive.writestr(info, data)
    blob = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = blob.find(signature)
        while at >= 0:
            blob[at + offset] |= flag_bits
            at = blob.find(signature, at + 4)
    return bytes(blob)


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_header(shape, descr="<f8"):
    """A .npy header claiming `shape` (no data)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


SHIPPED_BLOB = weights.npz_bytes(SHIPPED[1])


def _bomb():
    # 1 MiB of zeros deflates to about 1 KiB; the directory states the true size, so the
    # check against the limit happens before any inflation.
    return _zip({"a.npy": b"\0" * (1 << 20)}, compression=zipfile.ZIP_DEFLATED)


def _corrupt_deflate():
    blob = bytearray(_zip({"a.npy": _npy_bytes(np.arange(1000))},
                          compression=zipfile.ZIP_DEFLATED))
    blob[60:70] = b"\xff" * 10
    return bytes(blob)


ARCHIVE_CASES = {
    "trailing": (SHIPPED_BLOB + b"junk", "(archive)",
                 "not a readable .npz file of plain arrays (bytes after the archive, or a "
                 "comment)"),
    "duplicate": (_zip([("fc1.t_w.npy", _npy_bytes(np.zeros(1))),
                        ("fc1.t_w.npy", _npy_bytes(np.zeros(1)))]),
                  "fc1.t_w.npy", "archive member given twice"),
    "not-npy": (_zip({"a.txt": b"x"}), "a.txt", "archive member is not a NAME.npy array"),
    "encrypted": (_zip({"a.npy": b"x"}, flag_bits=0x1), "a.npy",
                  "unsupported zip flags 0x0001 (encrypted or patched)"),
    "huge-header": (_zip({"a.npy": _npy_header((2**40,)) + bytes(24)}),
                    "a.npy", "header says float64 (1099511627776,) (8796093022208 bytes), the "
                             "member holds 24"),
    "negative": (_zip({"a.npy": _npy_header((-3,)) + bytes(24)}),
                 "a.npy", "negative extent in shape (-3,)"),
    "pickle": (_zip({"a.npy": _npy_bytes(np.zeros(2)).replace(b"'<f8'", b"'|O' ")}), "a.npy",
               "not a plain .npy array (dtype object)"),
    "corrupt-deflate": (_corrupt_deflate(), "(archive)", None),
}


@pytest.mark.parametrize("case", ARCHIVE_CASES)
def test_rejects_hostile_archive(tmp_path, case):
    blob, field, message = ARCHIVE_CASES[case]
    path = _with_archive(tmp_path, blob)
    if message is None:
        with pytest.raises(weights.WeightsError, match=f"^{re.escape(str(tmp_path))}/net.npz: "
                                                       f"{re.escape(field)}: "):
            weights.load(path)
    else:
        _rejects(path, tmp_path / "net.npz", f"{field}: {message}")


def test_rejects_zip_bomb_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "MAX_ARCHIVE_BYTES", 1 << 16)
    inflated = []
    real = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read",
                        lambda self, name, pwd=None: inflated.append(name) or real(self, name))
    path = _with_archive(tmp_path, _bomb())
    _rejects(path, tmp_path / "net.npz",
             "(archive): inflates to 1048576 bytes, more than the 65536 allowed")
    assert inflated == []


def test_rejects_archive_larger_than_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "MAX_ARCHIVE_BYTES", 1000)
    path = _with_archive(tmp_path, SHIPPED_BLOB)
    _rejects(path, tmp_path / "net.npz",
             f"(file): cannot read: {len(SHIPPED_BLOB)} bytes, more than the 1000 allowed")


def test_rejects_fifo_without_blocking(tmp_path):
    path = _copy(tmp_path)
    (tmp_path / "net.npz").unlink()
    os.mkfifo(tmp_path / "net.npz")
    _rejects(path, tmp_path / "net.npz", "(file): cannot read: not a regular file")
    fifo = tmp_path / "manifest.json"
    os.mkfifo(fifo)
    _rejects(fifo, fifo, "(file): cannot read: not a regular file")


def test_rejects_device(tmp_path):
    path = _copy(tmp_path, edit_manifest=lambda m: m["arrays"].update(file="zero.npz"))
    (tmp_path / "zero.npz").unlink()
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    _rejects(path, tmp_path / "zero.npz", "(file): cannot read: not a regular file")


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "malformed JSON: nested too deeply"),
    ('{"format": 1, "format": 2}', "malformed JSON: key 'format' given twice"),
    ('{"version": ' + "9" * 5000 + "}",
     "malformed JSON: Exceeds the limit (4300 digits) for integer string conversion: value "
     "has 5000 digits; use sys.set_int_max_str_digits() to increase the limit"),
    (b"\xff\xfe{}", "malformed JSON: not UTF-8 text"),
], ids=["deep", "duplicate-key", "huge-int", "not-utf8"])
def test_rejects_hostile_json(tmp_path, text, message):
    path = tmp_path / "net.json"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    _rejects(path, path, f"(document): {message}")


@pytest.mark.parametrize("edit, field, message", [
    (lambda m: m.update(extra=1), "extra",
     "unknown field (expected arrays, delta, format, input, layers, training, version)"),
    (lambda m: m["input"].update(shap=[8, 8]), "input.shap",
     "unknown field (expected hi, lo, pixel_max, shape)"),
    (lambda m: _layer(m).update(bn_epsilon=0.1), "layers[0].bn_epsilon", "unknown field "
     "(expected activation, alpha_a, beta_a, bn_eps, in_features, k_fmt, name, out_features, "
     "out_fmt)"),
    (lambda m: _layer(m)["k_fmt"].update(sign=1), "layers[0].k_fmt.sign",
     "unknown field (expected frac_bits, int_bits)"),
    (lambda m: m["input"].update(shape=[2**40, 2**40]), "input.shape",
     "must hold at most 16777216 pixels, not 1208925819614629174706176"),
    (lambda m: _layer(m).update(alpha_a=10**400), "layers[0].alpha_a",
     "must be a finite number, not 10000000000000000000...00000000 (401 characters)"),
    (lambda m: m["input"].update(pixel_max=256), "input.pixel_max",
     "must be 1..255 (one byte a pixel), not 256"),
])
def test_rejects_structure(tmp_path, edit, field, message):
    path = _copy(tmp_path, edit_manifest=edit)
    _rejects(path, path, f"{field}: {message}")


def test_only_weights_error_escapes(tmp_path):
    """Bytes of the manifest and the archive flipped, and truncations of the archive, at 40
    evenly spaced places each (tests/test_fuzz_weights.py draws more): only WeightsError
    comes out."""
    path = _copy(tmp_path)
    manifest, npz = path.read_bytes(), (tmp_path / "net.npz").read_bytes()
    for at in range(0, len(npz), len(npz) // 40):
        _with_archive(tmp_path, npz[:at])
        with pytest.raises(weights.WeightsError):
            weights.load(path)
        flipped = bytearray(npz)
        flipped[at] ^= 0x55
        _with_archive(tmp_path, bytes(flipped))
        try:
            weights.load(path)
        except weights.WeightsError:
            pass
    (tmp_path / "net.npz").write_bytes(npz)
    for at in range(0, len(manifest), len(manifest) // 40):
        flipped = bytearray(manifest)
        flipped[at] ^= 0x55
        path.write_bytes(bytes(flipped))
        try:
            weights.load(path)
        except weights.WeightsError:
            pass


def test_member_name_with_a_newline_stays_one_line(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(_zip({"\n.npy": b""}))
    with pytest.raises(weights.WeightsError) as error:
        weights.read_arrays(path)
    assert str(error.value).startswith(f"{path}: '\\n.npy': not a plain .npy array (")
    assert "\n" not in str(error.value)


def test_macs_per_image():
    # The digits MLP 64-128-128-10; the MNIST CNN: 3x3 convolutions with padding 1 (conv1
    # 9 x 16 at 28 x 28 positions, conv2 144 x 32 at 14 x 14), pools none, 1,568-128-10.
    assert weights.load().macs_per_image == 64 * 128 + 128 * 128 + 128 * 10
    cnn = weights.load(weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json")
    assert cnn.macs_per_image == 9 * 16 * 28 * 28 + 144 * 32 * 14 * 14 + 1568 * 128 + 128 * 10
