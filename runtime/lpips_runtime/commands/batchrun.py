"""How a batch command runs, the same in ``lpips-score``, ``lpips-video`` and ``lpips-score --ray``: it
says what a resumed run finds already done, shows progress on stderr, stops in order on Ctrl-C (what was
written stays, and the message says how to finish), and ends with its summary and exit code.

Exit codes of a batch run: ``EXIT_OK`` every item scored; ``EXIT_ITEMS_FAILED`` (3) the run finished but
some items failed (each has a row saying why); ``cli_common.EXIT_INTERRUPTED`` (130) stopped by Ctrl-C.
Errors that stop a run are ``cli_common.errors_to_click``'s (exit 1, 141).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import click

from .common import EXIT_INTERRUPTED
from ..errors import LpipsError
from .progress import Progress

EXIT_OK = 0
EXIT_ITEMS_FAILED = 3


class BatchRun:
    """One batch run's messages and exit code, for results written to ``out`` (None: stdout, which
    cannot be resumed). Use: ``start`` when the work begins (after the model is loaded: the progress
    rate counts no set-up), the loop inside ``scoring()`` calling ``update`` per item, then ``finish``."""

    def __init__(self, out: str | None, *, unit: str = "pairs", quiet: bool = False):
        self.out, self.unit, self.quiet = out, unit, quiet
        self.total: int | None = None
        self.progress: Progress | None = None
        self.interrupted = False

    def start(self, total: int | None, already: int = 0) -> "BatchRun":
        """Say what a resumed run found (``already`` items in ``out``; ``total`` still to do, None if not
        known yet) and start the progress bar (unless quiet)."""
        if already and not self.quiet:
            to_go = "" if total is None else f", {total} to go"
            click.echo(f"resuming {self.out}: {already} {self.unit} already there{to_go}", err=True)
        self.total = total
        self.progress = Progress(total or 0, enabled=not self.quiet, unit=self.unit).__enter__()
        return self

    def update(self, n: int = 1) -> None:
        self.progress.update(n)

    @property
    def count(self) -> int:
        """Items done in this run."""
        return self.progress.count if self.progress is not None else 0

    @contextlib.contextmanager
    def scoring(self, *closing) -> Iterator["BatchRun"]:
        """Around the loop: Ctrl-C ends it and sets ``interrupted``; other errors go on up. Then the progress
        bar and ``closing`` (result writers, a heatmap video: whatever has ``close``) are closed, in order; after
        an error quietly (``LpipsError``s of closing are dropped: the first error is the one to report)."""
        try:
            yield self
        except KeyboardInterrupt:
            self.interrupted = True
        except BaseException:
            self._close_all(closing, quietly=True)
            raise
        self._close_all(closing)

    def _close_all(self, closing, quietly: bool = False) -> None:
        if self.progress is not None:
            self.progress.close()
        for thing in closing:
            if quietly:
                with contextlib.suppress(LpipsError):
                    thing.close()
            else:
                thing.close()

    def finish(self, summary: Iterable[str] = (), failures: int = 0) -> int:
        """Say how the run ended (the interruption with how to finish it, or the ``summary`` lines unless
        quiet) and return its exit code."""
        if self.interrupted:
            of = "" if self.total is None else f" of {self.total}"
            where = f"; rerun with --resume to finish {self.out}" if self.out else ""
            click.echo(f"interrupted after {self.count}{of} {self.unit}{where}", err=True)
            return EXIT_INTERRUPTED
        if not self.quiet:
            for line in summary:
                click.echo(line, err=True)
        return EXIT_ITEMS_FAILED if failures else EXIT_OK
