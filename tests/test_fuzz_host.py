"""The host driver (rtn_hw.host) against hostile boards: Hypothesis draws a fault for each
request (tests/board_model.py: duplicate, missing, late, stale, garbage, endless noise,
truncated, wrong SEQ, corrupted, disconnect, wrong kind, bad label, a board that forgets the
PARTs it held), on the digits MLP and on the MNIST CNN (images in PARTs), and the run must either
give exactly the golden network's classes or stop with one HostError line, within its
deadlines. Then the real SerialTransport on a pseudo-terminal, with a board thread on the
other side that misbehaves the same ways. Seeds and budgets: tests/fuzzing.py."""

import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, strategies as st

from board_model import MNIST_CNN, FakeClock, HostileTransport, ModelBoard, answer, network
from fuzzing import examples, fuzz_seed, seeded  # noqa: F401 (fuzz_seed: autouse fixture)
from rtn_hw import host, protocol, weights

TIMEOUT = 1.0
IMAGES, LABELS = weights.load_digits_test()
GOLDEN = [int(c) for c in network().forward(IMAGES[:8])[1]]
MNIST_IMAGES = weights.load_mnist5k_test()[0][:6]
MNIST_GOLDEN = [int(c) for c in network(MNIST_CNN).forward(MNIST_IMAGES)[1]]


def _run(faults, count, seed, late, cnn=False):
    clock = FakeClock()
    board = ModelBoard(network(MNIST_CNN), lanes=0, channels=0) if cnn else None
    transport = HostileTransport(faults, rng=np.random.default_rng(seed), late=late,
                                 clock=clock, board=board)
    client = host.BoardClient(transport, timeout=TIMEOUT, clock=clock)
    try:
        result = host.run_images(client, (MNIST_IMAGES if cnn else IMAGES)[:count])
    except host.HostError as error:
        return None, str(error), clock(), transport.requests
    return result.predictions, None, clock(), transport.requests


@seeded
@examples(100)
@given(st.lists(st.one_of(st.none(), st.sampled_from(HostileTransport.FAULTS)), min_size=1,
                max_size=6),
       st.integers(1, 6), st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_hostile_board_never_gets_a_wrong_answer(faults, count, seed, late):
    predictions, error, elapsed, requests = _run(faults, count, seed, late)
    if error is None:
        assert predictions == GOLDEN[:count]
    else:
        assert "\n" not in error and error
    # Every request (INFO and one a image) ends by its deadline (a read may overrun it by
    # its own timeout).
    assert elapsed <= requests * (TIMEOUT + FakeClock().step + 0.01)


@seeded
@examples(40)
@given(st.lists(st.one_of(st.none(), st.sampled_from(HostileTransport.FAULTS)), min_size=1,
                max_size=9),
       st.integers(1, 3), st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_hostile_cnn_board_never_gets_a_wrong_answer(faults, count, seed, late):
    """784-pixel images in four requests each: a fault on any PART (a lost, stale, late or
    repeated acknowledgment, a board that forgot) ends in the golden class or one line."""
    predictions, error, elapsed, requests = _run(faults, count, seed, late, cnn=True)
    if error is None:
        assert predictions == MNIST_GOLDEN[:count]
    else:
        assert "\n" not in error and error
    assert elapsed <= requests * (TIMEOUT + FakeClock().step + 0.01)


@pytest.mark.parametrize("fault, outcome", [
    (None, "ok"),
    ("duplicate", "ok"),          # the second copy is flushed (or ignored by its SEQ)
    ("garbage", "ok"),            # noise before the reply is skipped
    ("late", "ok"),               # within the deadline
    ("missing", "no reply to INFO (seq 1) within 1 s (timeout)"),
    ("stale", "no reply to INFO (seq 1) within 1 s (timeout)"),
    ("wrong-seq", "no reply to INFO (seq 1) within 1 s (timeout); ignored 1 replies to other "
                  "requests"),
    ("truncated", "no reply to INFO (seq 1) within 1 s (timeout)"),
    ("corrupt", "no reply to INFO (seq 1) within 1 s (timeout)"),
    ("noise", "no reply to INFO (seq 1) within 1 s (timeout); ignored"),
    ("disconnect", "transport read failed (Input/output error)"),
    ("wrong-kind", "bad reply to INFO (seq 1): Prediction(label=0, logits=None)"),
    ("forget", "ok"),             # no PARTs: nothing held to forget
])
def test_each_fault_on_the_first_request(fault, outcome, seed):
    """Each fault alone, on every request: the exact outcome."""
    predictions, error, _, _ = _run([fault], 3, seed, late=3)
    if outcome == "ok":
        assert (predictions, error) == (GOLDEN[:3], None)
    else:
        assert predictions is None and error.startswith(outcome), error


def test_bad_label_is_refused(seed):
    predictions, error, _, _ = _run([None, "bad-label"], 3, seed, late=3)
    assert error == "bad reply to CLASSIFY (seq 2): reply has class 200, expected 0..9"


# -- the real serial port, on a pseudo-terminal -----------------------------------------------

class PtyBoard(threading.Thread):
    """The golden board on the master side of a pty, misbehaving as `fault` says."""

    def __init__(self, master, fault):
        super().__init__(daemon=True)
        self.master, self.fault = master, fault
        self.stop = threading.Event()

    def run(self):
        import select
        decoder = protocol.FrameDecoder()
        while not self.stop.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for frame in decoder.feed(data):
                self.reply(frame)

    def reply(self, frame):
        good = answer(frame)
        if self.fault == "silent":
            return
        if self.fault == "noise":
            end = time.monotonic() + 5
            while not self.stop.is_set() and time.monotonic() < end:
                os.write(self.master, bytes(range(256)))
                time.sleep(0.005)
            return
        if self.fault == "hangup":
            os.close(self.master)
            self.stop.set()
            return
        payload = {"duplicate": good + good, "garbage": b"\xa5\x13\xa5" + good}.get(
            self.fault, good)
        os.write(self.master, payload)


@pytest.fixture
def pty():
    import termios
    import tty
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    name = os.ttyname(slave)
    yield master, name
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.mark.parametrize("fault, outcome", [
    (None, "ok"), ("duplicate", "ok"), ("garbage", "ok"),
    ("silent", "no reply to INFO (seq 1) within 0.3 s (timeout)"),
    ("noise", "no reply to INFO (seq 1) within 0.3 s (timeout); ignored"),
    ("hangup", "port "),
])
def test_serial_port_on_a_pty(pty, fault, outcome):
    """pyserial on a pseudo-terminal: a silent board, a noisy one and a hang-up end by the
    deadline with one line; a board that repeats itself or sends noise first is still read
    right."""
    master, name = pty
    board = PtyBoard(master, fault)
    board.start()
    transport = host.SerialTransport(name, timeout=0.02)
    client = host.BoardClient(transport, timeout=0.3)
    began = time.monotonic()
    try:
        result = host.run_images(client, IMAGES[:3])
        got = result.predictions
    except host.HostError as error:
        got = str(error)
    finally:
        board.stop.set()
        transport.close()
        board.join(timeout=5)
    assert time.monotonic() - began < 5
    if outcome == "ok":
        assert got == GOLDEN[:3]
    else:
        assert isinstance(got, str) and got.startswith(outcome) and "\n" not in got, got
