"""Opening output files: their folder (a file where a folder is needed is one clear line) and an
advisory lock that keeps a second writer off a file being written."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import InputError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory lock
    fcntl = None

log = logging.getLogger(__name__)


def make_parent_folder(path: str | os.PathLike) -> None:
    """Create the folder ``path`` goes in (and its parents). A file standing where a folder is needed
    is an ``InputError`` naming it; other failures too (permissions, a read-only disk)."""
    parent = Path(os.path.abspath(path)).parent
    for folder in (parent, *parent.parents):  # the nearest existing ancestor must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"{_shown(path, folder)} is a file, not a folder: {path} cannot be written there")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create its folder ({exc.strerror})") from None


def _shown(path, folder: Path) -> str:
    """``folder`` spelt as the user gave ``path`` (relative stays relative)."""
    given = Path(path)
    for ancestor in given.parents:
        if os.path.abspath(ancestor) == str(folder):
            return str(ancestor)
    return str(folder)


def lock_for_writing(fd: int, path: str | os.PathLike) -> None:
    """Take an exclusive advisory lock (``flock``) on the open file ``fd``, held until it is closed (the
    system releases it when the process ends, however it ends). Held by another open file, in this
    process or another: an ``InputError`` naming the holder's pid where the system says (Linux)."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        who = f" (pid {holder})" if holder else ""
        raise InputError(f"{path} is being written by another process{who}: wait for it to end, "
                         "or write to another file") from None
    except OSError as exc:  # a file system without locks (some network or FUSE mounts): write unguarded
        log.warning("%s: cannot lock it (%s): a second run writing it at the same time would not be refused",
                    path, exc.strerror)


def _lock_holder(fd: int) -> int | None:
    """The pid holding a flock on ``fd``'s file, from /proc/locks (None where unknown)."""
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 12345 fe:00:2146609 0 EOF" ("->" marks waiters)
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None
