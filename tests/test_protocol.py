"""The serial protocol's pure-Python encoders and decoders (rtn_hw.protocol)."""

import re

import numpy as np
import pytest

from rtn_hw import protocol as p


def test_crc8_check_value():
    # CRC-8/SMBUS's catalogue check value, and the empty string.
    assert p.crc8(b"123456789") == 0xF4
    assert p.crc8(b"") == 0
    assert p.crc8(b"6789", p.crc8(b"12345")) == 0xF4


def test_crc8_detects_every_single_bit_error(rng):
    body = bytes(rng.integers(0, 256, 66, dtype=np.uint8))
    crc = p.crc8(body)
    for bit in range(len(body) * 8):
        flipped = bytearray(body)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert p.crc8(flipped) != crc


def test_frame_layout():
    frame = p.encode_frame(p.Command.CLASSIFY, bytes([1, 2, 3]))
    assert frame[:3] == bytes([0xA5, 0x02, 3])
    assert frame[3:6] == bytes([1, 2, 3])
    assert frame[6] == p.crc8(bytes([0x02, 3, 1, 2, 3]))
    assert p.encode_info() == bytes([0xA5, 0x01, 0x00, p.crc8(b"\x01\x00")])


def test_classify_roundtrip_through_decoder():
    image = np.arange(64) % 17
    frame = p.encode_classify(image, features=64, pixel_max=16)
    assert len(frame) == 68
    frames = p.FrameDecoder().feed(frame)
    assert frames == [p.Frame(p.Command.CLASSIFY, bytes(image.astype(np.uint8)))]
    logits = p.encode_classify(image, features=64, pixel_max=16, logits=True)
    assert logits[1] == p.Command.LOGITS


@pytest.mark.parametrize("image, message", [
    (list(range(63)), "Image must have 64 pixels, not 63"),
    ([0] * 10 + [17] + [0] * 53, "Pixel 10 must lie in 0..16, not 17"),
    ([-1] + [0] * 63, "Pixel 0 must lie in 0..16, not -1"),
])
def test_classify_rejects(image, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        p.encode_classify(image, features=64, pixel_max=16)


@pytest.mark.parametrize("command, payload, message", [
    (256, b"", "Command must be an integer 0..255, not 256"),
    ("x", b"", "Command must be an integer 0..255, not 'x'"),
    (1, bytes(256), "Payload must be at most 255 bytes, not 256"),
])
def test_frame_rejects(command, payload, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        p.encode_frame(command, payload)


def test_replies_roundtrip():
    info = p.Info(1, 64, 10, 16, 24, 32, 4)
    logits = (-1500174, 1843851, 0, -1, 2**23 - 1, -(2**23), 5, 6, 7, 8)
    stream = (b"\x00\x13" + p.encode_info_reply(info) + p.encode_prediction_reply(7)
              + b"\xff" + p.encode_prediction_reply(3, logits)
              + p.encode_error_reply(p.ErrorCode.TIMEOUT))
    decoder = p.FrameDecoder()
    # Byte by byte: the decoder holds partial frames back.
    frames = [f for byte in stream for f in decoder.feed(bytes([byte]))]
    assert decoder.skipped == 3 and decoder.pending == 0
    replies = [p.decode_reply(f, classes=10) for f in frames]
    assert replies == [info, p.Prediction(7), p.Prediction(3, logits),
                       p.ErrorReply(p.ErrorCode.TIMEOUT)]
    assert replies[3].name == "TIMEOUT"
    assert p.ErrorReply(0x42).name == "0x42"


def test_decoder_rejects_bad_crc_then_recovers():
    good = p.encode_prediction_reply(4)
    bad = bytearray(good)
    bad[-1] ^= 0x10
    decoder = p.FrameDecoder()
    message = "^Reply frame a5820104c4 has CRC 0xc4, expected 0xd4$"
    with pytest.raises(p.ProtocolError, match=message):
        decoder.feed(bytes(bad))
    assert decoder.feed(good) == [p.Frame(0x82, b"\x04")]


@pytest.mark.parametrize("frame, message", [
    (p.Frame(0x82, b""), "CLASSIFY reply must carry 1 payload bytes, not 0"),
    (p.Frame(0xFF, b"\x01\x02"), "ERROR reply must carry 1 payload bytes, not 2"),
    (p.Frame(0x83, b"\x01" * 5), "LOGITS reply must carry 41 payload bytes, not 5"),
    (p.Frame(0x42, b""), "Unknown reply command 0x42"),
])
def test_decode_reply_rejects(frame, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        p.decode_reply(frame, classes=10)


def test_decoder_needed_reads_exactly_one_frame():
    """`needed` never asks for a byte past the frame in progress, so a reader that follows
    it takes exactly one reply from the line."""
    frame = p.encode_prediction_reply(3, range(10))
    decoder = p.FrameDecoder()
    asked, at = [], 0
    while True:
        asked.append(decoder.needed)
        chunk = frame[at:at + decoder.needed]
        at += len(chunk)
        frames = decoder.feed(chunk)
        if frames:
            break
    assert asked == [4, 41] and at == len(frame)
    assert decoder.needed == 4
    decoder.feed(b"\x00\xa5")          # junk skipped, then a frame start
    assert decoder.needed == 3
