"""The board's serial protocol: framing, encoders and decoders (pure Python, no I/O).

Both directions use the same frame (docs/protocol.md has the tables):

    SYNC (0xA5) | CMD | LEN | PAYLOAD (LEN bytes) | CRC

CRC is CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, no reflection, no
final XOR (CRC-8/SMBUS), computed over CMD, LEN and PAYLOAD; its check value for b"123456789"
is 0xF4. The host driver (`rtn_hw.host`) and the simulated board test use these functions;
the link gateware (`rtn_hw.gateware.link`) implements the board side.
"""

import dataclasses
import enum

__all__ = [
    "SYNC", "VERSION", "Command", "ErrorCode", "ProtocolError", "crc8", "encode_frame",
    "encode_info", "encode_classify", "Frame", "FrameDecoder", "Info", "Prediction",
    "ErrorReply", "decode_reply", "encode_info_reply", "encode_prediction_reply",
    "encode_error_reply", "LOGIT_BYTES", "MAX_PAYLOAD",
]

SYNC = 0xA5
VERSION = 1
MAX_PAYLOAD = 255
LOGIT_BYTES = 4   # logits travel as signed 32-bit little-endian integers
REPLY = 0x80      # a reply's command is the request's with bit 7 set


class Command(enum.IntEnum):
    INFO = 0x01           # empty payload; reply: the network shape (Info)
    CLASSIFY = 0x02       # payload: `features` pixel bytes; reply: the class
    LOGITS = 0x03         # payload: `features` pixel bytes; reply: the class and the logits
    ERROR = 0xFF          # board → host only: payload is one ErrorCode byte


class ErrorCode(enum.IntEnum):
    BAD_CHECKSUM = 0x01       # the CRC does not match CMD, LEN and PAYLOAD
    BAD_LENGTH = 0x02         # LEN does not fit the command
    UNKNOWN_COMMAND = 0x03    # CMD is not a request the board knows
    PIXEL_RANGE = 0x04        # a pixel byte exceeds pixel_max
    TIMEOUT = 0x05            # the frame stopped for longer than the inter-byte timeout
    BAD_SYNC = 0x06           # bytes arrived outside a frame (no SYNC); sent once the line idles


class ProtocolError(ValueError):
    """A malformed frame or an out-of-range value; the message is one line."""


def crc8(data, crc=0):
    """CRC-8/SMBUS of `data` (bytes or ints 0..255), continuing from `crc`."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _byte(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ProtocolError(f"{what} must be an integer 0..255, not {value!r}")
    return value


def encode_frame(command, payload=b""):
    """SYNC, CMD, LEN, PAYLOAD, CRC as bytes."""
    command = _byte(int(command) if isinstance(command, enum.IntEnum) else command, "Command")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"Payload must be at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    body = bytes([command, len(payload)]) + payload
    return bytes([SYNC]) + body + bytes([crc8(body)])


def encode_info():
    return encode_frame(Command.INFO)


def encode_classify(image, *, features, pixel_max, logits=False):
    """A CLASSIFY (or, with `logits`, LOGITS) request for one image of `features` pixels."""
    pixels = [int(p) for p in getattr(image, "ravel", lambda: image)()]
    if len(pixels) != features:
        raise ProtocolError(f"Image must have {features} pixels, not {len(pixels)}")
    for index, pixel in enumerate(pixels):
        if not 0 <= pixel <= pixel_max:
            raise ProtocolError(f"Pixel {index} must lie in 0..{pixel_max}, not {pixel}")
    return encode_frame(Command.LOGITS if logits else Command.CLASSIFY, bytes(pixels))


@dataclasses.dataclass(frozen=True)
class Frame:
    command: int
    payload: bytes


class FrameDecoder:
    """Incremental decoder: `feed(data)` returns the complete frames found so far.

    Bytes outside a frame (before SYNC) are skipped and counted in `skipped`; a frame whose
    CRC does not match raises ProtocolError (the decoder is then ready for the next frame).
    """

    def __init__(self):
        self._buffer = bytearray()
        self.skipped = 0

    @property
    def pending(self):
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    @property
    def needed(self):
        """How many more bytes complete the frame in progress (at least 1), so a reader can
        ask its transport for exactly that many."""
        if len(self._buffer) < 3:
            return 4 - len(self._buffer)
        return 4 + self._buffer[2] - len(self._buffer)

    def feed(self, data):
        self._buffer += bytes(data)
        frames = []
        while True:
            start = self._buffer.find(SYNC)
            if start < 0:
                self.skipped += len(self._buffer)
                self._buffer.clear()
                return frames
            self.skipped += start
            del self._buffer[:start]
            if len(self._buffer) < 3 or len(self._buffer) < 4 + self._buffer[2]:
                return frames
            size = 4 + self._buffer[2]
            frame = bytes(self._buffer[:size])
            del self._buffer[:size]
            if crc8(frame[1:-1]) != frame[-1]:
                raise ProtocolError(f"Reply frame {frame.hex()} has CRC 0x{frame[-1]:02x}, "
                                    f"expected 0x{crc8(frame[1:-1]):02x}")
            frames.append(Frame(frame[1], frame[3:-1]))


@dataclasses.dataclass(frozen=True)
class Info:
    version: int
    features: int
    classes: int
    pixel_max: int
    logit_width: int
    lanes: int
    channels: int


@dataclasses.dataclass(frozen=True)
class Prediction:
    label: int
    logits: tuple = None    # ints, only for a LOGITS request


@dataclasses.dataclass(frozen=True)
class ErrorReply:
    code: int

    @property
    def name(self):
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return f"0x{self.code:02x}"


def _expect_length(frame, length, what):
    if len(frame.payload) != length:
        raise ProtocolError(f"{what} reply must carry {length} payload bytes, not "
                            f"{len(frame.payload)}")


def decode_reply(frame, *, classes=None):
    """A reply Frame → Info, Prediction or ErrorReply; `classes` is needed for LOGITS."""
    if frame.command == Command.ERROR:
        _expect_length(frame, 1, "ERROR")
        return ErrorReply(frame.payload[0])
    if frame.command == Command.INFO | REPLY:
        _expect_length(frame, 9, "INFO")
        p = frame.payload
        return Info(p[0], p[1], p[2], p[3], p[4], p[5] | p[6] << 8, p[7] | p[8] << 8)
    if frame.command == Command.CLASSIFY | REPLY:
        _expect_length(frame, 1, "CLASSIFY")
        return Prediction(frame.payload[0])
    if frame.command == Command.LOGITS | REPLY:
        if classes is None:
            raise ProtocolError("LOGITS reply needs the class count (from an INFO reply)")
        _expect_length(frame, 1 + LOGIT_BYTES * classes, "LOGITS")
        logits = tuple(int.from_bytes(frame.payload[1 + LOGIT_BYTES * k:1 + LOGIT_BYTES * (k + 1)],
                                      "little", signed=True) for k in range(classes))
        return Prediction(frame.payload[0], logits)
    raise ProtocolError(f"Unknown reply command 0x{frame.command:02x}")


# Board-side encoders: the reference the link gateware is tested against.

def encode_info_reply(info):
    return encode_frame(Command.INFO | REPLY, bytes([
        info.version, info.features, info.classes, info.pixel_max, info.logit_width,
        info.lanes & 0xFF, info.lanes >> 8, info.channels & 0xFF, info.channels >> 8]))


def encode_prediction_reply(label, logits=None):
    if logits is None:
        return encode_frame(Command.CLASSIFY | REPLY, bytes([label]))
    payload = bytes([label]) + b"".join(int(v).to_bytes(LOGIT_BYTES, "little", signed=True)
                                        for v in logits)
    return encode_frame(Command.LOGITS | REPLY, payload)


def encode_error_reply(code):
    return encode_frame(Command.ERROR, bytes([int(code)]))
