"""Streamed, resumable result files (.csv or .jsonl) and the end-of-run summary.

Columns: img0, img1, distance, then one per metric of the Scorer (e.g. psnr, ssim), error, model. PSNR
is +inf for identical images: ``inf`` in CSV (Python's float() and pandas read it back), ``null`` in
JSON lines (JSON has no infinity; ``lpips_runtime.pixel_metrics.json_number``), where a ``null`` metric
with a ``null`` error therefore means identical images.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .pixel_metrics import UNITS, format_metric, json_number
from .scorer import PairResult

COLUMNS = ("img0", "img1", "distance", "error", "model")


def columns(metrics: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The columns of a result file: ``COLUMNS`` with one per metric after the distance."""
    return (*COLUMNS[:3], *metrics, *COLUMNS[3:])


def format_distance(value: float) -> str:
    return f"{value:.9g}"  # 9 significant digits: a float32 survives the round trip (inf as "inf")


@dataclass
class MetricMean:
    """The mean of one metric over the scored rows. Infinite values (PSNR of identical images) are
    counted apart and left out of the mean, which would otherwise be +inf whatever the other rows say."""

    total: float = 0.0
    finite: int = 0
    infinite: int = 0

    def add(self, value: float) -> None:
        if math.isfinite(value):
            self.total += value
            self.finite += 1
        else:
            self.infinite += 1

    def text(self, metric: str) -> str:
        if not self.finite:
            return f"{metric}=inf (all {self.infinite} pairs identical)"
        text = f"{metric}={format_metric(metric, self.total / self.finite)}" + (f" {UNITS[metric]}" if UNITS[metric] else "")
        if not self.infinite:
            return text
        pairs = "pair" if self.infinite == 1 else "pairs"
        return f"{text} (mean of {self.finite}; {self.infinite} identical {pairs}: inf, left out)"


@dataclass
class Summary:
    """Statistics over every scored row, as the official scripts print them (mean +/- std/sqrt(n)),
    and the mean of each metric (``MetricMean``)."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    failures: int = 0
    metrics: dict[str, MetricMean] = field(default_factory=dict)

    def add(self, distance: float | None, metrics: dict[str, float] | None = None) -> None:
        if distance is None:
            self.failures += 1
        else:
            self.n += 1
            self.total += distance
            self.total_sq += distance * distance
            for name, value in (metrics or {}).items():
                self.metrics.setdefault(name, MetricMean()).add(value)

    def line(self) -> str:
        if self.n == 0:
            return f"n=0 failures={self.failures}"
        mean = self.total / self.n
        std = math.sqrt(max(self.total_sq / self.n - mean * mean, 0.0))  # population std, as numpy's
        means = "".join(f" {m.text(name)}" for name, m in self.metrics.items())
        return (f"n={self.n} mean={mean:.6f} +/- {std / math.sqrt(self.n):.6f} (std/sqrt(n)){means} "
                f"failures={self.failures}")


class ResultWriter:
    """Writes one row per pair, flushed as it is written, so an interrupted run keeps every finished row.

    ``resume=True`` reads the rows already in ``path`` (their pairs are then skipped by the caller via
    ``done``), drops a partial last line left by a kill mid-write, and appends. Without ``resume`` an
    existing file is an error unless ``overwrite`` is set: results are never clobbered by accident.
    """

    def __init__(self, path: str | Path | None, model: str, resume: bool = False, overwrite: bool = False,
                 stream=None, jsonl: bool = False, metrics: tuple[str, ...] = ()):
        self.model = model
        self.metrics = tuple(metrics)
        self.columns = columns(self.metrics)
        self.done: set[tuple[str, str]] = set()
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
            self.done.add((row["img0"], row["img1"]))
            distance = row.get("distance")
            if distance in (None, ""):
                self.summary.add(None)
            else:  # a JSON null metric in a scored row is PSNR's +inf (see the module docstring)
                self.summary.add(float(distance), {m: math.inf if row.get(m) is None else float(row[m])
                                                   for m in self.metrics})

    def _emit(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()

    def write(self, result: PairResult) -> None:
        values = result.metrics or {}
        self.summary.add(result.distance, values)
        numbers = {"distance": result.distance, **{m: values.get(m) for m in self.metrics}}
        if self.jsonl:
            row = {"img0": result.img0, "img1": result.img1,
                   **{c: None if v is None else json_number(float(format_distance(v))) for c, v in numbers.items()},
                   "error": result.error, "model": self.model}
            self._emit(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            row = {"img0": result.img0, "img1": result.img1, "error": result.error, "model": self.model,
                   **{c: None if v is None else format_distance(v) for c, v in numbers.items()}}
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow(["" if row[c] is None else row[c] for c in self.columns])
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
