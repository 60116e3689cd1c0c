"""TensorRT backend: a serialized engine (``lpips-export --trt``) run with ``execute_async_v3``, by full
TensorRT or TensorRT for RTX (the flavour its sidecar names; one code path, ``trt_flavour`` imports it).

Before deserialising, the engine's sidecar is checked against the installed TensorRT flavour and
version, this GPU's compute capability, the engine file's digest and the ONNX file beside it (a
mismatched engine fails with one line naming the rebuild, not with TensorRT's bare refusal); a
TensorRT-RTX engine is also asked ``get_engine_validity`` (a malformed or foreign file is refused
without a GPU). Batches must lie within the engine's optimisation profile; inputs are staged in pinned
memory and uploaded on the backend's copy stream, and the engine runs on its own compute stream (one
pair of streams per backend instance) with ``set_input_shape`` and ``set_tensor_address`` on the slot's
device buffers.

TensorRT-RTX compiles its kernels for this GPU when the engine is loaded; the compiled kernels are kept
in a runtime cache under lpips-rt's cache folder (``trt-runtime-cache/``), so only the first load on a
machine pays for it. ``cuda_graph=True`` (or ``LPIPS_RT_TRT_CUDA_GRAPH=1``) asks the runtime to capture
and replay each shape's launches as a CUDA graph (TensorRT-RTX's ``CudaGraphStrategy``).

Loading and running an engine needs a GPU: CI checks everything before that with real TensorRT-RTX
and the rest against fake ``tensorrt`` and cuda-python modules.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from . import cuda_mem
from ..model import trt_flavour
from ..model.cachedir import default_cache_dir
from ..model.engine_meta import EngineSidecar, check_sidecar, engine_path_for, file_sha256, read_sidecar
from ..errors import BackendError
from ..model.modelfile import ModelSpec
from ..model.trt_logger import capturing_logger
from .cuda_staged import CudaStagedBackend
from .staging import EventPending, Pending, Slot

CUDA_GRAPH_ENV = "LPIPS_RT_TRT_CUDA_GRAPH"


def rebuild_command(spec: ModelSpec, folder: Path, sidecar: EngineSidecar | None) -> str:
    """The ``lpips-export`` line that rebuilds this engine with the sidecar's flavour and targets."""
    command = f"{spec.export_command(folder)} --trt"
    flavour = trt_flavour.FLAVOURS.get(sidecar.tensorrt_flavour) if sidecar is not None else None
    if flavour is not None:
        command += f" --trt-flavour {flavour.option}"
        if flavour is trt_flavour.RTX and tuple(sidecar.targets) != trt_flavour.RTX_PORTABLE:
            command += f" --trt-sm {','.join(sidecar.targets)}"
    return command


def check_engine_bytes(trt, data: bytes, engine_path: Path, rebuild: str) -> None:
    """Refuse (one line naming ``rebuild``) what the library's own validity check calls malformed, built by
    another version or for another GPU. ``get_engine_validity`` (TensorRT-RTX, TensorRT 10.x) reads only the
    engine's header and needs no GPU for a malformed file; without it nothing is checked here."""
    runtime = trt.Runtime(capturing_logger(trt))
    validity = getattr(runtime, "get_engine_validity", None)
    if validity is None or not hasattr(trt, "EngineInvalidityDiagnostics"):
        return
    _, diagnostics = validity(data)
    reasons = trt.EngineInvalidityDiagnostics
    for flag, what in ((reasons.MALFORMED_ENGINE, "is not a TensorRT engine (malformed, truncated or foreign)"),
                       (reasons.VERSION_MISMATCH, "was built by another TensorRT version"),
                       (reasons.UNSUPPORTED_CC, "was not built for this GPU's compute capability")):
        if int(diagnostics) & int(flag):
            raise BackendError(f"{engine_path} {what}: rebuild it with {rebuild}")


def runtime_cache_path(sidecar: EngineSidecar, compute_capability: str) -> Path:
    """Where TensorRT-RTX's compiled kernels for this engine on this GPU are kept between runs."""
    sm = trt_flavour.sm_of(compute_capability)
    return default_cache_dir() / "trt-runtime-cache" / f"{sidecar.engine_sha256[:16] or 'engine'}-sm{sm}.bin"


def _env_cuda_graph() -> bool:
    return os.environ.get(CUDA_GRAPH_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class TrtBackend(CudaStagedBackend):
    """Runs ``<model>.engine`` built from the ``.onnx`` at ``path``; needs ``lpips-rt[trt]`` or ``[trt-rtx]``
    (the flavour that built it) and cuda-python."""

    name = "trt"
    cuda_extra = "trt"

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cuda", threads: int | None = None,
                 cuda_graph: bool | None = None):
        if path is None:
            raise BackendError("the trt backend needs the exported .onnx its engine was built from")
        path = Path(path)
        engine_path = engine_path_for(path)
        rebuild = rebuild_command(spec, path.parent, None)
        if not engine_path.is_file():
            raise BackendError(f"no TensorRT engine {engine_path}: run `{rebuild}`")
        sidecar = read_sidecar(engine_path, rebuild)
        rebuild = rebuild_command(spec, path.parent, sidecar)
        flavour = trt_flavour.FLAVOURS.get(sidecar.tensorrt_flavour)
        if flavour is None:
            raise BackendError(f"{engine_path} names an unknown TensorRT flavour {sidecar.tensorrt_flavour!r}: "
                               f"rebuild it with {rebuild}")
        trt = trt_flavour.load(flavour, "the TensorRT backend")
        self.cuda_extra = flavour.extra  # both extras bring cuda-python's bindings
        self._runtime_cache = self._runtime_cache_file = None
        super().__init__(spec, path, device, threads)
        try:
            gpu = cuda_mem.device_info(self.rt, self.device_index)
            check_sidecar(sidecar, engine_path, flavour.name, trt.__version__, gpu, file_sha256(path), rebuild)
            if (sidecar.input_dtype, sidecar.input_layout) != (self.input_dtype.name, self.layout):
                raise BackendError(f"{engine_path} takes {sidecar.input_dtype} {sidecar.input_layout} inputs, "
                                   f"not those of {spec.describe()}: rebuild it with {rebuild}")
            data = engine_path.read_bytes()
            check_engine_bytes(trt, data, engine_path, rebuild)
            self.sidecar = sidecar
            self.profile = sidecar.profile
            self._logger = capturing_logger(trt)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise BackendError(f"{flavour.name} could not deserialise {engine_path}: {self._logger.errors()}")
            self.context = self._create_context(trt, sidecar, gpu, _env_cuda_graph() if cuda_graph is None
                                                else cuda_graph)
            if self.context is None:
                raise BackendError(f"{flavour.name} could not create an execution context for {engine_path}: "
                                   f"{self._logger.errors()}")
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            if {"img0", "img1"} - set(names) or set(outputs) != set(self.outputs):
                raise BackendError(f"{engine_path} has tensors {names}: expected inputs img0, img1 and outputs "
                                   f"{', '.join(self.outputs)}")
            self._lock = threading.Lock()  # the context holds shapes and addresses between set and enqueue
        except BaseException:
            self.close()
            raise

    def _create_context(self, trt, sidecar: EngineSidecar, gpu, cuda_graph: bool):
        """An execution context; with TensorRT-RTX's runtime configuration, its runtime cache (loaded from
        and, on close, saved to ``runtime_cache_path``) and the CUDA-graph strategy."""
        make_config = getattr(self.engine, "create_runtime_config", None)
        if make_config is None:  # full TensorRT before the runtime configuration API
            if cuda_graph:
                raise BackendError(f"cuda_graph needs a TensorRT with a CUDA-graph strategy (TensorRT-RTX); "
                                   f"unset {CUDA_GRAPH_ENV}")
            return self.engine.create_execution_context()
        config = make_config()
        if hasattr(config, "create_runtime_cache"):
            self._runtime_cache = config.create_runtime_cache()
            self._runtime_cache_file = runtime_cache_path(sidecar, gpu.compute_capability)
            if self._runtime_cache_file.is_file():
                self._runtime_cache.deserialize(self._runtime_cache_file.read_bytes())
            config.set_runtime_cache(self._runtime_cache)
        if cuda_graph:
            config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        return self.engine.create_execution_context(config)

    def _save_runtime_cache(self) -> None:
        if self._runtime_cache is None or self._runtime_cache_file is None:
            return
        data = bytes(self._runtime_cache.serialize())
        if data:
            folder = self._runtime_cache_file.parent
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{self._runtime_cache_file.name}.{os.getpid()}.partial"
            tmp.write_bytes(data)
            os.replace(tmp, self._runtime_cache_file)

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
        try:
            self._save_runtime_cache()
        except OSError:  # a read-only cache folder costs the next run its JIT time, nothing more
            pass
        self._runtime_cache = None
        self.context = self.engine = self._runtime = None
        super().close()
