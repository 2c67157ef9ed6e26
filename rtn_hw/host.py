"""Host driver for a board running the RTN classifier (boards/), over any byte transport.

A transport has `write(data)`, `read(size)` (returns up to `size` bytes, fewer when its short
read timeout expires) and `reset_input()` (drop unread bytes). `SerialTransport` wraps pyserial
for a real board; tests/test_board_sim.py plugs in a transport that drives the simulated
board's UART pins, and tests/test_fuzz_host.py a hostile one, so the same `BoardClient` code
is what talks to all of them.

Every request gets a fresh sequence number and the client accepts only the reply that echoes
it: unread input is dropped before each request, and a reply with another SEQ (a duplicate,
a late answer to an earlier request) is ignored. Every request has one overall deadline, so
a silent board, a board that streams garbage and a board that answers the wrong request all
end in a HostError, never in a hang or in someone else's answer.
"""

import dataclasses
import math
import time

import numpy as np

from . import protocol

__all__ = ["HostError", "BoardError", "SerialTransport", "BoardClient", "RunResult",
           "run_images", "load_images", "check_timeout", "MAX_TIMEOUT", "MAX_BAUD",
           "MAX_IMAGES_BYTES"]

MAX_TIMEOUT = 3600.0            # seconds; a longer wait for one reply is a mistake
MAX_BAUD = 12_000_000           # above any USB-serial bridge (FT2232H: 12 Mbaud)
MAX_IMAGES_BYTES = 256 << 20    # an --images file (and what it inflates to) is at most this
READ_TIMEOUT = 0.05             # the serial port's per-read timeout; the deadline is separate


class HostError(Exception):
    """A problem talking to the board (port, timeout, malformed reply); one-line message."""


class BoardError(HostError):
    """The board answered with an error reply."""

    def __init__(self, reply):
        self.reply = reply
        super().__init__(f"board replied with error {reply.name}")


try:
    import termios
    _TERMIOS_ERRORS = (termios.error,)
except ImportError:      # not a POSIX system
    _TERMIOS_ERRORS = ()


def _reason(error):
    reason = getattr(error, "strerror", None) or (
        error.args[1] if len(error.args) == 2 and isinstance(error.args[1], str) else None) \
        or str(error) or type(error).__name__
    return " ".join(str(reason).split())


class SerialTransport:
    """pyserial port, 8N1 at `baud`; `timeout` seconds per read (the client's deadline is
    separate, so keep this short)."""

    def __init__(self, port, *, baud=115_200, timeout=READ_TIMEOUT):
        try:
            import serial
        except ImportError:
            raise HostError("pyserial is not installed (pip install pyserial)") from None
        self.port = port
        try:
            self._serial = serial.Serial(port, baudrate=baud, timeout=timeout,
                                         write_timeout=max(1.0, timeout), exclusive=True)
        except (serial.SerialException, OSError, ValueError, OverflowError) as error:
            reason = _reason(error)
            if "busy" in reason.lower() or "lock" in reason.lower():
                raise HostError(f"port {port} is busy ({reason})") from None
            raise HostError(f"cannot open port {port} ({reason})") from None

    # pyserial raises SerialException (an OSError) or, on a closed port, PortNotOpenError;
    # an unplugged adapter also shows up as OSError, ValueError (a closed descriptor) or, from
    # tcflush/tcdrain, termios.error (not an OSError).
    def _call(self, what, action, *args):
        try:
            return action(*args)
        except (OSError, ValueError, TypeError, *_TERMIOS_ERRORS) as error:
            raise HostError(f"port {self.port}: {what} failed ({_reason(error)}); was the "
                            f"board unplugged?") from None

    def write(self, data):
        self._call("write", self._serial.write, data)
        self._call("write", self._serial.flush)

    def read(self, size):
        return self._call("read", self._serial.read, size)

    def reset_input(self):
        self._call("reset", self._serial.reset_input_buffer)

    def close(self):
        try:
            self._serial.close()
        except (OSError, ValueError, *_TERMIOS_ERRORS):
            pass


def check_timeout(value):
    """`value` as a finite number of seconds in (0, MAX_TIMEOUT], else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise ValueError(f"Timeout must be a number of seconds above 0 and at most "
                         f"{MAX_TIMEOUT:g}, not {value!r}")
    return float(value)


class BoardClient:
    """Requests and replies of rtn_hw.protocol over `transport`; `timeout` seconds is the
    deadline of each request, measured with `clock` (seconds; tests and the simulation pass
    their own)."""

    def __init__(self, transport, *, timeout=2.0, clock=time.monotonic):
        self.transport = transport
        self.timeout = check_timeout(timeout)
        self._clock = clock
        self._decoder = protocol.FrameDecoder(lengths=protocol.reply_lengths())
        self._frames = []
        self._info = None
        self._seq = 0
        self.ignored = 0      # replies dropped because their SEQ was not the one awaited
        self._unmatched_error = None

    def _call(self, what, action, *args):
        # A transport other than SerialTransport may fail with a bare OSError.
        try:
            return action(*args)
        except HostError:
            raise
        except OSError as error:
            raise HostError(f"transport {what} failed ({_reason(error)})") from None

    def _next_seq(self):
        # 1..255: SEQ 0 is what the board sends when no SEQ came (BAD_SYNC, an early TIMEOUT).
        self._seq = self._seq % 255 + 1
        return self._seq

    def flush(self):
        """Drop unread input and any partial or unread reply."""
        self._call("reset", self.transport.reset_input)
        # A new decoder: its header filter follows the class count, its counters restart.
        self._decoder = protocol.FrameDecoder(lengths=protocol.reply_lengths(
            None if self._info is None else self._info.classes))
        self._frames.clear()

    def send(self, frame):
        """Write raw bytes (a frame, or anything: tests send broken frames this way)."""
        self._call("write", self.transport.write, bytes(frame))

    def receive(self, *, seq=None, deadline=None, what="a reply"):
        """The next reply, decoded (Info, Prediction or ErrorReply), whose SEQ is `seq` (any
        when None); HostError when `deadline` (default: now + timeout) passes first."""
        if deadline is None:
            deadline = self._clock() + self.timeout
        info = self._info
        while True:
            while self._frames:
                frame = self._frames.pop(0)
                if seq is not None and frame.seq != seq:
                    self.ignored += 1
                    if frame.command == protocol.Command.ERROR and len(frame.payload) == 1:
                        # BAD_SYNC and an early TIMEOUT carry SEQ 0: worth naming on timeout.
                        self._unmatched_error = protocol.ErrorReply(frame.payload[0]).name
                    continue
                try:
                    return protocol.decode_reply(
                        frame, classes=None if info is None else info.classes,
                        logit_width=None if info is None else info.logit_width)
                except protocol.ProtocolError as error:
                    raise HostError(f"bad reply to {what}: {error}") from None
            if self._clock() >= deadline:
                raise HostError(self._timeout_message(what))
            chunk = self._call("read", self.transport.read, self._decoder.needed)
            self._frames += self._decoder.feed(chunk)

    def _timeout_message(self, what):
        noise = []
        if self._decoder.skipped:
            noise.append(f"{self._decoder.skipped} stray bytes")
        if self.ignored:
            noise.append(f"{self.ignored} replies to other requests")
        tail = f"; ignored {' and '.join(noise)}" if noise else ""
        if self._unmatched_error:
            tail += f" (the board reported {self._unmatched_error} for another frame)"
        return f"no reply to {what} within {self.timeout:g} s (timeout){tail}"

    def request(self, make_frame, command, expect):
        """Send `make_frame(seq)` and return its reply, which must be an `expect`."""
        seq = self._next_seq()
        frame = make_frame(seq)
        what = f"{command.name} (seq {seq})"
        self.flush()
        self.ignored, self._unmatched_error = 0, None
        self.send(frame)
        reply = self.receive(seq=seq, what=what)
        if isinstance(reply, protocol.ErrorReply):
            raise BoardError(reply)
        if not isinstance(reply, expect) or (
                isinstance(reply, protocol.Prediction)
                and (reply.logits is not None) != (command == protocol.Command.LOGITS)):
            raise HostError(f"bad reply to {what}: {reply!r}")
        return reply

    def info(self):
        self._info = None      # an INFO reply is decoded before the class count is known
        self._info = self.request(lambda seq: protocol.encode_info(seq=seq),
                                  protocol.Command.INFO, protocol.Info)
        return self._info

    def classify(self, image, *, logits=False):
        """The board's Prediction for one image (pixels 0..pixel_max). An image of more than
        255 pixels goes in PARTs first; each acknowledgment must count the pixels sent so
        far (a board that lost some, to noise or a reset, is caught before it classifies)."""
        info = self._info or self.info()
        command = protocol.Command.LOGITS if logits else protocol.Command.CLASSIFY
        parts, rest = protocol.split_image(image, features=info.features,
                                           pixel_max=info.pixel_max)
        held = 0
        for pixels in parts:
            ack = self.request(lambda seq: protocol.encode_part(pixels, seq=seq),
                               protocol.Command.PART, protocol.PartAck)
            held += len(pixels)
            if ack.held != held:
                raise HostError(f"bad reply to PART: the board holds {ack.held} pixels, "
                                f"expected {held}")
        return self.request(lambda seq: protocol.encode_frame(command, rest, seq=seq),
                            command, protocol.Prediction)


@dataclasses.dataclass
class RunResult:
    predictions: list
    labels: list            # may be None
    seconds: float

    @property
    def correct(self):
        return None if self.labels is None else sum(
            int(p == l) for p, l in zip(self.predictions, self.labels))

    @property
    def images_per_second(self):
        return len(self.predictions) / self.seconds if self.seconds > 0 else float("inf")


def run_images(client, images, labels=None, *, progress=None, clock=time.monotonic):
    """Classify every image; `progress(index, prediction, label)` after each one."""
    if labels is not None and len(labels) != len(images):
        raise HostError(f"{len(labels)} labels for {len(images)} images")
    start = clock()
    predictions = []
    for index, image in enumerate(images):
        prediction = client.classify(image).label
        predictions.append(prediction)
        if progress is not None:
            progress(index, prediction, None if labels is None else int(labels[index]))
    return RunResult(predictions, None if labels is None else [int(v) for v in labels],
                     clock() - start)


def load_images(path):
    """(images (B, features) ints, labels or None) from a .npz with `images` (and optionally
    `labels`) arrays, or a .npy of images. The file is read with the weights loader's bounded
    reader (a regular file, sizes checked before anything is inflated); HostError otherwise."""
    from . import weights
    try:
        arrays = weights.read_arrays(path, limit=MAX_IMAGES_BYTES)
    except ValueError as error:
        raise HostError(str(error)) from None
    if list(arrays) == [None]:
        images, labels = arrays[None], None
    else:
        if "images" not in arrays:
            raise HostError(f"{path}: expected an 'images' array, found "
                            f"{', '.join(map(repr, sorted(arrays))) or 'none'}")
        unknown = sorted(set(arrays) - {"images", "labels"})
        if unknown:
            raise HostError(f"{path}: unexpected arrays {', '.join(map(repr, unknown))} "
                            f"(expected images and optional labels)")
        images, labels = arrays["images"], arrays.get("labels")
    if images.ndim != 2 or not np.issubdtype(images.dtype, np.integer):
        raise HostError(f"{path}: images must be an integer array (count, pixels), not "
                        f"{images.dtype} {images.shape}")
    if images.shape[0] == 0 or images.shape[1] == 0:
        raise HostError(f"{path}: images must hold at least one image of at least one pixel, "
                        f"not shape {images.shape}")
    if labels is not None:
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise HostError(f"{path}: labels must be integers of shape ({len(images)},), not "
                            f"{labels.dtype} {labels.shape}")
    return images, labels
