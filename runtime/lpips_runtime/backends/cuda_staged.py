"""Base of the GPU backends: batches staged in pinned memory, uploaded on a copy stream, computed on
a compute stream, and copied back once.

Per batch: the caller's arrays are written straight into a slot's pinned host buffers (no
intermediate concatenation); both inputs go up with ``cudaMemcpyAsync`` on the copy stream, whose
event the compute stream waits on; the graph runs on the compute stream into a device output that is
copied back once. Two slots per shape bucket let batch k+1 be staged and uploaded while batch k
computes (``pipeline_depth = 2``), while decoding runs in the Scorer's thread pool.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from . import cuda_mem
from ..errors import BackendError
from ..model.modelfile import ModelSpec
from .base import Backend
from .staging import BucketKey, Pending, Slot, SlotPool


def device_index(device: str) -> int:
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise BackendError(f"device '{device}': this backend runs on a GPU (cuda or cuda:<index>)")


class CudaStagedBackend(Backend):
    """Shared machinery; subclasses implement ``_compute`` (and may set up per-slot state in ``_init_slot``).

    Streams and buffers belong to the instance and are released by ``close()``. Thread-safe: slots
    are handed out under a lock, and subclasses serialise their own compute.
    """

    pipeline_depth: ClassVar[int] = 2
    cuda_extra: ClassVar[str] = "gpu"  # the extra that provides cuda-python for this backend

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cuda", threads: int | None = None):
        super().__init__(spec, path, device, threads)
        self.device_index = device_index(device)
        self.rt = cuda_mem.runtime(self.cuda_extra)
        cuda_mem.set_device(self.rt, self.device_index)
        self.input_dtype = np.dtype(np.uint8 if spec.frames else np.float32)
        self.layout = spec.frames.split("-")[0] if spec.frames else "nchw"
        self.copy_stream = cuda_mem.Stream(self.rt)
        self.compute_stream = cuda_mem.Stream(self.rt)
        self.pool = SlotPool(self._make_slot)

    # -- layout ------------------------------------------------------------------------------

    def image_hw(self, sample_shape: Sequence[int]) -> tuple[int, int]:
        """(H, W) of one input sample in this graph's layout."""
        return (sample_shape[0], sample_shape[1]) if self.layout == "nhwc" else (sample_shape[1], sample_shape[2])

    def output_sample_shapes(self, sample_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Each output's shape for one pair: (1, H, W) for a distance map, () for distances and metrics."""
        first = (1, *self.image_hw(sample_shape)) if self.spec.spatial else ()
        return {name: first if i == 0 else () for i, name in enumerate(self.outputs)}

    def _make_slot(self, key: BucketKey, capacity: int) -> Slot:
        slot = Slot(self.rt, key, capacity, self.output_sample_shapes(key.sample_shape))
        try:
            self._init_slot(slot)
        except Exception:
            slot.close()
            raise
        return slot

    def _init_slot(self, slot: Slot) -> None:
        """Per-slot backend state (e.g. an IOBinding); none by default."""

    def check_batch(self, sample_shape: tuple[int, ...], n: int) -> None:
        """Refuse a batch this backend cannot run before any staging (``BackendError``/``InputError``)."""

    # -- the pipeline ------------------------------------------------------------------------

    def reserve(self, sample_shape: Sequence[int], n: int) -> Slot:
        """A free staging slot for ``n`` pairs of ``sample_shape`` (blocks while both of the bucket's
        slots are in flight). Write the inputs into ``slot.inputs(n)``, then ``launch(slot, n)``."""
        sample_shape = tuple(int(d) for d in sample_shape)
        self.check_batch(sample_shape, n)
        return self.pool.acquire(BucketKey(sample_shape, self.input_dtype.name), n)

    def launch(self, slot: Slot, n: int) -> Pending:
        """Upload a staged batch and start computing it; the slot returns to the pool when the result
        is taken (or here, if starting fails)."""
        try:
            cuda_mem.set_device(self.rt, self.device_index)  # the caller's thread may not have it current
            nbytes = slot.input_nbytes(n)
            for host, device in zip(slot.host, slot.device):
                cuda_mem.upload(self.rt, device, host, nbytes, self.copy_stream)
            slot.uploaded.record(self.copy_stream)
            return self._compute(slot, n)
        except BaseException:
            self.pool.release(slot)
            raise

    def _compute(self, slot: Slot, n: int) -> Pending:  # pragma: no cover - interface
        """Make the compute stream wait for ``slot.uploaded``, run the graph on the slot's device
        buffers, queue the outputs' copies to ``slot.host_out``; the Pending releases the slot."""
        raise NotImplementedError

    def submit(self, parts0: Sequence[np.ndarray], parts1: Sequence[np.ndarray]) -> Pending:
        sample_shape = tuple(parts0[0].shape[1:])
        for part in (*parts0, *parts1):
            if part.shape[1:] != sample_shape or part.dtype != self.input_dtype:
                raise BackendError(f"a batch mixes shapes/dtypes ({part.shape} {part.dtype} vs {sample_shape} "
                                   f"{self.input_dtype}): submit one bucket at a time")
        n = sum(len(p) for p in parts0)
        if sum(len(p) for p in parts1) != n:
            raise BackendError("img0 and img1 batches differ in length")
        slot = self.reserve(sample_shape, n)
        try:
            host0, host1 = slot.inputs(n)
            np.concatenate(parts0, axis=0, out=host0)
            np.concatenate(parts1, axis=0, out=host1)
        except BaseException:
            self.pool.release(slot)
            raise
        return self.launch(slot, n)

    def infer(self, img0: np.ndarray, img1: np.ndarray) -> dict[str, np.ndarray]:
        return self.submit([img0], [img1]).result()

    def close(self) -> None:
        pool, self.pool = getattr(self, "pool", None), None
        if pool is not None:
            pool.close()
        for name in ("copy_stream", "compute_stream"):
            stream = getattr(self, name, None)
            if stream is not None:
                stream.close()
                setattr(self, name, None)
