"""ONNX Runtime on the CUDA execution provider, with IOBinding on our own device buffers.

Per batch: pinned host slot -> ``cudaMemcpyAsync`` on the copy stream -> the session (given our
compute stream as ``user_compute_stream``) waits on the upload's event, reads the inputs bound in
place on the device, and writes the output bound on the device -> one copy back. Sessions use the
HEURISTIC cuDNN algorithm search (EXHAUSTIVE would re-tune for every new input shape).

Written to onnxruntime-gpu's documented Python API (IOBinding ``bind_input``/``bind_output`` with
device pointers, ``run_with_iobinding``, the CUDA provider's ``user_compute_stream``); its CPU-side
logic is tested with fakes, and it stays unverified until ``benchmarks/gpu_session.sh`` runs on a GPU.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np

from . import cuda_mem
from ..errors import BackendError
from ..model.modelfile import ModelSpec
from .cuda_staged import CudaStagedBackend
from .ort_backend import make_session, require_cuda_provider
from .staging import FuturePending, Pending, Slot

_ORT_TYPES = {"tensor(float)": np.dtype(np.float32), "tensor(uint8)": np.dtype(np.uint8)}


class OrtCudaBackend(CudaStagedBackend):
    """``device="cuda"`` for the ort backend: needs onnxruntime-gpu and cuda-python (``lpips-rt[gpu]``)."""

    name = "ort"
    # Where the bound buffers live, as IOBinding names it. Only the CPU tests change it (to "cpu", with
    # host memory standing in for device memory) so that ORT's real IOBinding checks our bindings.
    binding_device: ClassVar[str] = "cuda"

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cuda", threads: int | None = None):
        if path is None:
            raise BackendError("the ort backend needs an exported .onnx file")
        require_cuda_provider()  # before touching the GPU: the usual problem is a CPU-only onnxruntime
        super().__init__(spec, path, device, threads)
        try:
            self.session = make_session(path, device, threads, stream_handle=self.compute_stream.handle)
            inputs = {i.name: i.type for i in self.session.get_inputs()}
            if set(inputs) != {"img0", "img1"} or {_ORT_TYPES.get(t) for t in inputs.values()} != {self.input_dtype}:
                raise BackendError(f"{path}: inputs {inputs} do not match {spec.describe()} "
                                   f"({self.input_dtype} img0, img1): re-export it")
            self.check_outputs(o.name for o in self.session.get_outputs())
            # One thread runs the sessions, in submission order: Run blocks until the GPU is done,
            # and while it does, the caller stages and uploads the next batch into the other slot.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpips-ort-cuda",
                                                initializer=cuda_mem.set_device,
                                                initargs=(self.rt, self.device_index))
        except BaseException:
            super().close()
            raise

    def _init_slot(self, slot: Slot) -> None:
        slot.state = self.session.io_binding()

    def _compute(self, slot: Slot, n: int) -> Pending:
        return FuturePending(self._executor.submit(self._run_slot, slot, n))

    def _run_slot(self, slot: Slot, n: int) -> dict[str, np.ndarray]:
        try:
            slot.uploaded.make_wait(self.compute_stream)
            binding, shape = slot.state, (n, *slot.key.sample_shape)
            for name, buffer in zip(("img0", "img1"), slot.device):
                binding.bind_input(name, self.binding_device, self.device_index, self.input_dtype.type, shape,
                                   buffer.ptr)
            for name, buffer in slot.device_out.items():
                binding.bind_output(name, self.binding_device, self.device_index, np.float32,
                                    (n, *slot.out_sample_shapes[name]), buffer.ptr)
            self.session.run_with_iobinding(binding)
            slot.download(self.rt, n, self.compute_stream)
            self.compute_stream.synchronize()
            return slot.results(n)
        finally:
            self.pool.release(slot)

    def close(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)
            self._executor = None
        self.session = None
        super().close()
