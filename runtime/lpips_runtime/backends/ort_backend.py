"""ONNX Runtime backend: one session per model, created once, shared by all threads."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError, ModelFileError, first_line
from ..model.modelfile import ModelSpec
from ..optional import require
from ..system import physical_cores
from .base import Backend


def _device_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def session_options(ort, threads: int | None, spin_between_runs: bool = True):
    """CPU threads = physical cores unless set; all graph optimisations on. ``spin_between_runs=False``:
    the worker threads stop spin-waiting as soon as a run ends (they still spin inside a run), leaving
    the CPU to the process's other threads between runs (a server's HTTP and decoding threads)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin_between_runs:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def cuda_provider_options(device: str, stream_handle: int | None = None) -> dict:
    # HEURISTIC: EXHAUSTIVE re-tunes every new input shape (0.3-1.3 s each), ruinous with dynamic H/W.
    # use_tf32=0: TF32 rounds float32 convolution inputs to float16's 10-bit mantissa. The float32
    # graph should compute in float32, and in the fp16 graph the float32 parts (stem, head) are the
    # ones kept float32 on purpose; the float16 convolutions are unaffected.
    options = {"device_id": _device_index(device), "cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0"}
    if stream_handle is not None:
        # ORT then queues every kernel of this session on our stream (it implies has_user_compute_stream),
        # which is what lets our uploads be ordered before them with an event instead of a host sync.
        options["user_compute_stream"] = str(int(stream_handle))
    return options


def _preload_cuda_libraries(ort) -> None:
    """onnxruntime-gpu >= 1.21 can load the CUDA/cuDNN libraries of the nvidia-* wheels or torch itself;
    where they are on the loader's path already this is a no-op, and a failure here is reported by
    the session that follows, so it is not an error."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - best effort, see docstring
            pass


def require_cuda_provider():
    """The ``onnxruntime`` module, if it is a build with the CUDA execution provider (onnxruntime-gpu)."""
    ort = require("onnxruntime", "gpu", "the ONNX Runtime CUDA backend")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendError("device 'cuda' needs onnxruntime-gpu: pip uninstall onnxruntime && "
                           "pip install 'lpips-rt[gpu]'")
    return ort


def make_session(path: Path, device: str = "cpu", threads: int | None = None, options=None,
                 stream_handle: int | None = None, spin_between_runs: bool = True):
    """An ``InferenceSession`` for ``path`` on ``device`` ("cpu", "cuda" or "cuda:<i>");
    ``stream_handle``: the CUDA stream the session computes on (CUDA only); ``spin_between_runs``:
    see ``session_options``."""
    if device == "cpu":
        ort = require("onnxruntime", "cpu", "the ONNX Runtime backend")
        providers = ["CPUExecutionProvider"]
    else:
        ort = require_cuda_provider()
        _preload_cuda_libraries(ort)
        providers = [("CUDAExecutionProvider", cuda_provider_options(device, stream_handle)), "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options or session_options(ort, threads, spin_between_runs),
                                       providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; one line suffices
        raise ModelFileError(f"ONNX Runtime cannot load {path}: {first_line(exc)}") from exc
    if device != "cpu" and "CUDAExecutionProvider" not in session.get_providers():
        # When the CUDA provider cannot start (CUDA/cuDNN libraries or the driver missing, no GPU), ORT
        # logs why and quietly runs the session on the CPU. Device pointers bound to such a session would
        # fail obscurely, and a silent CPU run is not what device='cuda' asked for.
        raise BackendError(f"ONNX Runtime could not start its CUDA execution provider for {device} (its log above "
                           "says why: usually the CUDA/cuDNN libraries your onnxruntime-gpu was built for, or the "
                           "NVIDIA driver, are missing)")
    return session


class OrtBackend(Backend):
    """ONNX Runtime on the CPU execution provider. (``device="cuda"`` opens ``OrtCudaBackend`` instead:
    see ``backends.backend_class``; constructed directly with a CUDA device this class still works,
    copying inputs through ``session.run`` per call.)"""

    name = "ort"

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cpu", threads: int | None = None, *,
                 spin_between_runs: bool = True):
        super().__init__(spec, path, device, threads)
        if path is None:
            raise BackendError("the ort backend needs an exported .onnx file")
        self.session = make_session(path, device, threads, spin_between_runs=spin_between_runs)
        self.check_outputs(o.name for o in self.session.get_outputs())

    def infer(self, img0: np.ndarray, img1: np.ndarray) -> dict[str, np.ndarray]:
        # InferenceSession.run is thread-safe and releases the GIL while it computes.
        return dict(zip(self.outputs, self.session.run(list(self.outputs), {"img0": img0, "img1": img1})))

    def close(self) -> None:
        self.session = None


class OrtGraph:
    """A session of one split part (encoder or head): named float32 inputs -> every output, as host arrays
    owned by the caller. Thread-safe (``InferenceSession.run`` is)."""

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        self.session = make_session(path, device, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feeds)

    def close(self) -> None:
        self.session = None
