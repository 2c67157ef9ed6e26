"""The serial protocol's pure-Python encoders and decoders (rtn_hw.protocol).

tests/test_fuzz_protocol.py throws random byte streams at the decoder; these are the corner
cases, each named."""

import re

import numpy as np
import pytest

from rtn_hw import protocol as p


def test_crc16_check_value():
    # CRC-16/IBM-3740's catalogue check value, and the empty string (the initial value).
    assert p.crc16(b"123456789") == 0x29B1
    assert p.crc16(b"") == 0xFFFF
    assert p.crc16(b"6789", p.crc16(b"12345")) == 0x29B1


def test_crc16_detects_every_double_bit_error(rng):
    # Hamming distance 4 at this length: every 1-, 2- and 3-bit error is caught; 2 shown here.
    body = bytes(rng.integers(0, 256, 67, dtype=np.uint8))
    crc = p.crc16(body)
    bits = len(body) * 8
    for first in range(0, bits, 7):
        for second in range(first, bits):
            flipped = bytearray(body)
            flipped[first // 8] ^= 1 << (first % 8)
            if second != first:
                flipped[second // 8] ^= 1 << (second % 8)
            assert p.crc16(flipped) != crc, (first, second)


def test_frame_layout():
    frame = p.encode_frame(p.Command.CLASSIFY, bytes([1, 2, 3]), seq=0x42)
    assert frame[:4] == bytes([0xA5, 0x02, 0x42, 3])
    assert frame[4:7] == bytes([1, 2, 3])
    assert frame[7:] == p.crc16(bytes([0x02, 0x42, 3, 1, 2, 3])).to_bytes(2, "big")
    assert p.encode_info() == bytes([0xA5, 0x01, 0x00, 0x00]) + p.crc16(b"\x01\x00\x00").to_bytes(
        2, "big")


def test_classify_roundtrip_through_decoder():
    image = np.arange(64) % 17
    frame = p.encode_classify(image, features=64, pixel_max=16, seq=7)
    assert len(frame) == 70
    frames = p.decode_frames(frame)
    assert frames == [p.Frame(p.Command.CLASSIFY, bytes(image.astype(np.uint8)), 7)]
    logits = p.encode_classify(image, features=64, pixel_max=16, logits=True)
    assert logits[1] == p.Command.LOGITS


@pytest.mark.parametrize("image, message", [
    (list(range(63)), "Image must have 64 pixels, not 63"),
    ([0] * 10 + [17] + [0] * 53, "Pixel 10 must be an integer 0..16, not 17"),
    ([-1] + [0] * 63, "Pixel 0 must be an integer 0..16, not -1"),
    ([0, 2.5] + [0] * 62, "Pixel 1 must be an integer 0..16, not 2.5"),
    ([0, 0, 3.0] + [0] * 61, "Pixel 2 must be an integer 0..16, not 3.0"),
    ([True] + [0] * 63, "Pixel 0 must be an integer 0..16, not True"),
    (["1"] + [0] * 63, "Pixel 0 must be an integer 0..16, not '1'"),
    (np.full(64, 1.5), "Pixel 0 must be an integer 0..16, not np.float64(1.5)"),
    (None, "Image must be a sequence of 64 pixels, not NoneType"),
    (7, "Image must be a sequence of 64 pixels, not int"),
])
def test_classify_rejects(image, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        p.encode_classify(image, features=64, pixel_max=16)


def test_classify_takes_numpy_integers():
    image = np.arange(64, dtype=np.int64) % 17
    assert p.encode_classify(image, features=64, pixel_max=16) == p.encode_classify(
        [int(v) for v in image], features=64, pixel_max=16)


@pytest.mark.parametrize("command, payload, seq, message", [
    (256, b"", 0, "Command must be an integer 0..255, not 256"),
    ("x", b"", 0, "Command must be an integer 0..255, not 'x'"),
    (1.0, b"", 0, "Command must be an integer 0..255, not 1.0"),
    (1, bytes(256), 0, "Payload must be at most 255 bytes, not 256"),
    (1, [256], 0, "Payload must be bytes, not list"),
    (1, 3.5, 0, "Payload must be bytes, not float"),
    (1, b"", 256, "Sequence number must be an integer 0..255, not 256"),
    (1, b"", -1, "Sequence number must be an integer 0..255, not -1"),
])
def test_frame_rejects(command, payload, seq, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        p.encode_frame(command, payload, seq=seq)


@pytest.mark.parametrize("call, message", [
    (lambda: p.encode_prediction_reply(256), "Label must be an integer 0..255, not 256"),
    (lambda: p.encode_prediction_reply(1, [2**31]),
     "Logit must be an integer -2147483648..2147483647, not 2147483648"),
    (lambda: p.encode_prediction_reply(1, [0.5]),
     "Logit must be an integer -2147483648..2147483647, not 0.5"),
    (lambda: p.encode_prediction_reply(1, False), "Logits must be a sequence of integers, "
                                                  "not bool"),
    (lambda: p.encode_error_reply(300), "Error code must be an integer 0..255, not 300"),
    (lambda: p.encode_part_reply(65536), "Held pixel count must be an integer 0..65535, not "
                                         "65536"),
    (lambda: p.encode_info_reply(p.Info(4, 65536, 10, 16, 24, 0, 0)),
     "Feature count must be an integer 0..65535, not 65536"),
    (lambda: p.encode_info_reply(p.Info(2, 64, 10, 16, 24, 70000, 1)),
     "Lane count must be an integer 0..65535, not 70000"),
])
def test_board_encoders_reject(call, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        call()


def test_replies_roundtrip():
    info = p.Info(p.VERSION, 64, 10, 16, 24, 32, 4)
    logits = (-1500174, 1843851, 0, -1, 2**23 - 1, -(2**23), 5, 6, 7, 8)
    stream = (b"\x00\x13" + p.encode_info_reply(info, seq=1) + p.encode_prediction_reply(7, seq=2)
              + b"\xff" + p.encode_prediction_reply(4, logits, seq=3)
              + p.encode_error_reply(p.ErrorCode.TIMEOUT, seq=4))
    decoder = p.FrameDecoder()
    # Byte by byte: the decoder holds partial frames back.
    frames = [f for byte in stream for f in decoder.feed(bytes([byte]))]
    assert decoder.skipped == 3 and decoder.pending == 0 and decoder.rejected == 0
    assert [f.seq for f in frames] == [1, 2, 3, 4]
    replies = [p.decode_reply(f, classes=10, logit_width=24) for f in frames]
    assert replies == [info, p.Prediction(7), p.Prediction(4, logits),
                       p.ErrorReply(p.ErrorCode.TIMEOUT)]
    assert replies[3].name == "TIMEOUT"
    assert p.ErrorReply(0x42).name == "0x42"


def test_decoder_drops_bad_crc_without_raising():
    good = p.encode_prediction_reply(4, seq=1)
    bad = bytearray(good)
    bad[-1] ^= 0x10
    decoder = p.FrameDecoder()
    assert decoder.feed(bytes(bad)) == []
    assert decoder.rejected == 1
    assert decoder.feed(good) == [p.Frame(0x82, b"\x04", 1)]


def test_decoder_keeps_frames_decoded_before_a_bad_one():
    one, two = p.encode_prediction_reply(1, seq=1), p.encode_prediction_reply(2, seq=2)
    bad = bytearray(two)
    bad[4] ^= 1
    frames = p.decode_frames(one + bytes(bad) + two)
    assert [f.seq for f in frames] == [1, 2]


@pytest.mark.parametrize("garbage", [
    b"\xa5",                                   # a lone SYNC
    b"\xa5\x82",                               # a header cut short
    b"\xa5\x82\x01\x01",                       # a frame truncated before its payload
    b"\xa5\x82\x01\x01\x03\x99",               # truncated inside its CRC
    b"\xa5\x83\x00\xff",                       # a LEN that claims 255 bytes
    b"\x00\xa5\xa5\xa5\x13\xa5",               # SYNC bytes inside a burst
    bytes(p.encode_prediction_reply(3)[:-1]),  # a good frame's header, CRC missing
    b"\xa5\x82\x01\x01\x7d",                  # cut after an ESC byte
    b"\x7d",                                   # a lone ESC
], ids=["sync", "header", "truncated", "crc-cut", "long-len", "syncs", "no-crc", "esc-cut",
        "esc"])
@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "bytewise"])
def test_decoder_finds_the_good_frame_after_garbage(garbage, chunked):
    """Whatever garbage comes first, the good frame right behind it is decoded at once."""
    good = p.encode_prediction_reply(9, seq=0x33)
    decoder = p.FrameDecoder()
    data = garbage + good
    chunks = [data[k:k + 1] for k in range(len(data))] if chunked else [data]
    frames = [f for chunk in chunks for f in decoder.feed(chunk)]
    assert frames == [p.Frame(0x82, b"\x09", 0x33)]


def test_stuffing_keeps_sync_out_of_the_frame_body():
    """A payload of SYNC and ESC bytes travels escaped: the only SYNC on the line is the
    frame's first byte, and the frame decodes to the same payload."""
    payload = bytes([p.SYNC, p.ESC, 0x85, 0x5D, p.SYNC, p.SYNC, 0x00])
    frame = p.encode_frame(0x42, payload, seq=p.SYNC)
    assert frame.count(p.SYNC) == 1 and frame[0] == p.SYNC
    assert p.stuff(payload) == bytes([0x7D, 0x85, 0x7D, 0x5D, 0x85, 0x5D, 0x7D, 0x85,
                                      0x7D, 0x85, 0x00])
    assert p.decode_frames(frame) == [p.Frame(0x42, payload, p.SYNC)]


def test_decoder_rejects_an_escape_of_another_byte():
    """Only SYNC and ESC are ever escaped: ESC followed by anything else ends the candidate
    (the CRC could otherwise pass a frame no encoder sends)."""
    body = bytes([0x82, 1, 1, 0x01])
    frame = (bytes([p.SYNC]) + body[:3] + bytes([p.ESC, 0x01 ^ p.ESCAPE_XOR])
             + p.stuff(p.crc16(body).to_bytes(2, "big")))   # the CRC checks
    decoder = p.FrameDecoder()
    assert decoder.feed(frame) == [] and decoder.rejected == 1
    assert decoder.feed(p.encode_prediction_reply(1, seq=2)) == [p.Frame(0x82, b"\x01", 2)]


def test_decoder_lengths_filter_rejects_headers_early():
    decoder = p.FrameDecoder(lengths=p.reply_lengths(10))
    # A well-formed frame, but not a reply a host can get: rejected on its header.
    assert decoder.feed(p.encode_frame(0x02, b"\x01")) == []
    assert decoder.rejected == 1 and decoder.pending == 0
    assert decoder.feed(p.encode_frame(0x82, b"\x01\x02")) == []
    assert decoder.feed(p.encode_prediction_reply(1)) == [p.Frame(0x82, b"\x01", 0)]


def _info_frame(**changes):
    fields = dict(version=p.VERSION, features=64, classes=10, pixel_max=16, logit_width=24,
                  lanes=32, channels=4)
    fields.update(changes)
    return p.decode_frames(p.encode_info_reply(p.Info(**fields)))[0]


def _logits_frame(label, logits):
    return p.decode_frames(p.encode_prediction_reply(label, logits))[0]


@pytest.mark.parametrize("frame, message", [
    (p.Frame(0x82, b""), "CLASSIFY reply must carry 1 payload bytes, not 0"),
    (p.Frame(0xFF, b"\x01\x02"), "ERROR reply must carry 1 payload bytes, not 2"),
    (p.Frame(0x83, b"\x01" * 5), "LOGITS reply must carry 41 payload bytes, not 5"),
    (p.Frame(0x42, b""), "Unknown reply command 0x42"),
    (p.Frame(0x82, b"\x0a"), "reply has class 10, expected 0..9"),
    (_logits_frame(12, [0] * 10), "reply has class 12, expected 0..9"),
    (_logits_frame(1, [5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
     "LOGITS reply has class 1 but its logits peak at class 0"),
    (_logits_frame(0, [2**23] + [0] * 9),
     "LOGITS reply has logit 0 = 8388608, outside 24-bit signed range"),
    (_info_frame(version=2), "INFO reply has protocol version 2; this host speaks version 4 "
                             "(rebuild the bitstream or update rtn-hw)"),
    (_info_frame(classes=0), "INFO reply has classes 0, expected 1..63"),
    (_info_frame(features=0), "INFO reply has features 0, expected 1..65535"),
    (p.Frame(0x81, bytes(9)), "INFO reply must carry 10 payload bytes, not 9"),   # version 3
    (p.Frame(0x84, b"\x01"), "PART reply must carry 2 payload bytes, not 1"),
    (_info_frame(pixel_max=0), "INFO reply has pixel_max 0, expected 1..255"),
    (_info_frame(logit_width=40), "INFO reply has logit_width 40, expected 1..32"),
])
def test_decode_reply_rejects(frame, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        p.decode_reply(frame, classes=10, logit_width=24)


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
    assert asked == [6, 41] and at == len(frame)
    assert decoder.needed == 6
    decoder.feed(b"\x00\xa5")          # junk skipped, then a frame start
    assert decoder.needed == 5


def test_decoder_needed_stays_inside_a_stuffed_frame():
    """Escapes make a frame longer on the line than its LEN says; `needed` counts what is
    left before unstuffing, so a reader that follows it still never reads past the frame."""
    frame = p.encode_prediction_reply(3, [0xA5A5, -0x5A5A, 0x7D7D7D] + [0xA5] * 7)
    assert len(frame) > 4 + 41 + 2
    line = frame + p.encode_prediction_reply(4)
    decoder = p.FrameDecoder()
    at, frames = 0, []
    while not frames:
        chunk = line[at:at + decoder.needed]
        at += len(chunk)
        frames = decoder.feed(chunk)
    assert at == len(frame) and frames[0].payload[0] == 3


def test_info_reply_carries_16_bit_features():
    """The features' high byte is the INFO reply's last (10th) byte."""
    info = p.Info(p.VERSION, 784, 10, 255, 24, 0, 0)
    frame = p.decode_frames(p.encode_info_reply(info, seq=5))[0]
    assert frame.payload == bytes([4, 784 & 0xFF, 10, 255, 24, 0, 0, 0, 0, 784 >> 8])
    assert p.decode_reply(frame) == info
    assert p.decode_reply(p.decode_frames(p.encode_info_reply(
        p.Info(p.VERSION, 65535, 10, 255, 24, 0, 0)))[0]).features == 65535


def test_part_request_and_reply():
    frame = p.encode_part(bytes([1, p.SYNC, 3]), seq=9)
    assert p.decode_frames(frame) == [p.Frame(p.Command.PART, bytes([1, p.SYNC, 3]), 9)]
    assert frame[:4] == bytes([p.SYNC, 0x04, 9, 3])
    reply = p.encode_part_reply(510, seq=9)
    decoded = p.decode_frames(reply, lengths=p.reply_lengths())
    assert decoded == [p.Frame(0x84, (510).to_bytes(2, "little"), 9)]
    assert p.decode_reply(decoded[0]) == p.PartAck(510)


@pytest.mark.parametrize("pixels, message", [
    (b"", "A PART must carry 1..255 pixels, not 0"),
    (bytes(256), "Payload must be at most 255 bytes, not 256"),
    (5, "Payload must be bytes, not int"),
])
def test_part_rejects(pixels, message):
    with pytest.raises(p.ProtocolError, match=f"^{re.escape(message)}$"):
        p.encode_part(pixels)


@pytest.mark.parametrize("features, parts, last", [
    (64, [], 64), (255, [], 255), (256, [255], 1), (510, [255], 255), (511, [255, 255], 1),
    (784, [255, 255, 255], 19)])
def test_split_image(features, parts, last):
    image = np.arange(features) % 256
    got_parts, got_last = p.split_image(image, features=features, pixel_max=255)
    assert [len(part) for part in got_parts] == parts and len(got_last) == last
    assert b"".join(got_parts) + got_last == bytes(image.astype(np.uint8))


def test_split_image_checks_pixels():
    with pytest.raises(p.ProtocolError, match=r"^Pixel 700 must be an integer 0\.\.254, not 255$"):
        p.split_image([0] * 700 + [255] * 84, features=784, pixel_max=254)
    with pytest.raises(p.ProtocolError, match=r"^Image must have 784 pixels, not 783$"):
        p.split_image([0] * 783, features=784, pixel_max=255)
