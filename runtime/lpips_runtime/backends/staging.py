"""Staging for the GPU backends: per shape bucket, two slots of pinned host and device buffers,
allocated once and reused, so that one batch is staged and uploaded while the other computes.

A bucket is one input sample shape and dtype (e.g. (3, 256, 256) float32, or (1080, 1920, 3)
uint8); its slots hold up to ``capacity`` pairs, the largest batch seen for that shape (a larger
batch retires the bucket and allocates a bigger one). Buckets beyond ``max_buckets`` are freed
least recently used first, so a folder of many image sizes cannot exhaust pinned memory.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from . import cuda_mem


@dataclass(frozen=True)
class BucketKey:
    sample_shape: tuple[int, ...]  # one image as the graph takes it: (3, H, W) or (H, W, 3)
    dtype: str  # numpy dtype name of the graph inputs: "float32" or "uint8"


class Slot:
    """Buffers for one batch of up to ``capacity`` pairs: pinned host inputs (written by the caller),
    their device copies, and per graph output a device buffer and its pinned host copy. Owned by a
    ``SlotPool``: use it between ``acquire`` and ``release`` only."""

    def __init__(self, rt, key: BucketKey, capacity: int, out_sample_shapes: dict[str, tuple[int, ...]]):
        """``out_sample_shapes``: each output's name -> the shape of one pair's value (float32), e.g.
        ``{"distance": (), "psnr": ()}`` or ``{"distance_map": (1, H, W)}``, in the graph's output order."""
        self.key, self.capacity = key, capacity
        self.out_sample_shapes = {name: tuple(shape) for name, shape in out_sample_shapes.items()}
        self._sample_bytes = int(np.prod(key.sample_shape)) * np.dtype(key.dtype).itemsize
        self._out_bytes = {name: int(np.prod(shape, dtype=np.int64)) * 4
                           for name, shape in self.out_sample_shapes.items()}
        self._owned = []
        try:
            self.host = tuple(self._own(cuda_mem.PinnedBuffer(rt, capacity * self._sample_bytes)) for _ in range(2))
            self.device = tuple(self._own(cuda_mem.DeviceBuffer(rt, capacity * self._sample_bytes)) for _ in range(2))
            self.device_out = {name: self._own(cuda_mem.DeviceBuffer(rt, capacity * size))
                               for name, size in self._out_bytes.items()}
            self.host_out = {name: self._own(cuda_mem.PinnedBuffer(rt, capacity * size))
                             for name, size in self._out_bytes.items()}
            self.uploaded = self._own(cuda_mem.Event(rt))  # inputs are on the device
            self.done = self._own(cuda_mem.Event(rt))  # the outputs are back in host_out
        except Exception:
            self.close()
            raise
        self.busy = False
        self.retired = False  # close on release (its bucket was replaced or the pool closed)
        self.state = None  # per-slot backend state, e.g. an ONNX Runtime IOBinding

    def _own(self, resource):
        self._owned.append(resource)
        return resource

    def input_nbytes(self, n: int) -> int:
        return n * self._sample_bytes

    def output_nbytes(self, name: str, n: int) -> int:
        return n * self._out_bytes[name]

    def inputs(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The pinned host arrays [n, *sample_shape] to write the two image batches into."""
        shape = (n, *self.key.sample_shape)
        return self.host[0].view(self.key.dtype, shape), self.host[1].view(self.key.dtype, shape)

    def output(self, name: str, n: int) -> np.ndarray:
        """The pinned host array [n, *out_sample_shapes[name]] output ``name`` lands in (copy it before release)."""
        return self.host_out[name].view(np.float32, (n, *self.out_sample_shapes[name]))

    def download(self, rt, n: int, stream) -> None:
        """Queue the copies of every output of an ``n``-pair batch from the device to ``host_out`` on ``stream``."""
        for name, device in self.device_out.items():
            cuda_mem.download(rt, self.host_out[name], device, self.output_nbytes(name, n), stream)

    def results(self, n: int) -> dict[str, np.ndarray]:
        """Copies of every output of an ``n``-pair batch, owned by the caller (after ``download`` completed)."""
        return {name: self.output(name, n).copy() for name in self.out_sample_shapes}

    def close(self) -> None:
        for resource in reversed(self._owned):
            resource.close()
        self._owned.clear()


class SlotPool:
    """Two (``slots_per_bucket``) slots per bucket; ``acquire`` blocks while all of a bucket's slots
    are in flight, which bounds the pipeline's depth. Thread-safe."""

    def __init__(self, make_slot: Callable[[BucketKey, int], Slot], slots_per_bucket: int = 2,
                 max_buckets: int = 4):
        self._make_slot = make_slot
        self.slots_per_bucket, self.max_buckets = slots_per_bucket, max_buckets
        self._buckets: OrderedDict[BucketKey, list[Slot]] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False

    def buckets(self) -> dict[BucketKey, int]:
        """Current buckets and their capacity (for tests and diagnostics)."""
        with self._cond:
            return {key: slots[0].capacity for key, slots in self._buckets.items()}

    def acquire(self, key: BucketKey, n: int) -> Slot:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the staging pool is closed")
                slots = self._buckets.get(key)
                if slots is not None and slots[0].capacity < n:
                    self._retire(key)
                    slots = None
                if slots is None:
                    self._evict_idle()
                    slots = []
                    try:
                        for _ in range(self.slots_per_bucket):
                            slots.append(self._make_slot(key, n))
                    except Exception:
                        for slot in slots:
                            slot.close()
                        raise
                    self._buckets[key] = slots
                self._buckets.move_to_end(key)
                for slot in slots:
                    if not slot.busy:
                        slot.busy = True
                        return slot
                self._cond.wait()

    def release(self, slot: Slot) -> None:
        with self._cond:
            slot.busy = False
            if slot.retired:
                slot.close()
            self._cond.notify_all()

    def _retire(self, key: BucketKey) -> None:
        for slot in self._buckets.pop(key):
            slot.retired = True
            if not slot.busy:
                slot.close()

    def _evict_idle(self) -> None:
        """Make room for one more bucket: free least recently used buckets with no slot in flight."""
        for key in list(self._buckets):
            if len(self._buckets) < self.max_buckets:
                return
            if not any(slot.busy for slot in self._buckets[key]):
                self._retire(key)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for key in list(self._buckets):
                self._retire(key)
            self._cond.notify_all()


class Pending:
    """A batch in flight. ``result()`` waits for it and returns every output of the graph, as
    ``Backend.infer`` does (``{name: float32 array}``), owned by the caller. Call it exactly once: it
    also returns the batch's slot to its pool."""

    def result(self) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


class Done(Pending):
    """A batch computed synchronously (the CPU backends)."""

    def __init__(self, value: dict[str, np.ndarray]):
        self._value = value

    def result(self) -> dict[str, np.ndarray]:
        return self._value


class FuturePending(Pending):
    """A batch computed on a worker thread."""

    def __init__(self, future: Future):
        self._future = future

    def result(self) -> dict[str, np.ndarray]:
        return self._future.result()


class EventPending(Pending):
    """A batch queued on a stream: the slot's ``done`` event marks its output back on the host."""

    def __init__(self, slot: Slot, n: int, pool: SlotPool):
        self._slot, self._n, self._pool = slot, n, pool

    def result(self) -> dict[str, np.ndarray]:
        try:
            self._slot.done.synchronize()
            return self._slot.results(self._n)
        finally:
            self._pool.release(self._slot)
