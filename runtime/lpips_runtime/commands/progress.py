"""Progress of a batch run on stderr: click's progress bar (count, percentage, ETA) plus the rate."""
from __future__ import annotations

import sys
import time

import click


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A context manager around ``click.progressbar`` for ``total`` items. Drawn only when ``enabled``
    and its stream is a terminal. The rate shown is items done / seconds since the bar
    was created, so it is right from the first update: create the bar when the work starts (after the
    model is loaded) and it counts no set-up time."""

    def __init__(self, total: int, enabled: bool, unit: str = "pairs", stream=None):
        self.total, self.unit, self.count = total, unit, 0
        stream = stream or sys.stderr
        # Not on a terminal click would still print the (empty) label line once: hide the bar altogether.
        shown = enabled and _isatty(stream)
        self._bar = click.progressbar(length=max(total, 1), hidden=not shown, file=stream,
                                      show_pos=True, show_percent=True, show_eta=True, width=24,
                                      item_show_func=self._rate)
        self._start = time.monotonic()
        self._open = False

    def _rate(self, _item) -> str | None:
        elapsed = time.monotonic() - self._start
        if self.count == 0 or elapsed <= 0:
            return None
        return f"{self.count / elapsed:.1f} {self.unit}/s"

    def update(self, n: int = 1) -> None:
        self.count += n
        self._bar.update(n)

    def __enter__(self) -> "Progress":
        self._bar.__enter__()
        self._open = True
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._bar.render_finish()
