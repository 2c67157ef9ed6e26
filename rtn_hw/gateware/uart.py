"""8N1 UART receiver and transmitter with byte streams, for the board tops' USB serial link.

`divisor` is clock cycles per bit (clock frequency / baud rate). Both units hold the line
idle high; a byte is a low start bit, 8 data bits LSB first and a high stop bit.
"""

from amaranth.hdl import C, Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "check_divisor", "MIN_DIVISOR"]

# Mid-bit sampling needs a half-bit count of at least 2 cycles after the 2-cycle synchronizer.
MIN_DIVISOR = 4


def check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise TypeError(f"Divisor must be an integer of at least {MIN_DIVISOR} (clock cycles per "
                        f"bit), not {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """Receive 8N1 bytes from the asynchronous pin `rx` as a stream of bytes `o`.

    A 2-flip-flop synchronizer guards `rx`. A start bit is confirmed low at its middle, then
    each bit is sampled in its middle (every `divisor` cycles). A low stop bit drops the byte,
    pulses `framing_error` for one cycle and waits for the line to return high before hunting
    for the next start bit, so a held-low line (a break) gives one error, not a stream of
    zeros. A byte that completes while the previous one still waits in `o` is dropped and
    pulses `overrun` (the line has no flow control).
    """

    def __init__(self, *, divisor):
        self._divisor = check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(unsigned(8))),
            "framing_error": Out(1),
            "overrun": Out(1),
            "busy": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        rx_meta = Signal(init=1)
        rx = Signal(init=1)
        m.d.sync += [rx_meta.eq(self.rx), rx.eq(rx_meta)]

        timer = Signal(range(self._divisor))
        bit = Signal(range(8))
        shreg = Signal(8)

        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"  # a glitch shorter than half a bit is no start bit
                with m.Else():
                    m.d.sync += [timer.eq(self._divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)),
                                 timer.eq(self._divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Send the bytes of stream `i` as 8N1 frames on `tx`.

    `i.ready` is high while idle and in the last cycle of a stop bit, so bytes offered back to
    back go out exactly 10 bit times apart.
    """

    def __init__(self, *, divisor):
        self._divisor = check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(unsigned(8))),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        # Start bit, 8 data bits, stop bit; shifted out LSB first, refilled with idle ones.
        shreg = Signal(10, init=0x3FF)
        bits = Signal(range(11))

        # Ready in the last cycle of the stop bit too, so back-to-back bytes leave no gap.
        m.d.comb += [self.tx.eq(shreg[0]), self.busy.eq(bits != 0),
                     self.i.ready.eq((bits == 0) | ((bits == 1) & (timer == 0)))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq(Cat(C(0, 1), self.i.payload, C(1, 1))),
                         bits.eq(10), timer.eq(self._divisor - 1)]
        with m.Elif(bits != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shreg.eq(Cat(shreg[1:], C(1, 1))), bits.eq(bits - 1),
                             timer.eq(self._divisor - 1)]
        return m
