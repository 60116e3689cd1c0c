"""Reading files named by users: regular files only, and never more than a cap.

A path may name a FIFO (reading blocks forever), a device (``/dev/zero`` never ends) or a socket; none
of them is an image or a model. They are refused by their type before a byte is read, and a regular
file larger than the caller's cap is refused by its size, so no input can make us read without bound.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class UnreadableFile(Exception):
    """Why a path cannot be read as a file (the message is a reason, without the path)."""


def _check_regular(mode: os.stat_result) -> None:
    if stat.S_ISDIR(mode.st_mode):
        raise UnreadableFile("is a directory, not a file")
    if not stat.S_ISREG(mode.st_mode):
        kind = next((name for test, name in _KINDS if test(mode.st_mode)), "not a regular file")
        raise UnreadableFile(f"is {kind}, not a regular file")


def read_regular_file(path: str | Path, max_bytes: int | None) -> bytes:
    """The bytes of ``path`` if it is a regular file (symlinks followed) of at most ``max_bytes`` bytes.

    Raises ``FileNotFoundError`` for a missing path and ``UnreadableFile`` (reason: a directory, a FIFO,
    a device, a socket, too large, or the OS error) for anything else. A FIFO is opened non-blocking,
    so that the open itself cannot wait for a writer.
    """
    try:
        _check_regular(os.stat(path))  # before opening: a socket cannot be opened, a FIFO's open may block
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableFile(exc.strerror or type(exc).__name__) from None
    try:
        mode = os.fstat(fd)
        _check_regular(mode)  # what was opened, in case the path changed meanwhile
        if max_bytes is not None and mode.st_size > max_bytes:
            raise UnreadableFile(f"{mode.st_size:,} bytes, more than the {max_bytes:,} allowed")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        try:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as exc:
            raise UnreadableFile(exc.strerror or type(exc).__name__) from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew while we read it
        raise UnreadableFile(f"more than the {max_bytes:,} bytes allowed")
    return data
