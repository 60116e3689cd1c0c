"""Backends behind one interface; heavy modules are imported only when a backend is opened."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import BackendError
from ..modelfile import ModelSpec
from .base import Backend

# name -> (module, class); kept as strings so that importing this package imports no backend.
_REGISTRY = {
    "ort": ("lpips_runtime.backends.ort_backend", "OrtBackend"),
    "torch": ("lpips_runtime.backends.torch_backend", "TorchBackend"),
    "trt": ("lpips_runtime.backends.trt_backend", "TrtBackend"),
}
# Backends with a separate class for CUDA devices (pinned staging, IOBinding, streams).
_CUDA_REGISTRY = {
    "ort": ("lpips_runtime.backends.ort_cuda_backend", "OrtCudaBackend"),
}
BACKENDS = tuple(_REGISTRY)
DEVICES = ("cpu", "cuda")


def is_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


def backend_class(name: str, device: str = "cpu") -> type[Backend]:
    """The class that runs backend ``name`` on ``device`` (e.g. ort: OrtBackend on the CPU, OrtCudaBackend on CUDA)."""
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend '{name}': choose one of {', '.join(BACKENDS)}")
    module, cls = _CUDA_REGISTRY[name] if is_cuda(device) and name in _CUDA_REGISTRY else _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def open_backend(name: str, spec: ModelSpec, path: Path | None, device: str = "cpu",
                 threads: int | None = None, **options) -> Backend:
    """Open backend ``name`` for ``spec`` (``path``: the ONNX/engine file, if the backend needs one);
    ``options``: keywords of that backend's class (e.g. ``spin_between_runs`` of ``OrtBackend``)."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise BackendError(f"unknown device '{device}': use cpu, cuda or cuda:<index>")
    if name == "trt" and not is_cuda(device):
        raise BackendError("the trt backend runs on a GPU: use --device cuda")
    return backend_class(name, device)(spec, path, device, threads, **options)
