"""Backends behind one interface; heavy modules are imported only when a backend is opened."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import BackendError
from ..model.modelfile import ModelSpec
from .base import Backend

# name -> (module, class); kept as strings so that importing this package imports no backend.
_REGISTRY = {
    "ort": ("lpips_runtime.backends.ort_backend", "OrtBackend"),
    "torch": ("lpips_runtime.backends.torch_backend", "TorchBackend"),
    "trt": ("lpips_runtime.backends.trt_backend", "TrtBackend"),
    "openvino": ("lpips_runtime.backends.openvino_backend", "OpenVinoBackend"),
}
# Backends with a separate class for CUDA devices (pinned staging, IOBinding, streams).
_CUDA_REGISTRY = {
    "ort": ("lpips_runtime.backends.ort_cuda_backend", "OrtCudaBackend"),
}
# Backends that also run single graphs of named inputs and outputs (the feature cache's encoder and head):
# name -> (module, class), the class taking (path, device, threads, precision) with ``input_names``,
# ``output_names``, ``run(feeds) -> [outputs in output_names order]`` and ``close()``.
_GRAPHS = {
    "ort": ("lpips_runtime.backends.ort_backend", "OrtGraph"),
    "openvino": ("lpips_runtime.backends.openvino_backend", "OpenVinoGraph"),
}
BACKENDS = tuple(_REGISTRY)
GRAPH_BACKENDS = tuple(_GRAPHS)
DEVICES = ("cpu", "cuda")
# What a Scorer's ``precision`` may be: the precision of an export (fp32, fp16: the mixed graph for GPUs),
# or bf16 / int8: the fp32 export computed in bfloat16 / int8 by a backend that can (``Backend.inference_precisions``;
# int8 only for the nets lpips_runtime.model.int8 offers it for).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Precisions computed from the fp32 export by the backend (not read from an export of their own).
_COMPUTED = ("bf16", "int8")


def is_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


def split_precision(precision: str) -> tuple[str, str]:
    """A Scorer precision -> (precision of the export to read, precision the backend computes it in)."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    return ("fp32", precision) if precision in _COMPUTED else (precision, "fp32")


def default_backend(precision: str) -> str:
    """The backend a command line uses when none is named: ort, or for bf16/int8 the backend that computes it."""
    return "openvino" if precision in _COMPUTED else "ort"


def backend_class(name: str, device: str = "cpu") -> type[Backend]:
    """The class that runs backend ``name`` on ``device`` (e.g. ort: OrtBackend on the CPU, OrtCudaBackend on CUDA)."""
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend '{name}': choose one of {', '.join(BACKENDS)}")
    module, cls = _CUDA_REGISTRY[name] if is_cuda(device) and name in _CUDA_REGISTRY else _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def check_precisions(name: str, cls: type[Backend], export_precision: str, inference_precision: str) -> None:
    """``BackendError`` naming the fix if backend ``name`` cannot read the ``export_precision`` export or
    compute in ``inference_precision``."""
    if export_precision not in cls.export_precisions:
        raise BackendError(f"the {name} backend reads the {' or '.join(cls.export_precisions)} export, not the "
                           f"{export_precision} one: use another --precision ({', '.join(cls.inference_precisions)}) "
                           "or another --backend")
    if inference_precision not in cls.inference_precisions:
        able = [n for n in BACKENDS if inference_precision in backend_class(n).inference_precisions]
        raise BackendError(f"the {name} backend does not compute in {inference_precision}: use --backend "
                           f"{' or '.join(able)} (backend='{able[0]}')" if able else
                           f"no backend computes in {inference_precision}")


def open_backend(name: str, spec: ModelSpec, path: Path | None, device: str = "cpu",
                 threads: int | None = None, inference_precision: str = "fp32", **options) -> Backend:
    """Open backend ``name`` for ``spec`` (``path``: the ONNX/engine file, if the backend needs one),
    computing in ``inference_precision`` (fp32, or bf16 where the backend offers it); ``options``: keywords
    that only some backends' classes take (e.g. ``spin_between_runs`` of ``OrtBackend``)."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise BackendError(f"unknown device '{device}': use cpu, cuda or cuda:<index>")
    if name == "trt" and not is_cuda(device):
        raise BackendError("the trt backend runs on a GPU: use --device cuda")
    cls = backend_class(name, device)
    check_precisions(name, cls, spec.precision, inference_precision)
    if inference_precision != "fp32":  # every backend's constructor; only those offering more take the keyword
        options = {**options, "inference_precision": inference_precision}
    return cls(spec, path, device, threads, **options)


def check_graph_backend(name: str) -> None:
    """``BackendError`` naming the fix if backend ``name`` cannot run the feature cache's split graphs."""
    if name not in _GRAPHS:
        raise BackendError(f"the feature cache (embed, one_to_many, distance_matrix, --ref/--dir, --all-pairs) runs "
                           f"on the {' or '.join(GRAPH_BACKENDS)} backend, not {name}: use backend='ort'")


def open_graph(name: str, path: Path, device: str = "cpu", threads: int | None = None,
               inference_precision: str = "fp32"):
    """One graph of named inputs and outputs (a part of a split export) on backend ``name``, computing in
    ``inference_precision``: ``run(feeds) -> [outputs in output_names order]``, thread-safe."""
    check_graph_backend(name)
    check_precisions(name, backend_class(name, device), "fp32", inference_precision)
    module, cls = _GRAPHS[name]
    graph_cls = getattr(importlib.import_module(module), cls)
    if inference_precision == "fp32":
        return graph_cls(path, device, threads)
    return graph_cls(path, device, threads, inference_precision)
