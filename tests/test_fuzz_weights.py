"""The weights loader (rtn_hw.weights) on hostile files: manifests with values replaced at
random places, archives with bytes flipped, cut, inserted or appended, and zip archives built
from random members. Only WeightsError, with a one-line message, may come out, and a load
that succeeds gives the shipped network. Seeds and budgets: tests/fuzzing.py."""

import hashlib
import io
import json
import zipfile

import numpy as np
from hypothesis import given, strategies as st

from fuzzing import examples, fuzz_seed, seeded  # noqa: F401 (fuzz_seed: autouse fixture)
from rtn_hw import weights

MANIFEST = json.loads(weights.DEFAULT_MANIFEST.read_text())
ARCHIVE = (weights.WEIGHTS_DIR / MANIFEST["arrays"]["file"]).read_bytes()
SHIPPED = weights.load()

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def _paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


PATHS = [path for path in _paths(MANIFEST) if path]


def _replace(value, path, new):
    if len(path) == 1:
        value[path[0]] = new
    else:
        _replace(value[path[0]], path[1:], new)


def _load(tmp_path, manifest_text, archive):
    (tmp_path / "net.json").write_text(manifest_text)
    (tmp_path / MANIFEST["arrays"]["file"]).write_bytes(archive)
    try:
        network = weights.load(tmp_path / "net.json")
    except weights.WeightsError as error:
        assert "\n" not in str(error) and str(error).startswith(str(tmp_path))
        return None
    return network


def _with_digest(manifest, archive):
    manifest = json.loads(json.dumps(manifest))
    manifest["arrays"]["sha256"] = hashlib.sha256(archive).hexdigest()
    return manifest


@seeded
@examples(80)
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3))
def test_manifest_values_replaced(tmp_path_factory, edits):
    manifest = json.loads(json.dumps(MANIFEST))
    for path, value in edits:
        try:
            _replace(manifest, path, value)
        except (KeyError, IndexError, TypeError):
            pass            # an earlier edit changed the structure above this path
    network = _load(tmp_path_factory.mktemp("m"), json.dumps(manifest), ARCHIVE)
    if network is not None:
        assert [l.out_features for l in network.layers] == \
            [l.out_features for l in SHIPPED.layers]


@seeded
@examples(150)
@given(st.binary(max_size=2000))
def test_manifest_bytes(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("b")
    (path / "net.json").write_bytes(text)
    try:
        weights.load(path / "net.json")
    except weights.WeightsError as error:
        assert "\n" not in str(error)


@seeded
@examples(150)
@given(st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "append"]),
                          st.integers(0, len(ARCHIVE) - 1), st.binary(min_size=1, max_size=16)),
                min_size=1, max_size=3))
def test_archive_bytes(tmp_path_factory, edits):
    """The archive changed and its SHA-256 recorded anew, so the archive reader itself is
    what meets the damage."""
    archive = bytearray(ARCHIVE)
    for kind, at, data in edits:
        at = min(at, len(archive) - 1) if archive else 0
        if kind == "flip" and archive:
            archive[at] ^= data[0] or 1
        elif kind == "cut":
            del archive[at:]
        elif kind == "insert":
            archive[at:at] = data
        else:
            archive += data
    archive = bytes(archive)
    network = _load(tmp_path_factory.mktemp("a"), json.dumps(_with_digest(MANIFEST, archive)),
                    archive)
    if network is not None:
        for got, want in zip(network.layers, SHIPPED.layers):
            assert np.array_equal(got.t_w, want.t_w)


member_names = st.one_of(st.sampled_from(["fc1.t_w.npy", "fc1.k1.npy", "a.npy", ".npy",
                                          "x/y.npy", "b.txt"]),
                         st.text(min_size=1, max_size=8).map(lambda s: s + ".npy"))


def _npy(draw_array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, draw_array, allow_pickle=False)
    return buffer.getvalue()


arrays = st.one_of(
    st.lists(st.integers(-128, 127), max_size=20).map(lambda v: np.array(v, np.int8)),
    st.lists(st.floats(), max_size=10).map(lambda v: np.array(v, np.float64)),
    st.lists(st.integers(-2**62, 2**62), max_size=10).map(lambda v: np.array(v, np.int64)))


@seeded
@examples(150)
@given(st.lists(st.tuples(member_names, st.one_of(arrays.map(_npy), st.binary(max_size=64))),
                max_size=4),
       st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_random_zip_archives(tmp_path_factory, members, compression):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            try:
                archive.writestr(info, data)
            except UserWarning:
                pass        # a duplicate name (warnings are errors here)
    blob = buffer.getvalue()
    path = tmp_path_factory.mktemp("z") / "x.npz"
    path.write_bytes(blob)
    try:
        weights.read_arrays(path)
    except weights.WeightsError as error:
        assert "\n" not in str(error)
