"""Convolution and max-pool stages of the dataflow engine (FINN style, no im2col in memory).

A CNN's feature maps travel between stages as a stream of **positions in raster order**: one
handshake carries the C trits of one (row, column) of a (C, H, W) map, rows top to bottom,
columns left to right. The engine's input is the same: one pixel position (the first layer's
C input pixels, 1 for the digits and MNIST) per handshake.

`WindowGenerator` turns that stream into the stream of the layer's windows, one per output
position in raster order, each the C·kh·kw trits of `ConvLayer.patches` (channel-major:
element c·kh·kw + i·kw + j is channel c, window row i, window column j). It is input driven:
it walks a grid of steps over the *padded* map, rows ph .. u_end and columns pw .. v_end
(`window_grid`), one step per cycle at most. A step on a real position takes one input; a
step in the bottom or right padding takes none. Per step it forms the column of kh positions
ending at the step's row: kh − 1 earlier rows from a line buffer (a memory of W words of
(kh − 1)·C trits, read and written back shifted by one row at the step's column; rows outside
the map are masked to trit 0, so the memory is never cleared between images) and the step's
own position. The last kw − 1 columns wait in registers (zero at a row's start: the left
padding) and the window is those and the new column; it is emitted when the step is the
bottom-right corner of a window (stride and count checked against constant bit masks).
Steps per image = (u_end − ph + 1)·(v_end − pw + 1); for a 3×3 kernel, padding 1, stride 1
that is (H + 1)·(W + 1): the right padding column and the bottom padding row cost a step each.

`ConvStage` is a `WindowGenerator` feeding a `LayerStage` (rtn_hw.gateware.dataflow) of the
convolution's fully connected `dense` layer: the same MacCore of L lanes × C channels walking
K = ⌈N/L⌉ chunks × G = ⌈P/C⌉ groups per window (N = C_in·kh·kw, P = out-channels), the same
ChunkAccumulator and PostProcess with one set of K constants for the whole map (padding is
trit 0, so n and S_w do not change across positions, docs/rtn.md §3), and its output FIFO;
its output is the P trits of each output position, in raster order. With K·G > 1 a small
window FIFO between the two lets the generator run ahead over an image's window-less steps
(`window_fifo_depth`).

`PoolStage` is a `WindowGenerator` (no padding) and a per-channel maximum of the window's
trits (`rtn_hw.model.conv.pool_trits`: pooling trits is exact). Before the first fully
connected layer, `FlattenBuffer` writes the positions of a map into block RAM, position-major,
for that layer to read a chunk at a time with its weight columns permuted to match (where its
lanes are whole positions); else `Flatten` collects them into one vector in flip-flops in the
golden model's flatten order (channel-major, c·H·W + h·W + w).

Rates (cycles per image, one handshake per cycle at most): the input H₀·W₀; a generator its
steps; a convolution max(steps, H_out·W_out·K·G); a pool its steps; a flatten H·W; a linear
layer K·G. The engine's II is the largest (`stage_iis`).
"""

import dataclasses

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.conv import conv_out_shape
from .layouts import trit_planes

__all__ = ["RegisterSlice", "WindowGenerator", "ConvStage", "PoolStage", "Flatten",
           "ENGINE_GENERATOR", "FlattenBuffer", "buffers_flatten", "position_major",
           "window_grid", "generator_steps", "emission_steps", "window_fifo_depth", "trit_max",
           "linear_options"]

# Lanes per copy of the chunk counter in the first linear stage, which chooses its chunks out
# of the Flatten's whole vector (`LayerStage(chunk_span=…)`).
CHUNK_SPAN = 8
# Tree levels per register layer in the cores of a CNN's stages, convolutions and linear
# layers (the engines' LEVELS_PER_STAGE is 4, which MLP engines keep): the first layer of
# conv2's baked 144 × 32 trees, the lane tables and three carry-chain adders after `s1`'s
# fan-out, was the MNIST CNN's routed critical path (13.2 ns); with that cut, fc1's first
# 4-level layer after its chunk register's fan-out (13.19 ns, nextpnr seed 2).
CONV_LEVELS = 3
# The WindowGenerator options of the engine's conv and pool stages (`conv_stage` and the
# fp32 / int8 baselines keep the defaults): `advance` and the grid position kept out of the
# line buffer's ports and the input's ready (the MNIST CNN's routed critical paths).
ENGINE_GENERATOR = dict(held_read=True, real_ahead=True)


def _holds_input(network, index):
    """Whether linear layer `index` of a CNN reads the flatten's vector where it waits
    (`LayerStage(hold=True)`): it follows a conv or pool stage."""
    return index > 0 and network.layers[index - 1].kind != "linear"


def _conv_dense_latency(layer, folding):
    """`stage_latency` of a conv layer's LayerStage (its dense layer, trees cut every
    CONV_LEVELS levels)."""
    from .dataflow import stage_latency
    return stage_latency(layer.dense, folding, False, levels=CONV_LEVELS)


def _linear_latency(network, index, folding):
    """`stage_latency` of a CNN's linear layer `index`, with the options its LayerStage has."""
    from .dataflow import stage_latency
    return stage_latency(network.layers[index], folding, index == len(network.layers) - 1,
                         hold=_holds_input(network, index), **linear_options(network, index))


def linear_options(network, index):
    """`LayerStage` (and `stage_latency`) options of a CNN's linear layer `index`: its core's
    trees cut every CONV_LEVELS levels and, for the last layer, a register before the argmax
    (fc2's acc' → the argmax's first comparison was the MNIST CNN's routed critical path)."""
    return dict(levels=CONV_LEVELS, argmax_register=index == len(network.layers) - 1)


def window_grid(size, kernel, stride, padding, name="window"):
    """The generator's grid of steps over the padded map: (rows, columns), each a range of
    padded coordinates, or a one-line ValueError naming `name`."""
    (h, w), (kh, kw), (ph, pw) = size, kernel, padding
    for value, what in ((h, "height"), (w, "width"), (kh, "kernel height"),
                        (kw, "kernel width"), (stride[0], "row stride"),
                        (stride[1], "column stride")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: {what} must be a positive integer, not {value!r}")
    if ph >= kh or pw >= kw or ph < 0 or pw < 0:
        raise ValueError(f"{name}: padding must be 0 .. kernel - 1 on each axis ({kh}x{kw}), "
                         f"not {ph}x{pw}")
    try:
        ho, wo = conv_out_shape((h, w), kernel, stride, padding)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    # Every window's last row and column, and every real position, is walked once.
    rows = range(ph, max((ho - 1) * stride[0] + kh - 1, ph + h - 1) + 1)
    cols = range(pw, max((wo - 1) * stride[1] + kw - 1, pw + w - 1) + 1)
    return rows, cols


def generator_steps(size, kernel, stride, padding):
    """Steps (cycles at least) per image of a WindowGenerator."""
    rows, cols = window_grid(size, kernel, stride, padding)
    return len(rows) * len(cols)


def emission_steps(size, kernel, stride, padding):
    """The grid steps (indices in walking order) at which a WindowGenerator emits a window."""
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = conv_out_shape(size, kernel, stride, padding)
    rows, cols = window_grid(size, kernel, stride, padding)
    return [(oy * sh + kh - 1 - rows.start) * len(cols) + ox * sw + kw - 1 - cols.start
            for oy in range(ho) for ox in range(wo)]


def window_fifo_depth(layer, folding):
    """Windows queued between a conv stage's generator and its LayerStage: 0 when the core
    takes a window every cycle (K·G = 1), else enough to cover the longest run of steps
    without a window (an image's end and the next one's first rows) at one take per K·G
    cycles, so the core never waits for its generator."""
    period = -(-layer.in_features // folding.lanes) * -(-layer.out_features // folding.channels)
    if period == 1:
        return 0
    emits = emission_steps(layer.in_shape[1:], layer.kernel, layer.stride, layer.padding)
    steps = generator_steps(layer.in_shape[1:], layer.kernel, layer.stride, layer.padding)
    gaps = np.diff(emits + [emits[0] + steps])
    return -(-int(gaps.max()) // period) + 1


def _mask(indices, predicate):
    """A constant with bit k set where predicate(k), k in indices' 0 .. max."""
    return sum(1 << k for k in indices if predicate(k))


def trit_max(nz, sg):
    """(nz, sg) of the maximum of trits given as bit planes: +1 if any is +1, else 0 if any
    is 0, else -1 (a zero's sign bit is ignored)."""
    plus = (nz & sg).any()
    return plus | nz.all(), plus


class RegisterSlice(wiring.Component):
    """A stream register of two places whose `i.ready`, `o.valid` and `o.payload` are all
    register outputs, at one transfer a cycle and one cycle of latency. Before a generator it
    cuts the combinational ready path that would otherwise run from a stage's output through
    every generator (`advance`, fanning out to its registers) back into the previous stage's
    FIFO."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        spare = Signal.like(self.o.payload, name="spare")
        spare_valid = Signal(name="spare_valid")
        m.d.comb += self.i.ready.eq(~spare_valid)
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [self.o.valid.eq(spare_valid | self.i.valid), spare_valid.eq(0)]
            with m.If(spare_valid):
                m.d.sync += self.o.payload.eq(spare)
            with m.Else():
                m.d.sync += self.o.payload.eq(self.i.payload)
        with m.Elif(self.i.valid & ~spare_valid):
            m.d.sync += [spare.eq(self.i.payload), spare_valid.eq(1)]
        return m


class WindowGenerator(wiring.Component):
    """Positions (C elements) in raster order → windows (C·kh·kw elements, `ConvLayer.patches`
    order), one per output position in raster order. See the module docstring.

    Parameters
    ----------
    channels : int
    size, kernel, stride, padding : pairs (H, W), (kh, kw), (sh, sw), (ph, pw)
    name : str
        Named in errors (the layer's name).
    element : None or int
        None: trits, `trit_planes(n)`; an int W: W-bit elements, `ArrayLayout(unsigned(W), n)`
        (the fp32 and int8 baselines' convolutions). All-zero bits are the padding in both:
        trit 0, +0.0 and integer 0.

    held_read : bool
        Read the line buffer every cycle, at the step in stage A, and keep a held step's
        column in a register (`line_saved`, chosen by a register), so that `advance` (the
        output's ready) does not reach the read port's enable and transparency logic: that
        path was conv2's routed critical path in the MNIST CNN (13.54 ns, nextpnr seed 3).
        Costs (kh − 1)·C elements of flip-flops; the engine's CNN stages use it.
    real_ahead : bool
        Whether the step in stage A is on a real position (it takes an input) is a register,
        set as the step before it retires from (u, v)'s next values, not bits of constant
        masks selected by u and v: v → `real` → the input slice's ready and its register
        enables was pool2's routed critical path in the MNIST CNN (13.35 ns, seed 1). The
        engine's CNN stages use it.

    Ports: `i` stream of the layout of `channels` elements; `o` of `channels·kh·kw`.
    `i` enters through a `RegisterSlice` (its ready is a register); a step's window is in the
    output register three cycles after its input handshake.
    """

    def __init__(self, channels, size, kernel, stride=(1, 1), padding=(0, 0), *,
                 name="window", element=None, held_read=False, real_ahead=False):
        _check.positive_int(channels, f"{name}: channel count")
        if element is not None:
            _check.positive_int(element, f"{name}: element width")
        self._rows, self._cols = window_grid(size, kernel, stride, padding, name)
        self._channels, self._size, self._kernel = channels, tuple(size), tuple(kernel)
        self._stride, self._padding = tuple(stride), tuple(padding)
        self._out_size = conv_out_shape(size, kernel, stride, padding)
        self._element = element
        self._held_read, self._real_ahead = bool(held_read), bool(real_ahead)
        super().__init__({
            "i": In(stream.Signature(self.layout(channels))),
            "o": Out(stream.Signature(self.layout(channels * kernel[0] * kernel[1]))),
        })

    def layout(self, n):
        """The layout of `n` elements."""
        if self._element is None:
            return trit_planes(n)
        return data.ArrayLayout(unsigned(self._element), n)

    def _planes(self, view):
        """A view's bit planes, each element `bits` wide: (nz, sg) of trits, the whole word of
        W-bit elements; `_assign` writes them back."""
        if self._element is None:
            return [view.nz, view.sg]
        return [view.as_value()]

    def _assign(self, view, planes):
        if self._element is None:
            return [view.nz.eq(planes[0]), view.sg.eq(planes[1])]
        return [view.eq(planes[0])]

    @property
    def out_size(self):
        return self._out_size

    @property
    def steps(self):
        """Steps per image (cycles per image when neither input nor output waits)."""
        return len(self._rows) * len(self._cols)

    # Cycles from a step's input handshake to its window in the output register: the input
    # slice, stage A, stage B (a class attribute: known before a generator is made).
    latency = 3

    def elaborate(self, platform):
        m = Module()
        c = self._channels
        m.submodules.slice = inp = RegisterSlice(self.layout(c))
        wiring.connect(m, wiring.flipped(self.i), inp.i)
        inp = inp.o
        bits = self._element or 1           # bits of an element in each plane
        planes = self._planes
        (h, w), (kh, kw), (sh, sw), (ph, pw) = (self._size, self._kernel, self._stride,
                                                self._padding)
        (ho, wo), rows, cols = self._out_size, self._rows, self._cols
        u = Signal(range(rows.stop), init=rows.start, name="u")
        v = Signal(range(cols.stop), init=cols.start, name="v")

        def bit(mask, index, name):
            # Bit `index` of a constant mask over the grid's coordinates 0 .. stop - 1.
            flag = Signal(name=name)
            stop = rows.stop if index is u else cols.stop
            m.d.comb += flag.eq(Const(mask, stop).bit_select(index, 1))
            return flag

        all_rows, all_cols = range(rows.stop), range(cols.stop)
        row_real = bit(_mask(all_rows, lambda r: ph <= r < ph + h), u, "row_real")
        col_real = bit(_mask(all_cols, lambda q: pw <= q < pw + w), v, "col_real")
        emit_row = bit(_mask(all_rows, lambda r: r >= kh - 1 and (r - kh + 1) % sh == 0
                             and (r - kh + 1) // sh < ho), u, "emit_row")
        emit_col = bit(_mask(all_cols, lambda q: q >= kw - 1 and (q - kw + 1) % sw == 0
                             and (q - kw + 1) // sw < wo), v, "emit_col")
        # Line buffer slot k holds padded row u - kh + 1 + k; rows off the map read as 0.
        slot_real = [bit(_mask(all_rows, lambda r, k=k: ph <= r - kh + 1 + k < ph + h), u,
                         f"slot{k}_real") for k in range(kh - 1)]

        # Stage A: the step (u, v); it takes an input on a real position.
        step = Signal(name="step")
        advance = Signal(name="advance")
        if self._real_ahead:
            # `real` of the next step, from the next (u, v), into a register as u, v step.
            first_real = ph <= rows.start < ph + h and pw <= cols.start < pw + w
            real = Signal(name="real", init=first_real)
            wrap = v == cols.stop - 1
            v_next = Mux(wrap, cols.start, v + 1)
            u_next = Mux(wrap, Mux(u == rows.stop - 1, rows.start, u + 1), u)
            with m.If(step):
                m.d.sync += real.eq(
                    Const(_mask(all_rows, lambda r: ph <= r < ph + h), rows.stop)
                    .bit_select(u_next, 1)
                    & Const(_mask(all_cols, lambda q: pw <= q < pw + w), cols.stop)
                    .bit_select(v_next, 1))
        else:
            real = Signal(name="real")
            m.d.comb += real.eq(row_real & col_real)
        m.d.comb += [inp.ready.eq(advance & real),
                     step.eq(advance & (~real | inp.valid))]
        with m.If(step):
            m.d.sync += v.eq(Mux(v == cols.stop - 1, cols.start, v + 1))
            with m.If(v == cols.stop - 1):
                m.d.sync += u.eq(Mux(u == rows.stop - 1, rows.start, u + 1))

        # Stage B registers, loaded whenever the generator advances.
        b_valid, b_emit, b_first, b_col_real = (Signal(name=n) for n in (
            "b_valid", "b_emit", "b_first", "b_col_real"))
        b_new = Signal(self.layout(c), name="b_new")
        b_slot = Signal(max(kh - 1, 1), name="b_slot")
        b_addr = Signal(range(max(w, 2)), name="b_addr")
        with m.If(advance):
            m.d.sync += [b_valid.eq(step), b_emit.eq(emit_row & emit_col),
                         b_first.eq(v == cols.start), b_col_real.eq(col_real),
                         b_new.eq(Mux(real, inp.payload, 0)),
                         b_addr.eq(v - pw), b_slot.eq(Cat(*slot_real) if kh > 1 else 0)]

        # The column of kh positions ending at the step's row (all 0 off the map's columns).
        column = [Signal(self.layout(c), name=f"col{k}") for k in range(kh)]
        m.d.comb += column[kh - 1].eq(b_new)
        if kh > 1:
            m.submodules.lines = lines = Memory(
                shape=self.layout(c * (kh - 1)), depth=max(w, 2), init=[])
            wport = lines.write_port()
            write = advance & b_valid & b_col_real
            if self._held_read:
                # Read every cycle; stage B's column is the read of its step's cycle, kept
                # in `line_saved` while B is held. Reads and writes meet at one address only
                # on a grid one column wide (the step just written is read next). B's step
                # is written every cycle it is held (the same word to the same address:
                # its registers and `line_saved` do not change), so the write enable is
                # registers only: `advance` → the LUT RAM's write enable was conv2's routed
                # critical path on seed 3 once the read no longer was (12.23 ns).
                write = b_valid & b_col_real
                rport = lines.read_port(transparent_for=(wport,) if len(cols) == 1 else ())
                held_b = Signal(name="line_held")
                saved = Signal(self.layout(c * (kh - 1)), name="line_saved")
                line = Signal(self.layout(c * (kh - 1)), name="line")
                m.d.comb += [rport.addr.eq(v - pw), line.eq(Mux(held_b, saved, rport.data))]
                m.d.sync += [held_b.eq(~advance), saved.eq(line)]
            else:
                rport = lines.read_port(transparent_for=(wport,))
                m.d.comb += [rport.addr.eq(v - pw), rport.en.eq(advance)]
                line = rport.data
            for k in range(kh - 1):
                with m.If(b_col_real & b_slot[k]):
                    m.d.comb += self._assign(column[k], [p.word_select(k, c * bits)
                                                         for p in planes(line)])
            # Written back one row on: slot k takes the column's position k + 1.
            m.d.comb += [wport.addr.eq(b_addr),
                         wport.en.eq(write),
                         *self._assign(wport.data, [
                             Cat(*(planes(column[k])[p] for k in range(1, kh)))
                             for p in range(len(planes(b_new)))])]

        # The previous kw - 1 columns, 0 at a row's start (the left padding).
        held = [[Signal(self.layout(c), name=f"held{j}_{k}") for k in range(kh)]
                for j in range(kw - 1)]
        window = [[Signal(self.layout(c), name=f"win{j}_{k}") for k in range(kh)]
                  for j in range(kw - 1)] + [column]
        for j in range(kw - 1):
            for k in range(kh):
                with m.If(~b_first):
                    m.d.comb += window[j][k].eq(held[j][k])
        with m.If(advance & b_valid):
            for j in range(kw - 1):
                for k in range(kh):
                    m.d.sync += held[j][k].eq(window[j + 1][k])

        # Stage B retires a step unless it would emit into an output register still held.
        out_free = ~self.o.valid | self.o.ready
        m.d.comb += advance.eq(~b_valid | ~b_emit | out_free)
        with m.If(out_free):
            m.d.sync += self.o.valid.eq(b_valid & b_emit)
            with m.If(b_valid & b_emit):
                order = [(k, j) for k in range(kh) for j in range(kw)]
                m.d.sync += self._assign(self.o.payload, [
                    Cat(*(planes(window[j][k])[p].word_select(ch, bits) for ch in range(c)
                          for k, j in order))
                    for p in range(len(planes(b_new)))])
        return m


class PoolStage(wiring.Component):
    """Max pooling on trits: positions (C trits) in raster order → pooled positions in raster
    order; a `WindowGenerator` without padding and a per-channel maximum of its windows.
    `layer` is a `rtn_hw.model.conv.MaxPool`; `generator`: WindowGenerator options."""

    def __init__(self, layer, *, generator=None):
        self._layer = layer
        c, h, w = layer.in_shape
        self._generator = WindowGenerator(c, (h, w), layer.kernel, layer.stride,
                                          name=layer.name, **(generator or {}))
        super().__init__({"i": In(stream.Signature(trit_planes(c))),
                          "o": Out(stream.Signature(trit_planes(c)))})

    @property
    def steps(self):
        return self._generator.steps

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = gen = self._generator
        c = self._layer.in_shape[0]
        area = self._layer.kernel[0] * self._layer.kernel[1]
        wiring.connect(m, wiring.flipped(self.i), gen.i)
        nzs, sgs = [], []
        for ch in range(c):
            nz, sg = trit_max(gen.o.payload.nz[ch * area:(ch + 1) * area],
                              gen.o.payload.sg[ch * area:(ch + 1) * area])
            nzs.append(nz)
            sgs.append(sg)
        m.d.comb += [self.o.valid.eq(gen.o.valid), gen.o.ready.eq(self.o.ready),
                     self.o.payload.nz.eq(Cat(*nzs)), self.o.payload.sg.eq(Cat(*sgs))]
        return m


class Flatten(wiring.Component):
    """Positions (C trits) of a (C, H, W) map in raster order → one vector of C·H·W trits in
    the golden model's flatten order (c·H·W + h·W + w), per image. Each channel's plane is a
    shift register (the newest position enters at the top), so no position decoder; a full
    set of planes is copied into an output register, which holds the vector until it is
    taken, so the next stage reads it where it waits (`LayerStage(hold=True)`) while the
    planes collect the next image. A vector is at `o` two cycles after its last position."""

    def __init__(self, shape):
        self._shape = tuple(shape)
        c, h, w = shape
        super().__init__({"i": In(stream.Signature(trit_planes(c))),
                          "o": Out(stream.Signature(trit_planes(c * h * w)))})

    def elaborate(self, platform):
        m = Module()
        c, h, w = self._shape
        area = h * w
        # Per channel its own position counter and `full`/`held` flags (own feedback, so
        # yosys keeps the copies apart): the enables of the planes and of the output copy
        # each reach 2·H·W flip-flops, one LUT after registers and the next stage's ready.
        # One enable for all C·2·H·W bits (3,136 in the MNIST CNN, and the same again in
        # the next stage's input register) was the routed critical path, 10–11 ns of routing.
        outs, helds, fulls = [], [], []
        for ch in range(c):
            count = Signal(range(area + 1), name=f"count{ch}")
            full, held = Signal(name=f"full{ch}"), Signal(name=f"held{ch}")
            take, copy = Signal(name=f"take{ch}"), Signal(name=f"copy{ch}")
            plane, out = Signal(2 * area, name=f"plane{ch}"), Signal(2 * area, name=f"out{ch}")
            nz, sg = plane[:area], plane[area:]
            # A position is taken into full planes only when the output register is free
            # (the copy certain), not when the next stage takes the vector this very cycle:
            # so neither `take` nor `i.ready` waits for the next stage's ready, which reached
            # through `i.ready` into pool2's generator and its line buffer (15.4 ns, seed 2).
            # The cycle lost is one where the next stage is the slower one.
            m.d.comb += [copy.eq(full & (~held | self.o.ready)),
                         take.eq(self.i.valid & (~full | ~held))]
            with m.If(take):
                m.d.sync += [nz.eq(Cat(nz[1:], self.i.payload.nz[ch]) if area > 1
                                   else self.i.payload.nz[ch]),
                             sg.eq(Cat(sg[1:], self.i.payload.sg[ch]) if area > 1
                                   else self.i.payload.sg[ch])]
            # The next stage's ready arrives late: it only selects among next states that
            # come from registers (count + 1 and its comparison ahead of it), not through an
            # adder and a comparison (its path through those was critical, 14.6 ns).
            with m.If(copy):
                m.d.sync += [out.eq(plane), count.eq(take), full.eq(take & (area == 1))]
            with m.Elif(take):
                m.d.sync += [count.eq(count + 1), full.eq(count == area - 1)]
            m.d.sync += held.eq(copy | (held & ~self.o.ready))
            outs.append(out)
            helds.append(held)
            fulls.append(full)
        m.d.comb += [self.o.valid.eq(helds[0]),
                     self.i.ready.eq(~fulls[0] | ~helds[0]),
                     self.o.payload.nz.eq(Cat(*(out[:area] for out in outs))),
                     self.o.payload.sg.eq(Cat(*(out[area:] for out in outs)))]
        return m


def buffers_flatten(shape, folding):
    """Whether the first linear layer after a (C, H, W) map reads it from a `FlattenBuffer`:
    its lanes a whole number of positions (a multiple of C)."""
    return folding.lanes % shape[0] == 0


def position_major(layer, shape):
    """`layer` (after the flatten of a (C, H, W) map) with its weight columns in position-major
    order, p·C + c, the order in which a `FlattenBuffer` holds the map; the dot products, and
    so every constant and result, are unchanged."""
    c, h, w = shape
    order = (np.arange(c)[None, :] * (h * w) + np.arange(h * w)[:, None]).reshape(-1)
    return dataclasses.replace(layer, t_w=layer.t_w[:, order])


class FlattenBuffer(wiring.Component):
    """Positions (C trits) of a (C, H, W) map in raster order → the map in block RAM, read a
    chunk of `lanes` trits at a time by the first linear stage (`chunk_signature`; that stage's
    weights in `position_major` order). `lanes` is a multiple of C, so a word holds lanes / C
    whole positions, each written under its own write-enable; trits past the map (the last
    word's padding) are never written and stay 0. `depth` images: one being written, the rest
    complete or being read. The flip-flop `Flatten` held a 3,136-trit vector for the MNIST CNN
    and chose 64-lane chunks out of it; its plane and copy enables, each reaching flip-flops
    spread over that whole vector, and the chunk multiplexer were the routed critical paths.
    An image is readable the cycle after its last position is taken."""

    def __init__(self, shape, lanes, depth=2):
        self._shape, self._lanes, self._depth = tuple(shape), lanes, depth
        c, h, w = shape
        if lanes % c:
            raise ValueError(f"FlattenBuffer lanes must be a multiple of the {c} channels, not "
                             f"{lanes}")
        self._words = -(-h * w * c // lanes)
        from .dataflow import chunk_signature
        super().__init__({"i": In(stream.Signature(trit_planes(c))),
                          "o": Out(chunk_signature(lanes, self._words))})

    def elaborate(self, platform):
        from .dataflow import _MEMORY_ATTRS, read_images
        m = Module()
        (c, h, w), lanes, depth, words = self._shape, self._lanes, self._depth, self._words
        area, per = h * w, lanes // c
        # Lane e of a word: nz in bit 2e, sg in 2e + 1; position slot j holds lanes j·C ….
        m.submodules.buffer = mem = Memory(shape=unsigned(2 * lanes), depth=depth * words,
                                           init=[], attrs=_MEMORY_ATTRS["bram"])
        wport = mem.write_port(granularity=2 * c)
        rport = mem.read_port()
        pos = Signal(range(area), name="pos")            # the position in its image
        slot = Signal(range(per), name="slot")           # its place in the word
        waddr = Signal(range(depth * words), name="waddr")
        raddr = Signal(range(depth * words), name="raddr")   # the head image's first word
        level = Signal(range(depth + 1), name="level")   # complete images
        take = Signal(name="take")
        last_pos = pos == area - 1
        word_done = last_pos | (slot == per - 1)
        position = Cat(*(Cat(self.i.payload.nz[ch], self.i.payload.sg[ch]) for ch in range(c)))
        m.d.comb += [self.i.ready.eq(level != depth), take.eq(self.i.valid & self.i.ready),
                     wport.addr.eq(waddr), wport.data.eq(position.replicate(per)),
                     wport.en.eq(Cat(*(take & (slot == j) for j in range(per))))]
        with m.If(take):
            m.d.sync += [pos.eq(Mux(last_pos, 0, pos + 1)), slot.eq(Mux(word_done, 0, slot + 1))]
            with m.If(word_done):
                m.d.sync += waddr.eq(Mux(waddr == depth * words - 1, 0, waddr + 1))
        read_images(m, self.o, rport, level, raddr, depth=depth, words=words, lanes=lanes,
                    done=take & last_pos)
        return m


class ConvStage(wiring.Component):
    """One convolution: positions (C_in trits) in raster order → output positions (P trits) in
    raster order. A `WindowGenerator` feeding the `LayerStage` of the layer's `dense` layer
    (one window per handshake) with `folding` and `fifo_depth` places in its output FIFO.
    `layer` is a `rtn_hw.model.conv.ConvLayer`; `generator`: WindowGenerator options."""

    def __init__(self, layer, folding, *, fifo_depth, generator=None):
        from .dataflow import LayerStage
        self._layer = layer
        c, h, w = layer.in_shape
        self._generator = WindowGenerator(c, (h, w), layer.kernel, layer.stride,
                                          layer.padding, name=layer.name,
                                          **(generator or {}))
        self._stage = LayerStage(layer.dense, folding, last=False, fifo_depth=fifo_depth,
                                 levels=CONV_LEVELS)
        self._queue = window_fifo_depth(layer, folding)
        super().__init__({"i": In(stream.Signature(trit_planes(c))),
                          "o": Out(stream.Signature(trit_planes(layer.out_channels)))})

    @property
    def steps(self):
        return self._generator.steps

    @property
    def latency(self):
        """Cycles from the input handshake that completes a window to its result at o.valid,
        the stage empty: the generator's, the window FIFO's 2 (if any), the LayerStage's."""
        return (self._generator.latency + 2 * bool(self._queue)
                + _conv_dense_latency(self._layer, self._stage._folding))

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = gen = self._generator
        m.submodules.layer = stage = self._stage
        wiring.connect(m, wiring.flipped(self.i), gen.i)
        if self._queue:
            m.submodules.windows = queue = SyncFIFOBuffered(
                width=gen.o.payload.shape().size, depth=self._queue)
            m.d.comb += [queue.w_data.eq(gen.o.payload), queue.w_en.eq(gen.o.valid),
                         gen.o.ready.eq(queue.w_rdy),
                         stage.i.payload.eq(queue.r_data), stage.i.valid.eq(queue.r_rdy),
                         queue.r_en.eq(stage.i.ready)]
        else:
            wiring.connect(m, gen.o, stage.i)
        wiring.connect(m, stage.o, wiring.flipped(self.o))
        return m


# --- the engine's CNN plan (called by rtn_hw.gateware.dataflow for a convolutional network) ---

def _spatial(layer):
    return layer.kind in ("conv", "maxpool")


def check_network(network):
    """A one-line ValueError naming the layer if the dataflow engine cannot build `network`
    (a CNN): its layers chained shape to shape, windows that fit their maps, convolutions and
    pools before the linear layers, and a linear last layer."""
    layers = network.layers
    shape = tuple(layers[0].in_shape)
    if shape[1:] != tuple(network.input.shape[-2:]) or shape[0] * shape[1] * shape[2] \
            != network.input.features:
        raise ValueError(f"Layer 0 ({layers[0].name}): input shape {shape} does not match the "
                         f"input {tuple(network.input.shape)}")
    for index, layer in enumerate(layers):
        name = f"Layer {index} ({layer.name})"
        if _spatial(layer):
            if shape is None:
                raise ValueError(f"{name}: a {layer.kind} layer after a linear layer is not "
                                 f"supported by the dataflow engine")
            if tuple(layer.in_shape) != shape:
                raise ValueError(f"{name}: input shape {tuple(layer.in_shape)} does not match "
                                 f"the previous output {shape}")
            padding = layer.padding if layer.kind == "conv" else (0, 0)
            window_grid(shape[1:], layer.kernel, layer.stride, padding, name)
            shape = tuple(layer.out_shape)
        else:
            if shape is not None and layer.in_features != shape[0] * shape[1] * shape[2]:
                raise ValueError(f"{name}: {layer.in_features} inputs do not match the "
                                 f"flattened {shape} ({shape[0] * shape[1] * shape[2]})")
            shape = None
    if layers[-1].kind != "linear":
        raise ValueError(f"Layer {len(layers) - 1} ({layers[-1].name}): the last layer must be "
                         f"linear (logits), not {layers[-1].kind}")


def _steps(layer):
    padding = layer.padding if layer.kind == "conv" else (0, 0)
    return generator_steps(layer.in_shape[1:], layer.kernel, layer.stride, padding)


def spatial_layer_ii(layer, folding):
    """Cycles per image of a conv stage, max(steps, H_out·W_out·K·G), or a pool stage, its
    steps."""
    if layer.kind == "maxpool":
        return _steps(layer)
    chunks = -(-layer.in_features // folding.lanes)
    groups = -(-layer.out_features // folding.channels)
    positions = layer.out_shape[1] * layer.out_shape[2]
    return max(_steps(layer), positions * chunks * groups)


def fifo_depths(network, foldings, ii):
    """Places in each stage's output FIFO (None for a pool, which has none): a conv stage holds
    its results for one window period each (the MLP rule at II = K·G) plus an output row, which
    absorbs a following pool's row without output; a linear stage as in an MLP."""
    layers = network.layers
    depths = []
    for k, (layer, f) in enumerate(zip(layers, foldings)):
        if layer.kind == "maxpool":
            depths.append(None)
        elif layer.kind == "conv":
            period = -(-layer.in_features // f.lanes) * -(-layer.out_features // f.channels)
            own = _conv_dense_latency(layer, f)
            depths.append(max(2, -(-(own + 1) // period) + 1) + layer.out_shape[2])
        else:
            own = _linear_latency(network, k, f)
            depths.append(max(2, -(-(own + 1) // ii) + 1))
    return tuple(depths)


def build(m, engine, pixels):
    """The stages of a CNN engine after its PixelEncoder `pixels` (the engine's elaborate)."""
    from .dataflow import LayerStage
    layers = engine.network.layers
    previous, shape = pixels.o, None
    for k, (layer, folding, depth) in enumerate(zip(layers, engine.foldings,
                                                    engine.fifo_depths)):
        if layer.kind == "conv":
            stage = ConvStage(layer, folding, fifo_depth=depth, generator=ENGINE_GENERATOR)
            shape = layer.out_shape
        elif layer.kind == "maxpool":
            stage = PoolStage(layer, generator=ENGINE_GENERATOR)
            shape = layer.out_shape
        else:
            # The first linear layer reads the flatten's vector where it waits.
            hold, chunk_in = _holds_input(engine.network, k), False
            if hold:
                chunk_in = buffers_flatten(shape, folding)
                if chunk_in:
                    flatten = FlattenBuffer(shape, folding.lanes)
                    layer = position_major(layer, shape)
                else:
                    flatten = Flatten(shape)
                m.submodules[f"flatten{k}"] = flatten
                wiring.connect(m, previous, flatten.i)
                previous, shape = flatten.o, None
            stage = LayerStage(layer, folding, last=k == len(layers) - 1, fifo_depth=depth,
                               hold=hold, chunk_in=chunk_in,
                               chunk_span=CHUNK_SPAN if hold else None,
                               **linear_options(engine.network, k))
        m.submodules[f"stage{k}"] = stage
        wiring.connect(m, previous, stage.i)
        previous = stage.o
    return previous


def _generator_times(layer, arrivals):
    """Cycles at which a generator's windows are in its output register, from the cycles at
    which its inputs are offered (raster order), the output never held: a step a cycle at
    most, a real step not before its input is out of the input `RegisterSlice` (a cycle after
    it is offered)."""
    padding = layer.padding if layer.kind == "conv" else (0, 0)
    (h, w), (ph, pw) = layer.in_shape[1:], padding
    rows, cols = window_grid((h, w), layer.kernel, layer.stride, padding)
    emits = set(emission_steps((h, w), layer.kernel, layer.stride, padding))
    inputs, at, out = iter(arrivals), None, []
    for k, (u, v) in enumerate((u, v) for u in rows for v in cols):
        at = -1 if at is None else at + 1
        if ph <= u < ph + h and pw <= v < pw + w:
            at = max(at, next(inputs) + 1)
        if k in emits:
            out.append(at + 2)
    return out


def _stage_times(layer, folding, arrivals, latency):
    """Cycles at which a LayerStage's results are at its output, from the cycles at which its
    inputs are offered: it takes one every K·G cycles at most."""
    period = -(-layer.in_features // folding.lanes) * -(-layer.out_features // folding.channels)
    taken, out = None, []
    for at in arrivals:
        taken = at if taken is None else max(at, taken + period)
        out.append(taken + latency)
    return out


def latency(network, foldings):
    """Cycles from an image's first pixel handshake to its o.valid, the engine empty, the
    pixels offered back to back and o.ready high: the first image's items (positions,
    windows, vectors) followed through the stages in order, each stage taking an item when it
    is offered and the stage is free (a generator a step a cycle, a real step a cycle after
    its input is offered (the input slice), a window two cycles after its step; a LayerStage
    one every K·G cycles, its `stage_latency` later at its output, two cycles more through a
    window FIFO; a flatten's vector two cycles after its last position, a `FlattenBuffer`'s
    one, the stage after it holding its input).
    Output FIFOs are taken to be never full: true for the first image as `fifo_depths` sizes
    them, so the figure is exact where that holds (the tests check it)."""
    layers = network.layers
    c, h, w = layers[0].in_shape
    times = [0] * (h * w)     # every pixel offered from the start
    shape = None
    for k, (layer, f) in enumerate(zip(layers, foldings)):
        if layer.kind == "maxpool":
            times = _generator_times(layer, times)
        elif layer.kind == "conv":
            windows = _generator_times(layer, times)
            if window_fifo_depth(layer, f):
                windows = [t + 2 for t in windows]
            times = _stage_times(layer.dense, f, windows, _conv_dense_latency(layer, f))
        if layer.kind != "linear":
            shape = layer.out_shape
        else:
            if _holds_input(network, k):     # the flatten, then a stage that holds its input
                times = [max(times) + (1 if buffers_flatten(shape, f) else 2)]
            times = _stage_times(layer, f, times, _linear_latency(network, k, f))
    return times[-1]
