"""Frame pairs through the one ``Scorer``: a thin layer over ``Scorer.score_pairs``.

``score_pairs`` batches same-size pairs, keeps batches in flight, applies the Scorer's resize policy
and records a failure per pair; this module only feeds it decoded frames and puts the frames that
failed to decode back in their place, so results come out in frame order.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .align import FramePair

FRAME_COLUMNS = ("frame", "pts_ref", "pts_dist", "distance", "error", "model")
FRAME_KEY = ("frame",)


@dataclass(frozen=True)
class FrameResult:
    """One row: REF frame ``frame``, the two timestamps (seconds), and its distance or error.
    ``ref``/``dist`` hold the scored RGB frames when asked for (heatmaps), else None; ``metrics`` the
    Scorer's metrics of the pair (``PairResult.metrics``)."""

    frame: int
    pts_ref: float | None
    pts_dist: float | None
    distance: float | None = None
    error: str | None = None
    ref: np.ndarray | None = None
    dist: np.ndarray | None = None
    metrics: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self) -> dict:
        """The result row (the distance as the float32 the model computed: written with its shortest digits)."""
        distance = None if self.distance is None else np.float32(self.distance)
        metrics = {m: np.float32(v) for m, v in (self.metrics or {}).items()}
        return {"frame": self.frame, "pts_ref": self.pts_ref, "pts_dist": self.pts_dist, "distance": distance,
                **metrics, "error": self.error}


def score_frames(scorer, pairs: Iterable[FramePair], batch_size: int | None = None,
                 keep_frames: bool = False) -> Iterator[FrameResult]:
    """One ``FrameResult`` per pair, in order. Pairs whose frames decoded go through
    ``scorer.score_pairs`` (batched; 8-bit frames through a uint8 frame graph stay uint8 on the host);
    the others come back with their decoding error."""
    order: deque[tuple[FramePair, bool]] = deque()  # every pair in input order, and whether it is scored

    def decoded() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for pair in pairs:
            scored = pair.error is None
            order.append((pair, scored))
            if scored:
                yield pair.ref.rgb, pair.dist.rgb

    def result(pair: FramePair, distance=None, error=None, metrics=None) -> FrameResult:
        frames = (pair.ref.rgb, pair.dist.rgb) if keep_frames and error is None else (None, None)
        return FrameResult(pair.frame, pair.ref.pts, pair.dist.pts, distance, error, *frames, metrics)

    for scored in scorer.score_pairs(decoded(), batch_size=batch_size):
        while not order[0][1]:  # frames that failed to decode, before this one
            pair, _ = order.popleft()
            yield result(pair, error=pair.error)
        pair, _ = order.popleft()
        yield result(pair, scored.distance, scored.error, scored.metrics)
    for pair, _ in order:  # failures after the last scored frame
        yield result(pair, error=pair.error)
