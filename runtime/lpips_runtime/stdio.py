"""Keep stdout for results: route what libraries print during side work (an on-demand export) to stderr;
write results as exact bytes; keep the standard descriptors sane when they are closed or fail."""
from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers (a library's printf to a pipe sits there until flushed)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def stdout_to_stderr():
    """For the duration, whatever is written to stdout goes to stderr: Python's ``sys.stdout`` and,
    when it is the process's file descriptor 1, writes of C/C++ code to that descriptor too.

    The descriptor swap is process-wide: meant for short side work in a command line tool, where
    stdout carries results only and nothing else writes results meanwhile.
    """
    if sys.stdout is not None:  # None: stdout was closed when the process started
        sys.stdout.flush()
    saved = None
    try:
        if sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2:
            _flush_c_stdio()
            saved = os.dup(1)
            os.dup2(2, 1)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        saved = None  # not backed by fd 1 (e.g. captured by a test runner): the Python-level swap suffices
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)


def write_bytes(stream, data: bytes) -> None:
    """Write ``data`` to the text stream ``stream`` as the exact bytes (names that are not UTF-8 stay as
    they are, whatever the stream's encoding or error handler) and flush it. A stream with no byte
    layer (``io.StringIO``) gets the text, undecodable bytes as ``os.fsdecode``'s surrogates."""
    binary = getattr(stream, "buffer", None)
    if binary is None:
        stream.write(data.decode("utf-8", "surrogateescape"))
        stream.flush()
        return
    stream.flush()  # what went through the text layer comes first
    binary.write(data)
    binary.flush()


def reserve_closed_std_fds() -> None:
    """Point each standard descriptor (0, 1, 2) that is closed at /dev/null, so that no file opened later
    takes its number (C libraries would print into it). Python has already set the matching
    ``sys.stdin``/``sys.stdout``/``sys.stderr`` to None: stdin and stdout stay None (a closed stdout is
    visible, and refused where results go there); a closed stderr becomes a stream to /dev/null, since
    click writes its messages to stdout when ``sys.stderr`` is None."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115


class _BestEffortWrites(io.RawIOBase):
    """Descriptor ``fd`` for writing, where a failed write (a full device, a closed pipe, a non-blocking
    descriptor that is full) counts as done."""

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data) -> int:
        view = memoryview(data)
        try:
            while view:  # all of it: the text layer above does not retry a short write
                view = view[os.write(self._fd, view):]
        except OSError:
            pass
        return len(data)


def best_effort_stderr() -> None:
    """Make messages best effort: when ``sys.stderr`` is the process's descriptor 2, replace it with a
    stream on that descriptor whose failed writes (``2>/dev/full``, a closed pipe) are dropped, so that
    a progress line or a summary that cannot be shown never changes how a run ends."""
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return
        encoding = sys.stderr.encoding
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return  # captured by a test runner: leave it alone
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    sys.stderr = io.TextIOWrapper(_BestEffortWrites(2), encoding=encoding, errors="backslashreplace",
                                  line_buffering=True, write_through=True)


def silence_stdout() -> None:
    """After standard output failed (a closed pipe, a full device): send what is still buffered for it,
    and anything later, to /dev/null, so the interpreter's final flush neither fails nor complains
    ("Exception ignored ... BrokenPipeError"). Only when ``sys.stdout`` is the process's descriptor 1."""
    try:
        if sys.stdout is None or sys.stdout.fileno() != 1:
            return
        null = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return
    os.dup2(null, 1)
    os.close(null)
