"""A resumable cluster run over a pair table: the Ray Data pipeline's rows, streamed back to the
driver (a few dozen bytes per pair) and written as parts of a ``ResultFolder``."""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClusterError
from ..records.summary import RunSummary
from .output import ResultFolder, pair_keys
from .pipeline import score_dataset
from .resources import STALL_TIMEOUT_S, STALL_WARN_S, stall_message
from .session import require_ray
from .settings import ScorerSettings, WorkerModel
from .table import read_pair_table


log = logging.getLogger("lpips_runtime.cluster")


def _watched(batches, stall_timeout_s: float, warn_s: float = STALL_WARN_S) -> Iterator:
    """``batches`` (a blocking iterator) read in a thread, so that a run that receives nothing for
    ``warn_s`` says why on stderr (every ``warn_s``) and stops with ``ClusterError`` after ``stall_timeout_s``."""
    found: queue.Queue = queue.Queue(maxsize=2)
    done = object()

    def pump():
        try:
            for batch in batches:
                found.put(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            found.put(exc)
        else:
            found.put(done)

    threading.Thread(target=pump, name="lpips-ray-rows", daemon=True).start()
    rows, quiet_since, warned = 0, time.monotonic(), 0.0
    while True:
        try:
            item = found.get(timeout=min(1.0, warn_s))
        except queue.Empty:
            quiet = time.monotonic() - quiet_since
            if quiet >= stall_timeout_s:
                raise ClusterError(f"the run stopped making progress: {stall_message(quiet, rows)}") from None
            if quiet - warned >= warn_s:
                warned = quiet
                log.warning("lpips-score --ray: %s", stall_message(quiet, rows))
            continue
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        rows += item.num_rows
        quiet_since, warned = time.monotonic(), 0.0
        yield item


@dataclass
class RunReport:
    """How a run ended: ``summary`` covers every row in the folder (earlier runs' included)."""

    folder: Path
    summary: RunSummary
    already_done: int  # rows found in the folder at the start (resume)
    scored: int  # rows written by this run


def _drop_done(table, done):
    """Ray Data task: the pairs of ``table`` whose key is not in ``done`` (an Arrow string array)."""
    import pyarrow.compute as pc
    import ray

    done = ray.get(done) if isinstance(done, ray.ObjectRef) else done
    return table.filter(pc.invert(pc.is_in(pair_keys(table.column("img0"), table.column("img1")), value_set=done)))


def write_pair_scores(source, out: str | Path, settings: ScorerSettings = ScorerSettings(), *,
                      columns: tuple[str, str] | None = None, csv_header: bool | None = None,
                      fmt: str = "parquet", resume: bool = False,
                      overwrite: bool = False, part_rows: int = 10_000, part_seconds: float = 60.0,
                      on_start: Callable[[int, int], None] | None = None,
                      on_rows: Callable[[int], None] | None = None, stall_timeout_s: float = STALL_TIMEOUT_S,
                      stall_warn_s: float = STALL_WARN_S, **options) -> RunReport:
    """Score a pair table (see ``score_pair_table``) on the connected cluster into the folder ``out``
    (rows with the columns of ``lpips-score --out``, the settings' metrics included).

    Rows are written in parts of up to ``part_rows`` rows, or whatever arrived within ``part_seconds``:
    a driver killed at any moment loses at most the rows not yet in a part, and ``resume=True`` scores
    exactly the pairs absent from the folder. ``on_start(pairs_to_score, rows_already_there)`` and
    ``on_rows(n)`` report progress. A run that receives no rows for ``stall_warn_s`` says why on stderr
    (the cluster's free resources) and stops with ``ClusterError`` after ``stall_timeout_s`` (rows already
    received are written). ``columns``/``csv_header``: see ``table.read_pair_table``;
    ``options``: see ``pipeline.score_dataset``.
    """
    ray = require_ray()
    if not ray.is_initialized():
        raise ClusterError("no Ray session: call ray.init(...) or use lpips_runtime.cluster.ray_session()")
    model = WorkerModel.resolve(settings)  # model problems first, before anything is read or written
    folder = ResultFolder(out, model.label, fmt, resume=resume, overwrite=overwrite, context=dict(model.identity),
                          metrics=model.spec.metrics)
    pairs = read_pair_table(source, columns, csv_header)
    if len(folder.done):
        pairs = pairs.map_batches(_drop_done, fn_kwargs={"done": ray.put(folder.done)}, batch_format="pyarrow",
                                  batch_size=None)
    pairs = pairs.materialize()  # the (small) table of names once, so that its size is known up front
    todo = pairs.count()
    if on_start is not None:
        on_start(todo, folder.rows_before)
    folder.summary.start()
    scored, pending, pending_rows, last = 0, [], 0, time.monotonic()

    def flush():
        nonlocal pending, pending_rows, last
        if pending:
            import pyarrow as pa

            folder.write(pa.concat_tables(pending))
        pending, pending_rows, last = [], 0, time.monotonic()

    try:
        if todo:
            batches = score_dataset(pairs, model, **options).iter_batches(batch_format="pyarrow", batch_size=None)
            for batch in _watched(batches, stall_timeout_s, stall_warn_s):
                pending.append(batch)
                pending_rows += batch.num_rows
                scored += batch.num_rows
                if on_rows is not None:
                    on_rows(batch.num_rows)
                if pending_rows >= part_rows or time.monotonic() - last >= part_seconds:
                    flush()
    finally:
        flush()  # rows already scored are kept, whatever stopped the run (Ctrl-C included)
    return RunReport(folder.path, folder.summary, folder.rows_before, scored)
