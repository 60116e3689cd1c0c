"""A folder of result files that survives a killed driver: each part is written under a hidden
temporary name, flushed to disk and renamed, so the folder only ever holds complete parts. A rerun
with ``resume`` reads the pairs already there (and skips them), deletes leftover temporary files and
adds new parts: every pair is written exactly once across runs.

Parts are Parquet (``part-<run>-<n>.parquet``) or CSV (``.csv``, as ``lpips-score --out`` writes it:
header, distances as the shortest decimal that reads back as the same float32).
"""
from __future__ import annotations

import csv
import io
import os
import secrets
import time
from pathlib import Path

from ..errors import InputError
from ..formatting import float32_text
from ..results import PAIR_COLUMNS
from ..summary import RunSummary
from . import PART_FORMATS

_PART_GLOB = "part-*"
_KEY_SEPARATOR = "\x00"  # cannot occur in a path


def pair_keys(img0, img1):
    """Arrow string array of one key per pair (``img0 NUL img1``), for set membership tests."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(img0, img1, _KEY_SEPARATOR)


def read_results(folder: str | Path):
    """All complete result parts of a folder as one Arrow table (columns ``PAIR_COLUMNS``)."""
    import pyarrow as pa

    from .pipeline import result_schema

    tables = [_read_part(p) for p in _parts(Path(folder))]
    return pa.concat_tables(tables) if tables else result_schema().empty_table()


def _parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(_PART_GLOB) if p.suffix in (".parquet", ".csv"))


def _read_part(path: Path):
    import pyarrow as pa

    from .pipeline import result_schema

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, schema=result_schema())
    rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    return pa.table({"img0": [r["img0"] for r in rows], "img1": [r["img1"] for r in rows],
                     "distance": [float(r["distance"]) if r["distance"] else None for r in rows],
                     "error": [r["error"] or None for r in rows], "model": [r["model"] for r in rows]},
                    schema=result_schema())


class ResultFolder:
    """Result parts of one run (and the runs it resumes) in ``path``.

    Without ``resume`` a folder that already holds parts is an error unless ``overwrite`` (which
    deletes them). ``done``: the pair keys already written (``pair_keys``); ``summary``: statistics
    over every row in the folder (rows found there count as resumed), with ``context`` (default: the
    model).
    """

    def __init__(self, path: str | Path, model: str, fmt: str = "parquet", resume: bool = False,
                 overwrite: bool = False, context: dict | None = None):
        import pyarrow as pa

        if fmt not in PART_FORMATS:
            raise InputError(f"result format '{fmt}': choose one of {', '.join(PART_FORMATS)}")
        self.path, self.model, self.fmt = Path(path), model, fmt
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

        tables = [_read_part(p) for p in parts]
        table = pa.concat_tables(tables)
        models = set(pc.unique(table.column("model")).to_pylist()) - {None, ""}
        if models - {self.model}:
            raise InputError(f"{self.path} holds results of {sorted(models - {self.model})[0]}, not {self.model}: "
                             "resume with the same options or write a new folder")
        self.done = pair_keys(table.column("img0"), table.column("img1")).combine_chunks()
        self.rows_before = table.num_rows
        for value in table.column("distance").to_pylist():
            self.summary.add(value, resumed=True)

    def write(self, table) -> Path:
        """Write one part holding ``table``'s rows (result schema): temporary file, fsync, rename."""
        self._count += 1
        name = f"part-{self._run}-{self._count:05d}.{self.fmt}"
        tmp = self.path / f".{name}.tmp"
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            tmp.write_text(_csv_text(table), encoding="utf-8")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path / name)
        _fsync_dir(self.path)
        for value in table.column("distance").to_pylist():
            self.summary.add(value)
        return self.path / name


def _csv_text(table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PAIR_COLUMNS)
    for row in table.to_pylist():
        writer.writerow(["" if row[c] is None else (float32_text(row[c]) if c == "distance" else row[c])
                         for c in PAIR_COLUMNS])
    return out.getvalue()


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
