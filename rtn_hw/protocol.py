"""The board's serial protocol: framing, encoders and decoders (pure Python, no I/O).

Both directions use the same frame (docs/protocol.md has the tables):

    SYNC (0xA5) | CMD | SEQ | LEN | PAYLOAD (LEN bytes) | CRC (2 bytes, high byte first)

Everything after SYNC is byte-stuffed: a 0xA5 or 0x7D there travels as 0x7D and the byte XOR
0x20, so a SYNC byte on the line always starts a frame. A decoder that restarts at every SYNC
can therefore never lose a good frame to the garbage before it (a truncated frame, a LEN that
claims too much, a 0xA5 in noise), and needs no look-ahead. LEN and the CRC count the bytes
before stuffing.

An image of more than 255 pixels (features up to 65,535) travels as PART requests of up to
255 pixels each, acknowledged with the count the board holds, then a CLASSIFY or LOGITS
request with the rest.

SEQ is the request's sequence number, echoed in its reply, so a host can tell a reply to this
request from a stale or duplicated one. CRC is CRC-16/IBM-3740 (also called CCITT-FALSE):
polynomial x^16 + x^12 + x^5 + 1 (0x1021), initial value 0xFFFF, no reflection, no final XOR,
computed over CMD, SEQ, LEN and PAYLOAD; its check value for b"123456789" is 0x29B1. The host
driver (`rtn_hw.host`) and the simulated board test use these functions; the link gateware
(`rtn_hw.gateware.link`) implements the board side.

Every encoder raises ProtocolError (one line, naming the value) for a bad argument. The
decoder never raises for bad bytes: it drops them, counts them, and starts again at the next
SYNC.
"""

import binascii
import dataclasses
import enum
import numbers

__all__ = [
    "SYNC", "VERSION", "Command", "ErrorCode", "ProtocolError", "crc16", "encode_frame",
    "encode_info", "encode_classify", "encode_part", "image_bytes", "split_image", "Frame",
    "FrameDecoder", "Info", "Prediction", "PartAck", "ErrorReply", "decode_reply",
    "decode_frames", "reply_lengths", "encode_info_reply", "encode_prediction_reply",
    "encode_part_reply", "encode_error_reply", "LOGIT_BYTES", "MAX_PAYLOAD", "MAX_FEATURES",
    "HEADER_BYTES", "CRC_BYTES", "CRC_INIT", "ESC", "ESCAPE_XOR", "stuff", "INFO_BYTES",
    "PART_BYTES",
]

SYNC = 0xA5
ESC = 0x7D        # after SYNC, a SYNC or ESC byte travels as ESC, byte ^ ESCAPE_XOR
ESCAPE_XOR = 0x20
_ESCAPED = (SYNC ^ ESCAPE_XOR, ESC ^ ESCAPE_XOR)
VERSION = 4
MAX_PAYLOAD = 255
MAX_FEATURES = 0xFFFF    # the INFO reply's features is 16 bits; larger images travel in PARTs
HEADER_BYTES = 4  # SYNC, CMD, SEQ, LEN
CRC_BYTES = 2
CRC_INIT = 0xFFFF
LOGIT_BYTES = 4   # logits travel as signed 32-bit little-endian integers
REPLY = 0x80      # a reply's command is the request's with bit 7 set
INFO_BYTES = 10
PART_BYTES = 2    # a PART acknowledgment: the pixels held so far, 16-bit LE


class Command(enum.IntEnum):
    INFO = 0x01           # empty payload; reply: the network shape (Info)
    CLASSIFY = 0x02       # payload: `features` pixel bytes; reply: the class
    LOGITS = 0x03         # payload: `features` pixel bytes; reply: the class and the logits
    PART = 0x04           # payload: the image's next 1..255 pixels; reply: the pixels held
    ERROR = 0xFF          # board → host only: payload is one ErrorCode byte


class ErrorCode(enum.IntEnum):
    BAD_CHECKSUM = 0x01       # the CRC does not match CMD, SEQ, LEN and PAYLOAD
    BAD_LENGTH = 0x02         # LEN does not fit the command
    UNKNOWN_COMMAND = 0x03    # CMD is not a request the board knows
    PIXEL_RANGE = 0x04        # a pixel byte exceeds pixel_max
    TIMEOUT = 0x05            # the frame stopped for longer than the inter-byte timeout
    BAD_SYNC = 0x06           # bytes arrived outside a frame (no SYNC); sent once the line idles


class ProtocolError(ValueError):
    """A malformed frame or an out-of-range value; the message is one line."""


def crc16(data, crc=CRC_INIT):
    """CRC-16/IBM-3740 of `data` (bytes or ints 0..255), continuing from `crc`."""
    return binascii.crc_hqx(bytes(data), crc)


def _int(value, what, low, high):
    # numbers.Integral takes NumPy integers; a float, even 2.0, is refused rather than truncated.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not low <= value <= high:
        raise ProtocolError(f"{what} must be an integer {low}..{high}, not {value!r}")
    return int(value)


def _payload(payload):
    # bytes(3) would be three zero bytes and bytes("ab") an encoding question: refuse both.
    if isinstance(payload, (numbers.Number, str)):
        raise ProtocolError(f"Payload must be bytes, not {type(payload).__name__}")
    try:
        payload = bytes(payload)
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(f"Payload must be bytes, not {type(payload).__name__}") from None
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"Payload must be at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    return payload


def stuff(data):
    """`data` with every SYNC and ESC byte escaped (ESC first, so no byte is escaped twice)."""
    return bytes(data).replace(bytes([ESC]), bytes([ESC, ESC ^ ESCAPE_XOR])).replace(
        bytes([SYNC]), bytes([ESC, SYNC ^ ESCAPE_XOR]))


def encode_frame(command, payload=b"", *, seq=0):
    """SYNC, then CMD, SEQ, LEN, PAYLOAD and CRC, stuffed, as bytes."""
    command = _int(command, "Command", 0, 255)
    seq = _int(seq, "Sequence number", 0, 255)
    payload = _payload(payload)
    body = bytes([command, seq, len(payload)]) + payload
    return bytes([SYNC]) + stuff(body + crc16(body).to_bytes(CRC_BYTES, "big"))


def encode_info(*, seq=0):
    return encode_frame(Command.INFO, seq=seq)


def image_bytes(image, *, features, pixel_max):
    """`image` (a sequence or array of `features` integers 0..pixel_max) as pixel bytes."""
    ravel = getattr(image, "ravel", None)
    try:
        pixels = list(ravel() if ravel is not None else image)
    except TypeError:
        raise ProtocolError(f"Image must be a sequence of {features} pixels, not "
                            f"{type(image).__name__}") from None
    if len(pixels) != features:
        raise ProtocolError(f"Image must have {features} pixels, not {len(pixels)}")
    for index, pixel in enumerate(pixels):
        if isinstance(pixel, bool) or not isinstance(pixel, numbers.Integral) \
                or not 0 <= pixel <= pixel_max:
            raise ProtocolError(f"Pixel {index} must be an integer 0..{pixel_max}, "
                                f"not {pixel!r}")
    return bytes(int(p) for p in pixels)


def split_image(image, *, features, pixel_max):
    """(PART payloads, the last payload): the image's pixels in PARTs of MAX_PAYLOAD, then
    the 1..MAX_PAYLOAD pixels the CLASSIFY or LOGITS request carries. No PARTs for an image
    of at most MAX_PAYLOAD pixels."""
    pixels = image_bytes(image, features=features, pixel_max=pixel_max)
    last = (len(pixels) - 1) // MAX_PAYLOAD * MAX_PAYLOAD
    parts = [pixels[k:k + MAX_PAYLOAD] for k in range(0, last, MAX_PAYLOAD)]
    return parts, pixels[last:]


def encode_classify(image, *, features, pixel_max, logits=False, seq=0):
    """A CLASSIFY (or, with `logits`, LOGITS) request for one image of `features` pixels
    (at most MAX_PAYLOAD: a larger image goes as `split_image`'s PARTs, then a request)."""
    return encode_frame(Command.LOGITS if logits else Command.CLASSIFY,
                        image_bytes(image, features=features, pixel_max=pixel_max), seq=seq)


def encode_part(pixels, *, seq=0):
    """A PART request: the image's next 1..MAX_PAYLOAD pixel bytes."""
    pixels = _payload(pixels)
    if not pixels:
        raise ProtocolError(f"A PART must carry 1..{MAX_PAYLOAD} pixels, not 0")
    return encode_frame(Command.PART, pixels, seq=seq)


@dataclasses.dataclass(frozen=True)
class Frame:
    command: int
    payload: bytes
    seq: int = 0


class FrameDecoder:
    """Incremental decoder: `feed(data)` returns the complete, checked frames found so far.

    Bad bytes never raise. Every SYNC byte starts a new frame candidate, dropping any
    candidate in progress; bytes outside a candidate are dropped. Since no byte inside a
    stuffed frame is a SYNC, whatever came before a good frame (a truncated frame, a LEN that
    claims more bytes than came, a 0xA5 in noise, an ESC at the end of garbage) ends at its
    SYNC, and the good frame is decoded whole: no good frame is ever lost to garbage.

    A candidate is complete once its LEN payload bytes and its CRC are in (counted after
    unstuffing); it is a frame if its CRC checks. `lengths` (optional) maps each acceptable
    command to its payload length, or to None for any length; a header outside it is
    dropped as soon as LEN is in (`reply_lengths` gives the replies a host can get).
    `skipped` counts bytes dropped, `rejected` candidates dropped.
    """

    def __init__(self, *, lengths=None):
        self._lengths = None if lengths is None else dict(lengths)
        self._body = None          # the candidate's unstuffed bytes after SYNC, or None
        self._raw = 0              # line bytes of the candidate, SYNC included
        self._escaped = False
        self.skipped = 0
        self.rejected = 0

    @property
    def pending(self):
        """Line bytes held: the incomplete frame candidate's."""
        return self._raw

    @property
    def needed(self):
        """At least how many more line bytes complete the candidate in progress (at least 1;
        a whole header and CRC when there is none), so a reader can ask its transport for
        exactly that many without reading past the frame."""
        body = self._body
        if body is None:
            return HEADER_BYTES + CRC_BYTES
        if len(body) < HEADER_BYTES - 1:
            return HEADER_BYTES - 1 + CRC_BYTES - len(body)
        return max(1, HEADER_BYTES - 1 + body[2] + CRC_BYTES - len(body))

    def _drop(self):
        self.rejected += 1
        self.skipped += self._raw
        self._body, self._raw = None, 0

    def feed(self, data):
        frames = []
        for byte in bytes(data):
            if byte == SYNC:
                if self._body is not None:
                    self._drop()            # cut short by the next frame
                self._body, self._raw, self._escaped = bytearray(), 1, False
                continue
            body = self._body
            if body is None:
                self.skipped += 1
                continue
            self._raw += 1
            if self._escaped:
                self._escaped = False
                if byte not in _ESCAPED:
                    self._drop()            # only SYNC and ESC are ever escaped
                    continue
                byte ^= ESCAPE_XOR
            elif byte == ESC:
                self._escaped = True
                continue
            body.append(byte)
            size = len(body)
            if size == HEADER_BYTES - 1 and self._lengths is not None:
                command, length = body[0], body[2]
                if command not in self._lengths or self._lengths[command] not in (None, length):
                    self._drop()
            elif size >= HEADER_BYTES - 1 and size == HEADER_BYTES - 1 + body[2] + CRC_BYTES:
                # No reflection and no final XOR: the CRC over a frame and its own CRC is 0.
                if crc16(body) == 0:
                    frames.append(Frame(body[0], bytes(body[HEADER_BYTES - 1:-CRC_BYTES]),
                                        body[1]))
                    self._body, self._raw = None, 0
                else:
                    self._drop()
        return frames

    def reset(self):
        """Drop any partial frame (the counters stay)."""
        self._body, self._raw, self._escaped = None, 0, False


def decode_frames(data, *, lengths=None):
    """Every good frame in `data` (a recording of a line)."""
    return FrameDecoder(lengths=lengths).feed(data)


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
class PartAck:
    held: int               # pixels of the image the board holds, this PART's included


@dataclasses.dataclass(frozen=True)
class ErrorReply:
    code: int

    @property
    def name(self):
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return f"0x{self.code:02x}"


def reply_lengths(classes=None):
    """{reply command: payload length} for FrameDecoder; LOGITS only once `classes` is known."""
    lengths = {Command.ERROR: 1, Command.INFO | REPLY: INFO_BYTES,
               Command.CLASSIFY | REPLY: 1, Command.PART | REPLY: PART_BYTES}
    if classes is not None:
        lengths[Command.LOGITS | REPLY] = 1 + LOGIT_BYTES * classes
    return lengths


def _expect_length(frame, length, what):
    if len(frame.payload) != length:
        raise ProtocolError(f"{what} reply must carry {length} payload bytes, not "
                            f"{len(frame.payload)}")


def _check_info(info):
    if info.version != VERSION:
        raise ProtocolError(f"INFO reply has protocol version {info.version}; this host "
                            f"speaks version {VERSION} (rebuild the bitstream or update rtn-hw)")
    for what, value, low, high in (
            ("features", info.features, 1, MAX_FEATURES),
            ("classes", info.classes, 1, (MAX_PAYLOAD - 1) // LOGIT_BYTES),
            ("pixel_max", info.pixel_max, 1, 255),
            ("logit_width", info.logit_width, 1, 8 * LOGIT_BYTES)):
        if not low <= value <= high:
            raise ProtocolError(f"INFO reply has {what} {value}, expected {low}..{high}")
    return info


def decode_reply(frame, *, classes=None, logit_width=None):
    """A reply Frame → Info, PartAck, Prediction or ErrorReply, checked for consistency.
    `classes` (from an INFO reply) is needed for LOGITS and bounds every label; `logit_width`
    bounds the logits. Raises ProtocolError for a reply that cannot be right."""
    if frame.command == Command.ERROR:
        _expect_length(frame, 1, "ERROR")
        return ErrorReply(frame.payload[0])
    if frame.command == Command.INFO | REPLY:
        _expect_length(frame, INFO_BYTES, "INFO")
        p = frame.payload
        return _check_info(Info(p[0], p[1] | p[9] << 8, p[2], p[3], p[4], p[5] | p[6] << 8,
                                p[7] | p[8] << 8))
    if frame.command == Command.PART | REPLY:
        _expect_length(frame, PART_BYTES, "PART")
        return PartAck(frame.payload[0] | frame.payload[1] << 8)
    if frame.command == Command.CLASSIFY | REPLY:
        _expect_length(frame, 1, "CLASSIFY")
        return _check_label(Prediction(frame.payload[0]), classes)
    if frame.command == Command.LOGITS | REPLY:
        if classes is None:
            raise ProtocolError("LOGITS reply needs the class count (from an INFO reply)")
        _expect_length(frame, 1 + LOGIT_BYTES * classes, "LOGITS")
        logits = tuple(int.from_bytes(frame.payload[1 + LOGIT_BYTES * k:1 + LOGIT_BYTES * (k + 1)],
                                      "little", signed=True) for k in range(classes))
        prediction = _check_label(Prediction(frame.payload[0], logits), classes)
        if logit_width is not None:
            bound = 1 << (logit_width - 1)
            for k, value in enumerate(logits):
                if not -bound <= value < bound:
                    raise ProtocolError(f"LOGITS reply has logit {k} = {value}, outside "
                                        f"{logit_width}-bit signed range")
        # The board's class is the first maximum of its logits (docs/protocol.md).
        best = logits.index(max(logits))
        if prediction.label != best:
            raise ProtocolError(f"LOGITS reply has class {prediction.label} but its logits "
                                f"peak at class {best}")
        return prediction
    raise ProtocolError(f"Unknown reply command 0x{frame.command:02x}")


def _check_label(prediction, classes):
    if classes is not None and not prediction.label < classes:
        raise ProtocolError(f"reply has class {prediction.label}, expected 0..{classes - 1}")
    return prediction


# Board-side encoders: the reference the link gateware is tested against.

def encode_info_reply(info, *, seq=0):
    lanes = _int(info.lanes, "Lane count", 0, 0xFFFF)
    channels = _int(info.channels, "Channel count", 0, 0xFFFF)
    features = _int(info.features, "Feature count", 0, MAX_FEATURES)
    fields = [_int(v, what, 0, 255) for v, what in (
        (info.version, "Version"), (features & 0xFF, "Feature count"),
        (info.classes, "Class count"), (info.pixel_max, "Pixel maximum"),
        (info.logit_width, "Logit width"))]
    # The features' high byte comes last: versions up to 3 had a one-byte count.
    return encode_frame(Command.INFO | REPLY, bytes(
        fields + [lanes & 0xFF, lanes >> 8, channels & 0xFF, channels >> 8, features >> 8]),
        seq=seq)


def encode_part_reply(held, *, seq=0):
    held = _int(held, "Held pixel count", 0, MAX_FEATURES)
    return encode_frame(Command.PART | REPLY, held.to_bytes(PART_BYTES, "little"), seq=seq)


def encode_prediction_reply(label, logits=None, *, seq=0):
    label = _int(label, "Label", 0, 255)
    if logits is None:
        return encode_frame(Command.CLASSIFY | REPLY, bytes([label]), seq=seq)
    bound = 1 << (8 * LOGIT_BYTES - 1)
    if isinstance(logits, (numbers.Number, str, bytes)) or not hasattr(logits, "__iter__"):
        raise ProtocolError(f"Logits must be a sequence of integers, not "
                            f"{type(logits).__name__}")
    words = [_int(v, "Logit", -bound, bound - 1).to_bytes(LOGIT_BYTES, "little", signed=True)
             for v in logits]
    return encode_frame(Command.LOGITS | REPLY, bytes([label]) + b"".join(words), seq=seq)


def encode_error_reply(code, *, seq=0):
    return encode_frame(Command.ERROR, bytes([_int(code, "Error code", 0, 255)]), seq=seq)
