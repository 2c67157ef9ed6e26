"""`rtn-hw fold`: per-layer foldings of the dataflow engine for a throughput target or a budget.

A layer of N inputs and P outputs folded to L lanes and C channels takes ⌈N/L⌉·⌈P/C⌉ cycles
per image; only the smallest L for each chunk count K = ⌈N/L⌉ (and the smallest C for each
group count) can be worth having, so a layer's candidates are those (L, C) pairs. The engine's
II is the slowest layer's, so for a target II every layer independently takes its cheapest
candidate with layer II ≤ target.

Cost is the resource model (`estimate`): per-stage LUT4, FF, DSP and block RAM from the
folding's structure, with coefficients fitted to yosys counts of the dataflow engine on the
ECP5-85k (`CALIBRATION`, from `bench/dataflow_area.py`; docs/units/dataflow_engine.md). The
gateware is imported only for the schedule (`stage_latency`, FIFO depths); nothing is
elaborated.
"""

import dataclasses
import functools
import math

import numpy as np

from .gateware.dataflow import (Folding, check_foldings, fifo_depths, layer_ii, parse_foldings,
                                predicted_ii, stage_latency)

__all__ = ["candidates", "fewest_lanes", "features", "Estimate", "estimate", "TARGET_BUFFERS",
           "buffers_for", "solve", "FoldError", "CALIBRATION", "fit"]


class FoldError(ValueError):
    """A request no folding meets: one line naming the limit and the best reachable value."""


def _fewest(n):
    """The smallest width w for every distinct ⌈n / w⌉, as (w, ⌈n / w⌉) pairs."""
    return sorted({(-(-n // k), -(-n // -(-n // k))) for k in range(1, n + 1)})


def candidates(layer):
    """(lanes, channels, layer II) of every folding of `layer` that can be worth having."""
    n, p = layer.in_features, layer.out_features
    return [(lanes, channels, chunks * groups)
            for lanes, chunks in _fewest(n) for channels, groups in _fewest(p)]


# Where hidden results wait between stages, per target (DataflowEngine `buffers`; "fifo"
# elsewhere): block RAM on the iCE40 UP5K, where a FIFO of 256-bit images is flip-flops, one
# logic cell each (8x1,16x1,2x1: 7,388 logic cells of 5,280 with FIFOs, 4,285 with block RAM).
TARGET_BUFFERS = {"ice40-up5k": "bram"}


def buffers_for(target):
    """The DataflowEngine `buffers` for `target`."""
    return TARGET_BUFFERS.get(target, "fifo")


# Weight memories of at most this many words go to logic: a block RAM word is at most 36
# bits wide (ECP5 DP16KD), so a wide, shallow memory would take a block RAM per 36 bits, and
# on the ECP5-85k the II-32 folding's 32-word memories in 72 DP16KD did not route (router2
# overuse rising again after 40 iterations) where the same folding in logic did.
LOGIC_MAX_WORDS = 32
# Targets whose solver keeps shallow weight memories (<= LOGIC_MAX_WORDS) out of block RAM.
SHALLOW_IN_LOGIC = ("ecp5-85k",)


def _storage(layer, lanes, channels, weights):
    """Baked when the layer is one weight word, else `weights` (None: logic up to
    LOGIC_MAX_WORDS words, else block RAM)."""
    words = -(-layer.in_features // lanes) * -(-layer.out_features // channels)
    if words == 1:
        return "baked"
    if weights is None:
        return "logic" if words <= LOGIC_MAX_WORDS else "bram"
    return weights


def fewest_lanes(network, ii, weights=None):
    """The folding of II ≤ `ii` with the fewest lanes × channels per layer (then the fewest
    channels): structure only, no resource model (the synthesis sweep's foldings). A CNN's
    conv stages are timed by their window walk (`layer_ii`); its pools take no folding (None)."""
    foldings = []
    for layer in network.layers:
        if layer.kind == "maxpool":
            foldings.append(None)
            continue
        fits = [(lanes * channels, channels, lanes) for lanes, channels, _ in candidates(layer)
                if layer_ii(layer, Folding(lanes, channels)) <= ii]
        if not fits:
            raise FoldError(f"II must be at least 1, not {ii}")
        _, channels, lanes = min(fits)
        foldings.append(Folding(lanes, channels, _storage(layer, lanes, channels, weights)))
    return tuple(foldings)


# --- the resource model ----------------------------------------------------------------------

def _bits_for(value):
    return max(1, int(value).bit_length())


def _pair_terms(t_w):
    """Baked MacCore terms: per channel, the lane pairs (2j, 2j+1) with a non-zero weight."""
    t_w = np.asarray(t_w)
    if t_w.shape[1] % 2:
        t_w = np.pad(t_w, ((0, 0), (0, 1)))
    return int(np.count_nonzero(t_w.reshape(t_w.shape[0], -1, 2).any(axis=2)))


def _block_rams(width, depth):
    """ECP5 DP16KD blocks for a width × depth memory: 18 Kb in 512 × 36 ... 16384 × 1."""
    best = None
    for words, bits in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)):
        blocks = -(-width // bits) * -(-depth // words)
        best = blocks if best is None else min(best, blocks)
    return best


_FEATURES = ("stages", "mac_lanes", "baked_terms", "channels", "mult_channels",
             "baked_channels", "mux_lanes", "logic_bits", "word_bits", "sum_bits", "result_bits",
             "merge_bits", "fifo_bits", "dsp", "bram")


@functools.lru_cache(maxsize=None)
def _stage_latency(layer, folding, last):
    return stage_latency(layer, folding, last, hold=True)


@functools.lru_cache(maxsize=None)
def _baked_terms(layer):
    return _pair_terms(layer.t_w)


def _stage_features(layer, folding, ii, last, depth=None):
    """What the model counts in one stage at engine II `ii`: its FIFO `depth` as the engine
    has it (`fifo_depths`), or, for a stage on its own, as if the next stage's II were `ii`."""
    n, p = layer.in_features, layer.out_features
    chunks, groups = -(-n // folding.lanes), -(-p // folding.channels)
    lanes, channels, words = folding.lanes, folding.channels, chunks * groups
    if depth is None:
        depth = max(2, -(-(_stage_latency(layer, folding, last) + (1 if last else ii)) // ii))
    width = p * layer.out_fmt.width + _bits_for(p - 1) if last else 2 * p
    # The result register (`held`), and on the last layer the logits' delayed copies when a
    # group's result can come sooner than the label (dataflow.LayerStage).
    wait = max(1, (channels - 1).bit_length())
    copies = 1 + (wait if last and chunks <= wait else 0)
    f = dict.fromkeys(_FEATURES, 0)
    f.update(stages=1, channels=channels, mux_lanes=lanes * (chunks - 1),
             sum_bits=channels * _bits_for(2 * lanes * chunks), result_bits=copies * width,
             fifo_bits=depth * width,
             # One group: K constants baked into PostProcess (trees of shifted terms); several:
             # the groups merged into the result register by a multiplexer per bit.
             baked_channels=channels if groups == 1 else 0,
             merge_bits=width if groups > 1 else 0)
    if folding.storage == "baked":
        f["baked_terms"] = _baked_terms(layer)
        return f
    f.update(mac_lanes=lanes * channels, word_bits=2 * lanes * channels)
    if groups > 1:
        # Constants from memory: two multipliers and their pipeline per channel.
        f["dsp"] = f["mult_channels"] = 2 * channels
    if folding.storage == "logic":
        # A LUT4 per 16 words of each ROM bit, and the multiplexers joining them.
        f["logic_bits"] = 2 * lanes * channels * (2 * -(-words // 16) - 1)
    else:
        f["bram"] = _block_rams(2 * lanes * channels, words)
        if groups > 1:
            # K1, K2, K0' and, hidden, lo' and hi': about 100 bits per channel.
            f["bram"] += _block_rams(channels * (60 if last else 102), groups)
    return f


def features(network, foldings):
    """The structure the model counts, summed over the stages (plain ints)."""
    foldings = check_foldings(network, foldings)
    ii = predicted_ii(network, foldings)
    total = dict.fromkeys(_FEATURES, 0)
    layers = network.layers
    for k, (layer, folding, depth) in enumerate(zip(layers, foldings,
                                                    fifo_depths(network, foldings))):
        for name, value in _stage_features(layer, folding, ii, k == len(layers) - 1,
                                           depth).items():
            total[name] += value
    return total


# yosys counts of the dataflow engine with the shipped digits network on the ECP5-85k
# (`bench/dataflow_area.py` and, for the Pareto sweep's foldings, `bench/dataflow_pareto.py`:
# the same script and netlist; yosys 0.70, `synth_ecp5` with DSPs): folding → (LUT4 + 2·CCU2C,
# FF). The model's LUT4 and FF coefficients are fitted to these (`fit`). Counted 2026-12-04 on
# the gateware of commit c9b987b (PostProcess of 2972637: baked K constants as two balanced
# trees), in a clean worktree; every folding's RTLIL is the same at 1516102. The II-4 folding
# (16x128:logic,...) is the one the model before the refit of 8c6f39a chose as the fastest
# that fits (it predicted 64,406: it does not fit); 2x128,... is a streamed one of 128 channels
# per layer with its constants baked.
CALIBRATION = {
    "1x1:bram,1x1:bram,1x1:bram": (1445 + 2 * 161, 1920),
    "64x1:bram,128x1:bram,2x5:bram": (2296 + 2 * 948, 4109),
    "64x4:logic,128x4:logic,8x5:logic": (10080 + 2 * 2318, 7750),
    "64x4:bram,128x4:bram,8x5:bram": (3793 + 2 * 2281, 7621),
    "16x4:bram,32x4:bram,8x5:bram": (2654 + 2 * 1021, 5224),
    "64x4:bram,128x4:bram,128x10:baked": (6785 + 2 * 3434, 9606),
    "64x16:logic,128x16:logic,32x5:logic": (14262 + 2 * 7568, 14381),
    "4x16:bram,8x16:bram,8x5:bram": (4715 + 2 * 1712, 11595),
    "64x128:baked,128x128:baked,128x10:baked": (54581 + 2 * 25822, 34466),
    "16x128:logic,32x128:logic,32x10:logic": (51002 + 2 * 27076, 34442),
    "2x128:bram,4x128:bram,4x10:logic": (38042 + 2 * 15414, 24077),
}

# The features each count is fitted on: of the features above, the subsets with the smallest
# largest in-sample error on the rows of CALIBRATION (an exhaustive search over subsets of up
# to six, docs/units/dataflow_engine.md#model-error).
FITTED = {
    "lut4": ("stages", "mac_lanes", "baked_terms", "baked_channels", "logic_bits", "sum_bits"),
    "ff": ("mac_lanes", "mult_channels", "sum_bits", "result_bits"),
}


def fit(network, calibration):
    """{"lut4": {feature: coefficient}, "ff": {...}}: least squares of the relative error
    over `calibration` (folding text → (LUT4, FF)), so that a small folding counts as much as
    the unfolded one; a feature whose coefficient comes out negative is dropped and the rest
    refitted, and a feature no calibrated folding has gets no coefficient."""
    rows = [(features(network, parse_foldings(text, network)), counts)
            for text, counts in calibration.items()]
    model = {}
    for column, kind in enumerate(("lut4", "ff")):
        names = [n for n in FITTED[kind] if any(f[n] for f, _ in rows)]
        while True:
            b = np.array([counts[column] for _, counts in rows], dtype=float)
            a = np.array([[f[n] for n in names] for f, _ in rows], dtype=float) / b[:, None]
            coefficients = np.linalg.lstsq(a, np.ones(len(b)), rcond=None)[0]
            if (coefficients >= 0).all() or len(names) == 1:
                break
            names.pop(int(np.argmin(coefficients)))
        model[kind] = {n: round(float(c), 4) for n, c in zip(names, coefficients)}
    return model


@functools.lru_cache(maxsize=None)
def _model():
    from .weights import load
    return fit(load(), CALIBRATION)


@dataclasses.dataclass(frozen=True)
class Estimate:
    ii: int
    lut4: int
    ff: int
    dsp: int
    bram: int

    def as_dict(self):
        return dataclasses.asdict(self)


def _estimate(f, ii):
    model = _model()
    lut4, ff = (round(sum(c * f[name] for name, c in model[kind].items()))
                for kind in ("lut4", "ff"))
    return Estimate(ii, lut4, ff, f["dsp"], f["bram"])


def estimate(network, foldings):
    """The model's II, LUT4, FF, DSP (MULT18X18D) and block RAM (DP16KD) of a folding."""
    return _estimate(features(network, foldings), predicted_ii(network, foldings))


# --- the solver ------------------------------------------------------------------------------

# Clock for images/s when none is given, per target: the lowest routed Fmax of the dataflow
# foldings (`bench/dataflow_pareto.py`, router2, seed 1, docs/units/dataflow_engine.md), kept
# below every later figure: on the ECP5-85k 49.6 MHz at 64x16:logic,128x16:logic,32x5:logic
# (ef2dd00; the Pareto report at c9b987b: 53.12 there, 74.61 at II 32, 75.88 at II 128,
# 90.16 at 1x1); on the UP5K 30.6 MHz at 16x1,32x1,3x1 with block-RAM buffers (31.88 at
# c9b987b; 39.5 at 8x1,16x1,2x1).
FMAX_MHZ = {"ecp5-85k": 49.6, "ice40-up5k": 30.6}

_RESOURCES = (("lut4", "LUT4", "lut4"), ("dsp", "DSP", "dsp"), ("bram", "BRAM", "bram"))


@dataclasses.dataclass(frozen=True)
class Plan:
    """A solved folding: the foldings, the model's estimate and the clock it assumed."""
    foldings: tuple
    estimate: Estimate
    clock_mhz: float
    limits: dict

    @property
    def images_per_second(self):
        return self.clock_mhz * 1e6 / self.estimate.ii

    def as_dict(self):
        return {"foldings": [str(f) for f in self.foldings], **self.estimate.as_dict(),
                "clock_mhz": self.clock_mhz, "images_per_second": round(self.images_per_second),
                "limits": self.limits}


def _layer_choices(layer, ii, last, shallow_logic=False):
    """Foldings of one layer with layer II ≤ ii, each storage that applies (`shallow_logic`:
    weight memories of at most LOGIC_MAX_WORDS words in logic only)."""
    out = []
    for lanes, channels, layer_ii in candidates(layer):
        if layer_ii > ii:
            continue
        storages = (("baked",) if layer_ii == 1 else
                    ("logic",) if shallow_logic and layer_ii <= LOGIC_MAX_WORDS else
                    ("bram", "logic"))
        out += [Folding(lanes, channels, s) for s in storages]
    return out


def _cheapest(network, ii, limits, shallow_logic=False):
    """(foldings, estimate): per layer the folding of layer II ≤ ii whose stage uses the least
    of the device (the sum of its shares of LUT4, FF, DSP and BRAM). The model is a sum over
    stages, so the whole is cheapest when every stage is."""
    layers, chosen = network.layers, []
    for k, layer in enumerate(layers):
        last = k == len(layers) - 1

        def cost(folding):
            e = _estimate(_stage_features(layer, folding, ii, last), ii)
            shares = [getattr(e, name) / limits[name] if limits[name]
                      else math.inf if getattr(e, name) else 0.0
                      for name in ("lut4", "ff", "dsp", "bram") if limits.get(name) is not None]
            return sum(shares)
        chosen.append(min(_layer_choices(layer, ii, last, shallow_logic), key=cost))
    # The engine's II may be below `ii`, and its FIFOs sized for it: estimate the whole.
    return tuple(chosen), estimate(network, chosen)


def _fits(e, limits):
    return all(limits.get(name) is None or getattr(e, name) <= limits[name]
               for name in ("lut4", "ff", "dsp", "bram"))


def _reachable_iis(network):
    return sorted({layer_ii for layer in network.layers
                   for *_, layer_ii in candidates(layer)}
                  | {max(c[2] for c in candidates(layer)) for layer in network.layers})


def solve(network, target, *, images_per_second=None, clock_mhz=None, lut4=None, dsp=None,
          bram=None):
    """The plan for `target` (a key of rtn_hw.flow.devices.DEVICES): with `images_per_second`
    the cheapest folding reaching it at `clock_mhz` (default FMAX_MHZ[target]); else the
    fastest folding within the budget (`lut4`, `dsp`, `bram`; default the device's).
    Raises FoldError naming the limit and the best reachable value."""
    from .flow.devices import DEVICES
    if target not in DEVICES:
        raise FoldError(f"unknown target {target!r}; valid targets: {', '.join(DEVICES)}")
    device = DEVICES[target]
    clock = clock_mhz if clock_mhz is not None else FMAX_MHZ.get(target, 100.0)
    limits = {"lut4": device["lut4"], "ff": device["ff"], "dsp": device["dsp"],
              "bram": device["bram"]}
    for name, value in (("lut4", lut4), ("dsp", dsp), ("bram", bram)):
        if value is not None:
            limits[name] = value if limits[name] is None else min(value, limits[name])
    shallow = target in SHALLOW_IN_LOGIC
    if images_per_second is not None:
        ii = math.floor(clock * 1e6 / images_per_second)
        if ii < 1:
            raise FoldError(f"{images_per_second:,.0f} images/s at {clock:g} MHz needs II < 1; "
                            f"the most is {clock * 1e6:,.0f} images/s (II = 1)")
        foldings, e = _cheapest(network, ii, limits, shallow)
        if not _fits(e, limits):
            best = _fastest_fitting(network, limits, shallow)
            over = _over(e, limits)
            reach = (f"the fastest that fits reaches {clock * 1e6 / best[1].ii:,.0f} images/s "
                     f"(II = {best[1].ii})" if best else "no folding fits")
            raise FoldError(f"{images_per_second:,.0f} images/s at {clock:g} MHz needs {over} "
                            f"on {target}; {reach}")
        return Plan(foldings, e, clock, limits)
    best = _fastest_fitting(network, limits, shallow)
    if best is None:
        _, smallest = _cheapest(network, _reachable_iis(network)[-1], limits, shallow)
        raise FoldError(f"no folding fits {target} within {_budget(limits)}: the smallest "
                        f"needs {_over(smallest, limits)}")
    return Plan(*best, clock, limits)


def _fastest_fitting(network, limits, shallow_logic=False):
    """(foldings, estimate) of the smallest reachable II whose cheapest folding fits, or None.
    Bisection: the cheapest folding's resources fall as II grows."""
    iis = _reachable_iis(network)
    found, lo, hi = None, 0, len(iis) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        foldings, e = _cheapest(network, iis[mid], limits, shallow_logic)
        if _fits(e, limits):
            found, hi = (foldings, e), mid - 1
        else:
            lo = mid + 1
    return found


def _over(e, limits):
    """The resources `e` uses beyond `limits`, as "LUT4 90,000 of 83,640"."""
    parts = [f"{label} {getattr(e, name):,} of {limits[name]:,}"
             for name, label in (("lut4", "LUT4"), ("ff", "FF"), ("dsp", "DSP"), ("bram", "BRAM"))
             if limits.get(name) is not None and getattr(e, name) > limits[name]]
    return ", ".join(parts) or "nothing more"


def _budget(limits):
    return ", ".join(f"{label} {limits[name]:,}" for name, label in
                     (("lut4", "LUT4"), ("ff", "FF"), ("dsp", "DSP"), ("bram", "BRAM"))
                     if limits.get(name) is not None)
