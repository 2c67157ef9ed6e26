"""In-memory boards for the host driver's tests: the golden network behind the protocol's own
board-side encoders (`ModelBoard`, PARTs included), well behaved (`ModelTransport`) or hostile
(`HostileTransport`), and a fake clock, so deadlines are tested without waiting.

tests/test_board_sim.py runs the same client against the simulated gateware."""

import numpy as np

from rtn_hw import protocol, weights

_NETS = {}
MNIST_CNN = weights.WEIGHTS_DIR / "rtn_mnist5k_cnn.json"


def network(path=None):
    """The shipped digits MLP (default), or the network at `path`, loaded once."""
    if path not in _NETS:
        _NETS[path] = weights.load() if path is None else weights.load(path)
    return _NETS[path]


BYTE_SECONDS = 10 / 115_200      # one 8N1 byte at the boards' baud rate


class FakeClock:
    """Seconds as a serial line would spend them: each byte read takes a byte time, and a
    read that comes back short has waited for its timeout, `step`."""

    def __init__(self, step=0.05):
        self.now = 0.0
        self.step = step

    def __call__(self):
        return self.now

    def read(self, asked, got):
        self.now += got * BYTE_SECONDS + (self.step if got < asked else 0.0)


class ModelBoard:
    """The board's side of the protocol (docs/protocol.md) with `net` (default: the digits
    MLP, as the iCEBreaker's NetworkEngine: lanes 32, channels 2) computing: the pixels
    PARTs left are held until any other reply."""

    def __init__(self, net=None, *, lanes=32, channels=2):
        self.net = network() if net is None else net
        self.lanes, self.channels = lanes, channels
        self.held = b""

    @property
    def info(self):
        net, last = self.net, self.net.layers[-1]
        return protocol.Info(protocol.VERSION, net.input.features, last.out_features,
                             net.input.pixel_max, last.out_fmt.width, self.lanes,
                             self.channels)

    def _error(self, code, seq):
        self.held = b""
        return protocol.encode_error_reply(code, seq=seq)

    def answer(self, frame, *, seq=None):
        """The reply bytes to one request frame (its SEQ echoed unless `seq`)."""
        C, E = protocol.Command, protocol.ErrorCode
        seq = frame.seq if seq is None else seq
        info, payload = self.info, frame.payload
        if frame.command == C.INFO:
            if payload:
                return self._error(E.BAD_LENGTH, seq)
            self.held = b""
            return protocol.encode_info_reply(info, seq=seq)
        if frame.command not in (C.CLASSIFY, C.LOGITS, C.PART):
            return self._error(E.UNKNOWN_COMMAND, seq)
        if frame.command == C.PART:
            if not payload or len(self.held) + len(payload) > info.features:
                return self._error(E.BAD_LENGTH, seq)
        elif len(payload) != info.features - len(self.held):
            return self._error(E.BAD_LENGTH, seq)
        if max(payload, default=0) > info.pixel_max:
            return self._error(E.PIXEL_RANGE, seq)
        pixels, self.held = self.held + payload, b""
        if frame.command == C.PART:
            self.held = pixels
            return protocol.encode_part_reply(len(pixels), seq=seq)
        logits, classes = self.net.forward(np.frombuffer(pixels, np.uint8)[None])
        if frame.command == C.LOGITS:
            return protocol.encode_prediction_reply(int(classes[0]), logits[0], seq=seq)
        return protocol.encode_prediction_reply(int(classes[0]), seq=seq)


def answer(frame, *, seq=None):
    """A fresh digits board's reply bytes to one request frame (no PART held)."""
    return ModelBoard().answer(frame, seq=seq)


class ModelTransport:
    """A transport whose far end is a Python board answering every request at once."""

    def __init__(self, *, drop_replies=False, error=None, clock=None, board=None):
        self.board = ModelBoard() if board is None else board
        self.requests = 0
        self.outbox = bytearray()
        self.drop_replies = drop_replies
        self.error = error
        self.clock = clock or FakeClock()
        self._decoder = protocol.FrameDecoder()

    def write(self, data):
        # The host writes whole frames, and the line is quiet after each write.
        for frame in self._decoder.feed(bytes(data)):
            self.requests += 1
            self.outbox += self.reply(frame)

    def reply(self, frame):
        if self.drop_replies:
            return b""
        if self.error is not None:
            return protocol.encode_error_reply(self.error, seq=frame.seq)
        return self.board.answer(frame)

    def read(self, size):
        out = bytes(self.outbox[:size])
        del self.outbox[:size]
        self.clock.read(size, len(out))
        return out

    def reset_input(self):
        self.outbox.clear()

    def close(self):
        pass


class HostileTransport(ModelTransport):
    """A board that misbehaves as `faults` says, per request (a list, one entry a request,
    cycling; None behaves). Faults:

    duplicate   the reply twice                 missing    no reply at all
    late        the reply after `late` reads    stale      the previous request's reply
    garbage     noise, then the reply           noise      an endless stream of noise
    truncated   part of the reply               wrong-seq  the reply with another SEQ
    corrupt     the reply with one bit flipped  disconnect every later call raises OSError
    wrong-kind  a CLASSIFY reply to LOGITS, INFO or PART, or an INFO reply to CLASSIFY
    bad-label   a class outside 0..classes-1 (with a good CRC)
    forget      the board drops the pixels it held (as after a reset), then answers

    `rng` (a numpy Generator) draws the noise and the cuts.
    """

    FAULTS = ("duplicate", "missing", "late", "stale", "garbage", "noise", "truncated",
              "wrong-seq", "corrupt", "disconnect", "wrong-kind", "bad-label", "forget")

    def __init__(self, faults, *, rng, late=3, clock=None, board=None):
        super().__init__(clock=clock, board=board)
        self.faults = list(faults)
        self.rng = rng
        self.late = late
        self.delayed = []          # (reads left, bytes)
        self.previous = b""
        self.disconnected = False
        self.endless = False

    def _noise(self, size):
        return self.rng.integers(0, 256, size, dtype=np.uint8).tobytes()

    def reply(self, frame):
        fault = self.faults[(self.requests - 1) % len(self.faults)] if self.faults else None
        if fault == "forget":
            self.board.held = b""
        good = self.board.answer(frame)
        previous, self.previous = self.previous, good
        if fault is None:
            return good
        if fault == "duplicate":
            return good + good
        if fault == "missing":
            return b""
        if fault == "late":
            self.delayed.append((self.late, good))
            return b""
        if fault == "stale":
            return previous
        if fault == "garbage":
            return self._noise(int(self.rng.integers(1, 300))) + good
        if fault == "noise":
            self.endless = True
            return b""
        if fault == "truncated":
            return good[:int(self.rng.integers(1, len(good)))]
        if fault == "wrong-seq":
            reply = protocol.decode_frames(good)[0]
            return protocol.encode_frame(reply.command, reply.payload,
                                         seq=(frame.seq + 1) % 256)
        if fault == "corrupt":
            bad = bytearray(good)
            bit = int(self.rng.integers(8 * len(bad)))
            bad[bit // 8] ^= 1 << (bit % 8)
            return bytes(bad)
        if fault == "disconnect":
            self.disconnected = True
            return b""
        if fault == "wrong-kind":
            if frame.command == protocol.Command.CLASSIFY:
                return protocol.encode_info_reply(self.board.info, seq=frame.seq)
            return protocol.encode_prediction_reply(0, seq=frame.seq)
        if fault == "bad-label":
            return protocol.encode_prediction_reply(200, seq=frame.seq)
        if fault == "forget":
            return good
        raise ValueError(f"unknown fault {fault!r}")

    def _check(self):
        if self.disconnected:
            raise OSError(5, "Input/output error")

    def write(self, data):
        self._check()
        super().write(data)

    def read(self, size):
        self._check()
        self.delayed = [(left - 1, data) for left, data in self.delayed]
        for left, data in self.delayed:
            if left <= 0:
                self.outbox += data
        self.delayed = [(left, data) for left, data in self.delayed if left > 0]
        if self.endless:
            self.outbox += self._noise(size)
        return super().read(size)

    def reset_input(self):
        self._check()
        super().reset_input()
