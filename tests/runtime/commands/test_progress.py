"""The progress bar (click's) on a real terminal: count, percentage and a rate right from the first update;
nothing at all when the stream is not a terminal or the bar is disabled."""
from __future__ import annotations

import io
import os
import pty
import re
import select
import time

from lpips_runtime.commands.progress import Progress


def _read_all(fd: int, quiet_for: float = 0.3, at_most: float = 5.0) -> str:
    """What the terminal has received: a pty delivers the slave's writes to the master asynchronously
    (the kernel's flip-buffer work), so on a busy machine read until nothing more came for ``quiet_for``."""
    chunks, deadline = [], time.monotonic() + at_most
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], quiet_for)
        if not ready:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_rate_is_right_from_the_first_update():
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal:
            started = time.monotonic()
            with Progress(40, enabled=True, stream=terminal) as progress:
                time.sleep(0.5)
                progress.update(10)  # 10 pairs after 0.5 s: 20 pairs/s, whatever came before
                elapsed = time.monotonic() - started  # more than 0.5 s on a loaded machine
                terminal.flush()
                first = _read_all(master)
                for _ in range(30):
                    progress.update()
            terminal.flush()
            rest = _read_all(master)
    finally:
        os.close(master)
        os.close(slave)
    shown = [float(x) for x in re.findall(r"([0-9.]+) pairs/s", first)]
    # Between 10 pairs over the whole time the block took and 10 over 0.5 s: the bar's clock starts with the bar.
    assert shown and 0.95 * 10 / elapsed <= shown[-1] <= 20.5, (first, elapsed)
    assert "10/40" in first and "25%" in first
    assert "40/40" in rest and "100%" in rest


def test_silent_without_a_terminal_or_when_disabled():
    for enabled in (True, False):
        stream = io.StringIO()
        with Progress(10, enabled=enabled, stream=stream) as progress:
            progress.update(10)
        assert stream.getvalue() == "" and progress.count == 10
