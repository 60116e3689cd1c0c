"""Pooled statistics of many per-item scores (video frames, image pairs), as VMAF pools per-frame scores.

Pure functions over plain floats: no model, no files. ``pool`` takes a finished list; ``Pooling``
accumulates as rows arrive (and from rows read back on ``--resume``).

Definitions (n = scored items; failures are counted, not pooled):

* ``mean``, ``std`` (population, ``ddof=0`` as numpy's default), ``min``, ``max``;
* ``p5``, ``p50``, ``p95``: percentiles with linear interpolation between order statistics
  (``numpy.percentile``'s default method);
* ``harmonic_mean``: VMAF's form ``n / sum(1 / (x + 1)) - 1``, defined for zeros (identical frames score 0).
  For LPIPS lower is better, so it leans towards the *best* items; read ``max`` and ``p95`` for the worst;
* ``worst``: the label (frame index, pair name) of the worst item, the first one where several tie.

``Pooling`` counts infinite scores (the PSNR of identical frames) apart, in ``infinite``: they are not
pooled (every mean would be infinite), and they are never the worst item.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Hashable

import numpy as np

STAT_NAMES = ("mean", "harmonic_mean", "std", "min", "p5", "p50", "p95", "max")


@dataclass(frozen=True)
class PooledStats:
    """The pooled statistics of one score (all None when nothing was scored)."""

    n: int
    failures: int
    mean: float | None = None
    harmonic_mean: float | None = None
    std: float | None = None
    min: float | None = None
    p5: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None
    worst: Hashable | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self, label: str = "worst") -> str:
        """One human-readable line (6 decimals), for stderr."""
        if self.n == 0:
            return f"n=0 failures={self.failures}"
        stats = " ".join(f"{name}={getattr(self, name):.6f}" for name in STAT_NAMES)
        return f"n={self.n} {stats} {label}={self.worst} failures={self.failures}"


def pool(values, labels=None, failures: int = 0, higher_is_worse: bool = True) -> PooledStats:
    """Pool ``values`` (finite floats; ``labels[i]`` names item i, default its position).
    ``higher_is_worse``: the worst item is the largest (LPIPS) or, if False, the smallest (PSNR, SSIM)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"pool takes a flat sequence of scores, got shape {x.shape}")
    if len(x) == 0:
        return PooledStats(0, failures)
    if not np.isfinite(x).all():
        raise ValueError("pool takes finite scores (record failures as failures, not NaN)")
    worst = int(np.argmax(x) if higher_is_worse else np.argmin(x))
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    # VMAF's harmonic mean shifts by 1 so that zero scores are defined; a sum of 1/(x+1) stays finite
    # for every x > -1 (LPIPS, PSNR and SSIM in their usual ranges).
    harmonic = len(x) / float(np.sum(1.0 / (x + 1.0))) - 1.0
    return PooledStats(
        n=len(x), failures=failures, mean=float(x.mean()), harmonic_mean=harmonic, std=float(x.std()),
        min=float(x.min()), p5=float(p5), p50=float(p50), p95=float(p95), max=float(x.max()),
        worst=worst if labels is None else labels[worst],
    )


@dataclass
class Pooling:
    """Accumulates (label, score or None) as items finish; ``stats()`` pools what it holds so far.
    Memory: 8 bytes per scored item plus its label (a million frames: a few tens of MB)."""

    higher_is_worse: bool = True
    values: list[float] = field(default_factory=list)
    labels: list[Hashable] = field(default_factory=list)
    failures: int = 0
    infinite: int = 0  # +-inf scores seen (e.g. PSNR of identical frames), not pooled

    def add(self, label: Hashable, value: float | None) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.failures += 1
        elif math.isinf(value):
            self.infinite += 1
        else:
            self.values.append(float(value))
            self.labels.append(label)

    def stats(self) -> PooledStats:
        return pool(self.values, self.labels, self.failures, self.higher_is_worse)
