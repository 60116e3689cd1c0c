"""A folder of result files that survives a killed driver: each part is written under a hidden
temporary name, flushed to disk and renamed, so the folder only ever holds complete parts. A rerun
with ``resume`` reads the pairs already there (and skips them), deletes leftover temporary files and
adds new parts: every pair is written exactly once across runs.

Parts are Parquet (``part-<run>-<n>.parquet``) or CSV (``.csv``, as ``lpips-score --out`` writes it:
header, distances and metrics as the shortest decimal that reads back as the same float32, PSNR's +inf
as ``inf``). Their columns are ``results.pair_columns(metrics)``: every part of a folder has the same,
and resuming with other metrics is refused.
"""
from __future__ import annotations

import csv
import os
import secrets
import time
from pathlib import Path

from ..errors import InputError
from ..formatting import float32_text
from ..model.pixel_metrics import METRICS
from ..records.results import csv_line, pair_columns
from ..records.summary import RunSummary
from . import PART_FORMATS

_PART_GLOB = "part-*"
_KEY_SEPARATOR = "\x00"  # cannot occur in a path


def pair_keys(img0, img1):
    """Arrow string array of one key per pair (``img0 NUL img1``), for set membership tests."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(img0, img1, _KEY_SEPARATOR)


def read_results(folder: str | Path):
    """All complete result parts of a folder as one Arrow table (columns ``results.pair_columns``, with
    the metrics the parts hold)."""
    import pyarrow as pa

    from .pipeline import result_schema

    tables = [_read_part(p) for p in _parts(Path(folder))]
    return pa.concat_tables(tables, promote_options="default") if tables else result_schema().empty_table()


def _parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(_PART_GLOB) if p.suffix in (".parquet", ".csv"))


def _read_part(path: Path):
    """One part as written (``result_schema`` of the metrics its columns name); a part whose columns
    are not those of result rows is an ``InputError``."""
    import pyarrow as pa

    from .pipeline import result_schema

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    else:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        names = rows[0] if rows else []
    schema = result_schema(tuple(n for n in names if n in METRICS))
    if names != schema.names:
        raise InputError(f"{path} has the columns {','.join(names)}, not those of result rows "
                         f"({','.join(schema.names)}): a result folder holds only parts that lpips-score --ray wrote")
    if path.suffix == ".parquet":
        return pq.read_table(path, schema=schema)

    def cell(name: str, text: str):
        if pa.types.is_floating(schema.field(name).type):
            return float(text) if text else None
        return text or None if name == "error" else text

    return pa.table({n: [cell(n, r[k]) for r in rows[1:] if r] for k, n in enumerate(names)}, schema=schema)


class ResultFolder:
    """Result parts of one run (and the runs it resumes) in ``path``.

    Without ``resume`` a folder that already holds parts is an error unless ``overwrite`` (which
    deletes them). ``done``: the pair keys already written (``pair_keys``); ``summary``: statistics
    over every row in the folder, metrics included (rows found there count as resumed), with ``context``
    (default: the model). ``metrics``: the metric columns of its rows (resuming a folder whose parts
    have other columns is an ``InputError``).
    """

    def __init__(self, path: str | Path, model: str, fmt: str = "parquet", resume: bool = False,
                 overwrite: bool = False, context: dict | None = None, metrics: tuple[str, ...] = ()):
        import pyarrow as pa

        if fmt not in PART_FORMATS:
            raise InputError(f"result format '{fmt}': choose one of {', '.join(PART_FORMATS)}")
        self.path, self.model, self.fmt = Path(path), model, fmt
        self.metrics, self.columns = tuple(metrics), pair_columns(metrics)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path} is a file: cluster runs write a folder of result files")
        self.path.mkdir(parents=True, exist_ok=True)
        self.summary = RunSummary(context or {"model": model})
        self.done = pa.array([], pa.string())
        self.rows_before = 0
        existing = _parts(self.path)
        for leftover in self.path.glob(".part-*.tmp"):  # a killed run's unfinished part: its pairs are redone
            leftover.unlink()
        if existing and not (resume or overwrite):
            raise InputError(f"{self.path} holds results: pass --resume to continue it or --overwrite to replace it")
        if existing and overwrite and not resume:
            for part in existing:
                part.unlink()
        elif existing:
            self._load(existing)
        self._run = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        self._count = 0

    def _load(self, parts: list[Path]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        tables = []
        for part in parts:
            table = _read_part(part)
            if tuple(table.column_names) != self.columns:
                raise InputError(f"{part} has the columns {','.join(table.column_names)}, not "
                                 f"{','.join(self.columns)}: resume with the same --metrics (and options) or "
                                 "write a new folder")
            tables.append(table)
        table = pa.concat_tables(tables)
        models = set(pc.unique(table.column("model")).to_pylist()) - {None, ""}
        if models - {self.model}:
            raise InputError(f"{self.path} holds results of {sorted(models - {self.model})[0]}, not {self.model}: "
                             "resume with the same options or write a new folder")
        self.done = pair_keys(table.column("img0"), table.column("img1")).combine_chunks()
        self.rows_before = table.num_rows
        self._summarise(table, resumed=True)

    def _summarise(self, table, resumed: bool = False) -> None:
        """Feed each row's distance and metrics to the summary (a failed row's are null)."""
        metrics = {m: table.column(m).to_pylist() for m in self.metrics}
        for i, distance in enumerate(table.column("distance").to_pylist()):
            self.summary.add(distance, resumed=resumed, metrics={m: values[i] for m, values in metrics.items()})

    def write(self, table) -> Path:
        """Write one part holding ``table``'s rows (``result_schema(metrics)``): temporary file, fsync,
        rename."""
        self._count += 1
        name = f"part-{self._run}-{self._count:05d}.{self.fmt}"
        tmp = self.path / f".{name}.tmp"
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            tmp.write_text(_csv_text(table, self.columns), encoding="utf-8")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path / name)
        _fsync_dir(self.path)
        self._summarise(table)
        return self.path / name


def _csv_text(table, columns: tuple[str, ...]) -> str:
    """The rows as ``lpips-score --out`` writes a CSV: header, numbers as their float32's shortest decimal."""
    import pyarrow as pa

    numbers = {c for c in columns if pa.types.is_floating(table.schema.field(c).type)}
    lines = [",".join(columns) + "\n"]
    for row in table.select(list(columns)).to_pylist():
        lines.append(csv_line(["" if row[c] is None else float32_text(row[c]) if c in numbers else row[c]
                               for c in columns]))
    return "".join(lines)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX: the directory entry is data of the folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
