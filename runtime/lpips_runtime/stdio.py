"""Keep stdout for results: route what libraries print during side work (an on-demand export) to stderr."""
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
