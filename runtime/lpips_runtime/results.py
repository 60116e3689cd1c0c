"""Streamed, resumable result rows: CSV or JSON lines, to a file or a stream (stdout).

The columns are data (``PAIR_COLUMNS`` for image pairs; other front ends pass their own, e.g. video's
``frame,pts_ref,pts_dist,distance``): a row is a dict, written in column order, one flushed write per row,
so an interrupted run keeps every finished row and leaves at most one partial line (dropped on resume).

Numbers: float32 values (``numpy.float32``, and the ``distance`` and ``metrics`` of a ``PairResult``) are
written with the shortest decimal that reads back as the same float32 (``formatting.float32_text``); other
floats with Python's shortest round-trip ``repr``. Infinity (the PSNR of identical images) is ``inf`` in
CSV (Python's float() and pandas read it back) and ``null`` in JSON lines, which have no infinity
(``pixel_metrics.json_number``): there a ``null`` metric in a row whose ``error`` is null means identical
images.

Image paths in a results *file* are written relative to the file's folder when they were given relative
(absolute ones stay absolute), the convention ``--pairs`` reads: a results file can be moved with its
images, fed back as a pair list, and resumed from any working folder. Resume keys compare real paths.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from .errors import InputError
from .formatting import float32_text
from .pixel_metrics import METRICS, json_number

PAIR_COLUMNS = ("img0", "img1", "distance", "error", "model")
PAIR_PATH_COLUMNS = ("img0", "img1")
FORMATS = ("csv", "jsonl")
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def metric_columns(columns: Sequence[str], metrics: Sequence[str] = ()) -> tuple[str, ...]:
    """``columns`` (which hold a "distance") with one column per metric (``Scorer.metrics``) after it."""
    at = list(columns).index("distance") + 1
    return (*columns[:at], *metrics, *columns[at:])


def pair_columns(metrics: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns of pair rows with metrics: ``PAIR_COLUMNS`` with one per metric after the distance."""
    return metric_columns(PAIR_COLUMNS, metrics)


def format_for(path: str | Path | None, requested: str | None) -> str:
    """The row format for ``path`` (None or "-": a stream): ``requested`` if given, else the suffix's.
    A requested format that contradicts a known suffix is an ``InputError``."""
    suffix = Path(path).suffix.lower() if path not in (None, "-") else ""
    implied = _SUFFIX_FORMATS.get(suffix)
    if requested is not None and implied is not None and requested != implied:
        raise InputError(f"{path} is a {implied} file name but the format asked for is {requested}: "
                         f"rename it or change the format")
    fmt = requested or implied or ("csv" if path in (None, "-") else None)
    if fmt is None:
        raise InputError(f"{path}: results go to a .csv or .jsonl file (or choose one with --format csv|jsonl)")
    if fmt not in FORMATS:
        raise InputError(f"unknown result format '{fmt}': choose one of {', '.join(FORMATS)}")
    return fmt


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, np.floating):
        return float32_text(value) if value.dtype == np.float32 else repr(float(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _json_value(value):
    if isinstance(value, np.floating):
        return json_number(float(_cell_text(value)))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float):
        return json_number(value)
    return value


class ResultWriter:
    """Writes rows of ``columns`` to ``target`` (a path; None or "-" with ``stream``: that text stream).

    ``constants``: columns with one value for the whole run (e.g. ``model``); resuming a file whose
    rows hold another value is an error. ``key_columns``: what identifies a row for resuming; ``path_columns``:
    those holding file paths (see the module docstring). ``summary``: a ``RunSummary`` fed each row's
    ``distance`` (rows already in a resumed file with ``resumed=True``).

    Without ``resume`` an existing non-empty file is an error unless ``overwrite`` is set: results are
    never clobbered by accident. ``done`` holds the keys of the rows already in a resumed file (path
    columns as real paths: compare with ``key_of``).
    """

    def __init__(self, target: str | Path | None, *, columns: Sequence[str] = PAIR_COLUMNS, fmt: str | None = None,
                 constants: dict | None = None, key_columns: Sequence[str] = PAIR_PATH_COLUMNS,
                 path_columns: Sequence[str] = PAIR_PATH_COLUMNS, resume: bool = False, overwrite: bool = False,
                 stream: TextIO | None = None, summary=None):
        self.columns = tuple(columns)
        self.constants = dict(constants or {})
        self.key_columns, self.path_columns = tuple(key_columns), tuple(path_columns)
        self.summary = summary
        self._metric_columns = tuple(c for c in self.columns if c in METRICS)  # fed to the summary too
        self.done: set[tuple] = set()
        self.existing: list[dict] = []  # the rows of a resumed file, as read back (e.g. for pooled statistics)
        self._real_paths: dict[str, str] = {}  # all-pairs runs name each image many times
        self.fmt = format_for(target, fmt)
        self.rows_written = 0
        # The CSV header goes out with the first row (or at close): a run that fails while loading its
        # model leaves no header-only output on stdout.
        self._needs_header = self.fmt == "csv"
        if target in (None, "-"):
            if stream is None:
                raise InputError("rows to a stream need the stream")
            self.path, self._file, self._owned = None, stream, False
            return
        self.path, self._owned = Path(target), True
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not (resume or overwrite):
            raise InputError(f"{self.path} exists: pass --resume to continue it or --overwrite to replace it")
        try:
            if exists and resume:
                self._load_existing()
                self._file = open(self.path, "a", encoding="utf-8", newline="")
                # a header is there, unless only a partial one was (dropped with the partial line)
                self._needs_header = self._needs_header and self.path.stat().st_size == 0
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror})") from None

    # -- keys and paths ------------------------------------------------------------------------

    def _folder(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def path_text(self, value) -> str:
        """How a path given by the caller is written in this target (see the module docstring)."""
        text = os.fspath(value)
        if self.path is None or os.path.isabs(text):
            return text
        return os.path.relpath(os.path.abspath(text), self._folder())

    def _real(self, path: str) -> str:
        real = self._real_paths.get(path)
        if real is None:
            real = self._real_paths[path] = os.path.realpath(path)
        return real

    def key_of(self, row: dict) -> tuple:
        """The resume key of a row as the caller gives it (paths as given, relative to the working folder)."""
        return tuple(self._real(os.fspath(row[c])) if c in self.path_columns else str(row[c])
                     for c in self.key_columns)

    def _stored_key(self, row: dict) -> tuple:
        """The resume key of a row read back from the file (relative paths are relative to its folder)."""
        return tuple(self._real(os.path.join(self._folder(), row[c])) if c in self.path_columns else str(row[c])
                     for c in self.key_columns)

    # -- reading a file to resume ----------------------------------------------------------------

    def _load_existing(self) -> None:
        raw = self.path.read_bytes()
        if not raw.endswith(b"\n"):  # killed mid-write: the last row is incomplete, drop it
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(raw))
        text = raw.decode("utf-8")
        if self.fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            reader = csv.DictReader(io.StringIO(text))
            if reader.fieldnames is not None and tuple(reader.fieldnames) != self.columns:
                raise InputError(f"{self.path} has the columns {','.join(reader.fieldnames)}, not "
                                 f"{','.join(self.columns)}: resume a file this command wrote, or write a new one")
            rows = list(reader)
        for row in rows:
            for name, value in self.constants.items():
                if row.get(name) and row[name] != value:
                    raise InputError(f"{self.path} holds results of {row[name]}, not {value}: "
                                     "resume with the same options or write a new file")
            if any(c not in row for c in self.key_columns):
                raise InputError(f"{self.path}: a row lacks the columns {','.join(self.key_columns)}")
            self.done.add(self._stored_key(row))
            self.existing.append(row)
            if self.summary is not None and "distance" in self.columns:
                distance = row.get("distance")
                # a metric left empty in a scored row is PSNR's +inf written as JSON null (module docstring)
                metrics = {m: float(row[m]) if row.get(m) not in (None, "") else math.inf
                           for m in self._metric_columns}
                self.summary.add(float(distance) if distance not in (None, "") else None, resumed=True,
                                 metrics=metrics)

    # -- writing ---------------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()

    def _header(self) -> None:
        if self._needs_header:
            self._needs_header = False
            self._emit(",".join(self.columns) + "\n")

    def write_row(self, row: dict) -> None:
        """Write one row (missing columns are empty/null; ``constants`` fill their columns)."""
        self._header()
        values = {**self.constants, **row}
        for c in self.path_columns:
            if values.get(c) is not None:
                values[c] = self.path_text(values[c])
        if self.fmt == "jsonl":
            record = {c: _json_value(values.get(c)) for c in self.columns}
            self._emit(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow([_cell_text(values.get(c)) for c in self.columns])
            self._emit(out.getvalue())  # one write per row: a kill leaves at most one partial line
        self.rows_written += 1
        if self.summary is not None and "distance" in self.columns:
            distance = row.get("distance")
            metrics = {m: float(row[m]) for m in self._metric_columns if row.get(m) is not None}
            self.summary.add(None if distance is None else float(distance), metrics=metrics)

    def write(self, result) -> None:
        """Write a ``PairResult`` (its distance and metrics are float32 values)."""
        distance = None if result.distance is None else np.float32(result.distance)
        metrics = {m: np.float32(v) for m, v in (result.metrics or {}).items()}
        self.write_row({"img0": result.img0, "img1": result.img1, "distance": distance, **metrics,
                        "error": result.error})

    def close(self) -> None:
        """Finish the output (a CSV with no row still gets its header) and close a file this writer opened."""
        if not self._file.closed:
            self._header()
        if self._owned and not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
