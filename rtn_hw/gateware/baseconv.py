"""Full-precision convolution stages: the fp32 and int8 baselines of RTN's `ConvStage`.

The same structure as the RTN convolution stage (rtn_hw.gateware.conv.ConvStage), with W-bit
elements instead of trits, so the two differ only in the arithmetic:

* the same `WindowGenerator` (line buffers in block RAM, zero padding: +0.0 or integer 0)
  turns positions of C_in elements in raster order into windows of N = C_in·kh·kw elements;
* a window register, cut into K = ⌈N/L⌉ chunks of L lanes (the last zero-filled), and a weight
  ROM in block RAM of one word per (chunk, group), G = ⌈P/C⌉ groups of C output channels;
* C dot-product units of L lanes (`Fp32Dot`: IEEE-754 binary32, RNE, a pairwise adder tree;
  `IntDot`: exact), L·C MACs per cycle, the RTN stage's L lanes × C channels;
* an accumulator per channel over the K chunks of each output: binary32 adds (`fp32_add`,
  RNE, three cycles) or exact integer adds (one cycle).

The loops run chunk-major, group-minor: for each window, chunk k of every group before chunk
k + 1, so the partial sums of one output come back to the adder G issues apart. A pipelined
adder of A cycles then accumulates without stalls when G ≥ A: the partial sum of (g, k) is
written to the group's register as it leaves the adder's last inner stage, and (g, k + 1)
reads it at the adder's input at least G advances later (bubbles only widen the gap). The fp32
stage therefore needs G ≥ 3 (checked). The first chunk adds to -0.0, the identity of binary32
addition (+0.0 would turn a -0.0 dot product into +0.0).

Output: one handshake per (position, group), in raster order of positions, groups in order:
the C channels' sums (binary32 bit patterns or signed integers), no bias or activation.
Golden model: `rtn_hw.model.baseline_conv`. One window takes K·G cycles, the RTN stage's
period, so at the same L and C both stages take the same cycles per image,
max(generator steps, H_out·W_out·K·G). While the core works on a window the generator
prepares the next one in its output register, so the core never waits when K·G covers the
longest run of window-less steps (an image's last and next first rows; true for the sweep's
3×3, 16 → 16 stage: K·G = 288).

The whole datapath stalls as one pipeline under backpressure (`Pipeline`): nothing is lost or
duplicated and the accumulator's spacing holds.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import _check
from ..model.baseline import int_dot_width
from ..model.baseline_conv import KINDS, element_width
from ..model.conv import conv_out_shape
from .conv import WindowGenerator, generator_steps, window_grid
from .fp32 import Fp32Dot, _check_stages, fp32_add, fp32_dot_latency
from .intdot import IntDot
from .pipeline import Pipeline

__all__ = ["BaselineConv", "NEG_ZERO", "weight_words"]

NEG_ZERO = 0x80000000       # binary32 -0.0: x + -0.0 = x for every x


def weight_words(kind, weights, lanes, channels):
    """The weight ROM's words, one per (chunk k, group g) at address k·G + g: channel c's L
    elements at bits c·L·E + l·E (E the element width), zero beyond N elements and P
    channels; fp32 weights are bit patterns, integers are stored two's complement."""
    width = element_width(kind)
    weights = np.asarray(weights)
    p = weights.shape[0]
    n = weights[0].size
    chunks, groups = -(-n // lanes), -(-p // channels)
    flat = np.zeros((groups * channels, chunks * lanes), dtype=np.int64)
    flat[:p, :n] = weights.reshape(p, n).astype(np.int64)
    if kind == "fp32":
        if flat.min() < 0 or flat.max() >= 1 << 32:
            raise ValueError("fp32 weights must be binary32 bit patterns (0 .. 2^32 - 1)")
    else:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        if flat.min() < lo or flat.max() > hi:
            raise ValueError(f"{kind} weights must lie in [{lo}, {hi}]")
    mask = (1 << width) - 1
    words = []
    for k in range(chunks):
        for g in range(groups):
            word = 0
            for c in range(channels):
                for lane, value in enumerate(flat[g * channels + c, k * lanes:(k + 1) * lanes]):
                    word |= (int(value) & mask) << ((c * lanes + lane) * width)
            words.append(word)
    return words


def _staged(pipe, view, name):
    """`pipe.stage` of a `lib.data` view, as a view of the same layout."""
    return data.View(view.shape(), pipe.stage(view.as_value(), name))


class BaselineConv(wiring.Component):
    """A full-precision convolution stage: positions (C_in elements) in raster order → the
    sums of C output channels per handshake, groups in order, positions in raster order.

    Parameters
    ----------
    kind : "fp32", "int8" or "int16"
    weights : array (P, C_in, kh, kw)
        Raw binary32 bit patterns (integers < 2^32) for fp32, signed integers otherwise.
    lanes, channels : int
        L elements per dot product, C dot-product units (L·C MACs per cycle).
    size : (H, W); stride, padding : pairs
    add_stages : int
        Cycles per binary32 add (1 to 3), in the dot products' trees and the accumulator.

    Ports: `i` stream of ArrayLayout(unsigned(E), C_in); `o` stream of
    ArrayLayout(unsigned(32) or signed(width), C), E the element width (32, 8 or 16).
    """

    def __init__(self, *, kind, weights, lanes, channels, size, stride=(1, 1), padding=(0, 0),
                 add_stages=3, name="conv"):
        if kind not in KINDS:
            raise ValueError(f"Convolution kind must be one of {', '.join(map(repr, KINDS))}, "
                             f"not {kind!r}")
        weights = np.asarray(weights)
        if weights.ndim != 4:
            raise ValueError(f"{name}: weights must be (P, C_in, kh, kw), not shape "
                             f"{weights.shape}")
        self._kind, self._name = kind, name
        self._lanes = _check.positive_int(lanes, "Lane count")
        self._channels = _check.positive_int(channels, "Channel count")
        p, cin, kh, kw = weights.shape
        n = cin * kh * kw
        if lanes > n:
            raise ValueError(f"{name}: lanes must be at most {n} (C_in·kh·kw), not {lanes}")
        if channels > p:
            raise ValueError(f"{name}: channels must be at most {p}, not {channels}")
        self._chunks, self._groups = -(-n // lanes), -(-p // channels)
        self._add_stages = add_stages if kind == "fp32" else 1
        if kind == "fp32":
            _check_stages(add_stages, "Adder")
            if self._groups < add_stages:
                raise ValueError(f"{name}: fp32 needs at least {add_stages} groups (one per "
                                 f"adder stage) to accumulate without stalls, not "
                                 f"{self._groups} ({p} channels / {channels})")
        self._words = weight_words(kind, weights, lanes, channels)
        # The generator is made in `elaborate` (a component made here and never elaborated,
        # as when the flow only reads a unit's figures, draws Amaranth's warning); its shape
        # is checked here, with its own one-line errors.
        self._window = (cin, tuple(size), (kh, kw), tuple(stride), tuple(padding))
        window_grid(size, (kh, kw), stride, padding, name)
        self._in_shape, self._out_shape = (cin,) + tuple(size), (p,) + conv_out_shape(
            size, (kh, kw), stride, padding)
        if kind == "fp32":
            value = unsigned(32)
        else:
            value = signed(int_dot_width(self._chunks * lanes, element_width(kind)))
        self._value = value
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(element_width(kind)), cin))),
            "o": Out(stream.Signature(data.ArrayLayout(value, channels))),
        })

    @property
    def kind(self):
        return self._kind

    @property
    def lanes(self):
        return self._lanes

    @property
    def channels(self):
        return self._channels

    @property
    def chunks(self):
        return self._chunks

    @property
    def groups(self):
        return self._groups

    @property
    def in_shape(self):
        return self._in_shape

    @property
    def out_shape(self):
        return self._out_shape

    @property
    def steps(self):
        """The window generator's steps per image."""
        return generator_steps(*self._window[1:])

    @property
    def cycles_per_image(self):
        """max(generator steps, H_out·W_out·K·G): the core takes a window every K·G cycles."""
        positions = self._out_shape[1] * self._out_shape[2]
        return max(self.steps, positions * self._chunks * self._groups)

    @property
    def macs_per_image(self):
        """Useful MACs of one image: H_out·W_out·N·P."""
        p, cin = self._out_shape[0], self._in_shape[0]
        kh, kw = self._window[2]
        return self._out_shape[1] * self._out_shape[2] * cin * kh * kw * p

    @property
    def latency(self):
        """Cycles from the input handshake that completes a window to its first result (group
        0) at o.valid, the stage empty (and no padding step delaying that input's step): the
        generator's, the take, (K - 1)·G issues before the group's last chunk, the two issue
        stages, the dot product, the accumulator."""
        if self._kind == "fp32":
            dot = fp32_dot_latency(self._lanes, add_stages=self._add_stages)
        else:
            dot = 1 + (self._lanes - 1).bit_length()        # IntDot.latency
        return (WindowGenerator.latency + 1 + (self._chunks - 1) * self._groups + 2 + dot
                + self._add_stages)

    def _dot(self):
        if self._kind == "fp32":
            return Fp32Dot(self._lanes, add_stages=self._add_stages)
        return IntDot(self._lanes, element_width(self._kind))

    def elaborate(self, platform):
        m = Module()
        cin, size, kernel, stride, padding = self._window
        m.submodules.window = gen = WindowGenerator(cin, size, kernel, stride, padding,
                                                    name=self._name,
                                                    element=element_width(self._kind))
        wiring.connect(m, wiring.flipped(self.i), gen.i)
        lanes, channels = self._lanes, self._channels
        chunks, groups = self._chunks, self._groups
        width = element_width(self._kind)
        chunk_bits = lanes * width
        tag = data.StructLayout({"first": 1, "last": 1, "grp": range(max(groups, 2))})

        # Issue: (chunk k, group g) per cycle, k outer, g inner, from the window register; the
        # next window is taken at the last issue, so the generator works one window ahead.
        win = Signal(chunks * chunk_bits, name="win")      # zero-filled beyond N elements
        busy = Signal(name="busy")
        k = Signal(range(max(chunks, 2)), name="chunk")
        g = Signal(range(max(groups, 2)), name="grp")
        waddr = Signal(range(max(chunks * groups, 2)), name="waddr")
        at_last = Signal(name="at_last")
        m.d.comb += at_last.eq((k == chunks - 1) & (g == groups - 1))
        issue = stream.Signature(unsigned(1)).create()
        feed = stream.Signature(unsigned(1)).create()
        pipe = Pipeline(m, issue, feed, 2, name="issue")
        step = Signal(name="step")
        m.d.comb += [issue.valid.eq(busy), step.eq(busy & pipe.advance),
                     gen.o.ready.eq(~busy | (step & at_last))]
        take = gen.o.valid & gen.o.ready
        with m.If(take):
            m.d.sync += win.eq(gen.o.payload.as_value())
        m.d.sync += busy.eq(take | (busy & ~(step & at_last)))
        with m.If(step):
            m.d.sync += [g.eq(Mux(g == groups - 1, 0, g + 1)),
                         waddr.eq(Mux(at_last, 0, waddr + 1))]
            with m.If(g == groups - 1):
                m.d.sync += k.eq(Mux(k == chunks - 1, 0, k + 1))

        now = Signal(tag, name="tag_issue")
        m.d.comb += [now.first.eq(k == 0), now.last.eq(k == chunks - 1), now.grp.eq(g)]
        a1 = pipe.stage(win.word_select(k, chunk_bits) if chunks > 1 else win, "a1")
        t1 = _staged(pipe, now, "tag1")
        # The weight word is read beside stage 1 and registered in the fabric (stage 2): a
        # block RAM's clock-to-output would otherwise start the multipliers' paths.
        m.submodules.weights = rom = Memory(
            shape=unsigned(channels * chunk_bits), depth=chunks * groups, init=self._words,
            attrs={"ram_style": "block", "rom_style": "block"})
        rport = rom.read_port()
        m.d.comb += [rport.addr.eq(waddr), rport.en.eq(pipe.advance)]
        a2, t2 = pipe.stage(a1, "a2"), _staged(pipe, t1, "tag2")
        w2 = pipe.stage(rport.data, "w2")

        dots = [self._dot() for _ in range(channels)]
        for c, dot in enumerate(dots):
            m.submodules[f"dot{c}"] = dot
            m.d.comb += [dot.i.valid.eq(feed.valid),
                         dot.i.payload.a.eq(a2), dot.i.payload.b.eq(w2[c * chunk_bits:
                                                                        (c + 1) * chunk_bits])]
        # The dot products advance together (same valid, same ready); their tags follow in a
        # shift register that moves when they do.
        m.d.comb += feed.ready.eq(dots[0].i.ready)
        tags = t2
        for d in range(dots[0].latency):
            nxt = Signal(tag, name=f"tag_dot{d}")
            with m.If(dots[0].i.ready):
                m.d.sync += nxt.eq(tags)
            tags = nxt

        # Accumulate: one register per group and channel; see the module docstring.
        into = stream.Signature(unsigned(1)).create()
        out = stream.Signature(unsigned(1)).create()
        acc = Pipeline(m, into, out, self._add_stages, name="acc")
        m.d.comb += [into.valid.eq(dots[0].o.valid)]
        for dot in dots:
            m.d.comb += dot.o.ready.eq(into.ready)
        valid, staged = [into.valid], [tags]
        for s in range(self._add_stages - 1):
            valid.append(acc.stage(valid[-1], f"acc_valid{s}"))
            staged.append(_staged(acc, staged[-1], f"acc_tag{s}"))
        # The item in the adder's last inner stage writes its sum to its group's register.
        write = Signal(name="acc_write")
        m.d.comb += write.eq(acc.advance & valid[-1])
        sums = []
        for c, dot in enumerate(dots):
            regs = Array(Signal(self._value, name=f"acc{c}_g{j}") for j in range(groups))
            if self._kind == "fp32":
                other = Mux(tags.first, NEG_ZERO, regs[tags.grp])
                total = fp32_add(m, dot.o.payload, other, stage=acc.stage,
                                 registers=self._add_stages - 1, name=f"acc{c}")
            else:
                total = Signal(self._value, name=f"acc{c}_sum")
                m.d.comb += total.eq(dot.o.payload + Mux(tags.first, 0, regs[tags.grp]))
            with m.If(write):
                m.d.sync += regs[staged[-1].grp].eq(total)
            sums.append(acc.stage(total, f"acc{c}_out"))
        last = _staged(acc, staged[-1], "acc_tag_out").last
        m.d.comb += [self.o.valid.eq(out.valid & last), out.ready.eq(self.o.ready | ~last),
                     self.o.payload.as_value().eq(Cat(*sums))]
        return m
