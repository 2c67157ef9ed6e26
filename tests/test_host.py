"""The host driver (rtn_hw.host) and `rtn-hw run`, against an in-memory board model.

The board model answers with the protocol's own board-side encoders and the golden network;
tests/test_board_sim.py runs the same client against the simulated gateware."""

import os
import re

import numpy as np
import pytest

from rtn_hw import cli, host, protocol, weights


class ModelTransport:
    """A transport whose far end is a Python board: the golden network behind the protocol."""

    def __init__(self, *, drop_replies=False, error=None):
        self.net = weights.load()
        self.pending = bytearray()
        self.outbox = bytearray()
        self.drop_replies = drop_replies
        self.error = error
        self.requests = 0

    def write(self, data):
        self.pending += data
        decoder = protocol.FrameDecoder()
        for frame in decoder.feed(bytes(self.pending)):
            self.requests += 1
            self.outbox += self._answer(frame)
        self.pending = bytearray(decoder._buffer)

    def _answer(self, frame):
        if self.drop_replies:
            return b""
        if self.error is not None:
            return protocol.encode_error_reply(self.error)
        if frame.command == protocol.Command.INFO:
            last = self.net.layers[-1]
            return protocol.encode_info_reply(protocol.Info(
                1, 64, last.out_features, 16, last.out_fmt.width, 32, 2))
        logits, classes = self.net.forward(np.frombuffer(frame.payload, np.uint8)[None])
        if frame.command == protocol.Command.LOGITS:
            return protocol.encode_prediction_reply(int(classes[0]), logits[0])
        return protocol.encode_prediction_reply(int(classes[0]))

    def read(self, size):
        out = bytes(self.outbox[:size])
        del self.outbox[:size]
        return out

    def reset_input(self):
        self.outbox.clear()

    def close(self):
        pass


def test_client_classifies_like_the_golden_network():
    images, labels = weights.load_digits_test()
    images, labels = images[:20], labels[:20]
    client = host.BoardClient(ModelTransport())
    info = client.info()
    assert (info.features, info.classes, info.pixel_max) == (64, 10, 16)
    logits, classes = weights.load().forward(images[:1])
    assert client.classify(images[0], logits=True) == protocol.Prediction(
        int(classes[0]), tuple(int(v) for v in logits[0]))
    seen = []
    result = host.run_images(client, images, labels,
                             progress=lambda *args: seen.append(args))
    assert result.predictions == [int(c) for c in weights.load().forward(images)[1]]
    assert result.correct == sum(int(p == l) for p, l in zip(result.predictions, labels))
    assert len(seen) == 20 and seen[0][0] == 0
    assert result.images_per_second > 0


def test_client_timeout_and_error_reply():
    client = host.BoardClient(ModelTransport(drop_replies=True))
    with pytest.raises(host.HostError, match=r"^no reply from the board \(timeout\)$"):
        client.info()
    client = host.BoardClient(ModelTransport(error=protocol.ErrorCode.BAD_CHECKSUM))
    with pytest.raises(host.BoardError, match="^board replied with error BAD_CHECKSUM$"):
        client.info()


def test_client_rejects_bad_images_before_sending():
    transport = ModelTransport()
    client = host.BoardClient(transport)
    client.info()
    with pytest.raises(protocol.ProtocolError, match="^Pixel 3 must lie in 0..16, not 20$"):
        client.classify([0, 0, 0, 20] + [0] * 60)
    assert transport.requests == 1


def _run_cli(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_run_digits(monkeypatch, capsys):
    monkeypatch.setattr(host, "SerialTransport", lambda port, baud, timeout: ModelTransport())
    status, out, err = _run_cli(["run", "--port", "model", "--digits-test"], capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "board: 64 pixels (0..16), 10 classes, lanes=32 channels=2"
    images, labels = weights.load_digits_test()
    correct, total = weights.load().accuracy(images, labels)
    assert lines[-2] == f"accuracy: {correct}/{total} ({100 * correct / total:.1f}%)"
    assert re.fullmatch(r"throughput: [\d.]+ images/s \(359 images in [\d.]+ s\)", lines[-1])
    assert len(lines) == 3 + total


def test_cli_run_images_file(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(host, "SerialTransport", lambda port, baud, timeout: ModelTransport())
    images, _ = weights.load_digits_test()
    path = tmp_path / "few.npy"
    np.save(path, images[:3])
    status, out, _ = _run_cli(["run", "--port", "x", "--images", str(path)], capsys)
    assert status == 0
    assert out.splitlines()[1].startswith("image 0: class ")
    assert "accuracy" not in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--digits-test"], "run: --port PORT is required"),
    (["run", "--port", "p"], "run: expected --images FILE or --digits-test"),
    (["run", "--port", "p", "--digits-test", "--baud", "fast"],
     "--baud fast: expected a positive integer"),
    (["run", "--port", "p", "--digits-test", "--timeout", "-1"],
     "--timeout -1: expected a positive number"),
    (["run", "--port", "p", "--images", "/nonexistent/x.npz"],
     "/nonexistent/x.npz: cannot read images (No such file or directory)"),
    (["run", "--port", "/dev/nonexistent-rtn-port", "--digits-test"], None),
])
def test_cli_run_rejects(argv, message, capsys):
    status, out, err = _run_cli(argv, capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1
    if message is None:
        assert err.startswith("rtn-hw: error: cannot open port /dev/nonexistent-rtn-port (")
    else:
        assert err == f"rtn-hw: error: {message}\n"


def test_cli_run_busy_port(capsys):
    """A port another program holds (pyserial's exclusive lock) is reported as busy."""
    pytest.importorskip("serial")
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        holder = host.SerialTransport(name, timeout=0.1)
        try:
            status, _, err = _run_cli(["run", "--port", name, "--digits-test"], capsys)
        finally:
            holder.close()
    finally:
        os.close(master)
        os.close(slave)
    assert status == 2
    assert err.startswith(f"rtn-hw: error: port {name} is busy (")


def test_cli_run_no_reply(monkeypatch, capsys):
    monkeypatch.setattr(host, "SerialTransport",
                        lambda port, baud, timeout: ModelTransport(drop_replies=True))
    status, _, err = _run_cli(["run", "--port", "p", "--digits-test"], capsys)
    assert status == 2
    assert err == "rtn-hw: error: --port p: no reply from the board (timeout)\n"
