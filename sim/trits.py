"""Stimulus helpers shared by the unit benches: ternary vectors, corner rows, notation.

Trits are int8 arrays (count, lanes). Their 2-bit encoding comes from the golden model
(`rtn_hw.model.pack`, with the don't-care sign bit of zeros optionally set), turned into bit
columns for `sidecar.Payload.pack`. A stimulus is a dict of equally long arrays, so batches
concatenate and index uniformly.
"""

import numpy as np

from rtn_hw.model import pack

__all__ = ["random_trits", "corner_rows", "plane_bits", "notation", "planes_notation",
           "concat", "length"]


def random_trits(rng, count, lanes, sparsity):
    """Trits with a fraction `sparsity` of zeros (on average); ±1 with equal odds."""
    nonzero = rng.random((count, lanes)) >= sparsity
    return (np.where(rng.random((count, lanes)) < 0.5, -1, 1) * nonzero).astype(np.int8)


def corner_rows(lanes):
    """Named corner vectors: all zero, all +1, all -1, alternating, sparse patterns."""
    k = np.arange(lanes)
    rows = {
        "zero": np.zeros(lanes),
        "plus": np.ones(lanes),
        "minus": -np.ones(lanes),
        "alt+-": np.where(k % 2, -1, 1),
        "alt-+": np.where(k % 2, 1, -1),
        "+0-0": np.choose(k % 4, [1, 0, -1, 0]),
        "first+": np.where(k == 0, 1, 0),
        "last-": np.where(k == lanes - 1, -1, 0),
    }
    return {name: row.astype(np.int8) for name, row in rows.items()}


def plane_bits(t, zero_sign=None):
    """Trits (count, lanes) → (nz, sg) bool bit arrays (count, lanes), by the model's pack."""
    lanes = t.shape[-1]
    nz, sg = pack(t, zero_sign)

    def bits(words):
        raw = np.ascontiguousarray(words.astype("<u8")).view(np.uint8)
        return np.unpackbits(raw, axis=-1, bitorder="little")[..., :lanes].astype(bool)
    return bits(nz), bits(sg)


def notation(t, zero_sign=None):
    """One trit vector as "+0-0+" (lane 0 first), noting zeros whose sign bit is set."""
    text = "".join("+" if x > 0 else "-" if x < 0 else "0" for x in t)
    if zero_sign is not None:
        lanes = np.flatnonzero(np.asarray(zero_sign) & (np.asarray(t) == 0))
        if lanes.size:
            text += f" (sign bit set on zeros at lanes {lanes.tolist()})"
    return text


def planes_notation(payload, value, lanes, prefix=""):
    """The trit planes `prefix`nz / `prefix`sg of a flat payload int, in trit notation."""
    fields = payload.unpack(value)
    nz, sg = fields[f"{prefix}nz"], fields[f"{prefix}sg"]
    t = np.array([((sg >> k) & 1) * 2 - 1 if (nz >> k) & 1 else 0 for k in range(lanes)])
    return notation(t, np.array([(sg >> k) & 1 for k in range(lanes)], dtype=bool))


def concat(*stims):
    return {key: np.concatenate([s[key] for s in stims]) for key in stims[0]}


def length(stim):
    return len(next(iter(stim.values())))
