"""Streamed, resumable result files (.csv or .jsonl) and the end-of-run summary."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .scorer import PairResult

COLUMNS = ("img0", "img1", "distance", "error", "model")


def format_distance(value: float) -> str:
    return f"{value:.9g}"  # 9 significant digits: a float32 survives the round trip


@dataclass
class Summary:
    """Statistics over every scored row, as the official scripts print them (mean +/- std/sqrt(n))."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    failures: int = 0

    def add(self, distance: float | None) -> None:
        if distance is None:
            self.failures += 1
        else:
            self.n += 1
            self.total += distance
            self.total_sq += distance * distance

    def line(self) -> str:
        if self.n == 0:
            return f"n=0 failures={self.failures}"
        mean = self.total / self.n
        std = math.sqrt(max(self.total_sq / self.n - mean * mean, 0.0))  # population std, as numpy's
        return f"n={self.n} mean={mean:.6f} +/- {std / math.sqrt(self.n):.6f} (std/sqrt(n)) failures={self.failures}"


class ResultWriter:
    """Writes one row per pair (or per frame, ...), flushed as it is written, so an interrupted run keeps
    every finished row.

    ``columns`` name the row fields in file order (``model`` is filled in by the writer); ``key`` names
    the columns that identify a row. ``resume=True`` reads the rows already in ``path`` (kept in
    ``existing``; their keys, as strings, in ``done`` for the caller to skip), drops a partial last line
    left by a kill mid-write, and appends. Without ``resume`` an existing file is an error unless
    ``overwrite`` is set: results are never clobbered by accident.
    """

    def __init__(self, path: str | Path | None, model: str, resume: bool = False, overwrite: bool = False,
                 stream=None, jsonl: bool = False, columns: tuple[str, ...] = COLUMNS,
                 key: tuple[str, ...] = ("img0", "img1")):
        self.model, self.columns, self.key = model, tuple(columns), tuple(key)
        self.done: set[tuple[str, ...]] = set()
        self.existing: list[dict] = []
        self.summary = Summary()
        if path is None:  # rows to an already open text stream (e.g. stdout), nothing to resume
            self.path, self.jsonl, self._file, self._owned = None, jsonl, stream, False
            if not self.jsonl:
                self._emit(",".join(self.columns) + "\n")
            return
        self._owned = True
        self.path = Path(path)
        self.jsonl = self.path.suffix.lower() in (".jsonl", ".ndjson")
        if not self.jsonl and self.path.suffix.lower() != ".csv":
            raise InputError(f"{self.path}: results go to a .csv or .jsonl file")
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not (resume or overwrite):
            raise InputError(f"{self.path} exists: pass --resume to continue it or --overwrite to replace it")
        if exists and resume:
            self._load_existing()
            self._file = open(self.path, "a", encoding="utf-8", newline="")
            if not self.jsonl and self.path.stat().st_size == 0:  # only a partial header was there
                self._emit(",".join(self.columns) + "\n")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8", newline="")
            if not self.jsonl:
                self._emit(",".join(self.columns) + "\n")

    def _load_existing(self) -> None:
        raw = self.path.read_bytes()
        if not raw.endswith(b"\n"):  # killed mid-write: the last row is incomplete, drop it
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(raw))
        text = raw.decode("utf-8")
        rows = ([json.loads(line) for line in text.splitlines() if line.strip()] if self.jsonl
                else list(csv.DictReader(io.StringIO(text))))
        for row in rows:
            if row.get("model") and row["model"] != self.model:
                raise InputError(f"{self.path} holds results of {row['model']}, not {self.model}: "
                                 "resume with the same options or write a new file")
            missing = [k for k in self.key if k not in row]
            if missing:
                raise InputError(f"{self.path} has no {', '.join(missing)} column: it holds other results "
                                 "(write a new file)")
            self.done.add(tuple(str(row[k]) for k in self.key))
            self.existing.append(row)
            distance = row.get("distance")
            self.summary.add(float(distance) if distance not in (None, "") else None)

    def _emit(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()

    def write(self, result: PairResult) -> None:
        self.write_row({"img0": result.img0, "img1": result.img1, "distance": result.distance,
                        "error": result.error})

    def write_row(self, row: dict) -> None:
        """Write one row: ``row`` maps column names to values (missing ones are empty; floats are written
        with 9 significant digits, enough for a float32 to survive the round trip)."""
        self.summary.add(row.get("distance"))
        row = {c: self.model if c == "model" else row.get(c) for c in self.columns}
        row = {c: float(format_distance(v)) if isinstance(v, float) else v for c, v in row.items()}
        if self.jsonl:
            self._emit(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow(
                ["" if row[c] is None else (format_distance(row[c]) if isinstance(row[c], float) else row[c])
                 for c in self.columns])
            self._emit(out.getvalue())  # one write per row: a kill leaves at most one partial line

    def close(self) -> None:
        if self._owned and not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
