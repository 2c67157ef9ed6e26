"""cocotb tests of the whole board logic (rtn_hw.gateware.link.SerialClassifier: UART, link
and the board's engine, as boards.top.board_logic builds it for the bitstream) on its pins,
driven by the host driver (`rtn_hw.host.BoardClient`) through `SimTransport`, against the
golden network (rtn_hw.model) on the network's shipped test split (an image of more than 255
pixels travels in PARTs, as the host driver sends it).

Settings come from the environment (sim/board/run.py sets them): RTN_BOARD_DIVISOR,
RTN_BOARD_TIMEOUT (the link's inter-byte timeout, cycles), RTN_BOARD_PERIOD_PS,
RTN_BOARD_IMAGES, RTN_BOARD_SEED, RTN_BOARD_LANES, RTN_BOARD_CHANNELS, RTN_BOARD_STATS,
RTN_BOARD_NETWORK (the manifest), RTN_BOARD_ENGINE_CYCLES (the engine's latency, for the
time limits).
"""

import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge
from cocotb.triggers import ClockCycles
from cocotb.utils import get_sim_time

from rtn_hw import host, protocol, weights
from rtn_hw.files import update_json
from rtn_hw.interop.qonnx_check import test_split
from uart_model import SimTransport, UartLine

E = protocol.ErrorCode
SIM_WAIT_CYCLES = 20_000    # long enough for an INFO reply at the simulation's baud rate


def _setting(name):
    return int(os.environ[f"RTN_BOARD_{name}"])


def _record(test, values):
    path = os.environ.get("RTN_BOARD_STATS")
    if not path:
        return
    update_json(path, lambda stats: {**stats, test: values})


async def _start(dut):
    divisor, timeout = _setting("DIVISOR"), _setting("TIMEOUT")
    period = _setting("PERIOD_PS")
    Clock(dut.clk, period, unit="ps").start()
    dut.rst.value = 1
    line = UartLine(dut.clk, dut.rx, dut.tx, divisor, period)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    # The deadline outlasts the link's inter-byte timeout, the engine and a long reply; each
    # read polls for a few byte times, as a serial port's short read timeout.
    deadline_cycles = 2 * timeout + 100 * 10 * divisor
    transport = SimTransport(line, timeout_cycles=4 * 10 * divisor)
    client = host.BoardClient(transport, timeout=deadline_cycles * period * 1e-12,
                              clock=transport.clock)
    return client, line


def _network():
    return weights.load(os.environ.get("RTN_BOARD_NETWORK") or weights.DEFAULT_MANIFEST)


def _test_images(net):
    split = test_split(net)
    assert split is not None, f"no shipped test split takes {net.source}'s input"
    return split[1:]


def _expected_info(net):
    last = net.layers[-1]
    return protocol.Info(protocol.VERSION, net.input.features, last.out_features,
                         net.input.pixel_max, last.out_fmt.width, _setting("LANES"),
                         _setting("CHANNELS"))


def _image_ms():
    """Simulated milliseconds one image takes at most: its request frames, every pixel
    escaped, its replies and the engine's latency."""
    if "RTN_BOARD_NETWORK" not in os.environ:
        return 1.0                   # collected outside run.py (no limits needed)
    features = _network().input.features
    frames = -(-features // protocol.MAX_PAYLOAD)
    bytes_ = 2 * features + frames * 20 + protocol.LOGIT_BYTES * 10
    cycles = bytes_ * 10 * _setting("DIVISOR") + _setting("ENGINE_CYCLES")
    return cycles * _setting("PERIOD_PS") * 1e-9


# Simulated-time limits, so a hung board fails fast: about 4x what an image needs.
_IMAGES_FOR_LIMIT = int(os.environ.get("RTN_BOARD_IMAGES", "1"))
_IMAGE_MS = _image_ms()


@cocotb.test(timeout_time=round(20 + 4 * _IMAGE_MS * (_IMAGES_FOR_LIMIT + 2)),
             timeout_unit="ms")
async def images(dut):
    """INFO, then RTN_BOARD_IMAGES test images through the host driver's run loop: every
    class equals the golden network's; the first two also with their logits."""
    client, line = await _start(dut)
    net = _network()
    images, labels = _test_images(net)
    count = _setting("IMAGES")
    images, labels = images[:count], labels[:count]
    _, golden = net.forward(images)
    golden_logits, _ = net.forward(images[:2])

    @bridge
    def host_session():
        info = client.info()
        with_logits = [client.classify(image, logits=True) for image in images[:2]]
        return info, with_logits, host.run_images(client, images, labels)

    began_wall, began_sim = time.perf_counter(), get_sim_time("ns")
    info, with_logits, result = await host_session()
    wall = time.perf_counter() - began_wall
    sim_ns = get_sim_time("ns") - began_sim

    assert info == _expected_info(net), info
    for k, prediction in enumerate(with_logits):
        assert prediction.logits == tuple(int(v) for v in golden_logits[k]), k
        assert prediction.label == golden[k]
    mismatches = [k for k in range(count) if result.predictions[k] != golden[k]]
    assert not mismatches, f"images {mismatches[:10]} differ from the golden network"
    assert line.framing_errors == 0
    _record("images", {
        "images": count, "mismatches": len(mismatches), "correct_labels": result.correct,
        # Wall time of the host driver's run loop alone (INFO and the logits requests aside).
        "wall_seconds": round(result.seconds, 3),
        "images_per_second_wall": round(count / result.seconds, 2),
        "session_wall_seconds": round(wall, 3),
        "simulated_ms": round(sim_ns / 1e6, 3),
        "bytes": client.transport.bytes_written + client.transport.bytes_read})


@cocotb.test(timeout_time=round(100 + 4 * 16 * _IMAGE_MS), timeout_unit="ms")
async def errors_then_recover(dut):
    """Every broken frame gets its error reply, and a good image right after is answered. For
    an image of more than 255 pixels the broken frame is the last request, after its PARTs
    were acknowledged; a PART with a bad checksum and garbage between PARTs are cases too."""
    client, line = await _start(dut)
    net = _network()
    images, _ = _test_images(net)
    rng = np.random.default_rng(_setting("SEED"))
    image = images[int(rng.integers(len(images)))]
    _, golden = net.forward(image[None])
    pixel_max, features = net.input.pixel_max, net.input.features
    parts, rest = protocol.split_image(image, features=features, pixel_max=pixel_max)
    command = protocol.Command.CLASSIFY
    good = protocol.encode_frame(command, rest)

    def with_crc(cmd, payload, crc_of=None, flip=0):
        """A frame of `payload` whose CRC is of `crc_of` (default the payload) XOR `flip`."""
        body = bytes([cmd, 0, len(payload)]) + bytes(payload)
        sent = bytes([cmd, 0, len(payload)]) + bytes(payload if crc_of is None else crc_of)
        crc = protocol.crc16(sent) ^ flip
        return bytes([protocol.SYNC]) + protocol.stuff(
            body + crc.to_bytes(protocol.CRC_BYTES, "big"))

    # One pixel changed (within range) after the CRC was computed over the image.
    k = int(rng.integers(len(rest)))
    corrupted = bytearray(rest)
    corrupted[k] = (corrupted[k] + 1) % (pixel_max + 1)
    # Noise without SYNC (which would start a frame) or ESC.
    garbage = rng.integers(0, 256, 40, dtype=np.uint8)
    garbage[(garbage == protocol.SYNC) | (garbage == protocol.ESC)] = 0x00
    stale = protocol.encode_info(seq=77)
    cases = [
        ("bad checksum", with_crc(command, rest, flip=0x0001), E.BAD_CHECKSUM),
        ("corrupted pixel", with_crc(command, corrupted, crc_of=rest), E.BAD_CHECKSUM),
        ("bad length", protocol.encode_frame(command, bytes(len(rest) - 1)), E.BAD_LENGTH),
        ("unknown command", protocol.encode_frame(0x42, b"\x07"), E.UNKNOWN_COMMAND),
    ]
    if pixel_max < 255:
        cases.append(("pixel range", protocol.encode_frame(command,
                                                           bytes([pixel_max + 1]) * len(rest)),
                      E.PIXEL_RANGE))
    cases += [
        ("truncated", good[:min(30, len(good) // 2)], E.TIMEOUT),
        ("truncated header", good[:2], E.TIMEOUT),
        ("garbage", bytes(garbage), E.BAD_SYNC),
    ]
    # (name, frame, code, PARTs acknowledged before the frame)
    cases = [(name, frame, code, parts) for name, frame, code in cases]
    if parts:
        cases += [
            ("PART bad checksum", with_crc(protocol.Command.PART, parts[0], flip=0x0001),
             E.BAD_CHECKSUM, []),
            ("garbage between PARTs", bytes(garbage), E.BAD_SYNC, parts[:1]),
        ]

    @bridge
    def host_session():
        seen = []
        for name, frame, code, before in cases:
            for held, pixels in enumerate(before, 1):
                ack = client.request(lambda seq: protocol.encode_part(pixels, seq=seq),
                                     protocol.Command.PART, protocol.PartAck)
                assert ack.held == sum(map(len, before[:held])), (name, ack)
            client.send(frame)
            reply = client.receive()
            prediction = client.classify(image)
            seen.append((name, reply, prediction.label))
        # A request whose reply the host never reads: the next request flushes it, and its
        # SEQ would not match anyway.
        client.send(stale)
        transport.wait(SIM_WAIT_CYCLES)
        return seen, client.classify(image).label

    transport = client.transport
    seen, after_stale = await host_session()
    for (name, _, code, _), (_, reply, label) in zip(cases, seen):
        assert reply == protocol.ErrorReply(code), (name, reply)
        assert label == golden[0], name
    assert after_stale == golden[0]
    _record("errors", {"cases": len(cases)})
