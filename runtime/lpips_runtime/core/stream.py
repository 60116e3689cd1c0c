"""The streaming pipeline of batch runs (``Scorer.score_pairs`` and the lists ``distance`` takes): decode
pairs in a thread pool a chunk ahead of inference, batch same-size pairs, keep the backend's
``pipeline_depth`` batches in flight, score pairs too large for one piece tile by tile, and yield one
``PairResult`` per pair in input order. A pair that fails records its error and the run goes on.

It knows the model only through what ``PairStream`` is given (a pair preparer, a backend, the graph's
outputs, the memory rule), so it can be tested and reused without a Scorer.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import error_text, first_line
from ..io.images import describe
from .pair_result import PairResult
from .tiling import TilePlan


@dataclass
class TiledPair:
    """A decoded pair to be scored in tiles: kept as decoded (8/16-bit RGB), cropped and converted per tile."""

    rgb0: np.ndarray
    rgb1: np.ndarray
    plan: TilePlan

    @property
    def nbytes(self) -> int:
        return self.rgb0.nbytes + self.rgb1.nbytes


def pair_bytes(prepared) -> int:
    """Bytes a prepared pair holds: a ``TiledPair`` or two model-ready arrays."""
    return prepared.nbytes if isinstance(prepared, TiledPair) else prepared[0].nbytes + prepared[1].nbytes


class DecodeAhead:
    """How many pairs to decode ahead of inference. Two chunks are alive at once (one being scored, the
    next decoding), each within half of ``budget`` bytes at the largest decoded pair seen so far; before
    any pair is seen, ``first`` pairs."""

    def __init__(self, budget: int, most: int, first: int):
        self.budget, self.most, self.first = budget, most, first
        self.largest = 0

    def size(self) -> int:
        if not self.largest:
            return max(1, min(self.first, self.most))
        return max(1, min(self.most, self.budget // 2 // self.largest))

    def saw(self, nbytes: int) -> None:
        self.largest = max(self.largest, nbytes)


@dataclass
class PairStream:
    """One streamed run over a backend.

    ``prepare(src0, src1)``: two model-ready [1,...] arrays, or a ``TiledPair`` (raising for a pair that
    cannot be scored); ``outputs``: the graph's output names, the distance (or map, with ``spatial``)
    first, then its metrics; ``pairs_per_batch(pixels, batch_size)``: how many pairs of that many pixels
    one call may take (the memory rule); ``score_tiled(pair)``: the distance (or map) of a ``TiledPair``;
    ``memory``: the bytes decoded pairs may hold (two chunks of at most half of it each)."""

    backend: object
    prepare: Callable
    outputs: tuple[str, ...]
    pairs_per_batch: Callable[[int, int], int]
    score_tiled: Callable
    memory: int
    batch_size: int
    workers: int
    spatial: bool = False

    def run(self, pairs: Iterable) -> Iterator[PairResult]:
        """Decode in a thread pool one chunk ahead (chunks sized so that decoded pairs stay within
        ``memory``); batch same-size pairs (by ``batch_size`` and by pixels); keep up to the backend's
        ``pipeline_depth`` batches in flight, across chunk boundaries too (a GPU backend uploads the next
        batch while one computes); score pairs that need tiles one at a time; yield each chunk's results
        in input order once complete."""
        backend = self.backend
        ahead = DecodeAhead(self.memory, max(2 * self.batch_size, 8), first=1)  # sizes unknown: one pair
        items = iter(enumerate(pairs))
        chunks: deque = deque()  # (chunk, done) in input order, not yet yielded
        in_flight: deque = deque()  # (done, part, pending)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lpips-decode") as pool:
            upcoming = self._submit_chunk(pool, items, ahead.size())
            while upcoming:
                current, upcoming = upcoming, self._submit_chunk(pool, items, ahead.size())  # decode ahead
                done, batches, tiled = self._batch_chunk(current, ahead)
                chunks.append((current, done))
                for part in batches:
                    try:
                        in_flight.append((done, part, backend.submit([m[3] for m in part], [m[4] for m in part])))
                    except Exception as exc:  # e.g. a backend failure: every pair of this batch records it
                        _record_failure(done, part, exc)
                    if len(in_flight) >= backend.pipeline_depth:
                        self._collect(*in_flight.popleft())
                    yield from _completed(chunks)
                batches = None  # their arrays go as soon as the batches in flight are collected
                while tiled:
                    index, name0, name1, pair = tiled.pop(0)
                    while in_flight:  # a tiled pair takes the whole memory budget: one working set at a time
                        self._collect(*in_flight.popleft())
                    try:
                        done[index] = PairResult(index, name0, name1, distance=self.score_tiled(pair))
                    except Exception as exc:  # never lose the run to one pair: record and go on
                        done[index] = PairResult(index, name0, name1, error=error_text(exc))
                    del pair
                    yield from _completed(chunks)
            while in_flight:
                self._collect(*in_flight.popleft())
            yield from _completed(chunks)

    def _submit_chunk(self, pool: ThreadPoolExecutor, items, size: int) -> list[tuple[int, str, str, Future]]:
        chunk = []
        for index, (src0, src1) in items:
            chunk.append((index, describe(src0), describe(src1), pool.submit(self.prepare, src0, src1)))
            if len(chunk) == size:
                break
        return chunk

    def _batch_chunk(self, chunk: list, ahead: DecodeAhead) -> tuple[dict[int, PairResult], list, list]:
        """Wait for a chunk's decoding: (results of the pairs that failed, batches of same-size pairs, pairs to
        score in tiles). The chunk's futures are dropped as they are read, so that it holds no pixels."""
        done: dict[int, PairResult] = {}
        groups: dict[tuple, list] = {}
        tiled = []
        for k, (index, name0, name1, future) in enumerate(chunk):
            chunk[k] = (index, name0, name1, None)
            try:
                prepared = future.result()
            except Exception as exc:  # never lose the run to one pair: record and go on
                done[index] = PairResult(index, name0, name1, error=error_text(exc))
                continue
            ahead.saw(pair_bytes(prepared))
            if isinstance(prepared, TiledPair):
                tiled.append((index, name0, name1, prepared))
                continue
            a, b = prepared
            groups.setdefault((a.shape, a.dtype.str), []).append((index, name0, name1, a, b))
        batches = []
        for members in groups.values():
            step = self.pairs_per_batch(members[0][3].size // 3, self.batch_size)  # [1,...] arrays of 3 channels
            batches += [members[start:start + step] for start in range(0, len(members), step)]
        return done, batches, tiled

    def _collect(self, done: dict, part: list, pending) -> None:
        try:
            out = pending.result()
        except Exception as exc:
            _record_failure(done, part, exc)
            return
        first, *metrics = self.outputs
        for k, (index, name0, name1, _, _) in enumerate(part):
            value = out[first][k]
            done[index] = PairResult(index, name0, name1, distance=value[0] if self.spatial else float(value),
                                     metrics={m: float(out[m][k]) for m in metrics} if metrics else None)


def _completed(chunks: deque) -> Iterator[PairResult]:
    """Yield the leading chunks whose every pair has a result, in input order."""
    while chunks and len(chunks[0][1]) == len(chunks[0][0]):
        chunk, done = chunks.popleft()
        for index, *_ in chunk:
            yield done[index]


def _record_failure(done: dict, part: list, exc: Exception) -> None:
    message = first_line(exc)  # a backend's own words
    for index, name0, name1, *_ in part:
        done[index] = PairResult(index, name0, name1, error=message)
