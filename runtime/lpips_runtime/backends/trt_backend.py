"""TensorRT backend: a serialized engine (``lpips-export --trt``) run with ``execute_async_v3``.

Before deserialising, the engine's sidecar is checked against the installed TensorRT, this GPU and
the ONNX file beside it (a mismatched engine fails with a message naming the rebuild, not with
TensorRT's bare refusal). Batches must lie within the engine's optimisation profile; inputs are
staged in pinned memory and uploaded on the backend's copy stream, and the engine runs on its own
compute stream (one pair of streams per backend instance) with ``set_input_shape`` and
``set_tensor_address`` on the slot's device buffers.

Written to the TensorRT 10/11 documented API, not exercised in CI: TensorRT cannot be installed on
our test machines. Everything around it (sidecar checks, profile validation, error messages) is
tested with a fake ``tensorrt`` module.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .. import cuda_mem
from ..engine_meta import check_sidecar, engine_path_for, file_sha256, read_sidecar
from ..errors import BackendError
from ..modelfile import ModelSpec
from ..optional import require
from ..trt_logger import capturing_logger
from .cuda_staged import CudaStagedBackend
from .staging import EventPending, Pending, Slot


class TrtBackend(CudaStagedBackend):
    """Runs ``<model>.engine`` built from the ``.onnx`` at ``path``; needs ``lpips-rt[trt]``."""

    name = "trt"
    cuda_extra = "trt"

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cuda", threads: int | None = None):
        if path is None:
            raise BackendError("the trt backend needs the exported .onnx its engine was built from")
        trt = require("tensorrt", "trt", "the TensorRT backend")
        engine_path = engine_path_for(path)
        if not engine_path.is_file():
            raise BackendError(f"no TensorRT engine {engine_path}: run `{spec.export_command(Path(path).parent)} --trt`")
        sidecar = read_sidecar(engine_path)
        super().__init__(spec, path, device, threads)
        try:
            check_sidecar(sidecar, engine_path, trt.__version__, cuda_mem.device_info(self.rt, self.device_index),
                          file_sha256(path))
            if (sidecar.input_dtype, sidecar.input_layout) != (self.input_dtype.name, self.layout):
                raise BackendError(f"{engine_path} takes {sidecar.input_dtype} {sidecar.input_layout} inputs, "
                                   f"not those of {spec.describe()}: rebuild it")
            self.profile = sidecar.profile
            self._logger = capturing_logger(trt)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise BackendError(f"TensorRT could not deserialise {engine_path}: {self._logger.errors()}")
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise BackendError(f"TensorRT could not create an execution context for {engine_path}: "
                                   f"{self._logger.errors()}")
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            if {"img0", "img1"} - set(names) or set(outputs) != set(self.outputs):
                raise BackendError(f"{engine_path} has tensors {names}: expected inputs img0, img1 and outputs "
                                   f"{', '.join(self.outputs)}")
            self._lock = threading.Lock()  # the context holds shapes and addresses between set and enqueue
        except BaseException:
            super().close()
            raise

    def check_batch(self, sample_shape: tuple[int, ...], n: int) -> None:
        self.profile.check(n, *self.image_hw(sample_shape))

    def _compute(self, slot: Slot, n: int) -> Pending:
        shape = (n, *slot.key.sample_shape)
        stream = self.compute_stream
        with self._lock:
            slot.uploaded.make_wait(stream)
            for name, buffer in zip(("img0", "img1"), slot.device):
                if not self.context.set_input_shape(name, shape):
                    raise BackendError(f"TensorRT refused input shape {shape} for {name} (profile "
                                       f"{self.profile.describe()}): {self._logger.errors()}")
                self.context.set_tensor_address(name, buffer.ptr)
            for name, buffer in slot.device_out.items():
                expected = (n, *slot.out_sample_shapes[name])
                got = tuple(self.context.get_tensor_shape(name))
                if got != expected:
                    raise BackendError(f"engine output {name} has shape {got}, expected {expected}")
                self.context.set_tensor_address(name, buffer.ptr)
            if not self.context.execute_async_v3(stream.handle):
                raise BackendError(f"TensorRT execute_async_v3 failed: {self._logger.errors()}")
            slot.download(self.rt, n, stream)
            slot.done.record(stream)
        return EventPending(slot, n, self.pool)

    def close(self) -> None:
        self.context = self.engine = self._runtime = None
        super().close()
