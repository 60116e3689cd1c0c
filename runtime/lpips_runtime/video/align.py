"""Which frame of REF is compared with which frame of DIST: offset, step, frame limit, resumption.

Frames are numbered from 0 in output order. With ``offset`` K >= 0, REF frame i meets DIST frame i + K
(the first K frames of DIST are skipped); with K < 0, REF frame i meets DIST frame i + K (the first -K
frames of REF are skipped). The aligned pairs are then taken every ``step``-th, up to ``max_frames``.
A pair is named by its REF frame index.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import InputError
from .decode import DecodedFrame


@dataclass(frozen=True)
class Alignment:
    offset: int = 0
    step: int = 1
    max_frames: int | None = None
    shortest: bool = False

    def __post_init__(self):
        if self.step < 1:
            raise InputError(f"step must be >= 1, got {self.step}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {self.max_frames}")

    @property
    def skip_ref(self) -> int:
        return max(0, -self.offset)

    @property
    def skip_dist(self) -> int:
        return max(0, self.offset)

    def position(self, ref_index: int) -> int:
        """Place of REF frame ``ref_index`` in the aligned sequence (negative: before it starts)."""
        return ref_index - self.skip_ref

    @property
    def last_position(self) -> int | None:
        """Position of the last pair ``max_frames`` allows (None: no limit)."""
        return None if self.max_frames is None else (self.max_frames - 1) * self.step

    def selected(self, position: int) -> bool:
        last = self.last_position
        return position >= 0 and position % self.step == 0 and (last is None or position <= last)

    def ref_wanted(self, skip: frozenset[int] = frozenset()):
        """Predicate on REF frame indices: will this frame be scored?"""
        return lambda i: self.selected(self.position(i)) and i not in skip

    def dist_wanted(self, skip: frozenset[int] = frozenset()):
        """Predicate on DIST frame indices (DIST frame j meets REF frame j - offset)."""
        return lambda j: self.ref_wanted(skip)(j - self.offset)

    def describe(self) -> dict:
        return {"offset": self.offset, "step": self.step, "max_frames": self.max_frames, "shortest": self.shortest}


@dataclass(frozen=True)
class FramePair:
    """REF frame ``frame`` and the DIST frame it meets; ``error`` set when either failed to decode."""

    frame: int
    ref: DecodedFrame
    dist: DecodedFrame

    @property
    def error(self) -> str | None:
        errors = [e for e in (self.ref.error, self.dist.error) if e]
        return "; ".join(errors) if errors else None


@dataclass
class PairingOutcome:
    """How pairing ended, filled in by ``pair_frames`` once its iterator is exhausted."""

    ended_by_limit: bool = False  # --max-frames reached
    ref_frames: int | None = None  # frames in each stream where one ended before the other
    dist_frames: int | None = None
    finished: bool = False
    offset: int = 0

    def count_mismatch(self) -> str | None:
        if self.ref_frames is None or self.dist_frames is None:
            return None
        return counts_message(self.ref_frames, self.dist_frames, self.offset)


def counts_message(ref_frames: int, dist_frames: int, offset: int) -> str:
    """What to say when two videos have different lengths (``offset``: see ``Alignment``)."""
    text = f"frame counts differ: REF has {ref_frames} frames, DIST has {dist_frames}"
    if offset:
        left_ref, left_dist = ref_frames - max(0, -offset), dist_frames - max(0, offset)
        text += f" (with --offset {offset}: {left_ref} REF frames against {left_dist} DIST frames)"
    return text


def pair_frames(ref: Iterable[DecodedFrame], dist: Iterable[DecodedFrame], alignment: Alignment,
                skip: frozenset[int] = frozenset(), outcome: PairingOutcome | None = None,
                count_rest=None) -> Iterator[FramePair]:
    """Yield the aligned, selected pairs of two frame streams (frames listed in ``skip``, by REF index,
    are left out: already scored). When one stream ends before the other and ``alignment.shortest`` is
    not set, ``count_rest(longer_iterator)`` counts what remains of the longer one (default: iterate it)
    and ``outcome`` records both lengths, to report after the rows are written."""
    outcome = outcome if outcome is not None else PairingOutcome()
    ref_it, dist_it = iter(ref), iter(dist)
    ref_seen = _skip(ref_it, alignment.skip_ref)
    dist_seen = _skip(dist_it, alignment.skip_dist)
    ref_ended, dist_ended = ref_seen < alignment.skip_ref, dist_seen < alignment.skip_dist  # shorter than the offset
    while True:
        r = None if ref_ended else next(ref_it, None)
        d = None if dist_ended else next(dist_it, None)
        if r is None or d is None:
            break
        ref_seen, dist_seen = ref_seen + 1, dist_seen + 1
        position = alignment.position(r.index)
        if alignment.selected(position) and r.index not in skip:
            yield FramePair(r.index, r, d)
        if alignment.last_position is not None and position >= alignment.last_position:
            outcome.ended_by_limit = outcome.finished = True  # nothing after it is read
            return
    if (r is None) != (d is None) and not alignment.shortest:
        count = count_rest or (lambda it: sum(1 for _ in it))
        if r is None:  # REF ended first; d is a frame DIST still has
            dist_seen += 1 + count(dist_it)
        else:
            ref_seen += 1 + count(ref_it)
        outcome.ref_frames, outcome.dist_frames, outcome.offset = ref_seen, dist_seen, alignment.offset
    outcome.finished = True


def _skip(frames: Iterator[DecodedFrame], n: int) -> int:
    """Consume up to ``n`` frames; return how many there were."""
    seen = 0
    while seen < n and next(frames, None) is not None:
        seen += 1
    return seen
