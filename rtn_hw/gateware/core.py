"""MacCore: Eq. 8 for one chunk of `lanes` activation trits against `channels` weight rows.

The one place where the per-lane logic of the ternary dot product is written (docs/rtn.md §3).
For a weight trit (W1 = nz, W2 = sg) and an activation trit (A1, A2), with c = W1 & A1 and
x = W2 ^ A2, two bits per lane

    plus      = c & ~x          (the product is +1)
    not_minus = ~(c & x)        (the product is not -1)

sum to t_w·t_a + 1 ∈ {0, 1, 2}. A zero's sign bit enters only through x, which c masks, so it
cannot change anything. Summed over the lanes counted,

    dp_p = Σ (plus + not_minus) = D_p + m_p,        m_p = lanes counted for channel p
    sp   = the same with every weight +1 = S_a + lanes  (S_a = Σ t_a, shared by every channel)

are unsigned counts in [0, 2m]: the trees need no subtractor, and the constant offsets m_p and
`lanes` fold into a later constant (`PostProcess` folds them into K0; TernaryDot subtracts).

Weights are either streamed (`i.payload.w`, e.g. a memory read port; every lane counts, m_p =
lanes) or baked: the constant trits select each lane's bits, and lanes whose weight is 0 are
dropped from the channel's tree (m_p = its non-zero weights), so a sparse row costs less.
With baked weights both bits of a lane depend on the activation only, and yosys shares them
between the channels.

Trees: "compressor" sums the single bits with the carry-chain compressor
(`popcount.compress`); "adder" sums the 2-bit lane terms 2·plus + (not_minus & ~plus) with a
balanced tree of adders (`popcount.adder_tree`). A register layer follows every logic level
in `cuts` (level 1 is the lane logic; `core_levels` gives the count), every tree is padded to
the deepest one, and the output is registered unless `registered=False`:
latency = len(cuts) + registered.

An optional `side` payload travels beside the chunk with the same latency (the engine's
control, the loadable MAC array's load token).
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.fixed import bits_for
from .layouts import trit_planes
from .pipeline import Pipeline
from .popcount import adder_tree, compress, compress_levels, stage_all, tree_levels

__all__ = ["MacCore", "TREES", "lane_product", "core_levels", "check_tree"]

TREES = ("compressor", "adder")


def lane_product(w_nz, w_sg, a_nz, a_sg):
    """(plus, not_minus), bitwise over lanes: plus + not_minus = t_w·t_a + 1 (Eq. 8)."""
    c = w_nz & a_nz
    x = w_sg ^ a_sg
    return c & ~x, ~(c & x)


def _tree_levels(tree, singles, tops):
    """Logic levels of one tree over `singles` single bits and terms of maxima `tops`."""
    if tree == "compressor":
        return compress_levels(singles, tops)
    terms = singles + len(tops)
    return tree_levels(terms) if terms else 0


def core_levels(lanes, tree="compressor", weights=None):
    """Logic levels of a MacCore: the lane logic, then the deepest tree."""
    lanes, tree = _check.positive_int(lanes, "Lane count"), check_tree(tree)
    streamed = (2 * lanes, ()) if tree == "compressor" else (0, (2,) * lanes)
    rows = [streamed]
    for row in () if weights is None else weights:
        rows.append((0, [2 * len(np.flatnonzero(row[j:j + 2])) for j in range(0, lanes, 2)
                         if row[j:j + 2].any()]))
    return 1 + max(_tree_levels(tree, singles, tops) for singles, tops in rows)


def check_tree(tree):
    if tree not in TREES:
        raise ValueError(f"Tree must be one of {', '.join(map(repr, TREES))}, not {tree!r}")
    return tree


class MacCore(wiring.Component):
    """Biased chunk counts D_p + m_p per channel and S_a + lanes, one chunk per cycle.

    Parameters
    ----------
    lanes, channels : int
        Activation trits per chunk; weight rows (output channels) per chunk.
    weights : trit array (channels, lanes) or None
        Baked weights (zero lanes dropped), or None: weights streamed in `i.payload.w`.
    activation_sum : bool
        Whether `o.payload.s` (S_a + lanes) exists.
    tree : "compressor" or "adder"
    cuts : set of int
        Logic levels (1 .. levels - 1) followed by a register layer.
    registered : bool
        Whether the outputs are registered.
    side : shape or None
        A payload carried beside the chunk (`i.payload.side` → `o.payload.side`).

    Ports: `i` stream of {a: trit_planes(lanes), [w: channels × trit_planes(lanes)], [side]};
    `o` stream of {d: channels × unsigned(bits_for(2·lanes)), [s], [side]}.
    Latency: `latency` = len(cuts) + registered cycles.
    """

    def __init__(self, lanes, channels=1, *, weights=None, activation_sum=True,
                 tree="compressor", cuts=frozenset(), registered=True, side=None):
        self._lanes = _check.positive_int(lanes, "Lane count")
        self._channels = _check.positive_int(channels, "Channel count")
        self._tree = check_tree(tree)
        if not isinstance(activation_sum, bool):
            raise TypeError(f"activation_sum must be a bool, not {activation_sum!r}")
        self._activation_sum = activation_sum
        if weights is not None:
            weights = _check.trits(weights, "Weights")
            if weights.shape != (self._channels, self._lanes):
                raise ValueError(f"Weights must have shape ({self._channels}, {self._lanes}), "
                                 f"not {weights.shape}")
            weights.flags.writeable = False
            self._counted = [int(np.count_nonzero(row)) for row in weights]
        else:
            self._counted = [self._lanes] * self._channels
        self._weights = weights
        self._levels = core_levels(self._lanes, tree, weights)
        try:
            cuts = frozenset(cuts)
        except TypeError:
            raise TypeError(f"Cuts must be a set of logic levels, not {cuts!r}") from None
        bad = sorted(c for c in cuts if isinstance(c, bool) or not isinstance(c, int)
                     or not 1 <= c < self._levels)
        if bad:
            raise ValueError(f"Cuts must be logic levels in 1..{self._levels - 1}, not "
                             f"{bad[0]!r}")
        self._cuts = cuts
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")
        self._registered = registered

        count = unsigned(bits_for(2 * self._lanes))
        fields_in = {"a": trit_planes(self._lanes)}
        fields_out = {"d": data.ArrayLayout(count, self._channels)}
        if weights is None:
            fields_in["w"] = data.ArrayLayout(trit_planes(self._lanes), self._channels)
        if activation_sum:
            fields_out["s"] = count
        if side is not None:
            fields_in["side"] = fields_out["side"] = side
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(fields_in))),
            "o": Out(stream.Signature(data.StructLayout(fields_out))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def channels(self):
        return self._channels

    @property
    def weights(self):
        return self._weights

    @property
    def tree(self):
        return self._tree

    @property
    def cuts(self):
        return self._cuts

    @property
    def registered(self):
        return self._registered

    @property
    def activation_sum(self):
        return self._activation_sum

    @property
    def d_bias(self):
        """m_p per channel: o.payload.d[p] = D_p + m_p."""
        return tuple(self._counted)

    @property
    def s_bias(self):
        """o.payload.s = S_a + lanes."""
        return self._lanes

    @property
    def levels(self):
        """Logic levels: the lane logic (1), then the deepest tree."""
        return self._levels

    @property
    def latency(self):
        return len(self._cuts) + self._registered

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.i, self.o, self.latency, name="core")
        depth = len(self._cuts)
        ds = []
        for name, (singles, terms) in self._rows(m).items():
            count = self._out(pipe, self._count(m, pipe, name, singles, terms, depth),
                              f"{name}_out")
            if name == "s":
                m.d.comb += self.o.payload.s.eq(count)
            else:
                d = Signal(self.o.payload.d.shape().elem_shape, name=f"{name}_count")
                m.d.comb += d.eq(count)
                ds.append(d)
        # The counts as one word, not one assignment per channel: Icarus re-evaluates a wire
        # driven in parts as a whole on every part's change (docs/sim.md, as in codec.py).
        m.d.comb += self.o.payload.d.eq(Cat(ds))
        if "side" in self.i.payload.shape().members:
            side = self.i.payload.side
            for k in range(depth):
                side = pipe.stage(side, f"side{k}")
            m.d.comb += self.o.payload.side.eq(self._out(pipe, side, "side_out"))
        return m

    def _out(self, pipe, value, name):
        return pipe.stage(value, name) if self._registered else value

    def _rows(self, m):
        """{name: (single bits, (term, max) pairs)} to be summed, per channel and for S_a."""
        n, a = self._lanes, self.i.payload.a
        rows, tables = {}, {}
        for p in range(self._channels):
            if self._weights is None:
                w = self.i.payload.w[p]
                rows[f"d{p}"] = self._lane_items(m, f"d{p}",
                                                 lane_product(w.nz, w.sg, a.nz, a.sg), range(n))
            else:
                rows[f"d{p}"] = ([], self._pair_terms(m, tables, self._weights[p]))
        if self._activation_sum:
            # S_a is Eq. 8 against an all-(+1) weight row.
            ones = Const((1 << n) - 1, n)
            rows["s"] = self._lane_items(m, "s", lane_product(ones, ones, a.nz, a.sg), range(n))
        return rows

    def _lane_items(self, m, name, bits, lanes):
        # Named signals: every single bit is a slice of them, and a slice of an expression
        # would make the simulator evaluate the whole expression once per bit.
        plus, not_minus = Signal(self._lanes, name=f"{name}_plus"), \
            Signal(self._lanes, name=f"{name}_not_minus")
        m.d.comb += [plus.eq(bits[0]), not_minus.eq(bits[1])]
        if self._tree == "compressor":
            return [plus[k] for k in lanes] + [not_minus[k] for k in lanes], []
        return [], [(Cat(not_minus[k] & ~plus[k], plus[k]), 2) for k in lanes]

    def _pair_terms(self, m, tables, row):
        """Baked weights: lanes 2j and 2j+1 give one term Σ (plus + not_minus), a function of
        the pair's four activation bits (a LUT4 per output bit), shared by every channel with
        the same pair of weights. Zero-weight lanes are left out."""
        a, terms = self.i.payload.a, []
        for j in range(0, self._lanes, 2):
            pair = [(k, int(row[k])) for k in (j, j + 1) if k < self._lanes and row[k]]
            if not pair:
                continue
            key = tuple(pair)
            if key not in tables:
                table = _pair_table([w for _, w in pair])
                term = Signal(bits_for(max(table)), name="pair_" + "_".join(
                    f"{k}{'p' if w > 0 else 'n'}" for k, w in pair))
                with m.Switch(Cat(*(Cat(a.nz[k], a.sg[k]) for k, _ in pair))):
                    for code, value in enumerate(table):
                        with m.Case(code):
                            m.d.comb += term.eq(value)
                tables[key] = (term, 2 * len(pair))
            terms.append(tables[key])
        return terms

    def _count(self, m, pipe, name, singles, terms, depth):
        """The sum of `singles` and `terms`, delayed to `depth` register layers."""
        stages = 0
        if not singles and not terms:
            value = Const(0, 1)
        else:
            if 1 in self._cuts:
                values = stage_all(pipe.stage, singles + [v for v, _ in terms], f"{name}_lanes")
                singles = values[:len(singles)]
                terms = [(v, top) for v, (_, top) in zip(values[len(singles):], terms)]
                stages += 1
            if self._tree == "compressor":
                # compress counts its own levels from 1; level 1 here is the lane logic.
                shifted = frozenset(cut - 1 for cut in self._cuts if cut > 1)
                value, _, inner = compress(m, singles, terms, stage=pipe.stage, cuts=shifted,
                                           name=name)
            else:
                value, _, inner = adder_tree(m, terms, stage=pipe.stage, cuts=self._cuts,
                                             level=1, name=name)
            stages += inner
        for k in range(depth - stages):
            value = pipe.stage(value, f"{name}_delay{k}")
        return value


def _pair_table(weights):
    """Σ (plus + not_minus) over one or two lanes of constant `weights`, for every code of the
    lanes' activation bits (nz, sg of the first lane in bits 0 and 1, of the second in 2, 3)."""
    table = []
    for code in range(1 << (2 * len(weights))):
        total = 0
        for k, w in enumerate(weights):
            plus, not_minus = lane_product(1, int(w > 0), code >> 2 * k & 1, code >> 2 * k + 1 & 1)
            total += (plus & 1) + (not_minus & 1)
        table.append(total)
    return table
