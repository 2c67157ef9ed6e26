"""The serial link (frame parser / responder) in the Amaranth simulator, on byte streams.

A small stand-in engine with the NetworkEngine's ports keeps these tests fast and independent
of the network; tests/test_board_sim.py runs the real engine behind the UART."""

import time
import types

import numpy as np
import pytest
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from helpers import assert_rejects
from rtn_hw import protocol as p
from rtn_hw.gateware.link import Link, SerialClassifier, crc16_next, result_layout
from rtn_hw.gateware.uart import UartRx, UartTx

FEATURES, CLASSES, PIXEL_MAX, LOGIT_WIDTH = 64, 10, 16, 24
TIMEOUT = 60


class FakeEngine(wiring.Component):
    """NetworkEngine's ports with a cheap function: logits[k] = 100003·(p[k] − p[10+k]),
    label = their first maximum (as the real engine's argmax), after `latency` cycles; holds
    `o` until taken."""

    features, classes, logit_width, lanes, channels = FEATURES, CLASSES, LOGIT_WIDTH, 1, 1
    network = types.SimpleNamespace(input=types.SimpleNamespace(pixel_max=PIXEL_MAX))

    def __init__(self, latency=7):
        self.latency = latency
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(5, FEATURES))),
            "o": Out(stream.Signature(result_layout(CLASSES, LOGIT_WIDTH))),
        })

    @staticmethod
    def reference(image):
        image = [int(v) for v in image]
        logits = [100003 * (image[k] - image[10 + k]) for k in range(CLASSES)]
        return logits.index(max(logits)), logits

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.latency + 1))
        held = Signal.like(self.i.payload)
        m.d.comb += self.i.ready.eq((timer == 0) & ~self.o.valid)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(self.i.payload), timer.eq(self.latency)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 1):
                m.d.sync += self.o.valid.eq(1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        for k in range(CLASSES):
            m.d.comb += self.o.payload.logits[k].eq(
                100003 * (held[k] - held[10 + k]).as_signed())
        # A chain of strict comparisons keeps the first maximum.
        best = self.o.payload.logits[0]
        label = 0
        for k in range(1, CLASSES):
            logit = self.o.payload.logits[k]
            label = Mux(logit > best, k, label)
            best = Mux(logit > best, logit, best)
        m.d.comb += self.o.payload.label.eq(label)
        return m


def run_link(script, *, seed, idle=0.3, stall=0.3, latency=7, engine=None):
    """Play `script` (bytes to send, or ints: cycles to wait with the line idle) into a Link
    with a FakeEngine (or `engine`); return every byte the link sent."""
    if engine is None:
        link = Link(features=FEATURES, classes=CLASSES, pixel_max=PIXEL_MAX,
                    logit_width=LOGIT_WIDTH, timeout=TIMEOUT, lanes=32, channels=4)
        engine = FakeEngine(latency)
    else:
        link = Link.for_engine(engine, timeout=TIMEOUT)
    m = Module()
    m.submodules.link = link
    m.submodules.engine = engine
    wiring.connect(m, link.image, engine.i)
    wiring.connect(m, engine.o, link.result)
    rng = np.random.default_rng(seed)
    sent = []
    state = {"done": False}

    async def host(ctx):
        for item in script:
            if isinstance(item, int):
                await ctx.tick().repeat(item)
                continue
            for byte in item:
                while rng.random() < idle:
                    await ctx.tick()
                ctx.set(link.rx.payload, byte)
                ctx.set(link.rx.valid, 1)
                await ctx.tick().until(link.rx.ready)
                ctx.set(link.rx.valid, 0)
        await ctx.tick().repeat(3 * TIMEOUT)
        await ctx.tick().until(~link.busy)
        state["done"] = True

    async def collector(ctx):
        while not state["done"]:
            ready = int(rng.random() >= stall)
            ctx.set(link.tx.ready, ready)
            if ready and ctx.get(link.tx.valid):
                sent.append(ctx.get(link.tx.payload))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(collector)
    sim.run()
    return bytes(sent)


def replies(raw, *, seqs=False, classes=CLASSES):
    """The decoded replies in `raw` (every byte must belong to a good frame); with `seqs`,
    (SEQ, reply) pairs."""
    decoder = p.FrameDecoder()
    frames = decoder.feed(raw)
    assert decoder.skipped == 0 and decoder.pending == 0
    decoded = [p.decode_reply(f, classes=classes) for f in frames]
    return list(zip([f.seq for f in frames], decoded)) if seqs else decoded


def classify(image, logits=False, seq=0):
    return p.encode_classify(image, features=FEATURES, pixel_max=PIXEL_MAX, logits=logits,
                             seq=seq)


@pytest.mark.parametrize("name, value, message", [
    ("features", 0, "Feature count must be an integer 1..65535, not 0"),
    ("pixels_per_handshake", 65, "Pixels per handshake must be an integer 1..64, not 65"),
    ("pixels_per_handshake", 5, "Pixels per handshake must divide the feature count 64, not 5"),
    ("classes", 64, "Class count must be an integer 1..63, not 64"),
    ("pixel_max", 16.0, "Pixel maximum must be an integer 1..255, not 16.0"),
    ("logit_width", 33, "Logit width must be an integer 1..32, not 33"),
    ("timeout", 0, "Timeout must be an integer 1..4294967295, not 0"),
    ("lanes", -1, "Lane count must be an integer 0..65535, not -1"),
])
def test_link_rejects(name, value, message):
    params = dict(features=64, classes=10, pixel_max=16, logit_width=24, timeout=10)
    params[name] = value
    assert_rejects(TypeError, message, lambda: Link(**params))


def test_crc16_next_matches_protocol(rng):
    crc, byte, out = Signal(16), Signal(8), Signal(16)
    m = Module()
    m.d.comb += out.eq(crc16_next(crc, byte))
    cases = [(0, 0), (0xFFFF, 0xFF), (0, 0x80), (0x8000, 0), (1, 0)]
    cases += [(rng.integers(0, 1 << 16), rng.integers(0, 256)) for _ in range(200)]

    async def bench(ctx):
        for c, b in cases:
            ctx.set(crc, int(c))
            ctx.set(byte, int(b))
            assert ctx.get(out) == p.crc16([int(b)], int(c))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_link_answers_images_and_info(rng, seed):
    """INFO, then images as CLASSIFY and LOGITS (corner images first), with random input gaps
    and output stalls: every reply equals the protocol encoder's for the reference result."""
    images = [np.zeros(FEATURES, int), np.full(FEATURES, PIXEL_MAX)]
    images += [rng.integers(0, PIXEL_MAX + 1, FEATURES) for _ in range(10)]
    script = [p.encode_info(seq=0xC3)]
    expected = [(0xC3, p.Info(p.VERSION, FEATURES, CLASSES, PIXEL_MAX, LOGIT_WIDTH, 32, 4))]
    for k, image in enumerate(images):
        label, logits = FakeEngine.reference(image)
        with_logits = k % 2 == 1
        seq = [0, 255, p.ESC, p.SYNC][k % 4] if k < 4 else k
        script.append(classify(image, with_logits, seq=seq))
        expected.append((seq, p.Prediction(label, tuple(logits) if with_logits else None)))
    raw = run_link(script, seed=seed)
    assert raw.count(p.ESC) >= 2 and raw.count(p.SYNC) == len(expected)  # stuffed replies
    assert replies(raw, seqs=True) == expected


def test_link_errors_then_recovers(rng, seed):
    """Every error case gets exactly its error reply, and the good frame after it is answered."""
    image = rng.integers(0, PIXEL_MAX + 1, FEATURES)
    good = classify(image, logits=True, seq=0x5A)
    label, logits = FakeEngine.reference(image)
    ok = (0x5A, p.Prediction(label, tuple(logits)))
    body = bytes([p.Command.LOGITS, 0x5A, FEATURES]) + bytes(int(v) for v in image)
    crc = p.crc16(body)

    def framed(body, crc):        # a frame as the encoder would send it, CRC given
        return bytes([p.SYNC]) + p.stuff(body + crc.to_bytes(2, "big"))

    bad_crc_high, bad_crc_low = framed(body, crc ^ 0x8000), framed(body, crc ^ 0x0001)
    flipped_pixel = framed(body[:9] + bytes([body[9] ^ 0x04]) + body[10:], crc)
    flipped_seq = framed(body[:1] + bytes([0x7A]) + body[2:], crc)
    noise = rng.integers(0, 256, 50, dtype=np.uint8)
    noise[(noise == p.SYNC) | (noise == p.ESC)] = 0
    bad_pixel = p.encode_frame(p.Command.CLASSIFY, bytes([0] * 5 + [17] + [0] * 58), seq=9)
    E = p.ErrorCode
    # (frame, expected error, the SEQ its reply carries)
    cases = [
        (bytes(bad_crc_high), E.BAD_CHECKSUM, 0x5A),
        (bytes(bad_crc_low), E.BAD_CHECKSUM, 0x5A),
        (bytes(flipped_pixel), E.BAD_CHECKSUM, 0x5A),
        (bytes(flipped_seq), E.BAD_CHECKSUM, 0x7A),
        (p.encode_frame(p.Command.CLASSIFY, bytes(63), seq=1), E.BAD_LENGTH, 1),
        (p.encode_frame(p.Command.INFO, b"\x00", seq=2), E.BAD_LENGTH, 2),
        (p.encode_frame(0x42, b"\x01\x02", seq=3), E.UNKNOWN_COMMAND, 3),
        (p.encode_frame(0x00, b"", seq=4), E.UNKNOWN_COMMAND, 4),
        (bad_pixel, E.PIXEL_RANGE, 9),
        (good[:40], E.TIMEOUT, 0x5A),
        (good[:-1], E.TIMEOUT, 0x5A),
        (good[:3], E.TIMEOUT, 0x5A),
        (good[:2], E.TIMEOUT, 0),
        (good[:1], E.TIMEOUT, 0),
        (bytes([0x00, 0x13, 0x37]), E.BAD_SYNC, 0),
        (noise.tobytes(), E.BAD_SYNC, 0),
        (bytes([0x00, 0x13, p.SYNC, 0x37]), E.TIMEOUT, 0),     # a SYNC in noise starts a frame
        (good[:20] + bytes([p.ESC]), E.TIMEOUT, 0x5A),         # cut after an ESC
    ]
    script, expected = [], []
    for frame, code, seq in cases:
        script += [frame, 2 * TIMEOUT, good]
        expected += [(seq, p.ErrorReply(code)), ok]
    raw = run_link(script, seed=seed)
    assert replies(raw, seqs=True) == expected


def test_link_answers_the_frame_that_cuts_another_short(rng, seed):
    """A SYNC always starts a frame: the good frame right behind garbage, a truncated frame
    or a dangling ESC (no gap) is answered, and what it cut short gets no reply."""
    image = rng.integers(0, PIXEL_MAX + 1, FEATURES)
    good = classify(image, seq=0x21)
    label, _ = FakeEngine.reference(image)
    script = [b"\x00\x13\x37" + good, good[:30] + good, good[:12] + bytes([p.ESC]) + good,
              bytes([p.SYNC, 0x02]) + good]
    raw = run_link(script, seed=seed)
    assert replies(raw, seqs=True) == [(0x21, p.Prediction(label))] * 4


def test_link_error_pulse_and_busy(seed):
    """`error` pulses once per error reply; `busy` is low once everything is answered."""
    link = Link(features=FEATURES, classes=CLASSES, pixel_max=PIXEL_MAX,
                logit_width=LOGIT_WIDTH, timeout=TIMEOUT)
    pulses = []

    async def bench(ctx):
        ctx.set(link.tx.ready, 1)
        assert ctx.get(link.busy) == 0
        for byte in p.encode_frame(0x42):
            ctx.set(link.rx.payload, byte)
            ctx.set(link.rx.valid, 1)
            await ctx.tick()
        ctx.set(link.rx.valid, 0)
        for _ in range(20):
            pulses.append(ctx.get(link.error))
            await ctx.tick()
        assert ctx.get(link.busy) == 0

    sim = Simulator(link)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert sum(pulses) == 1


def run_pins(frames, *, fifo_depth, divisor=4, timeout=400):
    """Send `frames` back to back on SerialClassifier's rx pin (no waiting for replies) from a
    host-side UartTx; return what a host-side UartRx decodes from its tx pin."""
    dut = SerialClassifier(FakeEngine(), divisor=divisor, timeout=timeout,
                           fifo_depth=fifo_depth)
    m = Module()
    m.submodules.dut = dut
    m.submodules.host_tx = host_tx = UartTx(divisor=divisor)
    m.submodules.host_rx = host_rx = UartRx(divisor=divisor)
    m.d.comb += [dut.rx.eq(host_tx.tx), host_rx.rx.eq(dut.tx), host_rx.o.ready.eq(1)]
    got = []

    async def host(ctx):
        for byte in b"".join(frames):
            ctx.set(host_tx.i.payload, byte)
            ctx.set(host_tx.i.valid, 1)
            await ctx.tick().until(host_tx.i.ready)
        ctx.set(host_tx.i.valid, 0)
        quiet = 0
        while quiet < 3 * timeout:
            await ctx.tick()
            quiet = 0 if ctx.get(dut.busy) or ctx.get(host_rx.busy) else quiet + 1

    async def listener(ctx):
        async for _, _, valid, byte in ctx.tick().sample(host_rx.o.valid, host_rx.o.payload):
            if valid:
                got.append(byte)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_process(listener)
    sim.run()
    return bytes(got)


def test_serial_classifier_fifo_keeps_pipelined_requests():
    """With a receive FIFO, requests sent without waiting for replies are all answered; the
    default (no FIFO) drops what arrives during a reply and answers with an error, then
    recovers."""
    info = p.Info(p.VERSION, FEATURES, CLASSES, PIXEL_MAX, LOGIT_WIDTH, 1, 1)
    image = np.arange(FEATURES) % (PIXEL_MAX + 1)
    label, _ = FakeEngine.reference(image)
    frames = [p.encode_info(), p.encode_info(), classify(image)]
    assert replies(run_pins(frames, fifo_depth=128)) == [info, info, p.Prediction(label)]
    seen = replies(run_pins(frames, fifo_depth=0))
    assert seen[0] == info and len(seen) >= 2
    assert all(isinstance(r, p.ErrorReply) for r in seen[1:])
    assert replies(run_pins([p.encode_info()], fifo_depth=0)) == [info]


class StreamEngine(wiring.Component):
    """A CNN engine's ports: `pixels_per_handshake` pixels a handshake in image order (taken
    on alternate cycles), logits[k] = the sum of (j + 1)·p[j] over the pixels j ≡ k mod
    classes, so a pixel out of place changes the result; holds `o` until taken."""

    classes, logit_width, lanes, channels = 4, 24, 0, 0
    network = types.SimpleNamespace(input=types.SimpleNamespace(pixel_max=255))

    def __init__(self, features, pixels_per_handshake):
        self.features, self.pixels_per_handshake = features, pixels_per_handshake
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(8, pixels_per_handshake))),
            "o": Out(stream.Signature(result_layout(self.classes, self.logit_width))),
        })

    @classmethod
    def reference(cls, image):
        logits = [0] * cls.classes
        for j, pixel in enumerate(int(v) for v in image):
            logits[j % cls.classes] += (j + 1) * pixel
        return logits.index(max(logits)), logits

    def elaborate(self, platform):
        m = Module()
        per, classes = self.pixels_per_handshake, self.classes
        position = Signal(range(self.features + 1))
        toggle = Signal()
        acc = [Signal(signed(self.logit_width)) for _ in range(classes)]
        m.d.sync += toggle.eq(~toggle)
        m.d.comb += self.i.ready.eq(toggle & ~self.o.valid)
        with m.If(self.i.valid & self.i.ready):
            sums = list(acc)
            for q in range(per):
                j = position + q
                for k in range(classes):
                    sums[k] = Mux(j % classes == k, sums[k] + (j + 1) * self.i.payload[q],
                                  sums[k])
            m.d.sync += [a.eq(v) for a, v in zip(acc, sums)]
            m.d.sync += position.eq(position + per)
            with m.If(position + per == self.features):
                m.d.sync += [self.o.valid.eq(1), position.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0)] + [a.eq(0) for a in acc]
        best, label = acc[0], 0
        for k in range(1, classes):
            label = Mux(acc[k] > best, k, label)
            best = Mux(acc[k] > best, acc[k], best)
        m.d.comb += [self.o.payload.label.eq(label)]
        m.d.comb += [self.o.payload.logits[k].eq(acc[k]) for k in range(classes)]
        return m


@pytest.mark.parametrize("features, per", [(300, 1), (300, 3), (520, 1)])
def test_link_takes_a_large_image_in_parts(features, per, rng, seed):
    """An image of more than 255 pixels in PARTs (any split, the last request empty or not),
    handed to an engine `per` pixels a handshake; every error empties the held image, and
    a resend after it is answered. Pixels include SYNC and ESC (stuffed)."""
    engine = StreamEngine(features, per)
    classes = engine.classes
    E = p.ErrorCode
    images = [rng.integers(0, 256, features) for _ in range(4)]
    images[0][:4] = [p.SYNC, p.ESC, 0, 255]
    script, expected = [p.encode_info(seq=1)], [
        (1, p.Info(p.VERSION, features, classes, 255, 24, 0, 0))]
    seq = 1

    def part(pixels, held):
        nonlocal seq
        seq += 1
        script.append(p.encode_part(bytes(int(v) for v in pixels), seq=seq))
        expected.append((seq, p.PartAck(held) if held is not None else None))

    def request(pixels, image=None, *, logits=False, error=None):
        nonlocal seq
        seq += 1
        command = p.Command.LOGITS if logits else p.Command.CLASSIFY
        script.append(p.encode_frame(command, bytes(int(v) for v in pixels), seq=seq))
        if error is not None:
            expected.append((seq, p.ErrorReply(error)))
        else:
            label, values = StreamEngine.reference(image)
            expected.append((seq, p.Prediction(label, tuple(values) if logits else None)))

    def send(image, cuts, *, logits=False):
        """PARTs ending at each cut, then the request with the rest."""
        start = 0
        for cut in cuts:
            part(image[start:cut], cut)
            start = cut
        request(image[start:], image, logits=logits)

    full = list(range(255, features, 255))                    # the host's split
    send(images[0], full)
    send(images[1], [100, 255] + [355] * (features > 400) + [features - 30], logits=True)
    send(images[2], [1, *range(200, features - 1, 200), features - 1, features])  # LEN 0 last
    # An INFO between parts empties the held image: the rest is then too short.
    part(images[3][:200], 200)
    seq += 1
    script.append(p.encode_info(seq=seq))
    expected.append((seq, expected[0][1]))
    request(images[3][200:455], error=E.BAD_LENGTH)
    # A PART with a bad CRC: the board answers BAD_CHECKSUM and drops what it held; the
    # host sends the image again from the start.
    part(images[3][:255], 255)
    seq += 1
    body = bytes([p.Command.PART, seq, 10]) + bytes(int(v) for v in images[3][255:265])
    script.append(bytes([p.SYNC]) + p.stuff(body + (p.crc16(body) ^ 1).to_bytes(2, "big")))
    expected.append((seq, p.ErrorReply(E.BAD_CHECKSUM)))
    send(images[3], full)
    # Bad lengths: a request too short for what is held, a PART past the image, an empty
    # PART, a whole image's first 255 pixels as a request.
    part(images[0][:255], 255)
    request(images[0][:10], error=E.BAD_LENGTH)
    for cut in full:
        part(images[0][cut - 255:cut], cut)
    seq += 1
    script.append(p.encode_part(bytes(features - full[-1] + 1), seq=seq))
    expected.append((seq, p.ErrorReply(E.BAD_LENGTH)))
    seq += 1
    script.append(p.encode_frame(p.Command.PART, b"", seq=seq))
    expected.append((seq, p.ErrorReply(E.BAD_LENGTH)))
    request(images[0][:255], error=E.BAD_LENGTH)
    # A PART cut short by the next frame: what was held is gone, the next PART counts from 0.
    part(images[1][:255], 255)
    seq += 1
    script.append(p.encode_part(bytes(int(v) for v in images[1][255:265]), seq=seq)[:8])
    send(images[1], full)
    raw = run_link(script, seed=seed, engine=engine, idle=0.1)
    assert replies(raw, seqs=True, classes=classes) == [e for e in expected if e[1] is not None]


def _cnn_through_link(network, foldings, images, seed, split):
    """`images` through a Link and a real CNN DataflowEngine (one pixel a handshake): the
    first whole in one CLASSIFY when it fits, the others in PARTs ending at `split`, with
    LOGITS; replies against the golden network."""
    from rtn_hw.gateware.dataflow import DataflowEngine
    engine = DataflowEngine(network, foldings)
    features, pixel_max = network.input.features, network.input.pixel_max
    logits, classes = network.forward(images)
    script, expected = [], []
    for k, image in enumerate(images):
        pixels = p.image_bytes(image, features=features, pixel_max=pixel_max)
        cuts = [] if k == 0 and features <= p.MAX_PAYLOAD else split
        start = 0
        for cut in cuts:
            script.append(p.encode_part(pixels[start:cut], seq=len(script) + 1))
            expected.append((len(script), p.PartAck(cut)))
            start = cut
        command = p.Command.LOGITS if k else p.Command.CLASSIFY
        script.append(p.encode_frame(command, pixels[start:], seq=len(script) + 1))
        expected.append((len(script), p.Prediction(
            int(classes[k]), tuple(int(v) for v in logits[k]) if k else None)))
    started = time.perf_counter()
    raw = run_link(script, seed=seed, engine=engine, idle=0.1, stall=0.1)
    print(f"{len(images)} images, {time.perf_counter() - started:.1f} s")
    assert replies(raw, seqs=True, classes=engine.classes) == expected


def test_link_runs_the_digits_cnn_engine(rng, seed):
    """The digits CNN's engine (unfolded, II 81) behind the link: an image in one CLASSIFY,
    one in two PARTs and a LOGITS; the golden network's classes and logits."""
    from rtn_hw import weights
    from rtn_hw.gateware.dataflow import unfolded
    network = weights.load(weights.WEIGHTS_DIR / "rtn_digits_cnn.json")
    images, _ = weights.load_digits_test()
    images = images[np.sort(rng.choice(len(images), 2, replace=False))]
    _cnn_through_link(network, unfolded(network), images, seed, [20, 50])


@pytest.mark.slow
def test_link_runs_the_mnist_cnn_engine(rng, seed):
    """The MNIST CNN's engine (the board's default folding, II 841) behind the link: two test
    images of 784 pixels, each in three PARTs and a last request."""
    from rtn_hw import weights
    from rtn_hw.demo import default_foldings
    network = weights.load(weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json")
    images, _ = weights.load_mnist5k_test()
    images = images[np.sort(rng.choice(len(images), 2, replace=False))]
    _cnn_through_link(network, default_foldings(network), images, seed, [255, 510, 765])


class _StreamNet:
    """StreamEngine's function as a network for tests/board_model.ModelBoard."""

    def __init__(self, features):
        last = types.SimpleNamespace(out_features=StreamEngine.classes,
                                     out_fmt=types.SimpleNamespace(width=StreamEngine.logit_width))
        self.input = types.SimpleNamespace(features=features, pixel_max=255)
        self.layers = [last]

    def forward(self, images):
        label, logits = StreamEngine.reference(images[0])
        return np.array([logits]), np.array([label])


@pytest.mark.parametrize("per", [1, 2])
def test_link_matches_the_model_board_on_random_frames(per, rng, seed):
    """Random PARTs (mostly fitting, some too long or empty), requests of the right or a
    wrong length, INFOs, unknown commands and PARTs with a bad CRC, as one stream: every reply
    of the link equals the protocol model's (tests/board_model.ModelBoard, which keeps the
    held pixels the same way)."""
    from board_model import ModelBoard
    features = 300
    board = ModelBoard(_StreamNet(features), lanes=0, channels=0)
    script, expected = [], []
    kinds = ["part", "rest", "info", "long", "unknown", "crc"]
    interrupted, resumed = False, 0     # a PART or request right after an image was emptied
    for k in range(80):
        seq = k + 1
        held = len(board.held)
        left = features - held
        kind = kinds[rng.choice(len(kinds), p=[0.4, 0.25, 0.1, 0.1, 0.05, 0.1])]
        if kind in ("part", "rest"):
            resumed += interrupted
            interrupted = False
        elif held:
            interrupted = True
        size = {"part": int(rng.integers(1, min(255, left) + 1)) if left else 0,
                "rest": left if left <= 255 else int(rng.integers(0, 256)),
                "long": int(rng.integers(min(left + 1, 255), 256)) * int(rng.random() < 0.7)
                }.get(kind, 0)                  # "long": a PART too long or empty
        pixels = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        if kind == "crc":
            body = bytes([p.Command.PART, seq, 5]) + bytes(5)
            script.append(bytes([p.SYNC]) + p.stuff(body + (p.crc16(body) ^ 0x100).to_bytes(
                2, "big")))
            board.held = b""
            expected.append(p.decode_frames(p.encode_error_reply(p.ErrorCode.BAD_CHECKSUM,
                                                                 seq=seq))[0])
            continue
        command = {"part": p.Command.PART, "long": p.Command.PART, "info": p.Command.INFO,
                   "unknown": 0x05}.get(kind, p.Command.LOGITS if k % 3 else p.Command.CLASSIFY)
        frame = p.encode_frame(command, pixels, seq=seq)
        script.append(frame)
        expected.append(p.decode_frames(board.answer(p.decode_frames(frame)[0]))[0])
    print(f"{resumed} PARTs or requests right after an interruption")
    assert resumed >= 3
    engine = StreamEngine(features, per)
    raw = run_link(script, seed=seed, engine=engine, idle=0.05, stall=0.1)
    got = p.FrameDecoder().feed(raw)
    kinds = [f.command for f in expected]
    assert kinds.count(p.Command.PART | p.REPLY) >= 5 and (
        kinds.count(p.Command.CLASSIFY | p.REPLY) + kinds.count(p.Command.LOGITS | p.REPLY)) >= 2
    assert got == expected
