"""lpips-rt export stage: LPIPS built from verified weights, traced to ONNX and checked.

``build_lpips`` gives the torch module (also the runtime's torch backend); ``export_model`` writes
and verifies an ONNX file. Submodules import torch; this package's import does not.
"""
from __future__ import annotations

from importlib import import_module

__all__ = ["build_lpips", "LPIPSModule", "FrameFormat", "export_model", "export_onnx", "verify_export", "build_engine"]

_LAZY = {"build_lpips": "build", "LPIPSModule": "module", "FrameFormat": "module",
         "export_model": "onnx_export", "export_onnx": "onnx_export", "verify_export": "onnx_export",
         "build_engine": "trt_build"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lpips_export' has no attribute {name!r}")
