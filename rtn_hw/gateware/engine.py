"""The whole-network engine: a trained RTN MLP (`rtn_hw.model.Network`) run one image at a time,
with every weight, K constant and threshold in on-chip memory.

Per image the pixels are encoded to trits by the network's two input thresholds
(`PixelEncoder`); then for each layer l (N_l inputs, P_l outputs) the `Schedule` walks
G_l = ceil(P_l / channels) groups of `channels` output channels, and inside a group
C_l = ceil(N_l / lanes) chunks of `lanes` input trits, one chunk per cycle. The shared
`MacCore` (Eq. 8, docs/rtn.md §3) counts each chunk against the channels' weight rows read from
block RAM, the `ChunkAccumulator` sums a group's chunks, and the shared `PostProcess` turns the
sums into K1·D + K2·S_a + K0 with the layer's constants read from a second block RAM:

    hidden layer:  trit_p = +1 if acc'_p > hi'_p, -1 if acc'_p < lo'_p, else 0   → buffer B
    last layer:    logit_p = acc'_p >> s                                         → `Argmax`

exactly as `rtn_hw.model.Network.forward`. Every lane of a chunk counts (padded lanes and
channels are zero trits with zero constants), so a group's sums are D + lanes·C_l and
S_a + lanes·C_l, and those offsets fold into K0' with the rounding constant
(`post.fold`); the thresholds are moved into the acc' domain and clamped to the range acc'
can reach, which changes no decision but narrows the memory (docs/units/network_engine.md).

Schedule (one image; cycles_per_image = 1 + max(1, L) + Σ_l (G_l·C_l + drain_cycles + 1),
L = argmax_levels(channels)):

    handshake  the encoded image is written into buffer B (zero above the input width)
    per layer  1 cycle   copy B → A, clear B
               G_l·C_l   issue one (group, chunk) per cycle
               drain     7 + k cycles: weight word read, registered; the core (k register
                         layers in its trees, then its output register); accumulate; the
                         constants read, registered; the products; acc' (compared into B,
                         or logits and the argmax's first tree level)
    max(1, L)  the argmax's remaining tree levels and its merge; o.valid rises the cycle after.

A new group may start every cycle behind the previous one, so only a layer boundary (which
needs all of B) waits for the drain. Inside, the issue pipeline never stalls: every
component's `ready` is tied high.
"""

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model._check import positive_int
from ..model.fixed import bits_for
from ..model.network import Network
from .core import MacCore, core_levels
from .layouts import threshold_trit, trit_planes
from .pipeline import Pipeline
from .popcount import cut_levels
from .post import PostProcess, fold, signed_width

__all__ = ["NetworkEngine", "ENGINE_CONFIGS", "TREE", "LEVELS_PER_STAGE", "drain_cycles",
           "cycles_per_image", "argmax_levels", "PixelEncoder", "Schedule", "ChunkAccumulator",
           "Argmax", "core_cuts", "layer_constants", "weight_words"]

# Deployable configurations, measured with yosys (docs/units/network_engine.md).
ENGINE_CONFIGS = {
    "ice40-up5k": dict(lanes=32, channels=2),
    "ecp5-85k": dict(lanes=64, channels=8),
}

# The core's trees and their register layers: a register after every LEVELS_PER_STAGE-th
# level (docs/units/network_engine.md, "Fmax").
TREE = "compressor"
LEVELS_PER_STAGE = 4


def core_cuts(lanes, weights=None, levels=LEVELS_PER_STAGE):
    """The register layers of the engines' MacCore: after every `levels`-th level of its
    `lanes`-lane trees (baked `weights`: the trees of their non-zero lanes)."""
    return cut_levels(core_levels(lanes, TREE, weights), levels)


def drain_cycles(lanes):
    """Cycles from a layer's last issue to its last trit in B: the weight word's read and
    register, the core (its trees' register layers and its output register), the
    accumulator, the constants' register, the products and acc'."""
    return 7 + len(core_cuts(lanes))


def cycles_per_image(network, lanes, channels):
    """Cycles from an image's input handshake to its o.valid (o.ready high):
    1 + max(1, L) + Σ_l (ceil(P_l / channels) · ceil(N_l / lanes) + drain_cycles(lanes) + 1),
    L = argmax_levels(channels); the 1 is the input handshake's cycle, max(1, L) the argmax's
    stages after the last group's acc' (its tree levels, the first one in acc's cycle, then
    the merge), the 1 per layer the copy B → A."""
    drain = drain_cycles(lanes)
    return 1 + max(1, argmax_levels(channels)) + sum(-(-layer.out_features // channels) * -(-layer.in_features // lanes)
                   + drain + 1 for layer in network.layers)


def layer_constants(layer, lanes, channels, d_bias=None):
    """One layer's post-processing constants for a (lanes, channels) folding: ({k1, k2, k0,
    lo, hi} int64 arrays over ceil(P / channels)·channels channels, R). K0' folds the count
    offsets: `d_bias` per channel (default: every lane counts, lanes·ceil(N / lanes)) and
    the same for s. Thresholds are in the acc' domain, clamped to the reach R = max |acc'|,
    which changes no decision; the last layer's are 0. Padding channels are all 0."""
    chunks = -(-layer.in_features // lanes)
    groups = -(-layer.out_features // channels)
    c = layer.consts
    shift = layer.k_fmt.frac_bits - layer.out_fmt.frac_bits
    bias = lanes * chunks
    k1, k2, k0, lo, hi = fold(c.k1, c.k2, c.k0, shift=shift,
                              d_bias=bias if d_bias is None else d_bias[:layer.out_features],
                              s_bias=bias, lo=layer.lo if layer.hidden else None,
                              hi=layer.hi if layer.hidden else None)
    # |acc'| = |K1·D + K2·S_a + K0 + 2^(s-1)|, with |D|, |S_a| ≤ N.
    reach = int((np.abs(c.k1) * layer.in_features + np.abs(c.k2) * layer.in_features
                 + np.abs(c.k0 + ((1 << shift) >> 1))).max())
    if layer.hidden:
        lo, hi = np.clip(lo, -reach, reach + 1), np.clip(hi, -reach - 1, reach)
    else:
        lo = hi = np.zeros_like(k1)
    pad = np.zeros(groups * channels - layer.out_features, np.int64)
    values = {name: np.concatenate([v, pad]) for name, v in
              zip(("k1", "k2", "k0", "lo", "hi"), (k1, k2, k0, lo, hi))}
    return values, reach


def weight_words(t_w, lanes, channels):
    """Weight trits (P, N) as memory words in issue order (group, then chunk): per word one
    {nz, sg} pair of `lanes`-bit planes per channel, zero-padded to whole groups and chunks."""
    p, n = t_w.shape
    groups, chunks = -(-p // channels), -(-n // lanes)
    padded = np.zeros((groups * channels, chunks * lanes), np.int64)
    padded[:p, :n] = t_w
    bit = 1 << np.arange(lanes, dtype=object)
    words = []
    for g in range(groups):
        for k in range(chunks):
            rows = padded[g * channels:(g + 1) * channels, k * lanes:(k + 1) * lanes]
            words.append([{"nz": int((bit * (row != 0)).sum()), "sg": int((bit * (row > 0)).sum())}
                          for row in rows])
    return words


class _Plan:
    """Memory images and widths for one (network, lanes, channels): plain Python, no HDL."""

    def __init__(self, network, lanes, channels):
        layers = network.layers
        self.layers = layers
        self.chunks = [-(-layer.in_features // lanes) for layer in layers]
        self.groups = [-(-layer.out_features // channels) for layer in layers]
        self.hidden = [layer.hidden for layer in layers]
        self.shift = layers[-1].k_fmt.frac_bits - layers[-1].out_fmt.frac_bits
        self.count_width = bits_for(2 * lanes * max(self.chunks))
        self.a_width = max(c * lanes for c in self.chunks)
        self.b_width = max([self.a_width, network.input.features]
                           + [g * channels for g, h in zip(self.groups, self.hidden) if h])

        # Per layer and channel: K1, K2, K0' and the acc'-domain thresholds (0 for padding).
        fields = {name: [] for name in ("k1", "k2", "k0", "lo", "hi")}
        reach = []
        for layer in layers:
            values, r = layer_constants(layer, lanes, channels)
            reach.append(r)
            for name in fields:
                fields[name].append(values[name])
        self.acc_width = signed_width([r for r in reach] + [-r - 1 for r in reach])
        flat = {name: np.concatenate(parts) for name, parts in fields.items()}
        self.param_layout = data.StructLayout(
            {name: signed(signed_width(values.tolist())) for name, values in flat.items()})
        self.param_depth = sum(self.groups)
        self.param_init = [[{name: int(flat[name][g * channels + p]) for name in flat}
                            for p in range(channels)] for g in range(self.param_depth)]

        # Weight words in issue order: layer, group, chunk; one trit row per channel.
        self.weight_layout = data.ArrayLayout(trit_planes(lanes), channels)
        self.weight_init = [word for layer in layers
                            for word in weight_words(layer.t_w, lanes, channels)]
        self.weight_depth = len(self.weight_init)


def _control_layout(plan):
    """What travels beside a chunk through the core and the accumulator."""
    return data.StructLayout({
        "first": 1, "last": 1, "final": 1, "logits": 1,
        "grp": unsigned(bits_for(max(plan.groups + [2]) - 1)),
        "paddr": unsigned(bits_for(max(plan.param_depth, 2) - 1)),
    })


class PixelEncoder(wiring.Component):
    """One image of `features` unsigned pixels → trit planes, +1 above `hi`, -1 below `lo`
    (the network's input encoding). Combinational."""

    def __init__(self, features, pixel_bits, lo, hi):
        self._lo, self._hi = int(lo), int(hi)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(pixel_bits), features))),
            "o": Out(stream.Signature(trit_planes(features))),
        })

    def elaborate(self, platform):
        m = Module()
        Pipeline(m, self.i, self.o, 0, name="pixels")
        for j in range(len(self.o.payload.nz)):
            nz, sg = threshold_trit(self.i.payload[j], self._lo, self._hi)
            m.d.comb += [self.o.payload.nz[j].eq(nz), self.o.payload.sg[j].eq(sg)]
        return m


class Schedule(wiring.Component):
    """The controller: after `start`, per layer one `copy` cycle, then one issue per cycle
    (weight address, chunk, control) for every (group, chunk), then `drain` idle cycles;
    `idle` is high before `start` and after the last layer's drain."""

    def __init__(self, plan, drain):
        self._plan, self._drain = plan, drain
        super().__init__({
            "start": In(1),
            "idle": Out(1),
            "copy": Out(1),
            "issue": Out(data.StructLayout({
                "valid": 1, "waddr": unsigned(bits_for(max(plan.weight_depth, 2) - 1)),
                "chunk": unsigned(bits_for(max(plan.chunks + [2]) - 1)),
                "control": _control_layout(plan)})),
        })

    def elaborate(self, platform):
        m = Module()
        plan, issue = self._plan, self.issue
        n_layers = len(plan.layers)
        lay = Signal(range(max(n_layers, 2)), name="lay")
        grp = Signal.like(issue.control.grp, name="grp")
        chunk = Signal.like(issue.chunk, name="chunk")
        waddr = Signal.like(issue.waddr, name="waddr")
        paddr = Signal.like(issue.control.paddr, name="paddr")
        drain = Signal(range(self._drain), name="drain")
        last_chunk = Array(Const(c - 1, chunk.shape()) for c in plan.chunks)[lay]
        last_group = Array(Const(g - 1, grp.shape()) for g in plan.groups)[lay]
        last_layer = Signal(name="last_layer")
        m.d.comb += [
            last_layer.eq(lay == n_layers - 1),
            issue.waddr.eq(waddr), issue.chunk.eq(chunk),
            issue.control.first.eq(chunk == 0), issue.control.last.eq(chunk == last_chunk),
            issue.control.final.eq(last_layer & (grp == last_group)),
            issue.control.logits.eq(last_layer),
            issue.control.grp.eq(grp), issue.control.paddr.eq(paddr),
        ]
        with m.FSM(name="schedule"):
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.start):
                    m.d.sync += [lay.eq(0), waddr.eq(0), paddr.eq(0)]
                    m.next = "COPY"
            with m.State("COPY"):
                m.d.comb += self.copy.eq(1)
                m.d.sync += [grp.eq(0), chunk.eq(0)]
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += issue.valid.eq(1)
                m.d.sync += [waddr.eq(waddr + 1), chunk.eq(chunk + 1)]
                with m.If(chunk == last_chunk):
                    m.d.sync += [chunk.eq(0), grp.eq(grp + 1), paddr.eq(paddr + 1)]
                    with m.If(grp == last_group):
                        m.d.sync += drain.eq(self._drain - 1)
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 0):
                    with m.If(last_layer):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += lay.eq(lay + 1)
                        m.next = "COPY"
        return m


class ChunkAccumulator(wiring.Component):
    """Sums the core's chunk counts over a group: `o` carries the sums (and the group's
    control) one cycle after the group's last chunk. Always ready (the issue pipeline never
    stalls)."""

    def __init__(self, channels, count_width, sum_width, control):
        def counts(width):
            return data.StructLayout({"d": data.ArrayLayout(unsigned(width), channels),
                                      "s": unsigned(width), "side": control})
        super().__init__({"i": In(stream.Signature(counts(count_width))),
                          "o": Out(stream.Signature(counts(sum_width)))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        first = i.payload.side.first
        m.d.comb += i.ready.eq(1)
        m.d.sync += o.valid.eq(i.valid & i.payload.side.last)
        with m.If(i.valid):
            m.d.sync += [o.payload.s.eq(Mux(first, 0, o.payload.s) + i.payload.s),
                         o.payload.side.eq(i.payload.side)]
            for p in range(len(i.payload.d)):
                m.d.sync += o.payload.d[p].eq(Mux(first, 0, o.payload.d[p]) + i.payload.d[p])
        return m


def argmax_levels(channels):
    """Levels of the argmax's pairwise tree over a group of `channels` logits."""
    return (positive_int(channels, "Channel count") - 1).bit_length()


class Argmax(wiring.Component):
    """Running argmax of the last layer's logits, a group of `channels` per valid cycle in
    index order, the first maximum winning. Candidates are reduced pairwise in index order,
    the left one kept on ties, one registered tree level per cycle (a level is a comparison
    and a multiplexer, the most one cycle holds at the target clock); then the group maximum
    replaces the running best only if strictly greater. `done` pulses with the merge of the
    `final` group, `argmax_levels(channels)` + 1 cycles after it arrived; `busy` is high while
    a group is still on its way to the merge."""

    def __init__(self, channels, classes, width):
        self._classes = classes
        self._groups = -(-classes // channels)
        label = unsigned(bits_for(classes - 1))
        super().__init__({
            "valid": In(1), "final": In(1), "grp": In(range(self._groups + 1)),
            "y": In(data.ArrayLayout(signed(width), channels)),
            "label": Out(label), "done": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        channels, width = len(self.y), self.y.shape().elem_shape.width
        label_w = len(self.label)

        def pick(left, right, name):
            (lv, li, lok), (rv, ri, rok) = left, right
            take = Signal(name=f"{name}_take")
            v, i, ok = (Signal(signed(width), name=f"{name}_v"), Signal(label_w, name=f"{name}_i"),
                        Signal(name=f"{name}_ok"))
            m.d.comb += [take.eq(rok & (~lok | (rv > lv))), v.eq(Mux(take, rv, lv)),
                         i.eq(Mux(take, ri, li)), ok.eq(lok | rok)]
            return v, i, ok

        def register(value, name):
            reg = Signal.like(value, name=name)
            m.d.sync += reg.eq(value)
            return reg

        cands = []
        for p in range(channels):
            idx = Signal(range((self._groups + 1) * channels), name=f"idx{p}")
            m.d.comb += idx.eq(self.grp * channels + p)
            cands.append((self.y[p], idx[:label_w], idx < self._classes))
        flags = (self.valid, self.final, self.grp == 0)
        levels = argmax_levels(channels)
        pending = []
        for level in range(max(levels, 1)):
            merged = [pick(cands[k], cands[k + 1], f"am{level}_{k}")
                      for k in range(0, len(cands) - 1, 2)]
            cands = merged + cands[2 * len(merged):]
            cands = [tuple(register(x, f"am{level}_{k}_{f}") for x, f in zip(c, "vio"))
                     for k, c in enumerate(cands)]
            flags = tuple(register(x, f"am{level}_{f}") for x, f in
                          zip(flags, ("valid", "final", "first")))
            pending.append(flags[0])
        valid, final, first = flags
        best = Signal(signed(width), name="best")
        new_v, new_i, _ = pick((best, self.label, ~first), cands[0], "am_best")
        with m.If(valid):
            m.d.sync += [best.eq(new_v), self.label.eq(new_i)]
        busy = pending[0]
        for p in pending[1:]:
            busy = busy | p
        m.d.comb += [self.done.eq(valid & final), self.busy.eq(busy)]
        return m


class NetworkEngine(wiring.Component):
    """A trained RTN MLP on one image per handshake: logits and the argmax class out.

    Parameters
    ----------
    network : rtn_hw.model.Network
        Baked into on-chip memories (weights, K constants, thresholds).
    lanes : int
        Input trits consumed per cycle by every channel.
    channels : int
        Output channels computed in parallel.

    Ports: `i` stream, one image (features pixels of `pixel_bits`) per handshake; `o` stream of
    {logits: classes × signed(logit_width), label}. `i.ready` is low while an image is in
    flight and while a result waits for `o.ready`.
    """

    def __init__(self, network, *, lanes, channels):
        if not isinstance(network, Network):
            raise TypeError(f"Network must be a rtn_hw.weights.Network, not "
                            f"{type(network).__name__}")
        self._lanes = positive_int(lanes, "Lane count")
        self._channels = positive_int(channels, "Channel count")
        self._network = network
        self._plan = _Plan(network, self._lanes, self._channels)
        last = network.layers[-1]
        self._classes = last.out_features
        self._logit_width = last.out_fmt.width
        self._pixel_bits = bits_for(network.input.pixel_max)
        self._features = network.input.features
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(self._pixel_bits),
                                                      self._features))),
            "o": Out(stream.Signature(data.StructLayout({
                "logits": data.ArrayLayout(signed(self._logit_width), self._classes),
                "label": unsigned(bits_for(self._classes - 1)),
            }))),
        })

    @property
    def network(self):
        return self._network

    @property
    def lanes(self):
        return self._lanes

    @property
    def channels(self):
        return self._channels

    @property
    def features(self):
        return self._features

    @property
    def pixel_bits(self):
        return self._pixel_bits

    @property
    def classes(self):
        return self._classes

    @property
    def logit_width(self):
        return self._logit_width

    @property
    def cycles_per_image(self):
        return cycles_per_image(self._network, self._lanes, self._channels)

    @property
    def latency(self):
        return self.cycles_per_image

    @property
    def memories(self):
        """{name: (width, depth)} of the two on-chip memories."""
        plan = self._plan
        return {"weights": (plan.weight_layout.size, plan.weight_depth),
                "params": (plan.param_layout.size * self._channels, plan.param_depth)}

    @property
    def accumulator_width(self):
        return self._plan.acc_width

    def elaborate(self, platform):
        m = Module()
        plan, lanes, channels = self._plan, self._lanes, self._channels
        control = _control_layout(plan)

        # Block RAM even when shallow: left to itself yosys turns a ROM of a few dozen words
        # (the ECP5 configuration) into ~9k LUT4 of constant multiplexers.
        block = {"ram_style": "block", "rom_style": "block"}
        m.submodules.wmem = wmem = Memory(shape=plan.weight_layout, depth=plan.weight_depth,
                                          init=plan.weight_init, attrs=block)
        m.submodules.pmem = pmem = Memory(shape=data.ArrayLayout(plan.param_layout, channels),
                                          depth=plan.param_depth, init=plan.param_init,
                                          attrs=block)
        wport, pport = wmem.read_port(), pmem.read_port()

        m.submodules.pixels = pixels = PixelEncoder(self._features, self._pixel_bits,
                                                    self._network.input.lo,
                                                    self._network.input.hi)
        m.submodules.schedule = schedule = Schedule(plan, drain_cycles(lanes))
        m.submodules.core = core = MacCore(lanes, channels, tree=TREE, cuts=core_cuts(lanes),
                                           side=control)
        m.submodules.accumulate = acc = ChunkAccumulator(channels, len(core.o.payload.s),
                                                         plan.count_width, control)
        m.submodules.post = post = PostProcess(
            channels, d_width=plan.count_width, s_width=plan.count_width,
            acc_width=plan.acc_width, shift=plan.shift, out_width=self._logit_width,
            params=plan.param_layout, trits=True, side=control)
        m.submodules.argmax = argmax = Argmax(channels, self._classes, self._logit_width)

        # Buffers: the layer reads A while its trits go to B, which starts all zero so that
        # padded input lanes of the next layer are zero trits.
        a = Signal(trit_planes(plan.a_width), name="a")
        b = Signal(trit_planes(plan.b_width), name="b")
        o_valid = Signal(name="o_valid")
        can_take = Signal(name="can_take")
        m.d.comb += [can_take.eq(schedule.idle & ~o_valid & ~argmax.busy),
                     pixels.i.valid.eq(self.i.valid), pixels.i.payload.eq(self.i.payload),
                     pixels.o.ready.eq(can_take), self.i.ready.eq(pixels.i.ready),
                     schedule.start.eq(pixels.o.valid & can_take)]
        with m.If(schedule.start):
            m.d.sync += [b.nz.eq(pixels.o.payload.nz), b.sg.eq(pixels.o.payload.sg)]
        with m.If(schedule.copy):
            m.d.sync += [a.nz.eq(b.nz[:plan.a_width]), a.sg.eq(b.sg[:plan.a_width]), b.eq(0)]

        # Issue → the core: the weight word is read (and registered in the fabric, since a
        # block RAM's clock-to-output, 5.8 ns on ECP5, would otherwise start the core's
        # trees) while the chunk of A is selected and registered beside it.
        issue = schedule.issue
        m.d.comb += wport.addr.eq(issue.waddr)
        s1 = Signal(data.StructLayout({"valid": 1, "control": control, "a": trit_planes(lanes)}),
                    name="s1")
        m.d.sync += [s1.valid.eq(issue.valid), s1.control.eq(issue.control),
                     s1.a.nz.eq(a.nz.word_select(issue.chunk, lanes)),
                     s1.a.sg.eq(a.sg.word_select(issue.chunk, lanes))]
        s1a = Signal.like(s1, name="s1a")
        w_word = Signal(plan.weight_layout, name="w_word")
        m.d.sync += [s1a.eq(s1), w_word.eq(wport.data)]
        m.d.comb += [core.i.valid.eq(s1a.valid), core.i.payload.a.eq(s1a.a),
                     core.i.payload.w.eq(w_word), core.i.payload.side.eq(s1a.control)]

        # The core → the accumulator → one register → the post-processing. The constants are
        # read while the group's last chunk is accumulated and registered in the fabric beside
        # the sums: a block RAM's clock-to-output (5.8 ns on ECP5) and a MULT18X18D (3.9 ns)
        # in one cycle were the critical path.
        m.d.comb += [acc.i.valid.eq(core.o.valid), core.o.ready.eq(acc.i.ready),
                     acc.i.payload.d.eq(core.o.payload.d), acc.i.payload.s.eq(core.o.payload.s),
                     acc.i.payload.side.eq(core.o.payload.side),
                     pport.addr.eq(acc.i.payload.side.paddr),
                     pport.en.eq(acc.i.valid & acc.i.payload.side.last),
                     acc.o.ready.eq(1), post.o.ready.eq(1)]
        m.d.sync += [post.i.valid.eq(acc.o.valid), post.i.payload.d.eq(acc.o.payload.d),
                     post.i.payload.s.eq(acc.o.payload.s),
                     post.i.payload.side.eq(acc.o.payload.side),
                     post.i.payload.params.eq(pport.data)]

        # acc' → trits into B (hidden layers), or logits and the argmax (last layer).
        out = post.o.payload
        hidden = post.o.valid & ~out.side.logits
        with m.If(hidden):
            with m.Switch(out.side.grp):
                for g in range(max(plan.groups[:-1] or [0])):
                    with m.Case(g):
                        lo_b, hi_b = g * channels, min((g + 1) * channels, plan.b_width)
                        if lo_b < hi_b:
                            m.d.sync += [b.nz[lo_b:hi_b].eq(out.t.nz[:hi_b - lo_b]),
                                         b.sg[lo_b:hi_b].eq(out.t.sg[:hi_b - lo_b])]
        logits = post.o.valid & out.side.logits
        with m.If(logits):
            with m.Switch(out.side.grp):
                for g in range(plan.groups[-1]):
                    with m.Case(g):
                        for p in range(channels):
                            if g * channels + p < self._classes:
                                m.d.sync += self.o.payload.logits[g * channels + p].eq(out.y[p])
        m.d.comb += [argmax.valid.eq(logits), argmax.final.eq(out.side.final),
                     argmax.grp.eq(out.side.grp), argmax.y.eq(out.y),
                     self.o.payload.label.eq(argmax.label), self.o.valid.eq(o_valid)]
        with m.If(argmax.done):
            m.d.sync += o_valid.eq(1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_valid.eq(0)
        return m
