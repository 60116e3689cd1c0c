"""The end-of-run summary of a batch of LPIPS distances: a line for people and a JSON object for machines
(``--summary-json``), like VMAF's pooled metrics or ffmpeg-quality-metrics' global statistics; with
``--metrics``, the same statistics of each metric (``MetricStats``).

Constant memory whatever the run's size (Welford's running mean and variance, min, max), so a median is
not offered. Front ends (``lpips-score``'s batch modes, video, cluster runs) share it: feed every
distance (None for a failed item) to ``add``, rows found in a resumed file to ``add(..., resumed=True)``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.outfile import make_parent_folder
from ..model.pixel_metrics import UNITS, format_metric


@dataclass
class DistanceStats:
    """Running statistics over distances. ``std`` is the population standard deviation (as ``numpy.std``
    and the official scripts); ``std_error`` is ``std / sqrt(n)`` (the official scripts' ``+/-``)."""

    n: int = 0
    mean: float = 0.0
    _m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    failures: int = 0

    def add(self, distance: float | None) -> None:
        if distance is None:
            self.failures += 1
            return
        self.n += 1
        delta = distance - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (distance - self.mean)
        self.min, self.max = min(self.min, distance), max(self.max, distance)

    def merge(self, other: "DistanceStats") -> None:
        """Add the distances ``other`` summarised (computed elsewhere, e.g. a tile of a cluster run):
        Chan et al.'s pairwise update of the mean and the sum of squared deviations."""
        self.failures += other.failures
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self._m2 += other._m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    @classmethod
    def of(cls, values) -> "DistanceStats":
        """Statistics of an array of distances (float64 arithmetic), for ``merge``."""
        import numpy as np

        values = np.asarray(values, np.float64).ravel()
        if not values.size:
            return cls()
        mean = float(values.mean())
        return cls(int(values.size), mean, float(np.square(values - mean).sum()), float(values.min()),
                   float(values.max()))

    @property
    def std(self) -> float:
        return math.sqrt(self._m2 / self.n) if self.n else math.nan

    @property
    def std_error(self) -> float:
        return self.std / math.sqrt(self.n) if self.n else math.nan


@dataclass
class MetricStats:
    """Running statistics of one metric (PSNR, SSIM, ...) over the scored items. Infinite values (the
    PSNR of identical images) are counted apart and left out of the statistics, whose mean would
    otherwise be +inf whatever the other items say."""

    finite: DistanceStats = field(default_factory=DistanceStats)
    infinite: int = 0

    def add(self, value: float) -> None:
        if math.isinf(value):
            self.infinite += 1
        else:
            self.finite.add(value)

    def text(self, metric: str) -> str:
        """``psnr=27.3893 dB``, ``ssim=0.811280``; with identical pairs: how many were left out."""
        s = self.finite
        if s.n == 0:
            return f"{metric}=inf (all {self.infinite} identical)"
        text = f"{metric}={format_metric(metric, s.mean)}" + (f" {UNITS[metric]}" if UNITS[metric] else "")
        return text + (f" (mean of {s.n}; {self.infinite} identical: inf, left out)" if self.infinite else "")

    def as_dict(self) -> dict:
        s = self.finite

        def number(x: float) -> float | None:
            return None if s.n == 0 or not math.isfinite(x) else x

        return {"n": s.n, "mean": number(s.mean), "std": number(s.std), "min": number(s.min), "max": number(s.max),
                "infinite": self.infinite}


@dataclass
class RunSummary:
    """Statistics of a run, what computed them (``context``: model, precision, backend, device, ...) and
    how fast: ``elapsed_s`` and ``items_per_s`` count only the items of this run (not resumed rows),
    from ``start()`` to the last ``add``."""

    context: dict = field(default_factory=dict)
    unit: str = "pairs"
    stats: DistanceStats = field(default_factory=DistanceStats)
    metrics: dict[str, MetricStats] = field(default_factory=dict)  # per metric name, for items that have them
    resumed: int = 0
    this_run: int = 0
    _start: float | None = None
    _last: float | None = None

    def start(self) -> None:
        """Start the clock (call when the first item is about to be computed, after set-up)."""
        self._start = self._last = time.monotonic()

    def add(self, distance: float | None, resumed: bool = False, metrics: dict[str, float] | None = None) -> None:
        """One item: its distance (None: it failed) and, if any, its metrics by name."""
        self.stats.add(distance)
        if distance is not None:
            for name, value in (metrics or {}).items():
                self.metrics.setdefault(name, MetricStats()).add(value)
        if resumed:
            self.resumed += 1
            return
        if self._start is None:
            self.start()
        self.this_run += 1
        self._last = time.monotonic()

    def add_stats(self, stats: DistanceStats) -> None:
        """Add the distances of this run that were summarised elsewhere (``DistanceStats.merge``)."""
        if self._start is None:
            self.start()
        self.stats.merge(stats)
        self.this_run += stats.n + stats.failures
        self._last = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._start is None else self._last - self._start

    def line(self) -> str:
        """``n=2 mean=0.199046 +/- 0.037629 (std/sqrt(n)) failures=1``: the official scripts' form (with
        metrics, their means before ``failures``: ``... psnr=27.3893 dB ssim=0.811280 failures=1``)."""
        s = self.stats
        if s.n == 0:
            return f"n=0 failures={s.failures}"
        means = "".join(f" {stats.text(name)}" for name, stats in self.metrics.items())
        return f"n={s.n} mean={s.mean:.6f} +/- {s.std_error:.6f} (std/sqrt(n)){means} failures={s.failures}"

    def as_dict(self, complete: bool = True) -> dict:
        """The machine-readable summary (JSON-ready; statistics are null when nothing was scored)."""
        s = self.stats

        def number(x: float) -> float | None:
            return None if s.n == 0 or not math.isfinite(x) else x

        rate = self.this_run / self.elapsed_s if self.elapsed_s > 0 else None
        metrics = {"metrics": {name: stats.as_dict() for name, stats in self.metrics.items()}} if self.metrics else {}
        return {"n": s.n, "failures": s.failures, "mean": number(s.mean), "std": number(s.std),
                "std_error": number(s.std_error), "min": number(s.min), "max": number(s.max), **metrics,
                **self.context, "unit": self.unit, f"{self.unit}_this_run": self.this_run,
                f"{self.unit}_resumed": self.resumed, "elapsed_s": round(self.elapsed_s, 6),
                f"{self.unit}_per_s": rate, "complete": complete}

    def write_json(self, path: str | Path, complete: bool = True) -> None:
        """Write ``as_dict`` to ``path``: a file atomically (a temporary file renamed over it: a reader never
        sees half a file); a device or a pipe (``/dev/stderr``, a FIFO) directly, never replaced."""
        path = Path(path)
        data = (json.dumps(self.as_dict(complete), indent=2) + "\n").encode("utf-8")
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None  # absent (or unreachable: the folder check below says why)
        if mode is not None and stat.S_ISDIR(mode):
            raise InputError(f"{path} is a folder: the summary goes to a file")
        if mode is not None and not stat.S_ISREG(mode):
            try:
                with open(path, "wb") as f:
                    f.write(data)
            except OSError as exc:
                raise InputError(f"{path}: cannot write the summary ({exc.strerror})") from None
            return
        make_parent_folder(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise InputError(f"{path}: cannot write the summary ({exc.strerror})") from None
