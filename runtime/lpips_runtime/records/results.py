"""Streamed, resumable result rows: CSV or JSON lines, to a file or a stream (stdout).

The columns are data (``PAIR_COLUMNS`` for image pairs; other front ends pass their own, e.g. video's
``frame,pts_ref,pts_dist,distance``): a row is a dict, written in column order, one write per row ending
in a newline, so an interrupted run keeps every finished row and leaves at most one incomplete line
(dropped on resume, see ``resume``).

Numbers: float32 values (``numpy.float32``, and the ``distance`` and ``metrics`` of a ``PairResult``) are
written with the shortest decimal that reads back as the same float32 (``formatting.float32_text``); other
floats with Python's shortest round-trip ``repr``. Infinity (the PSNR of identical images) is ``inf`` in
CSV (Python's float() and pandas read it back) and ``null`` in JSON lines, which have no infinity
(``pixel_metrics.json_number``): there a ``null`` metric in a row whose ``error`` is null means identical
images.

Names of any bytes: CSV rows hold a name's exact bytes, JSON lines a readable text plus ``<column>_b64``
(see ``names``); either reads back to the same name.

Image paths in a results *file* (a regular file; streams and devices get them as given) are written
relative to the file's folder when they were given relative (absolute ones stay absolute), the convention
``--pairs`` reads: a results file can be moved with its images, fed back as a pair list, and resumed from
any working folder. Resume keys compare real paths.

A results file is held under an advisory lock while it is written: a second writer is refused.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import logging
import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from ..errors import InputError, OutputError
from ..formatting import float32_text
from ..io.names import exact_bytes, json_fields
from ..io.outfile import lock_for_writing, make_parent_folder
from ..model.pixel_metrics import METRICS, json_number
from .resume import StoredRows
from ..stdio import write_bytes

PAIR_COLUMNS = ("img0", "img1", "distance", "error", "model")
PAIR_PATH_COLUMNS = ("img0", "img1")
NUMBER_COLUMNS = ("distance",)
FORMATS = ("csv", "jsonl")
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_STDOUT = "standard output"
# Rows are bytes as they are (no newline translation where the system has text mode) and the descriptor
# is not inherited by child processes.
_OPEN_FLAGS = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)

log = logging.getLogger(__name__)


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


def csv_line(cells: Sequence[str]) -> str:
    """One CSV record ending in a newline. Python's csv quotes a field holding a newline but not one
    holding a lone carriage return (not in its line terminator here), which readers then take for a line
    break: a record with one is quoted in full."""
    out = io.StringIO()
    quoting = csv.QUOTE_ALL if any("\r" in c for c in cells) else csv.QUOTE_MINIMAL
    csv.writer(out, lineterminator="\n", quoting=quoting).writerow(cells)
    return out.getvalue()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ResultWriter:
    """Writes rows of ``columns`` to ``target`` (a path; None or "-" with ``stream``: that text stream).

    ``constants``: columns with one value for the whole run (e.g. ``model``); resuming a file whose
    rows hold another value is an error. ``key_columns``: what identifies a row for resuming; ``path_columns``:
    those holding file paths (see the module docstring); ``number_columns``: those holding numbers (checked
    when a file is resumed). ``summary``: a ``RunSummary`` fed each row's ``distance`` (rows already in a
    resumed file with ``resumed=True``). ``keep_existing``: keep those rows in ``existing`` too.

    Without ``resume`` an existing non-empty file is an error unless ``overwrite`` is set: results are
    never clobbered by accident. ``done`` holds the keys of the rows already in a resumed file (path
    columns as real paths: compare with ``key_of``). A target that is not a regular file (``/dev/stdout``,
    a pipe) is written as a stream: it cannot be resumed.

    Errors: ``InputError`` for a target that cannot be opened, is locked by another writer, or cannot be
    resumed (one line naming the file and line); ``OutputError`` when a write fails (a full disk, a closed
    pipe), after which the writer closes quietly.
    """

    def __init__(self, target: str | Path | None, *, columns: Sequence[str] = PAIR_COLUMNS, fmt: str | None = None,
                 constants: dict | None = None, key_columns: Sequence[str] = PAIR_PATH_COLUMNS,
                 path_columns: Sequence[str] = PAIR_PATH_COLUMNS, number_columns: Sequence[str] = NUMBER_COLUMNS,
                 resume: bool = False, overwrite: bool = False, stream: TextIO | None = None, summary=None,
                 keep_existing: bool = False):
        self.columns = tuple(columns)
        self.constants = dict(constants or {})
        self.key_columns, self.path_columns = tuple(key_columns), tuple(path_columns)
        self.number_columns = tuple(c for c in number_columns if c in self.columns)
        self.summary = summary
        self._metric_columns = tuple(c for c in self.columns if c in METRICS)  # fed to the summary too
        self.done: set[tuple] = set()
        # The rows of a resumed file as read back (number columns as floats), kept only when asked
        # (``keep_existing``, e.g. for pooled statistics): a resumed all-pairs file can hold millions.
        self.keep_existing = keep_existing
        self.existing: list[dict] = []
        self._real_paths: dict[str, str] = {}  # all-pairs runs name each image many times
        self.fmt = format_for(target, fmt)
        self.rows_written = 0
        self._failed = False
        self._closed = False
        self._fd: int | None = None
        self._stream: TextIO | None = None
        self._regular = False  # a regular file (resumable), not a stream or a device
        # The CSV header goes out with the first row (or at close): a run that fails while loading its
        # model leaves no header-only output on stdout.
        self._needs_header = self.fmt == "csv"
        if target in (None, "-"):
            if stream is None:  # sys.stdout is None when stdout was closed at start (>&-)
                raise OutputError("standard output is closed: nowhere to write the rows (give --out FILE)",
                                  errno.EBADF, stream=True)
            self.path, self._stream, self.name = None, stream, _STDOUT
            return
        self.path = Path(target)
        self.name = str(self.path)
        self._fd = self._open(resume, overwrite)

    # -- opening -------------------------------------------------------------------------------------

    def _open(self, resume: bool, overwrite: bool) -> int:
        make_parent_folder(self.path)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror})") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InputError(f"{self.path} is a folder: results go to a file")
        try:
            if st is not None and not stat.S_ISREG(st.st_mode):
                if resume:
                    raise InputError(f"{self.path} is not a regular file: --resume needs one")
                return os.open(self.path, os.O_WRONLY | _OPEN_FLAGS)  # a device or a pipe: a stream
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o666)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror})") from None
        self._regular = True
        try:
            lock_for_writing(fd, self.path)  # before looking at the contents: they are ours from now on
            size = os.fstat(fd).st_size
            if size and not (resume or overwrite):
                raise InputError(f"{self.path} exists: pass --resume to continue it or --overwrite to replace it")
            if size and resume:
                self._load_existing(fd)
            elif size:
                os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- keys and paths ------------------------------------------------------------------------

    def _folder(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def path_text(self, value) -> str:
        """How a path given by the caller is written in this target (see the module docstring)."""
        text = os.fspath(value)
        if not self._regular or os.path.isabs(text):  # a stream or a device: as given
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

    def _load_existing(self, fd: int) -> None:
        """Read and check every row (``resume.StoredRows``), then drop an incomplete last row. Any error
        leaves the file as it was."""
        first_repeat, repeats = None, 0
        scored = []  # (distance, metrics) of each row, for the summary once every row is checked
        with os.fdopen(fd, "rb", closefd=False) as f:
            # metrics are numbers too, +inf included (PSNR of identical images)
            stored = StoredRows(f, self.path, self.fmt, self.columns, self.number_columns + self._metric_columns,
                                infinite_columns=self._metric_columns)
            for line, row in stored:
                for name, value in self.constants.items():
                    if row.get(name) and row[name] != value:
                        raise InputError(f"{self.path} line {line}: holds results of {row[name]}, not {value}: "
                                         "resume with the same options or write a new file")
                empty = [c for c in self.key_columns if row[c] in (None, "")]
                if empty:
                    raise InputError(f"{self.path} line {line}: {', '.join(empty)} is empty: not a row this "
                                     "command wrote; repair or delete that line, or start again with --overwrite")
                key = self._stored_key(row)
                if key in self.done:
                    repeats += 1
                    first_repeat = first_repeat or line
                self.done.add(key)
                if self.keep_existing:
                    self.existing.append(row)
                if self.summary is not None and "distance" in self.columns:
                    # a metric left empty in a scored row is PSNR's +inf written as JSON null (module docstring)
                    scored.append((row.get("distance"), {m: math.inf if row.get(m) is None else row[m]
                                                         for m in self._metric_columns}))
        if stored.end < stored.size:
            os.ftruncate(fd, stored.end)
            log.warning("%s: dropped an incomplete last row (%d bytes, as a kill, a full disk or a crash "
                        "leaves); its pair is scored again", self.path, stored.size - stored.end)
        if repeats:
            log.warning("%s: %d rows repeat a pair of an earlier row (first at line %d); they are kept, "
                        "and the pair is not scored again", self.path, repeats, first_repeat)
        self._needs_header = self._needs_header and not stored.header_seen
        for distance, metrics in scored:
            self.summary.add(distance, resumed=True, metrics=metrics)

    # -- writing ---------------------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        if self._failed:
            raise OutputError(f"{self.name}: an earlier write failed", stream=self._stream is not None)
        try:
            if self._fd is not None:
                _write_all(self._fd, data)
            else:
                write_bytes(self._stream, data)
        except OSError as exc:
            self._failed = True
            raise self._output_error(exc) from None

    def _output_error(self, exc: OSError) -> OutputError:
        text = f"{self.name}: cannot write ({exc.strerror or exc})"
        if self._regular:  # a results file: what it holds can be resumed
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                text += ": the rows written so far are kept; free some space, then rerun with --resume"
            else:
                text += ": the rows written so far are kept; rerun with --resume once it can be written"
        return OutputError(text, errno=exc.errno, stream=self._stream is not None)

    def _header(self) -> None:
        if self._needs_header:
            self._needs_header = False
            self._emit((",".join(self.columns) + "\n").encode("utf-8"))

    def write_row(self, row: dict) -> None:
        """Write one row (missing columns are empty/null; ``constants`` fill their columns)."""
        self._header()
        values = {**self.constants, **row}
        for c in self.path_columns:
            if values.get(c) is not None:
                values[c] = self.path_text(values[c])
        if self.fmt == "jsonl":
            record = json_fields({c: _json_value(values.get(c)) for c in self.columns})
            data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        else:
            data = exact_bytes(csv_line([_cell_text(values.get(c)) for c in self.columns]))
        self._emit(data)  # one write per row: a kill leaves at most one incomplete line
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
        """Finish the output (a CSV with no row still gets its header), make a file durable (fsync) and
        close it. After a failed write it only closes (what was written stays)."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._failed:
                self._header()
                if self._fd is not None:
                    try:
                        os.fsync(self._fd)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.EROFS):  # a device or pipe cannot sync
                            raise self._output_error(exc) from None
        finally:
            if self._fd is not None:
                os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
