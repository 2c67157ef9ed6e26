"""cocotb tests of the whole board logic (rtn_hw.gateware.link.SerialClassifier: UART, link
and the real NetworkEngine with the shipped weights) on its pins, driven by the host driver
(`rtn_hw.host.BoardClient`) through `SimTransport`.

Settings come from the environment (sim/board/run.py sets them): RTN_BOARD_DIVISOR,
RTN_BOARD_TIMEOUT (the link's inter-byte timeout, cycles), RTN_BOARD_PERIOD_PS,
RTN_BOARD_IMAGES, RTN_BOARD_SEED, RTN_BOARD_LANES, RTN_BOARD_CHANNELS, RTN_BOARD_STATS.
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


def _expected_info():
    net = weights.load()
    last = net.layers[-1]
    return protocol.Info(protocol.VERSION, net.input.features, last.out_features,
                         net.input.pixel_max, last.out_fmt.width, _setting("LANES"),
                         _setting("CHANNELS"))


# Simulated-time limits, so a hung board fails fast: about 4x what the slower board needs.
_IMAGES_FOR_LIMIT = int(os.environ.get("RTN_BOARD_IMAGES", "1"))


@cocotb.test(timeout_time=20 + 2 * _IMAGES_FOR_LIMIT, timeout_unit="ms")
async def digits(dut):
    """INFO, then RTN_BOARD_IMAGES digits test images through the host driver's run loop:
    every class equals the golden network's; the first two also with their logits."""
    client, line = await _start(dut)
    net = weights.load()
    images, labels = weights.load_digits_test()
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

    assert info == _expected_info(), info
    for k, prediction in enumerate(with_logits):
        assert prediction.logits == tuple(int(v) for v in golden_logits[k]), k
        assert prediction.label == golden[k]
    mismatches = [k for k in range(count) if result.predictions[k] != golden[k]]
    assert not mismatches, f"images {mismatches[:10]} differ from the golden network"
    assert line.framing_errors == 0
    _record("digits", {
        "images": count, "mismatches": len(mismatches), "correct_labels": result.correct,
        # Wall time of the host driver's run loop alone (INFO and the logits requests aside).
        "wall_seconds": round(result.seconds, 3),
        "images_per_second_wall": round(count / result.seconds, 2),
        "session_wall_seconds": round(wall, 3),
        "simulated_ms": round(sim_ns / 1e6, 3),
        "bytes": client.transport.bytes_written + client.transport.bytes_read})


@cocotb.test(timeout_time=100, timeout_unit="ms")
async def errors_then_recover(dut):
    """Every broken frame gets its error reply, and a good frame right after is answered."""
    client, line = await _start(dut)
    net = weights.load()
    images, _ = weights.load_digits_test()
    rng = np.random.default_rng(_setting("SEED"))
    image = images[int(rng.integers(len(images)))]
    _, golden = net.forward(image[None])
    pixel_max, features = net.input.pixel_max, net.input.features
    good = protocol.encode_classify(image, features=features, pixel_max=pixel_max)
    body = bytes([protocol.Command.CLASSIFY, 0, features]) + bytes(int(p) for p in image)
    bad_crc = bytes([protocol.SYNC]) + protocol.stuff(
        body + (protocol.crc16(body) ^ 0x0001).to_bytes(protocol.CRC_BYTES, "big"))
    corrupted = bytearray(good)       # pixels (0..pixel_max) are never stuffed
    corrupted[protocol.HEADER_BYTES + int(rng.integers(features))] ^= 0x08
    # Noise without SYNC (which would start a frame) or ESC.
    garbage = rng.integers(0, 256, 40, dtype=np.uint8)
    garbage[(garbage == protocol.SYNC) | (garbage == protocol.ESC)] = 0x00
    stale = protocol.encode_info(seq=77)
    cases = [
        ("bad checksum", bytes(bad_crc), E.BAD_CHECKSUM),
        ("corrupted pixel", bytes(corrupted), E.BAD_CHECKSUM),
        ("bad length", protocol.encode_frame(protocol.Command.CLASSIFY, bytes(features - 1)),
         E.BAD_LENGTH),
        ("unknown command", protocol.encode_frame(0x42, b"\x07"), E.UNKNOWN_COMMAND),
        ("pixel range", protocol.encode_frame(protocol.Command.CLASSIFY,
                                              bytes([pixel_max + 1]) * features),
         E.PIXEL_RANGE),
        ("truncated", good[:30], E.TIMEOUT),
        ("truncated header", good[:2], E.TIMEOUT),
        ("garbage", bytes(garbage), E.BAD_SYNC),
    ]

    @bridge
    def host_session():
        seen = []
        for name, frame, code in cases:
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
    for (name, _, code), (_, reply, label) in zip(cases, seen):
        assert reply == protocol.ErrorReply(code), (name, reply)
        assert label == golden[0], name
    assert after_stale == golden[0]
    _record("errors", {"cases": len(cases)})
