"""A one-line progress display on stderr: count, rate and ETA, for runs longer than a moment."""
from __future__ import annotations

import sys
import time


class Progress:
    """Shown only when ``enabled`` (a TTY, not --quiet) and only once the run passes ``delay`` seconds."""

    def __init__(self, total: int | None, enabled: bool, delay: float = 0.5, unit: str = "pairs", stream=None):
        self.total, self.enabled, self.delay, self.unit = total, enabled, delay, unit
        self.stream = stream or sys.stderr
        self.count = 0
        self.start = self._last = time.monotonic()
        self._shown = False

    def update(self, n: int = 1) -> None:
        self.count += n
        if not self.enabled:
            return
        now = time.monotonic()
        finished = self.total is not None and self.count >= self.total
        if now - self.start < self.delay or (now - self._last < 0.2 and not finished):
            return
        self._last = now
        rate = self.count / max(now - self.start, 1e-9)
        if self.total is None:  # length unknown (e.g. a video whose container does not say)
            text = f"\r{self.count} {self.unit}  {rate:.1f}/s "
        else:
            eta = (self.total - self.count) / rate if rate > 0 else 0.0
            mins, secs = divmod(int(eta + 0.5), 60)
            text = f"\r{self.count}/{self.total} {self.unit}  {rate:.1f}/s  ETA {mins}:{secs:02d} "
        self.stream.write(text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
