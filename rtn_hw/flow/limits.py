"""Per-run time and memory limits of the sweep's tool runs (yosys, nextpnr).

A watchdog thread polls the processes this run started (children of the worker created after
the watch began) with psutil: when their resident memory together passes the memory limit, or
the run passes its time limit, it kills them and remembers why. The run then fails with that
reason (`LimitExceeded`) instead of a tool's exit status, and the sweep goes on. Dask's own
per-worker memory limit (`rtn_hw.flow.cluster`) stays the backstop for the Python side.
"""

import contextlib
import threading
import time

__all__ = ["LimitExceeded", "Watch", "watch"]


class LimitExceeded(RuntimeError):
    """A run passed its time or memory limit; the message says which and by how much."""


class Watch:
    def __init__(self, seconds, memory_mb, poll):
        import psutil
        self.seconds, self.memory_mb, self.poll = seconds, memory_mb, poll
        self.hit = None             # why the run was stopped, one line
        self.peak_mb = 0.0          # the tools' largest resident memory seen together
        self._me = psutil.Process()
        self._start = time.monotonic()
        self._since = time.time() - 1   # psutil create_time is wall clock, 1 s granularity
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rtn-hw-limits", daemon=True)

    def _children(self):
        import psutil
        out = []
        for child in self._me.children(recursive=True):
            try:
                if child.create_time() >= self._since:
                    out.append(child)
            except psutil.Error:
                pass
        return out

    def _loop(self):
        import psutil
        while not self._stop.wait(self.poll):
            children = self._children()
            rss = 0
            names = []
            for child in children:
                try:
                    rss += child.memory_info().rss
                    names.append(child.name())
                except psutil.Error:
                    pass
            mb = rss / 2**20
            self.peak_mb = max(self.peak_mb, mb)
            elapsed = time.monotonic() - self._start
            if self.memory_mb is not None and mb > self.memory_mb:
                self.hit = (f"memory limit of {self.memory_mb:.0f} MB hit "
                            f"({', '.join(sorted(set(names))) or 'tools'} at {mb:.0f} MB)")
            elif self.seconds is not None and elapsed > self.seconds:
                self.hit = f"time limit of {self.seconds:.0f} s hit"
            if self.hit:
                for child in children:
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                return

    def check(self):
        """Raise LimitExceeded if the watchdog stopped the run."""
        if self.hit:
            raise LimitExceeded(self.hit)


@contextlib.contextmanager
def watch(seconds=None, memory_mb=None, *, poll=0.5):
    """Watch the tool processes started inside the block; yields a `Watch`. A failure inside
    the block caused by the watchdog killing a tool is raised as LimitExceeded."""
    if seconds is None and memory_mb is None:
        yield Watch(None, None, poll)
        return
    w = Watch(seconds, memory_mb, poll)
    w._thread.start()
    try:
        yield w
    except Exception as error:
        if w.hit:
            raise LimitExceeded(w.hit) from error
        raise
    finally:
        w._stop.set()
        w._thread.join()
    w.check()
