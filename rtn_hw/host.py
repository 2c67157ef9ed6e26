"""Host driver for a board running the RTN classifier (boards/), over any byte transport.

A transport has `write(data)`, `read(size)` (returns up to `size` bytes, fewer when its
timeout expires) and `reset_input()` (drop unread bytes). `SerialTransport` wraps pyserial
for a real board; tests/test_board_sim.py plugs in a transport that drives the simulated
board's UART pins, so the same `BoardClient` code is what talks to the simulated top.
"""

import dataclasses
import time

import numpy as np

from . import protocol

__all__ = ["HostError", "BoardError", "SerialTransport", "BoardClient", "RunResult",
           "run_images", "load_images"]


class HostError(Exception):
    """A problem talking to the board (port, timeout, malformed reply); one-line message."""


class BoardError(HostError):
    """The board answered with an error reply."""

    def __init__(self, reply):
        self.reply = reply
        super().__init__(f"board replied with error {reply.name}")


class SerialTransport:
    """pyserial port, 8N1 at `baud`; `timeout` seconds per read."""

    def __init__(self, port, *, baud=115_200, timeout=1.0):
        try:
            import serial
        except ImportError:
            raise HostError("pyserial is not installed (pip install pyserial)") from None
        try:
            self._serial = serial.Serial(port, baudrate=baud, timeout=timeout,
                                         exclusive=True)
        except (serial.SerialException, OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            reason = " ".join(str(reason).split())
            if "busy" in reason.lower() or "lock" in reason.lower():
                raise HostError(f"port {port} is busy ({reason})") from None
            raise HostError(f"cannot open port {port} ({reason})") from None

    def write(self, data):
        self._serial.write(data)
        self._serial.flush()

    def read(self, size):
        return self._serial.read(size)

    def reset_input(self):
        self._serial.reset_input_buffer()

    def close(self):
        self._serial.close()


class BoardClient:
    """Requests and replies of rtn_hw.protocol over `transport`."""

    def __init__(self, transport):
        self.transport = transport
        self._decoder = protocol.FrameDecoder()
        self._info = None

    def send(self, frame):
        """Write raw bytes (a frame, or anything: tests send broken frames this way)."""
        self.transport.write(bytes(frame))

    def receive(self, *, classes=None):
        """The next reply, decoded (Info, Prediction or ErrorReply); HostError on timeout."""
        if classes is None and self._info is not None:
            classes = self._info.classes
        while True:
            chunk = self.transport.read(self._decoder.needed)
            if not chunk:
                self._decoder = protocol.FrameDecoder()
                raise HostError("no reply from the board (timeout)")
            try:
                frames = self._decoder.feed(chunk)
            except protocol.ProtocolError as error:
                raise HostError(str(error)) from None
            if frames:
                if len(frames) > 1 or self._decoder.pending:
                    raise HostError("the board sent more than one reply")
                try:
                    return protocol.decode_reply(frames[0], classes=classes)
                except protocol.ProtocolError as error:
                    raise HostError(str(error)) from None

    def request(self, frame, *, classes=None):
        self.send(frame)
        reply = self.receive(classes=classes)
        if isinstance(reply, protocol.ErrorReply):
            raise BoardError(reply)
        return reply

    def info(self):
        reply = self.request(protocol.encode_info())
        if not isinstance(reply, protocol.Info):
            raise HostError(f"expected an INFO reply, not {reply!r}")
        self._info = reply
        return reply

    def classify(self, image, *, logits=False):
        """The board's Prediction for one image (pixels 0..pixel_max)."""
        info = self._info or self.info()
        frame = protocol.encode_classify(image, features=info.features,
                                         pixel_max=info.pixel_max, logits=logits)
        reply = self.request(frame, classes=info.classes)
        if not isinstance(reply, protocol.Prediction):
            raise HostError(f"expected a prediction, not {reply!r}")
        return reply


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
    `labels`) arrays, or a .npy of images."""
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                if "images" not in loaded.files:
                    raise HostError(f"{path}: expected an 'images' array, found "
                                    f"{', '.join(loaded.files) or 'none'}")
                images = loaded["images"]
                labels = loaded["labels"] if "labels" in loaded.files else None
            else:
                images, labels = loaded, None
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
        raise HostError(f"{path}: cannot read images ({reason})") from None
    if images.ndim != 2 or not np.issubdtype(images.dtype, np.integer):
        raise HostError(f"{path}: images must be an integer array (count, pixels), not "
                        f"{images.dtype} {images.shape}")
    if labels is not None and labels.shape != (len(images),):
        raise HostError(f"{path}: labels must have shape ({len(images)},), not {labels.shape}")
    return images, labels
