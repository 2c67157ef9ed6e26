"""The dataflow engine: a trained RTN MLP as one pipeline stage per layer, images overlapped.

FINN-style: every layer l (N_l inputs, P_l outputs) gets its own `LayerStage` with its own
weights, its own `MacCore` (Eq. 8, docs/rtn.md §3) of C_l channels over L_l lanes, a
`ChunkAccumulator`, its own `PostProcess` and an output FIFO; stage l's FIFO is stage l+1's
input stream, so a new image enters layer 0 while earlier ones are still in later layers. A
layer's `Folding(lanes, channels, storage)` sets how much it computes per cycle: it walks
G_l = ⌈P_l / C_l⌉ groups of C_l output channels, each over K_l = ⌈N_l / L_l⌉ chunks of L_l
input trits, one (group, chunk) per cycle, so it takes one image every G_l·K_l cycles and

    II = max_l ⌈N_l / L_l⌉ · ⌈P_l / C_l⌉        (predicted_ii; 1 when fully unfolded)

Weights per layer: "bram" or "logic" (a ROM of one word per (group, chunk) in block RAM or in
LUTs, streamed into the core), or "baked" (the trits are constants of the core, zero lanes dropped; one word only,
so L_l = N_l and C_l = P_l). The K constants and thresholds are constants of `PostProcess`
when a layer has one group (multiplications become shifted adds), else a memory of one word
per group beside the weights (multipliers).

Backpressure never stalls a stage's pipeline: a stage starts an image only when a place in
its output FIFO is reserved for the result (`reserved` counts images taken and not yet read
out of the FIFO). The engine's stages hold their input (`hold`): they read the chunks straight
from the input's payload (the previous stage's FIFO head, or the engine's input through the
combinational PixelEncoder) and complete the handshake at the image's last issue, so no stage
copies its input into a register of its own. The FIFO depth comes from the schedule: a result
holds its place from its take until the next stage's last issue of it, and a new image comes
every II, so the engine sustains II with its output always ready, and nothing is lost or
duplicated when it is not.

Latency of stage l, from its take (the input handshake; a `hold` stage: its first issue, the
cycle its input is valid) to its o.valid (empty pipeline):

    G_l·K_l + [1: chunk register, not hold] + [1: weight word register, block RAM]
    + core latency + 1 (accumulator) + [1: constants' word register, G_l > 1]
    + 2 (PostProcess) + [1: result register, hidden layers with a FIFO]
    + [max(1, A) + 1: argmax, last layer; + 1 with `argmax_register`] + 1 (FIFO, or block RAM
    buffer)

and the engine's latency is the stages' sum less G_0·K_0 − 1, the input handshake being at
stage 0's last issue (`latency`). (A CNN's stages, rtn_hw.gateware.conv, take their input
into a register: `hold` False.)

Buffers (`buffers`): a hidden layer's results wait for the next stage in a FIFO of whole
images ("fifo": LUT RAM on the ECP5, flip-flops on the iCE40), or ("bram", the iCE40 UP5K's
choice) in block RAM, written a group at a time under a write mask and read a chunk of the
next stage's lanes at a time, the block RAM's read register standing in for the chunk
register; "bram" applies where a layer's channels divide the next layer's lanes (else that
boundary keeps its FIFO) and puts constants' memories of at most 16 words in LUTs.
"""

import dataclasses
import re

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.fixed import bits_for
from ..model.network import Network
from .core import MacCore
from .engine import (LEVELS_PER_STAGE, TREE, Argmax, ChunkAccumulator, PixelEncoder,
                     argmax_levels, core_cuts, layer_constants, weight_words)
from .layouts import trit_planes
from .post import Baked, PostProcess, signed_width

__all__ = ["DataflowEngine", "LayerStage", "Folding", "STORAGES", "BUFFERS", "buffered",
           "chunk_signature", "check_foldings",
           "parse_foldings", "folding_texts", "unfolded", "smallest", "layer_ii", "predicted_ii",
           "stage_latency", "latency", "fifo_depths"]

STORAGES = ("bram", "logic", "baked")
# Where a hidden layer's results wait for the next stage: a FIFO of whole images (LUT RAM on
# the ECP5, flip-flops on the iCE40), or block RAM read a chunk at a time (the iCE40 UP5K,
# whose flip-flops a FIFO of 256-bit images would use up).
BUFFERS = ("fifo", "bram")

# Memory attributes per weight storage: block RAM even when shallow (left to itself yosys
# turns a small ROM into LUT multiplexers), or a ROM of logic (yosys has no ECP5 LUT RAM
# mapping for a memory without a write port).
_MEMORY_ATTRS = {
    "bram": {"ram_style": "block", "rom_style": "block"},
    "logic": {"ram_style": "logic", "rom_style": "logic"},
}


@dataclasses.dataclass(frozen=True)
class Folding:
    """One layer's folding: `lanes` input trits and `channels` output channels per cycle, and
    where its weights live ("bram", "logic" or "baked")."""
    lanes: int
    channels: int
    storage: str = "bram"

    def __post_init__(self):
        _check.positive_int(self.lanes, "Lane count")
        _check.positive_int(self.channels, "Channel count")
        if self.storage not in STORAGES:
            raise ValueError(f"Storage must be one of {', '.join(map(repr, STORAGES))}, not "
                             f"{self.storage!r}")

    def __str__(self):
        return f"{self.lanes}x{self.channels}:{self.storage}"


def unfolded(network, storage="baked"):
    """Every layer computed whole each cycle (II = 1; a CNN's max-pool layers take None)."""
    return tuple(None if layer.kind == "maxpool" else
                 Folding(layer.in_features, layer.out_features, storage)
                 for layer in network.layers)


def smallest(network, storage="bram"):
    """One lane and one channel per layer: the least logic, II = max_l N_l·P_l."""
    return tuple(None if layer.kind == "maxpool" else Folding(1, 1, storage)
                 for layer in network.layers)


def _shape(layer, folding):
    """(chunks K, groups G) of `layer` under `folding`."""
    return -(-layer.in_features // folding.lanes), -(-layer.out_features // folding.channels)


def check_foldings(network, foldings):
    """`foldings` as a tuple of one valid Folding per layer, or a one-line error."""
    if not isinstance(network, Network):
        raise TypeError(f"Network must be a rtn_hw.weights.Network, not "
                        f"{type(network).__name__}")
    layers = network.layers
    if isinstance(foldings, Folding) or not isinstance(foldings, (list, tuple)):
        raise TypeError(f"Foldings must be a list of one Folding per layer, not {foldings!r}")
    if len(foldings) != len(layers):
        raise ValueError(f"Foldings must give one Folding per layer ({len(layers)}), not "
                         f"{len(foldings)}")
    if network.convolutional:
        from .conv import check_network
        check_network(network)
    for index, (layer, folding) in enumerate(zip(layers, foldings)):
        if layer.kind == "maxpool":  # a CNN's pooling has no folding (rtn_hw.gateware.conv)
            if folding is not None:
                raise TypeError(f"Folding of layer {index} ({layer.name}, maxpool) must be "
                                f"None, not {folding!r}")
            continue
        if not isinstance(folding, Folding):
            raise TypeError(f"Folding of layer {index} must be a Folding, not {folding!r}")
        name = f"Layer {index} ({layer.name}, {layer.in_features}→{layer.out_features})"
        if folding.lanes > layer.in_features:
            raise ValueError(f"{name}: lanes must be at most {layer.in_features}, not "
                             f"{folding.lanes}")
        if folding.channels > layer.out_features:
            raise ValueError(f"{name}: channels must be at most {layer.out_features}, not "
                             f"{folding.channels}")
        if folding.storage == "baked" and _shape(layer, folding) != (1, 1):
            raise ValueError(f"{name}: baked weights need lanes={layer.in_features} and "
                             f"channels={layer.out_features} (one weight word), not "
                             f"lanes={folding.lanes}, channels={folding.channels}")
    return tuple(foldings)


_FOLDING_TEXT = re.compile(r"(\d+)x(\d+)(?::(\w+))?")


def parse_foldings(text, network):
    """Foldings from text: "unfolded", "smallest", or one LANESxCHANNELS[:STORAGE] per layer,
    comma-separated (storage "bram" if left out), e.g. "64x128:baked,32x16,128x10:logic".
    A CNN's max-pool layers are left out of the text (their folding is None)."""
    text = text.strip()
    if text == "unfolded":
        return unfolded(network)
    if text == "smallest":
        return smallest(network)
    foldings = []
    for part in text.split(","):
        match = _FOLDING_TEXT.fullmatch(part.strip())
        if not match:
            raise ValueError(f"expected unfolded, smallest or LANESxCHANNELS[:STORAGE] per "
                             f"layer, not {part.strip()!r}")
        lanes, channels, storage = match.groups()
        foldings.append(Folding(int(lanes), int(channels), storage or "bram"))
    if network.convolutional:
        compute = sum(layer.kind != "maxpool" for layer in network.layers)
        if len(foldings) != compute:
            raise ValueError(f"Foldings must give one Folding per conv or linear layer "
                             f"({compute}; max-pool layers take none), not {len(foldings)}")
        given = iter(foldings)
        foldings = [None if layer.kind == "maxpool" else next(given) for layer in network.layers]
    return check_foldings(network, foldings)


def folding_texts(foldings):
    """"LxC:storage" per layer, a CNN's pools (None) left out: joined by commas, the text
    `parse_foldings` reads back."""
    return tuple(str(f) for f in foldings if f is not None)


def layer_ii(layer, folding):
    """Cycles between images in one stage: ⌈N / lanes⌉ · ⌈P / channels⌉ (a CNN's conv and
    pool stages: `conv.spatial_layer_ii`)."""
    if layer.kind != "linear":
        from .conv import spatial_layer_ii
        return spatial_layer_ii(layer, folding)
    chunks, groups = _shape(layer, folding)
    return chunks * groups


def predicted_ii(network, foldings):
    """The engine's initiation interval in cycles: its slowest stage's."""
    foldings = check_foldings(network, foldings)
    return max(layer_ii(layer, f) for layer, f in zip(network.layers, foldings))


def _baked_weights(layer, folding):
    """The core's constant weight trits (channels, lanes), or None for streamed weights."""
    if folding.storage != "baked":
        return None
    weights = np.zeros((folding.channels, folding.lanes), np.int8)
    weights[:layer.out_features, :layer.in_features] = layer.t_w
    return weights


def stage_latency(layer, folding, last, hold=False, buffered=False, levels=LEVELS_PER_STAGE,
                  argmax_register=False):
    """Cycles from a stage's take to its o.valid, its pipeline empty (module docstring): the
    take is the input handshake, or with a `hold` stage (input held until the image's last
    issue) the cycle of its first issue, one cycle sooner in the pipeline (no input register).
    A `buffered` stage writes its results into block RAM as they come (no result register).
    `levels`: tree levels per register layer of the core (`LayerStage(levels=…)`);
    `argmax_register`: a register between the last layer's PostProcess and its argmax (one
    cycle more)."""
    chunks, groups = _shape(layer, folding)
    core = len(core_cuts(folding.lanes, _baked_weights(layer, folding), levels)) + 1
    # The last layer's result register is the argmax's label register.
    result = (max(1, argmax_levels(folding.channels)) + 1 + bool(argmax_register) if last
              else (not buffered))
    return (chunks * groups + (not hold) + (folding.storage == "bram") + core + 1
            + (groups > 1) + 2 + result + 1)


def _check_buffers(buffers):
    if buffers not in BUFFERS:
        raise ValueError(f"Buffers must be one of {', '.join(map(repr, BUFFERS))}, not "
                         f"{buffers!r}")
    return buffers


def buffered(network, foldings, buffers="fifo"):
    """Per stage: whether its output goes into block RAM (`buffers` "bram", a hidden layer
    whose channels divide the next layer's lanes, so that a group's trits fall in one word)."""
    layers = network.layers
    return tuple(_check_buffers(buffers) == "bram" and k < len(layers) - 1
                 and foldings[k + 1].lanes % foldings[k].channels == 0
                 for k in range(len(layers)))


def _mlp_latencies(network, foldings, buffers):
    layers = network.layers
    return [stage_latency(layer, f, k == len(layers) - 1, hold=True, buffered=b)
            for k, (layer, f, b) in enumerate(zip(layers, foldings,
                                                  buffered(network, foldings, buffers)))]


def latency(network, foldings, buffers="fifo"):
    """Cycles from an image's input handshake to its o.valid, the engine empty. An MLP's
    stages hold their input: each starts the cycle its input is valid, and the handshake is
    at stage 0's last issue, K_0·G_0 − 1 cycles after its first."""
    foldings = check_foldings(network, foldings)
    if network.convolutional:
        from . import conv
        return conv.latency(network, foldings)
    return (sum(_mlp_latencies(network, foldings, buffers))
            - layer_ii(network.layers[0], foldings[0]) + 1)


def fifo_depths(network, foldings, buffers="fifo"):
    """Places in each stage's output FIFO (or block-RAM buffer): a result holds its place from
    the take until the next stage's handshake at its last issue (stage latency + the next
    stage's II; the last stage: + 1, its output read at once), and a new image is taken
    every II: ⌈(latency + next II) / II⌉, at least 2."""
    ii = predicted_ii(network, foldings)
    layers = network.layers
    if network.convolutional:
        from . import conv
        return conv.fifo_depths(network, check_foldings(network, foldings), ii)
    held = [layer_ii(layer, f) for layer, f in zip(layers[1:], foldings[1:])] + [1]
    return tuple(max(2, -(-(own + after) // ii))
                 for own, after in zip(_mlp_latencies(network, foldings, buffers), held))


def _output_layout(classes, logit_width):
    return data.StructLayout({
        "logits": data.ArrayLayout(signed(logit_width), classes),
        "label": unsigned(bits_for(classes - 1)),
    })


def read_images(m, o, rport, level, raddr, *, depth, words, lanes, done):
    """The read side of a block-RAM ring of `depth` images of `words` words (lane e's nz in
    bit 2e, sg in 2e + 1) behind `o`, a `chunk_signature` port: `level` counts the complete
    images (`done`: one more, the reader's handshake: one fewer), `raddr` is the head image's
    first word and `o.chunk` picks a word of it."""
    pop = o.valid & o.ready
    with m.If(done & ~pop):
        m.d.sync += level.eq(level + 1)
    with m.Elif(pop & ~done):
        m.d.sync += level.eq(level - 1)
    with m.If(pop):
        m.d.sync += raddr.eq(Mux(raddr == (depth - 1) * words, 0, raddr + words))
    m.d.comb += [o.valid.eq(level != 0), rport.addr.eq(raddr + o.chunk)]
    for e in range(lanes):
        m.d.comb += [o.data.nz[e].eq(rport.data[2 * e]), o.data.sg[e].eq(rport.data[2 * e + 1])]


def chunk_signature(lanes, chunks):
    """A block-RAM buffer's read side, seen from the buffer: `valid` while an image is
    complete at its head; the reader gives a `chunk` index and gets its `lanes` trits on
    `data` the next cycle (the block RAM's read register); `ready` (the reader's last issue
    of the image) frees the head."""
    return wiring.Signature({"valid": Out(1), "ready": In(1),
                             "chunk": In(range(max(chunks, 2))), "data": Out(trit_planes(lanes))})


class LayerStage(wiring.Component):
    """One layer of the dataflow engine: input trits of one image per handshake on `i`; on `o`
    its output trits (hidden layer) or {logits, label} (last layer), through a FIFO of
    `fifo_depth` places. Parameters are checked by `DataflowEngine`.

    `hold`: read the chunks from `i.payload`, which stays until the handshake at the image's
    last issue (no input register). `buffer_lanes`: a hidden layer's output goes into block
    RAM, `fifo_depth` images of words of `buffer_lanes` trits (the next stage's lanes), each
    group's trits written where they belong (a masked write), and `o` is `chunk_signature`;
    `chunk_in`: `i` is the previous stage's such buffer. `save_bram`: block RAM kept for
    weights and buffers: a memory of constants of at most 16 words in LUTs, a deeper one read
    in two halves per group (half as wide) when a group has two chunks or more.
    `chunk_span`: the chunk is chosen out of the input by one copy of the chunk counter per
    `chunk_span` lanes (a CNN's first linear stage, whose held input is the Flatten's whole
    vector) rather than by one counter for all lanes. `levels`: the core's tree levels per
    register layer (a CNN's stages take fewer, `conv.CONV_LEVELS`). `argmax_register` (last
    layer): the logits, valid and group registered once more between PostProcess and the
    argmax, whose first comparison then starts from a register placed beside it (a CNN's last
    stage: acc' → that comparison was the MNIST CNN's routed critical path, 12.06 ns)."""

    def __init__(self, layer, folding, *, last, fifo_depth, hold=False, buffer_lanes=None,
                 chunk_in=False, save_bram=False, chunk_span=None, levels=LEVELS_PER_STAGE,
                 argmax_register=False):
        self._chunk_span, self._levels = chunk_span, levels
        self._argmax_register = bool(argmax_register)
        self._layer, self._folding, self._last = layer, folding, last
        self._fifo_depth, self._hold = fifo_depth, hold or chunk_in
        self._buffer_lanes, self._chunk_in = buffer_lanes, chunk_in
        self._save_bram = save_bram
        self._chunks, self._groups = _shape(layer, folding)
        if chunk_in:
            i = In(chunk_signature(folding.lanes, self._chunks))
        else:
            i = In(stream.Signature(trit_planes(layer.in_features)))
        if buffer_lanes is not None:
            o = Out(chunk_signature(buffer_lanes, -(-layer.out_features // buffer_lanes)))
        elif last:
            o = Out(stream.Signature(_output_layout(layer.out_features, layer.out_fmt.width)))
        else:
            o = Out(stream.Signature(trit_planes(layer.out_features)))
        super().__init__({"i": i, "o": o})

    def elaborate(self, platform):
        m = Module()
        layer, folding = self._layer, self._folding
        lanes, channels = folding.lanes, folding.channels
        chunks, groups = self._chunks, self._groups
        depth = self._fifo_depth
        # Constants' words read in two halves: the low one at a group's second-last chunk.
        halves = (self._save_bram and groups > 16 and chunks > 1
                  and folding.storage != "logic")
        control = data.StructLayout({"first": 1, "last": 1, "final": 1,
                                     "grp": unsigned(bits_for(max(groups - 1, 1))),
                                     **({"penult": 1} if halves else {})})

        words = chunks * groups
        a = Signal(trit_planes(chunks * lanes), name="a")
        chunk = Signal(range(max(chunks, 2)), name="chunk")
        grp = Signal(range(max(groups, 2)), name="grp")
        waddr = Signal(range(max(words, 2)), name="waddr")
        reserved = Signal(range(depth + 1), name="reserved")
        last_chunk, last_group = chunk == chunks - 1, grp == groups - 1
        # `last_issue` (the word issued is the image's last) and `room` (reserved < depth) are
        # registers set a cycle ahead, so that `i.ready` is one LUT of registers: it drives
        # the previous stage's FIFO read, and with the counters' comparators in it this path
        # between stages was the critical one (80 MHz at 1 x 1 on ECP5).
        last_issue = Signal(name="last_issue", init=self._hold and words == 1)
        room = Signal(name="room", init=1)
        busy, take = Signal(name="busy"), Signal(name="take")
        second_last = (waddr == words - 2) if words > 1 else 0
        if self._hold:
            # Held input: the chunks are read from the input's payload, which the previous
            # stage's FIFO (or the engine's input) holds until the handshake at the image's
            # last issue; no copy in a register of its own (2·K·L flip-flops fewer). `issue`:
            # a word of the image at the input goes out this cycle; a new image needs a place.
            issue = Signal(name="issue")
            m.d.comb += [take.eq(~busy & self.i.valid & room), issue.eq(busy | take),
                         self.i.ready.eq((busy | room) & last_issue)]
            if self._chunk_in:
                m.d.comb += self.i.chunk.eq(chunk)
            else:
                m.d.comb += [a.nz.eq(self.i.payload.nz), a.sg.eq(self.i.payload.sg)]
            m.d.sync += busy.eq(issue & ~last_issue)
            if words > 1:
                with m.If(issue):
                    m.d.sync += last_issue.eq(second_last)
        else:
            # Take an image into `a` when the last issue of the previous one is under way (or
            # none is) and a FIFO place is free.
            can_take = Signal(name="can_take")
            m.d.comb += [can_take.eq((~busy | last_issue) & room),
                         self.i.ready.eq(can_take), take.eq(self.i.valid & can_take)]
            m.d.sync += last_issue.eq(Mux(take, words == 1, busy & ~last_issue & second_last))
            with m.If(take):
                m.d.sync += [a.nz.eq(self.i.payload.nz), a.sg.eq(self.i.payload.sg)]
            m.d.sync += busy.eq(take | (busy & ~last_issue))
            issue = busy
        with m.If(issue):
            m.d.sync += [chunk.eq(Mux(last_chunk, 0, chunk + 1)),
                         waddr.eq(Mux(last_issue, 0, waddr + 1))]
            with m.If(last_chunk):
                m.d.sync += grp.eq(Mux(last_group, 0, grp + 1))
        read = self.o.valid & self.o.ready
        with m.If(take & ~read):
            m.d.sync += [reserved.eq(reserved + 1), room.eq(reserved + 1 < depth)]
        with m.Elif(read & ~take):
            m.d.sync += [reserved.eq(reserved - 1), room.eq(1)]

        # Issue: the chunk of `a` and its control, registered (the weight word is read beside).
        s1 = Signal(data.StructLayout({"valid": 1, "a": trit_planes(lanes), "control": control}),
                    name="s1")
        m.d.sync += [s1.valid.eq(issue),
                     s1.control.first.eq(chunk == 0), s1.control.last.eq(last_chunk),
                     *([s1.control.penult.eq(chunk == chunks - 2)] if halves else []),
                     s1.control.final.eq(last_group), s1.control.grp.eq(grp)]
        if self._chunk_in:
            # The chunk comes out of the previous stage's block RAM a cycle after its index.
            m.d.comb += s1.a.eq(self.i.data)
        elif chunks > 1 and self._chunk_span is not None:
            # Each span of lanes chooses its chunk by its own copy of the counter (own
            # feedback, so yosys keeps the copies apart). One counter choosing fc1's 25 chunks
            # of 64 lanes out of the MNIST CNN's 1,568-trit vector was the routed critical
            # path: its decoded selects fanned out to all 128 multiplexers, 8.6 ns on one net.
            for lo in range(0, lanes, self._chunk_span):
                hi = min(lo + self._chunk_span, lanes)
                span = Signal.like(chunk, name=f"chunk_l{lo}")
                with m.If(issue):
                    m.d.sync += span.eq(Mux(span == chunks - 1, 0, span + 1))
                for plane in ("nz", "sg"):
                    whole = getattr(a, plane)
                    m.d.sync += getattr(s1.a, plane)[lo:hi].eq(
                        Cat(*(whole[k * lanes + lo:k * lanes + hi] for k in range(chunks)))
                        .word_select(span, hi - lo))
        else:
            m.d.sync += [s1.a.nz.eq(a.nz.word_select(chunk, lanes) if chunks > 1 else a.nz),
                         s1.a.sg.eq(a.sg.word_select(chunk, lanes) if chunks > 1 else a.sg)]

        baked = _baked_weights(layer, folding)
        m.submodules.core = core = MacCore(lanes, channels, weights=baked, tree=TREE,
                                           cuts=core_cuts(lanes, baked, self._levels),
                                           side=control)
        if baked is not None:
            m.d.comb += [core.i.valid.eq(s1.valid), core.i.payload.a.eq(s1.a),
                         core.i.payload.side.eq(s1.control)]
        else:
            layout = data.ArrayLayout(trit_planes(lanes), channels)
            w_word = Signal(layout, name="w_word")
            init = weight_words(layer.t_w, lanes, channels)
            if folding.storage == "bram":
                # The word is registered again in the fabric (the chunk with it, `s1a`): a
                # block RAM's clock-to-output would otherwise start the core's trees.
                s1a = Signal.like(s1, name="s1a")
                m.submodules.weights = wmem = Memory(shape=layout, depth=words, init=init,
                                                     attrs=_MEMORY_ATTRS["bram"])
                wport = wmem.read_port()
                m.d.comb += wport.addr.eq(waddr)
                m.d.sync += [s1a.eq(s1), w_word.eq(wport.data)]
            else:
                # In logic: one ROM per channel, read combinationally into the word register
                # beside the chunk's, each addressed by its own copy of the word counter (its
                # own feedback, so yosys keeps the copies apart). One address register
                # feeding the whole 1,024-bit ROM of fc2 at II 32 was the critical path (1.6 ns
                # of logic, 14.5 ns of routing).
                s1a = s1
                for c in range(channels):
                    caddr = Signal.like(waddr, name=f"waddr{c}")
                    with m.If(issue):
                        m.d.sync += caddr.eq(Mux(last_issue, 0, caddr + 1))
                    m.submodules[f"weights{c}"] = cmem = Memory(
                        shape=trit_planes(lanes), depth=words, init=[w[c] for w in init],
                        attrs=_MEMORY_ATTRS["logic"])
                    cport = cmem.read_port(domain="comb")
                    m.d.comb += cport.addr.eq(caddr)
                    m.d.sync += w_word[c].eq(cport.data)
            m.d.comb += [core.i.valid.eq(s1a.valid), core.i.payload.a.eq(s1a.a),
                         core.i.payload.w.eq(w_word), core.i.payload.side.eq(s1a.control)]

        sum_width = bits_for(2 * lanes * chunks)
        m.submodules.accumulate = acc = ChunkAccumulator(channels, len(core.o.payload.s),
                                                         sum_width, control)
        m.d.comb += [acc.i.valid.eq(core.o.valid), core.o.ready.eq(acc.i.ready),
                     acc.i.payload.d.eq(core.o.payload.d), acc.i.payload.s.eq(core.o.payload.s),
                     acc.i.payload.side.eq(core.o.payload.side)]

        # K constants and thresholds: constants of PostProcess for one group, else a word per
        # group, read while the group's last chunk is accumulated, registered beside the sums.
        d_bias = None if baked is None else core.d_bias
        values, reach = layer_constants(layer, lanes, channels, d_bias=d_bias)
        fields = ("k1", "k2", "k0") + (() if self._last else ("lo", "hi"))
        shift = layer.k_fmt.frac_bits - layer.out_fmt.frac_bits
        if groups == 1:
            params = Baked(**{name: tuple(int(v) for v in values[name]) for name in fields})
        else:
            params = data.StructLayout({name: signed(signed_width(values[name].tolist()))
                                        for name in fields})
        m.submodules.post = post = PostProcess(
            channels, d_width=sum_width, s_width=sum_width,
            acc_width=signed_width([reach, -reach - 1]), shift=shift,
            out_width=layer.out_fmt.width if self._last else None, params=params,
            trits=not self._last, side=control)
        m.d.comb += [acc.o.ready.eq(1), post.o.ready.eq(1)]
        if groups == 1:
            m.d.comb += [post.i.valid.eq(acc.o.valid), post.i.payload.d.eq(acc.o.payload.d),
                         post.i.payload.s.eq(acc.o.payload.s),
                         post.i.payload.side.eq(acc.o.payload.side)]
        else:
            init = [[{name: int(values[name][g * channels + p]) for name in fields}
                     for p in range(channels)] for g in range(groups)]
            word = data.ArrayLayout(params, channels)
            side = acc.i.payload.side
            if halves:
                # Half as wide, twice as deep (fc1's 100-bit words at one channel: 4 block RAMs
                # of 256 × 16 instead of 7): the low half read at the group's second-last
                # chunk and kept, the high half at its last, both out when the sums are.
                half = -(-word.size // 2)
                packed = [Const.cast(word.const(w)).value for w in init]
                m.submodules.params = pmem = Memory(
                    shape=unsigned(half), depth=2 * groups,
                    init=[v for w in packed for v in (w & ((1 << half) - 1), w >> half)],
                    attrs=_MEMORY_ATTRS["bram"])
                pport = pmem.read_port()
                low, was_penult = Signal(half, name="params_low"), Signal(name="was_penult")
                m.d.comb += [pport.addr.eq(Cat(side.last, side.grp)),
                             pport.en.eq(acc.i.valid & (side.last | side.penult))]
                m.d.sync += was_penult.eq(acc.i.valid & side.penult)
                with m.If(was_penult):
                    m.d.sync += low.eq(pport.data)
                word_data = Cat(low, pport.data)[:word.size]
            else:
                m.submodules.params = pmem = Memory(
                    shape=word, depth=groups, init=init,
                    attrs=_MEMORY_ATTRS["logic" if folding.storage == "logic" or (
                        self._save_bram and groups <= 16) else "bram"])
                pport = pmem.read_port()
                m.d.comb += [pport.addr.eq(side.grp), pport.en.eq(acc.i.valid & side.last)]
                word_data = pport.data
            m.d.sync += [post.i.valid.eq(acc.o.valid), post.i.payload.d.eq(acc.o.payload.d),
                         post.i.payload.s.eq(acc.o.payload.s),
                         post.i.payload.side.eq(acc.o.payload.side),
                         post.i.payload.params.eq(word_data)]

        # Results into the FIFO: the groups are collected in order into a register, `held`,
        # which is written the cycle after the final group: the threshold compare -> merge ->
        # FIFO write path in one cycle was the critical one at 1 x 1 and II 128.
        out = post.o.payload
        if self._buffer_lanes is not None:
            self._buffer(m, post)
            return m
        # A FIFO of exactly the places reserved (first word through, write to read one
        # cycle): a write always has room, since the image written holds a place of its own.
        # Its memory has a combinational read: LUT RAM on the ECP5.
        m.submodules.fifo = fifo = SyncFIFO(width=self.o.payload.shape().size, depth=depth)
        m.d.comb += [self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o.ready)]
        if self._last:
            width = layer.out_fmt.width
            # The label is in its register the cycle after `done`, `wait` cycles after `held`
            # (the merge a cycle ago) has the final group. `held` keeps it that long when it
            # changes only with a group's result and the next one is over `wait` chunks away:
            # then no delayed copy of the logits (classes × width flip-flops per cycle).
            wait = max(1, argmax_levels(channels)) + self._argmax_register
            steady = chunks > wait
            logits = self._collect(m, post, data.ArrayLayout(signed(width), layer.out_features),
                                   lambda merged, lo, hi: [merged[lo + p].eq(out.y[p])
                                                           for p in range(hi - lo)],
                                   gate=steady)
            m.submodules.argmax = argmax = Argmax(channels, layer.out_features, width)
            into = {"valid": post.o.valid, "final": out.side.final, "grp": out.side.grp,
                    "y": out.y}
            for name, value in into.items():
                port = getattr(argmax, name)
                if self._argmax_register:
                    reg = Signal(port.shape(), name=f"argmax_{name}")
                    m.d.sync += reg.eq(value)
                    value = reg
                m.d.comb += port.eq(value)
            for k in range(0 if steady else wait):
                delayed = Signal.like(logits, name=f"logits_delay{k}")
                m.d.sync += delayed.eq(logits)
                logits = delayed
            done = Signal(name="done")
            m.d.sync += done.eq(argmax.done)
            result = Signal(self.o.payload.shape(), name="result")
            m.d.comb += [result.logits.eq(logits), result.label.eq(argmax.label),
                         fifo.w_data.eq(result), fifo.w_en.eq(done)]
        else:
            trits = self._collect(m, post, trit_planes(layer.out_features),
                                  lambda merged, lo, hi: [merged.nz[lo:hi].eq(out.t.nz[:hi - lo]),
                                                          merged.sg[lo:hi].eq(out.t.sg[:hi - lo])])
            write = Signal(name="write")
            m.d.sync += write.eq(post.o.valid & out.side.final)
            m.d.comb += [fifo.w_data.eq(trits), fifo.w_en.eq(write)]
        return m

    def _buffer(self, m, post):
        """Hidden results into block RAM: `fifo_depth` places of K' words of L' trits (L' =
        `buffer_lanes`, K' = ⌈P / L'⌉), each group's C trits written straight from PostProcess
        into its word under a mask (C divides L', so a group never straddles two words;
        trits past P are never written and stay 0, the padding the next stage counts on).
        A place is readable the cycle after its final group is written."""
        lanes, size = self._buffer_lanes, self._layer.out_features
        channels, depth = self._folding.channels, self._fifo_depth
        words = -(-size // lanes)
        fill = size - (words - 1) * lanes          # trits in an image's last word
        out = post.o.payload
        # One word = the trits of L' lanes, nz and sg of lane e in bits 2e and 2e + 1, so a
        # write mask of one bit pair per lane.
        m.submodules.buffer = mem = Memory(shape=unsigned(2 * lanes), depth=depth * words,
                                           init=[], attrs=_MEMORY_ATTRS["bram"])
        wport = mem.write_port(granularity=2)
        rport = mem.read_port()
        welem = Signal(range(lanes), name="welem")      # first lane of the group in its word
        wword = Signal(range(max(words, 2)), name="wword")  # the word in its image
        wlast = wword == words - 1
        waddr = Signal(range(depth * words), name="buffer_waddr")
        raddr = Signal(range(depth * words), name="buffer_raddr")   # the head image's word 0
        level = Signal(range(depth + 1), name="level")  # complete images in the buffer
        write = post.o.valid
        m.d.comb += [wport.addr.eq(waddr),
                     wport.data.eq(Cat(*(Cat(out.t.nz[e % channels], out.t.sg[e % channels])
                                         for e in range(lanes)))),
                     wport.en.eq(Cat(*(write & (welem == e // channels * channels)
                                       & (~wlast if e >= fill else 1)
                                       for e in range(lanes))))]
        word_done = write & (out.side.final | (welem == lanes - channels))

        with m.If(write):
            m.d.sync += welem.eq(Mux(word_done, 0, welem + channels))
        with m.If(word_done):
            m.d.sync += [waddr.eq(Mux(waddr == depth * words - 1, 0, waddr + 1)),
                         wword.eq(Mux(out.side.final, 0, wword + 1))]
        read_images(m, self.o, rport, level, raddr, depth=depth, words=words, lanes=lanes,
                    done=write & out.side.final)

    def _collect(self, m, post, shape, place, gate=False):
        """A `shape` register, `held`, holding the groups so far, the current one merged in a
        cycle later (so `held` is always the merge of the cycle before): `place(merged, lo,
        hi)` gives the statements that put the group's outputs at lo..hi. With one group,
        `held` follows PostProcess every cycle unless `gate` (then only its valid results)."""
        channels, size = self._folding.channels, self._layer.out_features
        merged, held = Signal(shape, name="merged"), Signal(shape, name="held")
        m.d.sync += held.eq(merged)
        if self._groups == 1 and not gate:
            m.d.comb += place(merged, 0, size)
            return held
        m.d.comb += merged.eq(held)
        with m.If(post.o.valid):
            with m.Switch(post.o.payload.side.grp):
                for g in range(self._groups):
                    with m.Case(g):
                        m.d.comb += place(merged, g * channels, min((g + 1) * channels, size))
        return held


class DataflowEngine(wiring.Component):
    """A trained RTN MLP, one stage per layer, a new image every `ii` cycles.

    Parameters
    ----------
    network : rtn_hw.model.Network
    foldings : sequence of Folding
        One per layer (`unfolded`, `smallest`, `parse_foldings` make them).

    Ports: as `NetworkEngine`: `i` stream, one image (features pixels of `pixel_bits`) per
    handshake; `o` stream of {logits: classes × signed(logit_width), label}. A CNN
    (`network.convolutional`, stages in rtn_hw.gateware.conv) takes one pixel position per
    handshake instead, in raster order: `pixels_per_handshake` = its input channels.
    """

    def __init__(self, network, foldings, buffers="fifo"):
        self._foldings = check_foldings(network, foldings)
        self._network = network
        self._buffers = _check_buffers(buffers)
        if network.convolutional and buffers != "fifo":
            raise ValueError(f"Buffers must be 'fifo' for a CNN, not {buffers!r}")
        last = network.layers[-1]
        self._pixel_bits = bits_for(network.input.pixel_max)
        self._features = network.input.features
        self._per_handshake = (network.layers[0].in_shape[0] if network.convolutional
                               else self._features)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(self._pixel_bits),
                                                      self._per_handshake))),
            "o": Out(stream.Signature(_output_layout(last.out_features, last.out_fmt.width))),
        })

    @property
    def network(self):
        return self._network

    @property
    def foldings(self):
        return self._foldings

    @property
    def features(self):
        return self._features

    @property
    def pixel_bits(self):
        return self._pixel_bits

    @property
    def pixels_per_handshake(self):
        return self._per_handshake

    @property
    def classes(self):
        return self._network.layers[-1].out_features

    @property
    def logit_width(self):
        return self._network.layers[-1].out_fmt.width

    @property
    def ii(self):
        return predicted_ii(self._network, self._foldings)

    @property
    def stage_iis(self):
        return tuple(layer_ii(layer, f) for layer, f in zip(self._network.layers,
                                                            self._foldings))

    @property
    def buffers(self):
        return self._buffers

    @property
    def latency(self):
        return latency(self._network, self._foldings, self._buffers)

    @property
    def fifo_depths(self):
        return fifo_depths(self._network, self._foldings, self._buffers)

    def elaborate(self, platform):
        m = Module()
        network, layers = self._network, self._network.layers
        m.submodules.pixels = pixels = PixelEncoder(self._per_handshake, self._pixel_bits,
                                                    network.input.lo, network.input.hi)
        wiring.connect(m, wiring.flipped(self.i), pixels.i)
        if network.convolutional:
            from . import conv
            wiring.connect(m, conv.build(m, self, pixels), wiring.flipped(self.o))
            return m
        previous = pixels.o
        into_ram = buffered(network, self._foldings, self._buffers)
        for k, (layer, folding, depth) in enumerate(zip(layers, self._foldings,
                                                        self.fifo_depths)):
            stage = LayerStage(
                layer, folding, last=k == len(layers) - 1, fifo_depth=depth, hold=True,
                buffer_lanes=self._foldings[k + 1].lanes if into_ram[k] else None,
                chunk_in=k > 0 and into_ram[k - 1], save_bram=self._buffers == "bram")
            m.submodules[f"stage{k}"] = stage
            wiring.connect(m, previous, stage.i)
            previous = stage.o
        wiring.connect(m, previous, wiring.flipped(self.o))
        return m
