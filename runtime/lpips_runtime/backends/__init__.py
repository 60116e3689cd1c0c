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
BACKENDS = tuple(_REGISTRY)
DEVICES = ("cpu", "cuda")


def backend_class(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend '{name}': choose one of {', '.join(BACKENDS)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def open_backend(name: str, spec: ModelSpec, path: Path | None, device: str = "cpu",
                 threads: int | None = None) -> Backend:
    """Open backend ``name`` for ``spec`` (``path``: the ONNX/engine file, if the backend needs one)."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise BackendError(f"unknown device '{device}': use cpu, cuda or cuda:<index>")
    return backend_class(name)(spec, path, device, threads)
