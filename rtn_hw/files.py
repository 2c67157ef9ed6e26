"""Atomic file writing, the one way every report, netlist and cache entry in rtn-hw is written,
and bounded reading of untrusted input files.

A file is written to a temporary file in the same folder (same file system), then moved over
the target with `os.replace`, so a reader, a parallel worker or a run that fails half way (or
is interrupted) only ever sees the old file or the new one. Temporary names are unique
(`mkstemp`), so two runs at once never share one. A file that is replaced keeps its mode; a
new one gets the mode a plain `open()` would give it. `write_atomic` writes through a symbolic
link: the file it points to is replaced and the link stays.
"""

import json
import os
import pathlib
import stat
import tempfile

__all__ = ["write_atomic", "write_json", "update_json", "write_if_changed", "temp_beside",
           "check_writable", "read_bounded", "InputFileError"]


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path):
    """The mode `path` has now (following links), or that of a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def temp_beside(path, data):
    """`data` (str or bytes) in a new temporary file beside `path`, with the mode `path` has
    (or a new file's); returns its path. For callers that replace several files together
    (see `rtn_hw.flow.verilog.write`)."""
    path = pathlib.Path(path)
    if isinstance(data, str):
        # newline="\n" behaviour on every platform: the bytes are the text, as given.
        data = data.encode("utf-8")
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, _mode_for(path))
    except BaseException:
        os.unlink(temp)
        raise
    return temp


def write_atomic(path, data):
    """Write `data` (str, UTF-8, or bytes) to `path` atomically, creating its folder; returns
    the path. Through a symbolic link, the file it points to is replaced (the link stays)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary file goes beside the real file, so the final rename stays on one file
    # system and leaves the link alone.
    real = pathlib.Path(os.path.realpath(path))
    temp = temp_beside(real, data)
    try:
        os.replace(temp, real)
    except BaseException:
        os.unlink(temp)
        raise
    return path


def check_writable(path):
    """Raise OSError unless `write_atomic(path, ...)` could write now (its folder made, a
    temporary file created and removed beside the real target, the target not a folder):
    for a long run to fail at its start rather than after the work."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    real = pathlib.Path(os.path.realpath(path))
    if real.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    os.unlink(temp_beside(real, b""))


def write_json(path, value, *, indent=1):
    """`value` as JSON (with a final newline) to `path`, atomically."""
    return write_atomic(path, json.dumps(value, indent=indent) + "\n")


def update_json(path, update, *, indent=1):
    """Read, change and write back the JSON file `path` under an exclusive lock (the file
    `.NAME.lock` beside it), so runs at the same time merge their changes instead of one
    overwriting the other's. `update(value)` gets the JSON object the file holds ({} when it
    is missing, unreadable or not an object) and returns what to write (atomically); returns
    that."""
    import fcntl
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            value = None
        value = update(value if isinstance(value, dict) else {})
        write_json(path, value, indent=indent)
        return value


def write_if_changed(path, data):
    """`write_atomic` unless `path` already holds `data`: an unchanged file keeps its mtime, so
    simulators that rebuild on a newer source do not rebuild."""
    path = pathlib.Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if path.read_bytes() == raw:
            return path
    except OSError:
        pass
    return write_atomic(path, raw)


class InputFileError(ValueError):
    """A file that is not a regular file, or larger than the reader allows; one line."""


def read_bounded(path, limit):
    """The bytes of the regular file `path`, which must hold at most `limit` bytes.

    Opened without blocking, so a FIFO or a device named by mistake is refused at once rather
    than read forever or waited on. OSError when it cannot be opened or read; InputFileError
    when it is not a regular file or is too large (checked before reading, and again while
    reading, in case it grows)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError("not a regular file")
        if info.st_size > limit:
            raise InputFileError(f"{info.st_size} bytes, more than the {limit} allowed")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise InputFileError(f"more than the {limit} bytes allowed")
        return b"".join(chunks)
    finally:
        os.close(fd)
