"""Dynamic batching: pairs of one shape from concurrent requests share one model call.

Pairs are bucketed by (spatial, shape, dtype) and never padded: padding would change LPIPS (its
spatial means). The dispatcher takes the bucket whose first pair has waited longest, lets it gather
company for at most ``max_wait`` while other admitted pairs are still being read or decoded, and runs
up to ``max_batch`` pairs as one call in a worker thread (as many at once as the backend's pipeline
depth). Pairs whose requests are gone (timed out, client disconnected) are dropped before they cost a
model call.

Admission bounds memory: ``reserve`` counts a request's pairs against ``max_queue`` before its body is
read, and ``put`` counts decoded pixels against ``max_queue_pixels`` while they wait.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


log = logging.getLogger("lpips_runtime.serve")


class QueueFull(Exception):
    """No room for more pairs now (the caller answers 503 with Retry-After)."""


# (spatial, shape, dtype): pairs with equal keys can share a batch
BucketKey = tuple[bool, tuple[int, ...], str]
RunBatch = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], bool], np.ndarray]


@dataclass
class _Pending:
    a: np.ndarray
    b: np.ndarray
    pixels: int
    future: asyncio.Future
    since: float = field(default_factory=time.monotonic)


class Reservation:
    """Room for ``count`` pairs, taken by ``DynamicBatcher.reserve``. Each pair either goes to ``put``
    or is given back with ``release``; whatever is left is given back by ``close`` (use ``with``)."""

    def __init__(self, batcher: "DynamicBatcher", count: int):
        self._batcher, self.left = batcher, count

    def release(self, count: int = 1) -> None:
        count = min(count, self.left)
        self.left -= count
        self._batcher._expected -= count
        self._batcher._changed()

    def close(self) -> None:
        self.release(self.left)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DynamicBatcher:
    """Merges same-shape pairs of concurrent requests into backend batches (see the module docstring).

    ``run_batch(parts0, parts1, spatial)`` gets lists of [1,...] arrays of one shape and returns one
    value per pair (float32 [N] distances or [N,1,H,W] maps, or a list of one dict of values per pair);
    it runs in this batcher's worker threads. ``on_batch(size, seconds)``, ``on_depth(pairs)`` and
    ``on_wait(seconds)`` (each pair's time in the queue) report to metrics. Use from one event loop.
    """

    def __init__(self, run_batch: RunBatch, *, max_batch: int, max_wait_s: float, max_queue: int,
                 max_queue_pixels: int, workers: int = 1,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None,
                 on_depth: Callable[[int], None] = lambda depth: None,
                 on_wait: Callable[[float], None] = lambda seconds: None):
        self._run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self.max_queue, self.max_queue_pixels, self.workers = max_queue, max_queue_pixels, workers
        self._on_batch, self._on_depth, self._on_wait = on_batch, on_depth, on_wait
        self._buckets: OrderedDict[BucketKey, deque[_Pending]] = OrderedDict()
        self._expected = 0  # reserved pairs not yet put (being read or decoded)
        self._waiting = 0  # pairs put, not yet taken into a batch (cancelled ones leave at once)
        self._waiting_pixels = 0
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lpips-model")
        self._dispatcher: asyncio.Task | None = None

    # -- admission ------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Pairs admitted and not yet handed to the model."""
        return self._expected + self._waiting

    def reserve(self, count: int = 1) -> Reservation:
        """Room for ``count`` pairs, or ``QueueFull`` if that would pass ``max_queue``."""
        if self.depth + count > self.max_queue:
            raise QueueFull(f"the queue is full ({self.depth} of {self.max_queue} pairs): retry later")
        self._expected += count
        self._changed()
        return Reservation(self, count)

    def _changed(self) -> None:
        self._on_depth(self.depth)
        self._arrived.set()  # a dispatcher waiting for company re-checks whether any can still come

    # -- submitting -----------------------------------------------------------------------------

    async def put(self, reservation: Reservation, a: np.ndarray, b: np.ndarray, spatial: bool = False):
        """Queue one reserved, prepared pair and wait for its value (a float distance, or an [H,W] map
        with ``spatial``). Raises ``QueueFull`` if its pixels do not fit the waiting room (a pair
        always fits an empty one). Cancelling the caller drops the pair if its batch has not started."""
        pixels = a.size // 3  # one image of three channels, in either layout
        if self._waiting and self._waiting_pixels + pixels > self.max_queue_pixels:
            reservation.release()
            raise QueueFull(f"the queue holds {self._waiting_pixels / 1e6:.1f} of {self.max_queue_pixels / 1e6:.1f} "
                            "megapixels: retry later")
        self._ensure_started()
        future = asyncio.get_running_loop().create_future()
        pending = _Pending(a, b, pixels, future)
        key: BucketKey = (spatial, tuple(a.shape), a.dtype.str)
        self._buckets.setdefault(key, deque()).append(pending)
        reservation.left -= 1
        self._expected -= 1
        self._waiting += 1
        self._waiting_pixels += pixels
        future.add_done_callback(lambda f: self._left_queue(pending) if f.cancelled() else None)
        self._changed()
        return await future

    def _left_queue(self, pending: _Pending) -> None:
        """A waiting pair whose caller is gone: free its room now (it is skipped when its bucket is taken)."""
        if pending.pixels >= 0:
            self._waiting -= 1
            self._waiting_pixels -= pending.pixels
            pending.pixels = -1  # accounted for
            self._changed()

    # -- dispatching ----------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_forever(),
                                                                      name="lpips-batcher")

    async def _dispatch_forever(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch, key = await self._next_batch()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception:  # a bug here must not leave every later request waiting for its timeout
                log.exception("lpips-serve: the batcher failed to form a batch")
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(key, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _live(self, bucket: deque[_Pending]) -> int:
        while bucket and bucket[0].future.done():  # cancelled while waiting
            bucket.popleft()
        return sum(1 for p in bucket if not p.future.done())

    def _oldest_bucket(self) -> BucketKey | None:
        oldest = None
        for key, bucket in list(self._buckets.items()):
            if not self._live(bucket):
                del self._buckets[key]
            elif oldest is None or bucket[0].since < self._buckets[oldest][0].since:
                oldest = key
        return oldest

    async def _next_batch(self) -> tuple[list[_Pending], BucketKey]:
        """Wait for the oldest bucket to fill, time out or lose all hope of company; take its pairs."""
        while True:
            key = self._oldest_bucket()
            if key is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            bucket = self._buckets[key]
            deadline = bucket[0].since + self.max_wait_s
            while self._live(bucket) < self.max_batch and self._expected > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = []
            while bucket and len(batch) < self.max_batch:
                pending = bucket.popleft()
                if not pending.future.done():
                    self._left_queue(pending)
                    batch.append(pending)
            if not bucket:
                self._buckets.pop(key, None)
            if batch:
                return batch, key

    async def _run(self, key: BucketKey, batch: list[_Pending]) -> None:
        try:
            started = time.perf_counter()
            now = time.monotonic()
            for pending in batch:
                self._on_wait(now - pending.since)
            parts0, parts1 = [p.a for p in batch], [p.b for p in batch]
            try:
                values = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run_batch, parts0, parts1, key[0])
            except Exception as exc:  # every pair of the batch gets the failure
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                return
            self._on_batch(len(batch), time.perf_counter() - started)
            for pending, value in zip(batch, values):
                if not pending.future.done():
                    pending.future.set_result(value[0] if key[0] else
                                              value if isinstance(value, dict) else float(value))
        finally:
            self._slots.release()

    # -- shutdown -------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Finish every batch that is running (callers still waiting get their values), then stop."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None
        for bucket in self._buckets.values():
            for pending in bucket:
                if not pending.future.done():
                    pending.future.cancel()
        self._buckets.clear()
        self._executor.shutdown(wait=True)
