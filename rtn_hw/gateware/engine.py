"""The whole-network engine: a trained RTN MLP (`rtn_hw.weights.Network`) run one image at a time,
with every weight, K constant and threshold in on-chip memory.

Per image: the pixels are encoded to trits by the network's two input thresholds; then for each
layer l (N_l inputs, P_l outputs) the engine walks G_l = ceil(P_l / channels) groups of
`channels` output channels, and inside a group C_l = ceil(N_l / lanes) chunks of `lanes` input
trits, one chunk per cycle. For every chunk and channel p (RTN.md §3, Eq. 8):

    c = W1 & A1,  D_p += pc(c) - 2·pc((W2 ^ A2) & c),   S_a += 2·pc(A1 & A2) - pc(A1)

and after the group's last chunk, per channel, exactly as `rtn_hw.model.postprocess`:

    acc_p = K1_p·D_p + K2_p·S_a + K0'_p,   K0' = K0 + 2^(s-1) (s > 0; else K0)
    hidden layer:  trit_p = +1 if acc_p > hi'_p, -1 if acc_p < lo'_p, else 0
    last layer:    logit_p = acc_p >> s

with the thresholds moved into the acc domain, hi' = ((hi + 1) << s) - 1 and lo' = lo << s
(y > hi ⟺ acc' ≥ (hi + 1)·2^s, y < lo ⟺ acc' < lo·2^s, y = acc' >> s), and clamped to the
range acc can reach, which changes no decision but narrows the memory. Padded lanes and padded
channels are zero trits with zero constants, so they add nothing (docs/units/network_engine.md).

Schedule (one image; cycles_per_image = 2 + Σ_l (G_l·C_l + 7 + k), where k is
popcount_stages(lanes, 3), e.g. 2 for 32 and 64 lanes, 3 for 128):

    handshake  the encoded image is written into buffer B (zero above the input width)
    per layer  1 cycle   copy B → A, clear B
               G_l·C_l   issue one (group, chunk) per cycle: weight word read, A chunk selected
               6 + k     drain: word → count (k + 1 stages) → accumulate → multiply → add →
                         encode into B
    1 cycle    the argmax's second stage; o.valid rises the cycle after.

Pipeline of one (group, chunk) issue: stage 0 reads the weight memory and selects the A chunk;
stage 1a registers the weight word; stage 1 counts, with a register layer after every third
level of the popcount trees (k layers), and registers the chunk D and S_a; stage 1b
accumulates D and S_a and, on the group's last chunk, reads the parameter memory; stage 2
multiplies (registered products); stage 3 adds K0'; stage 4 compares and writes the trits into
B (hidden), or writes the logits and reduces the group's maximum (last layer); stage 5 merges
the group maximum into the running argmax. A new group may start every cycle behind the
previous one, so only a layer boundary (which needs all of B) waits for the drain.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model._check import positive_int
from ..model.fixed import bits_for, dot_width
from .popcount import popcount, popcount_stages

__all__ = ["NetworkEngine", "ENGINE_CONFIGS", "POPCOUNT_LEVELS_PER_STAGE", "drain_cycles",
           "cycles_per_image"]

# Deployable configurations, measured with yosys (docs/units/network_engine.md).
ENGINE_CONFIGS = {
    "ice40-up5k": dict(lanes=32, channels=2),
    "ecp5-85k": dict(lanes=64, channels=8),
}

# A register layer after every third level of the chunk popcount trees: unsplit, the trees
# were the critical path on both targets (docs/units/network_engine.md).
POPCOUNT_LEVELS_PER_STAGE = 3


def drain_cycles(lanes):
    """Cycles from a layer's last issue to its last trit in B: stages 1a, 1 (plus the popcount
    trees' register layers), 1b, 2, 3 and 4."""
    return 6 + popcount_stages(lanes, POPCOUNT_LEVELS_PER_STAGE)


def _signed_width(values):
    """Smallest signed width holding every integer in `values` (at least 1)."""
    width = 1
    for v in values:
        v = int(v)
        width = max(width, (v if v >= 0 else -v - 1).bit_length() + 1)
    return width


def _network_class():
    from ..weights import Network
    return Network


def cycles_per_image(network, lanes, channels):
    """Cycles from an image's input handshake to its o.valid (o.ready high):
    2 + Σ_l (ceil(P_l / channels) · ceil(N_l / lanes) + drain_cycles(lanes) + 1); the 2 are the
    input handshake's cycle and the argmax's second stage, the 1 per layer the copy B → A."""
    drain = drain_cycles(lanes)
    return 2 + sum(-(-layer.out_features // channels) * -(-layer.in_features // lanes)
                   + drain + 1 for layer in network.layers)


class _Plan:
    """Memory images and widths for one (network, lanes, channels): plain Python, no HDL."""

    def __init__(self, network, lanes, channels):
        layers = network.layers
        self.layers = layers
        self.chunks = [-(-layer.in_features // lanes) for layer in layers]
        self.groups = [-(-layer.out_features // channels) for layer in layers]
        self.hidden = [layer.hidden for layer in layers]
        self.shifts = [layer.k_fmt.frac_bits - layer.out_fmt.frac_bits for layer in layers]
        n_max = max(layer.in_features for layer in layers)
        self.d_width = dot_width(n_max)
        self.a_width = max(c * lanes for c in self.chunks)
        self.b_width = max([self.a_width, network.input.features]
                           + [g * channels for g, h in zip(self.groups, self.hidden) if h])

        # Per layer and channel: K1, K2, K0' and the acc-domain thresholds (0 for padding).
        k1, k2, k0, lo, hi, reach = [], [], [], [], [], []
        for layer, groups, shift in zip(layers, self.groups, self.shifts):
            rows = groups * channels
            pad = rows - layer.out_features
            c = layer.consts
            half = (1 << shift) >> 1
            l_k1 = np.concatenate([c.k1, np.zeros(pad, np.int64)])
            l_k2 = np.concatenate([c.k2, np.zeros(pad, np.int64)])
            l_k0 = np.concatenate([c.k0 + half, np.zeros(pad, np.int64)])
            r = int((np.abs(l_k1) * layer.in_features + np.abs(l_k2) * layer.in_features
                     + np.abs(l_k0)).max())
            reach.append(r)
            if layer.hidden:
                l_hi = np.clip(((layer.hi + 1) << shift) - 1, -r - 1, r)
                l_lo = np.clip(layer.lo << shift, -r, r + 1)
                l_hi = np.concatenate([l_hi, np.zeros(pad, np.int64)])
                l_lo = np.concatenate([l_lo, np.zeros(pad, np.int64)])
            else:
                l_hi = l_lo = np.zeros(rows, np.int64)
            for dst, src in ((k1, l_k1), (k2, l_k2), (k0, l_k0), (lo, l_lo), (hi, l_hi)):
                dst.append(src.reshape(groups, channels))
        self.reach = reach
        self.acc_width = _signed_width([r for r in reach] + [-r for r in reach])
        self.fields = {}
        for name, parts in (("k1", k1), ("k2", k2), ("k0", k0), ("lo", lo), ("hi", hi)):
            flat = np.concatenate([p.ravel() for p in parts])
            self.fields[name] = (_signed_width(flat.tolist()), np.concatenate(parts))
        self.param_layout = data.StructLayout(
            {name: signed(width) for name, (width, _) in self.fields.items()})
        self.param_width = self.param_layout.size * channels
        self.param_depth = sum(self.groups)
        self.param_init = []
        for g in range(self.param_depth):
            word, offset = 0, 0
            for p in range(channels):
                for name, (width, values) in self.fields.items():
                    word |= (int(values[g, p]) & ((1 << width) - 1)) << offset
                    offset += width
            self.param_init.append(word)

        # Weight words in issue order: layer, group, chunk; per channel an nz then an sg plane.
        self.weight_width = 2 * lanes * channels
        self.weight_init = []
        for layer, groups, chunks in zip(layers, self.groups, self.chunks):
            t_w = np.zeros((groups * channels, chunks * lanes), np.int64)
            t_w[:layer.out_features, :layer.in_features] = layer.t_w
            bit = 1 << np.arange(lanes, dtype=object)
            for g in range(groups):
                for k in range(chunks):
                    word = 0
                    for p in range(channels):
                        row = t_w[g * channels + p, k * lanes:(k + 1) * lanes]
                        nz = int((bit * (row != 0)).sum())
                        sg = int((bit * (row > 0)).sum())
                        word |= (nz | sg << lanes) << (2 * lanes * p)
                    self.weight_init.append(word)
        self.weight_depth = len(self.weight_init)


class NetworkEngine(wiring.Component):
    """A trained RTN MLP on one image per handshake: logits and the argmax class out.

    Parameters
    ----------
    network : rtn_hw.weights.Network
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
        if not isinstance(network, _network_class()):
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
        return {"weights": (plan.weight_width, plan.weight_depth),
                "params": (plan.param_width, plan.param_depth)}

    @property
    def accumulator_width(self):
        return self._plan.acc_width

    def elaborate(self, platform):
        m = Module()
        plan, lanes, channels = self._plan, self._lanes, self._channels
        n_layers = len(plan.layers)
        enc = self._network.input

        # Block RAM even when shallow: left to itself yosys turns a ROM of a few dozen words
        # (the ECP5 configuration) into ~9k LUT4 of constant multiplexers.
        block = {"ram_style": "block", "rom_style": "block"}
        m.submodules.wmem = wmem = Memory(shape=unsigned(plan.weight_width),
                                          depth=plan.weight_depth, init=plan.weight_init,
                                          attrs=block)
        m.submodules.pmem = pmem = Memory(shape=unsigned(plan.param_width),
                                          depth=plan.param_depth, init=plan.param_init,
                                          attrs=block)
        wport = wmem.read_port()
        pport = pmem.read_port()

        a_nz, a_sg = Signal(plan.a_width, name="a_nz"), Signal(plan.a_width, name="a_sg")
        b_nz, b_sg = Signal(plan.b_width, name="b_nz"), Signal(plan.b_width, name="b_sg")

        # --- stage 0: the controller issues one (group, chunk) per cycle ----------------------
        lay = Signal(range(max(n_layers, 2)), name="lay")
        grp = Signal(range(max(max(plan.groups), 2)), name="grp")
        chunk = Signal(range(max(max(plan.chunks), 2)), name="chunk")
        waddr = Signal(range(max(plan.weight_depth, 2)), name="waddr")
        paddr = Signal(range(max(plan.param_depth, 2)), name="paddr")
        drain_len = drain_cycles(lanes)
        drain = Signal(range(drain_len), name="drain")
        last_chunk = Array(Const(c - 1, chunk.shape()) for c in plan.chunks)[lay]
        last_group = Array(Const(g - 1, grp.shape()) for g in plan.groups)[lay]
        last_layer = Signal(name="last_layer")
        m.d.comb += last_layer.eq(lay == n_layers - 1)
        o_valid = Signal(name="o_valid")
        issue = Signal(name="issue")
        m.d.comb += [wport.addr.eq(waddr), self.o.valid.eq(o_valid)]

        # Idle, and the last result neither waiting nor still in the argmax's second stage.
        can_take = Signal(name="can_take")
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(can_take)
                with m.If(self.i.valid & can_take):
                    px = self.i.payload
                    gt = Cat(px[j] > enc.hi for j in range(self._features))
                    lt = Cat(px[j] < enc.lo for j in range(self._features))
                    m.d.sync += [b_nz.eq(gt | lt), b_sg.eq(gt), lay.eq(0), waddr.eq(0),
                                 paddr.eq(0)]
                    m.next = "COPY"
            with m.State("COPY"):
                # The next layer reads A while its outputs go to B, which starts all zero so
                # that padded input lanes of the layer after are zero trits.
                m.d.sync += [a_nz.eq(b_nz[:plan.a_width]), a_sg.eq(b_sg[:plan.a_width]),
                             b_nz.eq(0), b_sg.eq(0), grp.eq(0), chunk.eq(0)]
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += issue.eq(1)
                m.d.sync += [waddr.eq(waddr + 1), chunk.eq(chunk + 1)]
                with m.If(chunk == last_chunk):
                    m.d.sync += [chunk.eq(0), grp.eq(grp + 1), paddr.eq(paddr + 1)]
                    with m.If(grp == last_group):
                        m.d.sync += drain.eq(drain_len - 1)
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 0):
                    with m.If(last_layer):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += lay.eq(lay + 1)
                        m.next = "COPY"

        # --- stage 1: counts and accumulation -------------------------------------------------
        s1 = Signal(data.StructLayout({
            "valid": 1, "first": 1, "last": 1, "final": 1, "logits": 1,
            "grp": grp.shape(), "paddr": paddr.shape()}), name="s1")
        act_nz, act_sg = Signal(lanes, name="act_nz"), Signal(lanes, name="act_sg")
        m.d.sync += [
            s1.valid.eq(issue), s1.first.eq(chunk == 0), s1.last.eq(chunk == last_chunk),
            s1.final.eq(last_layer & (grp == last_group)), s1.logits.eq(last_layer),
            s1.grp.eq(grp), s1.paddr.eq(paddr),
            act_nz.eq(a_nz.word_select(chunk, lanes)), act_sg.eq(a_sg.word_select(chunk, lanes)),
        ]

        # The weight word is registered in the fabric before it is counted: a block RAM's
        # clock-to-output (5.8 ns on ECP5) would otherwise start the popcount path.
        s1a = Signal.like(s1, name="s1a")
        w_word = Signal(plan.weight_width, name="w_word")
        act_nz_a, act_sg_a = Signal(lanes, name="act_nz_a"), Signal(lanes, name="act_sg_a")
        m.d.sync += [s1a.eq(s1), w_word.eq(wport.data), act_nz_a.eq(act_nz),
                     act_sg_a.eq(act_sg)]
        act_nz, act_sg = act_nz_a, act_sg_a

        def stage(value, name):
            # Free-running: the issue pipeline never stalls, so a plain register keeps pace.
            reg = Signal.like(value, name=name)
            m.d.sync += reg.eq(value)
            return reg

        def count(bits, name):
            value, _ = popcount(m, bits, stage=stage, name=name,
                                levels_per_stage=POPCOUNT_LEVELS_PER_STAGE)
            return value

        dw = plan.d_width
        acc_s = Signal(signed(dw), name="acc_s")
        pc_sa_pos = count(act_nz & act_sg, "pc_sa_pos")
        pc_sa_nz = count(act_nz, "pc_sa_nz")
        s_chunk = (pc_sa_pos << 1) - pc_sa_nz
        acc_d = []
        d_chunks = []
        for p in range(channels):
            w = w_word[2 * lanes * p:2 * lanes * (p + 1)]
            w_nz, w_sg = w[:lanes], w[lanes:]
            c = Signal(lanes, name=f"c{p}")
            neg = Signal(lanes, name=f"neg{p}")
            m.d.comb += [c.eq(w_nz & act_nz), neg.eq((w_sg ^ act_sg) & c)]
            pc_c = count(c, f"pc_c{p}")
            pc_neg = count(neg, f"pc_neg{p}")
            d_chunks.append(pc_c - (pc_neg << 1))
            acc_d.append(Signal(signed(dw), name=f"acc_d{p}"))
        # The chunk counts are registered before they are accumulated: the memory read, the
        # popcount trees and the accumulator would otherwise be one path (the Fmax limit).
        s1c = s1a
        for k in range(popcount_stages(lanes, POPCOUNT_LEVELS_PER_STAGE)):
            s1c = stage(s1c, f"s1_pc{k}")
        s1b = Signal.like(s1, name="s1b")
        s_chunk_r = Signal.like(s_chunk, name="s_chunk_r")
        d_chunks_r = [Signal.like(d_chunks[p], name=f"d_chunk{p}_r") for p in range(channels)]
        m.d.sync += [s1b.eq(s1c), s_chunk_r.eq(s_chunk)]
        m.d.sync += [d_chunks_r[p].eq(d_chunks[p]) for p in range(channels)]
        m.d.comb += [pport.addr.eq(s1b.paddr), pport.en.eq(s1b.valid & s1b.last)]
        with m.If(s1b.valid):
            m.d.sync += acc_s.eq(Mux(s1b.first, 0, acc_s) + s_chunk_r)
            for p in range(channels):
                m.d.sync += acc_d[p].eq(Mux(s1b.first, 0, acc_d[p]) + d_chunks_r[p])

        # --- stage 2: K1·D and K2·S_a (parameters read when the last chunk was accumulated) --
        s2 = Signal.like(s1, name="s2")
        m.d.sync += s2.eq(s1b)
        m.d.sync += s2.valid.eq(s1b.valid & s1b.last)
        params = data.View(data.ArrayLayout(plan.param_layout, channels), pport.data)
        prod1 = [Signal(signed(plan.fields["k1"][0] + dw), name=f"prod1_{p}")
                 for p in range(channels)]
        prod2 = [Signal(signed(plan.fields["k2"][0] + dw), name=f"prod2_{p}")
                 for p in range(channels)]
        k0_r = [Signal(signed(plan.fields["k0"][0]), name=f"k0_{p}") for p in range(channels)]
        lo_r = [Signal(signed(plan.fields["lo"][0]), name=f"lo_{p}") for p in range(channels)]
        hi_r = [Signal(signed(plan.fields["hi"][0]), name=f"hi_{p}") for p in range(channels)]
        for p in range(channels):
            m.d.sync += [prod1[p].eq(params[p].k1 * acc_d[p]), prod2[p].eq(params[p].k2 * acc_s),
                         k0_r[p].eq(params[p].k0), lo_r[p].eq(params[p].lo),
                         hi_r[p].eq(params[p].hi)]

        # --- stage 3: acc = K1·D + K2·S_a + K0' (exact: |acc| ≤ the layer's reach) -----------
        s3 = Signal.like(s1, name="s3")
        m.d.sync += s3.eq(s2)
        acc = [Signal(signed(plan.acc_width), name=f"acc{p}") for p in range(channels)]
        lo_3 = [Signal.like(lo_r[p], name=f"lo3_{p}") for p in range(channels)]
        hi_3 = [Signal.like(hi_r[p], name=f"hi3_{p}") for p in range(channels)]
        for p in range(channels):
            m.d.sync += [acc[p].eq(prod1[p] + prod2[p] + k0_r[p]), lo_3[p].eq(lo_r[p]),
                         hi_3[p].eq(hi_r[p])]

        # --- stage 4: encode into B, or logits and the running argmax -----------------------
        s4 = Signal.like(s1, name="s4")
        m.d.sync += s4.eq(s3)
        logits = [Signal(signed(self._logit_width), name=f"logit{j}")
                  for j in range(self._classes)]
        label_w = bits_for(self._classes - 1)
        best = Signal(signed(self._logit_width), name="best")
        best_idx = Signal(label_w, name="best_idx")
        shift = plan.shifts[-1]
        ys = [Signal(signed(self._logit_width), name=f"y{p}") for p in range(channels)]
        for p in range(channels):
            m.d.comb += ys[p].eq(acc[p] >> shift)
        gt = Cat(acc[p] > hi_3[p] for p in range(channels))
        lt = Cat(acc[p] < lo_3[p] for p in range(channels))

        with m.If(s4.valid & ~s4.logits):
            with m.Switch(s4.grp):
                for g in range(max(plan.groups[:-1] or [0])):
                    with m.Case(g):
                        lo_b, hi_b = g * channels, min((g + 1) * channels, plan.b_width)
                        if lo_b < hi_b:
                            m.d.sync += [b_nz[lo_b:hi_b].eq((gt | lt)[:hi_b - lo_b]),
                                         b_sg[lo_b:hi_b].eq(gt[:hi_b - lo_b])]

        # Argmax, first maximum winning, in two stages so that no path holds more than one
        # group's tree or one comparison with the running best: stage 4 reduces the group's
        # candidates (index order, pairwise, the left one kept on ties) to a registered group
        # maximum; stage 5 keeps it if it beats the running best strictly (the best holds
        # smaller indices, so a tie keeps the best).
        def pick(left, right, name):
            (lv, li, lok), (rv, ri, rok) = left, right
            take = Signal(name=f"{name}_take")
            v = Signal(signed(self._logit_width), name=f"{name}_v")
            i = Signal(label_w, name=f"{name}_i")
            ok = Signal(name=f"{name}_ok")
            m.d.comb += [take.eq(rok & (~lok | (rv > lv))), v.eq(Mux(take, rv, lv)),
                         i.eq(Mux(take, ri, li)), ok.eq(lok | rok)]
            return v, i, ok

        cands = []
        for p in range(channels):
            idx = Signal(range(plan.groups[-1] * channels + 1), name=f"idx{p}")
            m.d.comb += idx.eq(s4.grp * channels + p)
            cands.append((ys[p], idx[:label_w], idx < self._classes))
        level = 0
        while len(cands) > 1:
            merged = [pick(cands[k], cands[k + 1], f"am{level}_{k}")
                      for k in range(0, len(cands) - 1, 2)]
            cands = merged + cands[2 * len(merged):]
            level += 1
        s5 = Signal.like(s1, name="s5")
        g_v = Signal(signed(self._logit_width), name="group_max")
        g_i = Signal(label_w, name="group_max_idx")
        g_ok = Signal(name="group_max_ok")
        m.d.sync += [s5.eq(s4), s5.valid.eq(s4.valid & s4.logits), g_v.eq(cands[0][0]),
                     g_i.eq(cands[0][1]), g_ok.eq(cands[0][2])]
        with m.If(s4.valid & s4.logits):
            with m.Switch(s4.grp):
                for g in range(plan.groups[-1]):
                    with m.Case(g):
                        for p in range(channels):
                            j = g * channels + p
                            if j < self._classes:
                                m.d.sync += logits[j].eq(ys[p])
        m.d.comb += can_take.eq(~o_valid & ~s5.valid)
        new_v, new_i, _ = pick((best, best_idx, s5.grp != 0), (g_v, g_i, g_ok), "am_best")
        with m.If(s5.valid):
            m.d.sync += [best.eq(new_v), best_idx.eq(new_i)]
            with m.If(s5.final):
                m.d.sync += o_valid.eq(1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_valid.eq(0)

        m.d.comb += self.o.payload.label.eq(best_idx)
        for j in range(self._classes):
            m.d.comb += self.o.payload.logits[j].eq(logits[j])
        return m
