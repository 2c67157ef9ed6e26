"""Input validation shared by the golden model. Every error names the value it rejects."""

import numbers

import numpy as np


def positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise TypeError(f"{what} must be a positive integer, not {value!r}")
    return int(value)


def trits(value, name):
    """Return `value` as an int8 array of trits, or raise naming the first bad element."""
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be an array of trits (-1, 0, +1), not dtype {arr.dtype}")
    bad = ~np.isin(arr, (-1, 0, 1))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must contain only trits (-1, 0, +1), not {arr[index].item()!r} "
                         f"at index {index if arr.ndim > 1 else index[0]}")
    return arr.astype(np.int8)


def finite(value, name):
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, not {arr[~np.isfinite(arr)].flat[0].item()!r}")
    return arr


def positive_finite(value, name):
    arr = finite(value, name)
    if (arr <= 0).any():
        raise ValueError(f"{name} must be positive, not {arr[arr <= 0].flat[0].item()!r}")
    return arr


def same_lanes(a, b, name_a, name_b):
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{name_a} has {a.shape[-1]} lanes but {name_b} has {b.shape[-1]}; "
                         f"they must match")


def per_row(value, rows, name):
    """Broadcast a scalar or a length-`rows` vector to shape (rows,)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(rows, float(arr))
    if arr.shape != (rows,):
        raise ValueError(f"{name} must be a scalar or have shape ({rows},), not {arr.shape}")
    return arr
