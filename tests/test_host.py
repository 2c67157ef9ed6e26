"""The host driver (rtn_hw.host) and `rtn-hw run`, against an in-memory board model.

The board model (tests/board_model.py) answers with the protocol's own board-side encoders
and the golden network; tests/test_fuzz_host.py makes it misbehave, and
tests/test_board_sim.py runs the same client against the simulated gateware."""

import os
import re

import numpy as np
import pytest

from board_model import MNIST_CNN, FakeClock, HostileTransport, ModelBoard, ModelTransport, \
    network
from rtn_hw import cli, host, protocol, weights


def client_for(transport, timeout=2.0):
    return host.BoardClient(transport, timeout=timeout, clock=transport.clock)


def test_client_classifies_like_the_golden_network():
    images, labels = weights.load_digits_test()
    images, labels = images[:20], labels[:20]
    client = client_for(ModelTransport())
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


def cnn_board():
    return ModelBoard(network(MNIST_CNN), lanes=0, channels=0)


def test_client_sends_a_large_image_in_parts():
    """The MNIST CNN's 784 pixels: three PARTs of 255 (each acknowledgment checked), then a
    CLASSIFY or LOGITS with the last 19; the golden network's classes and logits."""
    images, _ = weights.load_mnist5k_test()
    images = images[:6]
    transport = ModelTransport(board=cnn_board())
    sent = []
    real = transport.reply
    transport.reply = lambda frame: sent.append((frame.command, len(frame.payload))) or real(
        frame)
    client = client_for(transport)
    assert client.info().features == 784
    logits, classes = network(MNIST_CNN).forward(images)
    assert client.classify(images[0], logits=True) == protocol.Prediction(
        int(classes[0]), tuple(int(v) for v in logits[0]))
    P = protocol.Command
    assert sent[1:] == [(P.PART, 255)] * 3 + [(P.LOGITS, 19)]
    assert host.run_images(client, images).predictions == [int(c) for c in classes]
    assert len(sent) == 1 + 4 * 7


@pytest.mark.parametrize("faults, message", [
    ([None, None, "forget"], "bad reply to PART: the board holds 255 pixels, expected 510"),
    ([None, None, None, None, "forget"], "board replied with error BAD_LENGTH"),
    ([None, "wrong-kind"], "bad reply to PART (seq 2): Prediction(label=0, logits=None)"),
])
def test_client_checks_each_part(faults, message, rng):
    """A board that lost what it held is caught at the next acknowledgment (or by the
    board's own length check on the last request), never classifies a wrong image."""
    images, _ = weights.load_mnist5k_test()
    transport = HostileTransport(faults, rng=rng, board=cnn_board())
    client = client_for(transport)
    with pytest.raises(host.HostError, match=f"^{re.escape(message)}$"):
        client.classify(images[0])


def test_client_timeout_and_error_reply():
    transport = ModelTransport(drop_replies=True)
    client = client_for(transport)
    with pytest.raises(host.HostError,
                       match=r"^no reply to INFO \(seq 1\) within 2 s \(timeout\)$"):
        client.info()
    assert transport.clock() == pytest.approx(2.0)
    client = client_for(ModelTransport(error=protocol.ErrorCode.BAD_CHECKSUM))
    with pytest.raises(host.BoardError, match="^board replied with error BAD_CHECKSUM$"):
        client.info()


def test_client_rejects_bad_images_before_sending():
    transport = ModelTransport()
    client = client_for(transport)
    client.info()
    with pytest.raises(protocol.ProtocolError,
                       match="^Pixel 3 must be an integer 0..16, not 20$"):
        client.classify([0, 0, 0, 20] + [0] * 60)
    assert transport.requests == 1


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), 3601, "2", True])
def test_client_rejects_timeouts(timeout):
    with pytest.raises(ValueError, match="^Timeout must be a number of seconds above 0 and "
                                         "at most 3600, not "):
        host.BoardClient(ModelTransport(), timeout=timeout)


def test_client_sequence_numbers_wrap_past_zero():
    transport = ModelTransport()
    client = client_for(transport)
    seqs = []
    real = transport.reply
    transport.reply = lambda frame: seqs.append(frame.seq) or real(frame)
    for _ in range(300):
        client.info()
    assert seqs[:3] == [1, 2, 3] and 0 not in seqs and seqs[254:257] == [255, 1, 2]


def _factory(**options):
    """A stand-in for host.SerialTransport, and the client's clock set to its fake one."""
    def make(port, baud):
        transport = ModelTransport(**options)
        make.transport = transport
        return transport
    return make


def _run_cli(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_run_digits(monkeypatch, capsys):
    monkeypatch.setattr(host, "SerialTransport", _factory())
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
    monkeypatch.setattr(host, "SerialTransport", _factory())
    images, _ = weights.load_digits_test()
    path = tmp_path / "few.npy"
    np.save(path, images[:3])
    status, out, _ = _run_cli(["run", "--port", "x", "--images", str(path)], capsys)
    assert status == 0
    assert out.splitlines()[1].startswith("image 0: class ")
    assert "accuracy" not in out


def test_cli_run_mnist_cnn_board(monkeypatch, capsys, tmp_path):
    """`rtn-hw run --images` with MNIST images on a board running the CNN (PARTs)."""
    monkeypatch.setattr(host, "SerialTransport", _factory(board=cnn_board()))
    images, labels = weights.load_mnist5k_test()
    path = tmp_path / "mnist.npz"
    np.savez(path, images=images[:5], labels=labels[:5])
    status, out, err = _run_cli(["run", "--port", "x", "--images", str(path)], capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "board: 784 pixels (0..255), 10 classes, lanes=0 channels=0"
    classes = network(MNIST_CNN).forward(images[:5])[1]
    assert lines[1:6] == [f"image {k}: class {c} (label {labels[k]}"
                          f"{'' if c == labels[k] else ', MISS'})" for k, c in enumerate(classes)]


def _images_file(folder, name, data):
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _npz(**arrays):
    import io
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy(array):
    import io
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_header(shape, descr):
    """A .npy header claiming `shape` (no data)."""
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# (argv, the message after "rtn-hw: error: "); {tmp} is the test's folder, files made by name.
RUN_REJECTS = [
    (["run", "--digits-test"], "run: --port PORT is required"),
    (["run", "--port", "p"], "run: expected --images FILE or --digits-test"),
    (["run", "--port", "p", "--digits-test", "--baud", "fast"],
     "--baud fast: expected an integer from 50 to 12000000"),
    (["run", "--port", "p", "--digits-test", "--baud", "1e30"],
     "--baud 1e30: expected an integer from 50 to 12000000"),
    (["run", "--port", "p", "--digits-test", "--baud", "0"],
     "--baud 0: expected an integer from 50 to 12000000"),
    (["run", "--port", "p", "--digits-test", "--timeout", "-1"],
     "--timeout -1: expected a number above 0 and at most 3600"),
    (["run", "--port", "p", "--digits-test", "--timeout", "inf"],
     "--timeout inf: expected a number above 0 and at most 3600"),
    (["run", "--port", "p", "--digits-test", "--timeout", "nan"],
     "--timeout nan: expected a number above 0 and at most 3600"),
    (["run", "--port", "p", "--digits-test", "--timeout", "1e400"],
     "--timeout 1e400: expected a number above 0 and at most 3600"),
    (["run", "--port", "p", "--images", "/nonexistent/x.npz"],
     "/nonexistent/x.npz: (file): cannot read: No such file or directory"),
    (["run", "--port", "p", "--images", "{tmp}/empty.npz"],
     "{tmp}/empty.npz: (archive): not a readable .npz file of plain arrays"),
    (["run", "--port", "p", "--images", "{tmp}/truncated.npz"],
     "{tmp}/truncated.npz: (archive): not a readable .npz file of plain arrays (bytes after "
     "the archive, or a comment)"),
    (["run", "--port", "p", "--images", "{tmp}/none.npy"],
     "{tmp}/none.npy: images must hold at least one image of at least one pixel, not shape "
     "(0, 64)"),
    (["run", "--port", "p", "--images", "{tmp}/labels.npz"],
     "{tmp}/labels.npz: labels must be integers of shape (2,), not <U1 (2,)"),
    (["run", "--port", "p", "--images", "{tmp}/floats.npy"],
     "{tmp}/floats.npy: images must be an integer array (count, pixels), not float64 (2, 64)"),
    (["run", "--port", "p", "--images", "{tmp}/huge.npy"],
     "{tmp}/huge.npy: (array): header says uint8 (1099511627776, 64) (70368744177664 bytes), "
     "the member holds 0"),
    (["run", "--port", "p", "--images", "{tmp}"], "{tmp}: (file): cannot read: not a regular "
                                                   "file"),
]
IMAGE_FILES = {
    "empty.npz": b"",
    "truncated.npz": _npz(images=np.zeros((2, 64), np.uint8))[:-30],
    "none.npy": _npy(np.zeros((0, 64), np.uint8)),
    "labels.npz": _npz(images=np.zeros((2, 64), np.uint8), labels=np.array(["a", "b"])),
    "floats.npy": _npy(np.zeros((2, 64))),
    "huge.npy": _npy_header((2**40, 64), "|u1"),
}


@pytest.fixture
def images_folder(tmp_path):
    for name, data in IMAGE_FILES.items():
        _images_file(tmp_path, name, data)
    return tmp_path


@pytest.mark.parametrize("argv, message", RUN_REJECTS)
def test_cli_run_rejects(argv, message, capsys, images_folder):
    argv = [arg.replace("{tmp}", str(images_folder)) for arg in argv]
    if message is not None:
        message = message.replace("{tmp}", str(images_folder))
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
                        _factory(drop_replies=True))
    status, _, err = _run_cli(["run", "--port", "p", "--digits-test", "--timeout", "0.2"],
                              capsys)
    assert status == 2
    assert err == ("rtn-hw: error: --port p: no reply to INFO (seq 1) within 0.2 s "
                   "(timeout)\n")


def test_timeout_names_an_error_reply_for_another_frame():
    """A board that answers noise with BAD_SYNC (SEQ 0) and never answers the request: the
    timeout line says what the board did say."""
    class Noisy(ModelTransport):
        def reply(self, frame):
            return protocol.encode_error_reply(protocol.ErrorCode.BAD_SYNC)

    transport = Noisy()
    with pytest.raises(host.HostError, match=r"^no reply to INFO \(seq 1\) within 2 s "
                                             r"\(timeout\); ignored 1 replies to other "
                                             r"requests \(the board reported BAD_SYNC for "
                                             r"another frame\)$"):
        client_for(transport).info()
