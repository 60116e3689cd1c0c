"""``PairResult``: one scored pair of a batch run, as every scoring path yields it (the streaming pipeline,
the feature cache, the cluster's rows)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairResult:
    """One scored pair of a batch run: ``distance`` is None exactly when ``error`` says why.
    ``metrics``: the Scorer's metrics for this pair by name (e.g. {"psnr": 27.1, "ssim": 0.87}; PSNR
    +inf for identical images), None when it computes none or the pair failed."""

    index: int
    img0: str
    img1: str
    distance: float | None = None
    error: str | None = None
    metrics: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
