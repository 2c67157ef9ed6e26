"""The board's serial link: frame parser and responder between UART bytes and the engine.

`Link` speaks the protocol of `rtn_hw.protocol` (docs/protocol.md) on two byte streams and
hands images to a network engine: a whole image per handshake (NetworkEngine, an MLP's
DataflowEngine) or `pixels_per_handshake` pixels at a time (a CNN's DataflowEngine).
`SerialClassifier` is the whole board logic with the pins as ports: UartRx → (optional FIFO)
→ Link ⇄ engine, Link → UartTx. The board tops in boards/ only add the platform's clock, pins
and LED stretching.
"""

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out, connect
from amaranth.utils import bits_for

from .. import protocol
from .uart import UartRx, UartTx, check_divisor

__all__ = ["Link", "SerialClassifier", "crc16_next"]


def crc16_next(crc, byte):
    """The CRC-16 register after `byte` (rtn_hw.protocol.crc16), as a combinational
    expression: one step is linear over GF(2) in the 16 bits of crc ^ (byte << 8), so each
    output bit is the XOR of the bits whose unit vectors set it (a bit-serial Mux chain would
    grow exponentially)."""
    c = Cat(crc[:8], crc[8:] ^ byte)
    bits = []
    for out in range(16):
        taps = [k for k in range(16) if protocol.crc16(b"\x00", 1 << k) >> out & 1]
        bits.append(Cat(*(c[k] for k in taps)).xor())
    return Cat(*bits)


def _check_int(value, what, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TypeError(f"{what} must be an integer {low}..{high}, not {value!r}")
    return value


def result_layout(classes, logit_width):
    return data.StructLayout({
        "logits": data.ArrayLayout(signed(logit_width), classes),
        "label": unsigned(bits_for(classes - 1)),
    })


class Link(wiring.Component):
    """Parse request frames from `rx`, run images through the engine, reply on `tx`.

    Ports: `rx` (bytes in), `tx` (bytes out), `image` (to the engine's `i`), `result` (from
    the engine's `o`), `busy` (a frame is being received, computed or answered), `error`
    (one-cycle pulse as an error reply starts).

    Every frame is delimited by its LEN byte, so a bad command, length, checksum or pixel is
    answered once the whole frame (LEN payload bytes and the CRC) is in. Bytes after SYNC are
    stuffed (rtn_hw.protocol): an ESC byte makes the next one count as itself XOR 0x20, and a
    SYNC byte always starts a new frame, cutting short any frame in progress (which gets no
    reply). A byte outside a frame (not SYNC) starts a discard that lasts until the line has
    been idle for `timeout` cycles, then one BAD_SYNC reply, or until a SYNC. A frame that
    stops for `timeout` cycles gets a TIMEOUT reply. Either way the next good frame is
    answered. Every reply carries the SEQ byte of the
    frame it answers (0 for BAD_SYNC, or a TIMEOUT before SEQ came). The reply to an image is
    read straight from the engine's held output, which is released (`result.ready`) after the
    last CRC byte.

    An image of more than 255 pixels comes in PART frames, then a CLASSIFY or LOGITS frame
    with the rest; `held` counts the pixels in, and any reply but a PART acknowledgment (and
    any frame cut short) empties it. Pixels shift into one register from the top, so the
    image's first pixel ends as element 0. `image` carries `pixels_per_handshake` pixels (a
    divisor of `features`; default all): the register's bottom ones, shifted down after each
    handshake (for one pixel, the very shift that receives).
    """

    def __init__(self, *, features, classes, pixel_max, logit_width, timeout, lanes=0,
                 channels=0, pixels_per_handshake=None):
        self._features = _check_int(features, "Feature count", 1, protocol.MAX_FEATURES)
        if pixels_per_handshake is None:
            pixels_per_handshake = features
        self._per_handshake = _check_int(pixels_per_handshake, "Pixels per handshake", 1,
                                         features)
        if features % pixels_per_handshake:
            raise TypeError(f"Pixels per handshake must divide the feature count {features}, "
                            f"not {pixels_per_handshake!r}")
        # A LOGITS reply (1 + 4 bytes a class) must fit the 8-bit LEN.
        self._classes = _check_int(classes, "Class count", 1,
                                   (protocol.MAX_PAYLOAD - 1) // protocol.LOGIT_BYTES)
        self._pixel_max = _check_int(pixel_max, "Pixel maximum", 1, 255)
        self._logit_width = _check_int(logit_width, "Logit width", 1, 8 * protocol.LOGIT_BYTES)
        self._timeout = _check_int(timeout, "Timeout", 1, 2**32 - 1)
        self._lanes = _check_int(lanes, "Lane count", 0, 0xFFFF)
        self._channels = _check_int(channels, "Channel count", 0, 0xFFFF)
        self._pixel_bits = bits_for(pixel_max)
        super().__init__({
            "rx": In(stream.Signature(unsigned(8))),
            "tx": Out(stream.Signature(unsigned(8))),
            "image": Out(stream.Signature(
                data.ArrayLayout(unsigned(self._pixel_bits), self._per_handshake))),
            "result": In(stream.Signature(result_layout(classes, logit_width))),
            "busy": Out(1),
            "error": Out(1),
        })

    @classmethod
    def for_engine(cls, engine, *, timeout):
        return cls(features=engine.features, classes=engine.classes,
                   pixel_max=engine.network.input.pixel_max, logit_width=engine.logit_width,
                   timeout=timeout, lanes=getattr(engine, "lanes", 0),
                   channels=getattr(engine, "channels", 0),    # 0: per-layer (dataflow)
                   pixels_per_handshake=getattr(engine, "pixels_per_handshake",
                                                engine.features))

    features = property(lambda self: self._features)
    classes = property(lambda self: self._classes)
    pixel_max = property(lambda self: self._pixel_max)
    pixel_bits = property(lambda self: self._pixel_bits)
    logit_width = property(lambda self: self._logit_width)
    timeout = property(lambda self: self._timeout)
    lanes = property(lambda self: self._lanes)
    channels = property(lambda self: self._channels)
    pixels_per_handshake = property(lambda self: self._per_handshake)

    @property
    def info(self):
        """The INFO reply this link sends."""
        return protocol.Info(protocol.VERSION, self._features, self._classes, self._pixel_max,
                             self._logit_width, self._lanes, self._channels)

    def elaborate(self, platform):
        m = Module()
        P, E = protocol, protocol.ErrorCode
        logit_bytes = P.LOGIT_BYTES

        raw = self.rx.payload
        escaped = Signal()           # the last byte taken was an ESC
        byte = Signal(8)             # the byte a received one stands for, once unstuffed
        is_sync = Signal()
        m.d.comb += [byte.eq(Mux(escaped, raw ^ P.ESCAPE_XOR, raw)), is_sync.eq(raw == P.SYNC)]
        stuffed = Signal()           # the ESC before a stuffed reply byte has gone out
        # One CRC register and one CRC network serve both directions: a request's CRC is
        # checked before its reply starts.
        crc = Signal(16)
        crc_in = Signal(8)
        crc_next = Signal(16)
        m.d.comb += [crc_in.eq(byte), crc_next.eq(crc16_next(crc, crc_in))]
        command = Signal(8)
        seq = Signal(8)              # the request's SEQ, echoed in its reply (0 if none came)
        length = Signal(8)
        count = Signal(8)
        pending = Signal(8)          # error code known before the CRC arrives (0: none)
        pixel_bad = Signal()
        pixels = Signal(self._features * self._pixel_bits, reset_less=True)
        held = Signal(range(self._features + 1))   # pixels of the image in `pixels`
        shift_in = Signal()          # take `byte` into the top of `pixels`
        shift_out = Signal()         # the engine took the bottom pixels_per_handshake
        idle = Signal(range(self._timeout + 1))

        # Reply state: what to send, the byte index in the payload.
        kind = Signal(3)             # 0 error, 1 info, 2 class, 3 class and logits, 4 part
        code = Signal(8)
        index = Signal(8)
        word = Signal(range(self._classes))
        part = Signal(range(logit_bytes))
        KIND_ERROR, KIND_INFO, KIND_CLASS, KIND_LOGITS, KIND_PART = range(5)

        reply_command = Signal(8)
        reply_length = Signal(8)
        m.d.comb += [
            reply_command.eq(Mux(kind == KIND_ERROR, P.Command.ERROR,
                                 Cat(kind, C(0, 4), C(1, 1)))),
            reply_length.eq(Mux(kind == KIND_INFO, P.INFO_BYTES, Mux(
                kind == KIND_LOGITS, 1 + logit_bytes * self._classes,
                Mux(kind == KIND_PART, P.PART_BYTES, 1)))),
        ]
        info = self.info
        info_bytes = [info.version, info.features & 0xFF, info.classes, info.pixel_max,
                      info.logit_width, info.lanes & 0xFF, info.lanes >> 8,
                      info.channels & 0xFF, info.channels >> 8, info.features >> 8]
        payload_byte = Signal(8)
        label = self.result.payload.label
        with m.Switch(kind):
            with m.Case(KIND_ERROR):
                m.d.comb += payload_byte.eq(code)
            with m.Case(KIND_INFO):
                with m.Switch(index):
                    for k, value in enumerate(info_bytes):
                        with m.Case(k):
                            m.d.comb += payload_byte.eq(value)
            with m.Case(KIND_PART):
                m.d.comb += payload_byte.eq(Mux(index == 0, held[:8], held[8:]))
            with m.Default():
                # Label, then the logits as sign-extended 32-bit little-endian words; `word`
                # and `part` count along, so the selection is a 10:1 then 4:1 mux rather
                # than a 41-way decode of `index`.
                logit = self.result.payload.logits[word]
                extended = Cat(logit, logit[-1].replicate(8 * logit_bytes - self._logit_width))
                m.d.comb += payload_byte.eq(Mux(index == 0, label,
                                                extended.word_select(part, 8)))

        at_timeout = idle == self._timeout
        m.d.sync += self.error.eq(0)

        def start_reply(what, error_code=0):
            m.d.sync += [kind.eq(what), code.eq(error_code), index.eq(0), word.eq(0), part.eq(0)]
            if what != KIND_PART:
                m.d.sync += held.eq(0)
            if what == KIND_ERROR:
                m.d.sync += self.error.eq(1)
            m.next = "SYNC"

        # Stuffing after SYNC, once for every reply byte (the states only pick `tx_byte`): a
        # SYNC or ESC byte goes out as ESC, then the byte XOR 0x20.
        tx_byte = Signal(8)
        tx_escape = Signal()
        tx_stuffed = Signal(8)
        tx_done = Signal()           # tx_byte is out (after its ESC, if it needs one)
        m.d.comb += [
            tx_escape.eq((tx_byte == P.SYNC) | (tx_byte == P.ESC)),
            tx_stuffed.eq(Mux(tx_escape, Mux(stuffed, tx_byte ^ P.ESCAPE_XOR, P.ESC), tx_byte)),
            tx_done.eq(self.tx.ready & ~(tx_escape & ~stuffed)),
        ]

        def transmit(value):
            """Offer `value` on tx, stuffed; returns the condition under which it is out."""
            m.d.comb += [tx_byte.eq(value), self.tx.valid.eq(1), self.busy.eq(1),
                         self.tx.payload.eq(tx_stuffed)]
            with m.If(self.tx.ready):
                m.d.sync += stuffed.eq(tx_escape & ~stuffed)
            return tx_done

        def send(value, next_state):
            """Send `value`, stuffed; the CRC follows every byte sent after SYNC. Returns the
            condition under which it is out."""
            done = transmit(value)
            m.d.comb += crc_in.eq(tx_byte)
            with m.If(done):
                m.d.sync += crc.eq(crc_next)
                m.next = next_state
            return done

        # Cycles since the last byte was taken; only the frame and discard states look at it.
        with m.If(self.rx.valid & self.rx.ready):
            m.d.sync += idle.eq(0)
        with m.Elif(~at_timeout):
            m.d.sync += idle.eq(idle + 1)

        def leave_for_sync():
            """A SYNC cuts the frame or discard short: leave it unread for IDLE, which starts
            the next frame with it (one place that starts frames keeps the logic small)."""
            m.d.comb += self.rx.ready.eq(~is_sync)
            with m.If(self.rx.valid & is_sync):
                # Its pixels (if any) are in the register: the held image is lost too.
                m.d.sync += held.eq(0)
                m.next = "IDLE"

        def receive():
            """In a frame: take a byte; an ESC is only noted. Returns the condition under which
            `byte` is the frame's next byte (unstuffed). Times out when the line stays quiet."""
            m.d.comb += self.busy.eq(1)
            leave_for_sync()
            with m.If(self.rx.valid):
                m.d.sync += escaped.eq((raw == P.ESC) & ~escaped)
            with m.Elif(at_timeout):
                start_reply(KIND_ERROR, E.TIMEOUT)
            return self.rx.valid & ~is_sync & ((raw != P.ESC) | escaped)

        def header(target, next_state):
            """Take one header byte into `target` (and the CRC)."""
            with m.If(receive()):
                m.d.sync += [target.eq(byte), crc.eq(crc_next)]
                m.next = next_state

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    with m.If(is_sync):
                        m.d.sync += [crc.eq(P.CRC_INIT), seq.eq(0), pending.eq(0),
                                     pixel_bad.eq(0), count.eq(0), escaped.eq(0)]
                        m.next = "COMMAND"
                    with m.Else():
                        m.d.sync += seq.eq(0)
                        m.next = "DISCARD"
            with m.State("DISCARD"):
                m.d.comb += self.busy.eq(1)
                leave_for_sync()
                with m.If(~self.rx.valid & at_timeout):
                    start_reply(KIND_ERROR, E.BAD_SYNC)
            with m.State("COMMAND"):
                header(command, "SEQ")
            with m.State("SEQ"):
                header(seq, "LENGTH")
            with m.State("LENGTH"):
                with m.If(receive()):
                    m.d.sync += [length.eq(byte), crc.eq(crc_next)]
                    with m.Switch(command):
                        with m.Case(P.Command.INFO):
                            with m.If(byte != 0):
                                m.d.sync += pending.eq(E.BAD_LENGTH)
                        with m.Case(P.Command.CLASSIFY, P.Command.LOGITS):
                            with m.If(byte != self._features - held):
                                m.d.sync += pending.eq(E.BAD_LENGTH)
                        with m.Case(P.Command.PART):
                            with m.If((byte == 0) | (held + byte > self._features)):
                                m.d.sync += pending.eq(E.BAD_LENGTH)
                        with m.Default():
                            m.d.sync += pending.eq(E.UNKNOWN_COMMAND)
                    with m.If(byte == 0):
                        m.next = "CHECK_HIGH"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(receive()):
                    m.d.comb += shift_in.eq(1)
                    m.d.sync += [crc.eq(crc_next), count.eq(count + 1)]
                    with m.If(byte > self._pixel_max):
                        m.d.sync += pixel_bad.eq(1)
                    with m.If(count == length - 1):
                        m.next = "CHECK_HIGH"
            with m.State("CHECK_HIGH"):
                with m.If(receive()):
                    m.d.sync += crc.eq(crc_next)
                    m.next = "CHECK_LOW"
            with m.State("CHECK_LOW"):
                with m.If(receive()):
                    # The CRC over a frame and its own CRC is 0 (no reflection, no final XOR),
                    # so no received byte needs to be kept for a comparison.
                    with m.If(crc_next != 0):
                        start_reply(KIND_ERROR, E.BAD_CHECKSUM)
                    with m.Elif(pending != 0):
                        start_reply(KIND_ERROR, pending)
                    with m.Elif(command == P.Command.INFO):
                        start_reply(KIND_INFO)
                    with m.Elif(pixel_bad):
                        start_reply(KIND_ERROR, E.PIXEL_RANGE)
                    with m.Elif(command == P.Command.PART):
                        m.d.sync += held.eq(held + length)
                        start_reply(KIND_PART)
                    with m.Else():
                        m.d.sync += [kind.eq(Mux(command == P.Command.LOGITS, KIND_LOGITS,
                                                 KIND_CLASS)),
                                     held.eq(self._features)]
                        m.next = "ENGINE"
            with m.State("ENGINE"):
                # `held` counts the pixels still to hand over, pixels_per_handshake at a time.
                m.d.comb += [self.image.valid.eq(1), self.busy.eq(1)]
                with m.If(self.image.ready):
                    m.d.comb += shift_out.eq(1)
                    m.d.sync += held.eq(held - self._per_handshake)
                    with m.If(held == self._per_handshake):
                        m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.result.valid):
                    m.d.sync += [index.eq(0), word.eq(0), part.eq(0)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(P.SYNC), self.busy.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += crc.eq(P.CRC_INIT)
                    m.next = "REPLY_COMMAND"
            with m.State("REPLY_COMMAND"):
                send(reply_command, "REPLY_SEQ")
            with m.State("REPLY_SEQ"):
                send(seq, "REPLY_LENGTH")
            with m.State("REPLY_LENGTH"):
                send(reply_length, "REPLY_PAYLOAD")
            with m.State("REPLY_PAYLOAD"):
                with m.If(send(payload_byte, "REPLY_PAYLOAD")):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index != 0):
                        m.d.sync += part.eq(part + 1)
                        with m.If(part == logit_bytes - 1):
                            m.d.sync += word.eq(word + 1)
                    with m.If(index == reply_length - 1):
                        m.next = "REPLY_CHECK_HIGH"
            with m.State("REPLY_CHECK_HIGH"):
                with m.If(transmit(crc[8:])):
                    m.next = "REPLY_CHECK_LOW"
            with m.State("REPLY_CHECK_LOW"):
                with m.If(transmit(crc[:8])):
                    # The engine's result was read in place; let it go only now.
                    m.d.comb += self.result.ready.eq(kind[1])
                    m.next = "IDLE"

        # Pixels shift in from the top, so the first one ends up as element 0; the engine
        # takes them from the bottom.
        pb, per = self._pixel_bits, self._per_handshake
        received = Cat(pixels[pb:], byte[:pb])
        if per == 1:
            with m.If(shift_in | shift_out):
                m.d.sync += pixels.eq(received)
        else:
            with m.If(shift_in):
                m.d.sync += pixels.eq(received)
            if per < self._features:
                with m.Elif(shift_out):
                    m.d.sync += pixels.eq(pixels[per * pb:])
        m.d.comb += self.image.payload.eq(pixels[:per * pb])
        return m


class SerialClassifier(wiring.Component):
    """The board logic with its pins as ports: a UART link to a network engine.

    Ports: `rx` (serial in, idle high), `tx` (serial out), `busy`, `error` (from the Link).
    `divisor` is clock cycles per bit; `timeout` the inter-byte timeout in cycles (default
    1,000 byte times); `fifo_depth` bytes of receive buffer for bytes that arrive while an
    image is computed or a reply is sent. The host waits for each reply, so the default is
    none (0): UartRx's output register holds one byte, and a second one is dropped
    (`overrun`), which only happens to a sender that ignores the protocol and costs it an
    error reply. A FIFO would cost a RAM block the iCE40UP5K needs for weights.
    """

    def __init__(self, engine, *, divisor, timeout=None, fifo_depth=0):
        self._divisor = check_divisor(divisor)
        if timeout is None:
            timeout = 10_000 * divisor
        self._engine = engine
        self._link = Link.for_engine(engine, timeout=timeout)
        self._fifo_depth = _check_int(fifo_depth, "FIFO depth", 0, 4096)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
        })

    engine = property(lambda self: self._engine)
    link = property(lambda self: self._link)
    divisor = property(lambda self: self._divisor)
    timeout = property(lambda self: self._link.timeout)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        m.submodules.link = link = self._link
        m.submodules.uart_rx = uart_rx = UartRx(divisor=self._divisor)
        m.submodules.uart_tx = uart_tx = UartTx(divisor=self._divisor)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     self.busy.eq(link.busy), self.error.eq(link.error)]
        if self._fifo_depth:
            m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8,
                                                                   depth=self._fifo_depth)
            m.d.comb += [rx_fifo.w_data.eq(uart_rx.o.payload), rx_fifo.w_en.eq(uart_rx.o.valid),
                         uart_rx.o.ready.eq(rx_fifo.w_rdy),
                         link.rx.payload.eq(rx_fifo.r_data), link.rx.valid.eq(rx_fifo.r_rdy),
                         rx_fifo.r_en.eq(link.rx.ready)]
        else:
            connect(m, uart_rx.o, link.rx)
        connect(m, link.tx, uart_tx.i)
        connect(m, link.image, engine.i)
        connect(m, engine.o, link.result)
        return m
