"""A resumable cluster run over a pair table: the Ray Data pipeline's rows, streamed back to the
driver (a few dozen bytes per pair) and written as parts of a ``ResultFolder``."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClusterError
from ..summary import RunSummary
from .output import ResultFolder, pair_keys
from .pipeline import score_dataset
from .session import require_ray
from .settings import ScorerSettings, WorkerModel
from .table import read_pair_table


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
                      on_rows: Callable[[int], None] | None = None, **options) -> RunReport:
    """Score a pair table (see ``score_pair_table``) on the connected cluster into the folder ``out``.

    Rows are written in parts of up to ``part_rows`` rows, or whatever arrived within ``part_seconds``:
    a driver killed at any moment loses at most the rows not yet in a part, and ``resume=True`` scores
    exactly the pairs absent from the folder. ``on_start(pairs_to_score, rows_already_there)`` and
    ``on_rows(n)`` report progress. ``columns``/``csv_header``: see ``table.read_pair_table``;
    ``options``: see ``pipeline.score_dataset``.
    """
    ray = require_ray()
    if not ray.is_initialized():
        raise ClusterError("no Ray session: call ray.init(...) or use lpips_runtime.cluster.ray_session()")
    model = WorkerModel.resolve(settings)  # model problems first, before anything is read or written
    folder = ResultFolder(out, model.label, fmt, resume=resume, overwrite=overwrite, context=dict(model.identity))
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
            for batch in score_dataset(pairs, model, **options).iter_batches(batch_format="pyarrow", batch_size=None):
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
