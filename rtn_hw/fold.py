"""`rtn-hw fold`: per-layer foldings of the dataflow engine for a throughput target or a budget.

A layer of N inputs and P outputs folded to L lanes and C channels takes ⌈N/L⌉·⌈P/C⌉ cycles
per image; only the smallest L for each chunk count K = ⌈N/L⌉ (and the smallest C for each
group count) can be worth having, so a layer's candidates are those (L, C) pairs. The engine's
II is the slowest layer's, so for a target II every layer independently takes its cheapest
candidate with layer II ≤ target.

Cost is the resource model (`estimate`): per-stage LUT4, FF, DSP and block RAM from the
folding's structure, with coefficients fitted to yosys counts of the dataflow engine on the
ECP5-85k (`bench/dataflow_area.py`, docs/units/dataflow_engine.md). Nothing here imports
Amaranth: the solver runs on the network's shapes and weights only.
"""

import dataclasses
import math

import numpy as np

__all__ = ["Folding", "candidates", "fewest_lanes", "Estimate", "estimate", "solve",
           "FoldError", "MODEL"]


class FoldError(ValueError):
    """A request no folding meets: one line naming the limit and the best reachable value."""


def _folding_class():
    from .gateware.dataflow import Folding        # lazily: the model needs no Amaranth
    return Folding


def Folding(lanes, channels, storage="bram"):     # noqa: N802 (the gateware's dataclass)
    return _folding_class()(lanes, channels, storage)


def _fewest(n):
    """The smallest width w for every distinct ⌈n / w⌉, as (w, ⌈n / w⌉) pairs."""
    return sorted({(-(-n // k), -(-n // -(-n // k))) for k in range(1, n + 1)})


def candidates(layer):
    """(lanes, channels, layer II) of every folding of `layer` that can be worth having."""
    n, p = layer.in_features, layer.out_features
    return [(lanes, channels, chunks * groups)
            for lanes, chunks in _fewest(n) for channels, groups in _fewest(p)]


# Weight memories of at most this many words go to LUT RAM: a block RAM word is at most 36
# bits wide (ECP5 DP16KD), so a wide, shallow memory would take a block RAM per 36 bits.
LUTRAM_MAX_WORDS = 16


def _storage(layer, lanes, channels, weights):
    """Baked when the layer is one weight word, else `weights` (None: LUT RAM up to
    LUTRAM_MAX_WORDS words, else block RAM)."""
    words = -(-layer.in_features // lanes) * -(-layer.out_features // channels)
    if words == 1:
        return "baked"
    if weights is None:
        return "lutram" if words <= LUTRAM_MAX_WORDS else "bram"
    return weights


def fewest_lanes(network, ii, weights=None):
    """The folding of II ≤ `ii` with the fewest lanes × channels per layer (then the fewest
    channels): structure only, no resource model (the synthesis sweep's foldings)."""
    foldings = []
    for layer in network.layers:
        fits = [(lanes * channels, channels, lanes) for lanes, channels, layer_ii
                in candidates(layer) if layer_ii <= ii]
        if not fits:
            raise FoldError(f"II must be at least 1, not {ii}")
        _, channels, lanes = min(fits)
        foldings.append(Folding(lanes, channels, _storage(layer, lanes, channels, weights)))
    return tuple(foldings)
