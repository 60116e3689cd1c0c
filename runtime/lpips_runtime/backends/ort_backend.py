"""ONNX Runtime backend: one session per model, created once, shared by all threads."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError, ModelFileError
from ..modelfile import ModelSpec
from ..optional import require
from ..system import physical_cores
from .base import Backend


def _device_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def session_options(ort, threads: int | None):
    """CPU threads = physical cores unless set; all graph optimisations on."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def cuda_provider_options(device: str) -> dict:
    # HEURISTIC: EXHAUSTIVE re-tunes every new input shape (0.3-1.3 s each), ruinous with dynamic H/W.
    return {"device_id": _device_index(device), "cudnn_conv_algo_search": "HEURISTIC"}


def make_session(path: Path, device: str = "cpu", threads: int | None = None, options=None):
    """An ``InferenceSession`` for ``path`` on ``device`` ("cpu", "cuda" or "cuda:<i>")."""
    ort = require("onnxruntime", "cpu", "the ONNX Runtime backend")
    if device == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendError("device 'cuda' needs onnxruntime-gpu: pip uninstall onnxruntime && "
                               "pip install 'lpips-rt[gpu]'")
        providers = [("CUDAExecutionProvider", cuda_provider_options(device)), "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), options or session_options(ort, threads), providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; one line suffices
        raise ModelFileError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from exc


class OrtBackend(Backend):
    """CPU execution provider, or the CUDA one with ``device="cuda"`` (inputs copied per call)."""

    name = "ort"

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cpu", threads: int | None = None):
        super().__init__(spec, path, device, threads)
        if path is None:
            raise BackendError("the ort backend needs an exported .onnx file")
        self.session = make_session(path, device, threads)
        self.output_name = self.session.get_outputs()[0].name

    def run(self, img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
        # InferenceSession.run is thread-safe and releases the GIL while it computes.
        return self.session.run([self.output_name], {"img0": img0, "img1": img1})[0]

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
