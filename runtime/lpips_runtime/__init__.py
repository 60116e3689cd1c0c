"""lpips-rt runtime: LPIPS distances through exported ONNX graphs, without torch.

Importing this package is cheap: ``Scorer``, ``LPIPS`` and friends load their modules
(numpy, OpenCV, and only when a backend opens, ONNX Runtime) on first use. ``__version__`` is the
installed distribution's version (package metadata).
"""
from __future__ import annotations

from importlib import import_module

__all__ = ["Scorer", "PairResult", "LPIPS", "LpipsError", "InputError", "ModelFileError", "WeightsError",
           "BackendError", "MissingExtraError", "ImageTooLargeError", "ResizePolicy", "read_model", "NET_NAMES"]

_LAZY = {
    "Scorer": "core.scorer", "PairResult": "core.pair_result", "LPIPS": "compat", "ResizePolicy": "io.images",
    "read_model": "model.modelfile", "NET_NAMES": "model.nets",
    "LpipsError": "errors", "InputError": "errors", "ModelFileError": "errors", "WeightsError": "errors",
    "BackendError": "errors", "MissingExtraError": "errors", "ImageTooLargeError": "errors",
}


def __getattr__(name: str):
    if name == "__version__":
        from .version import package_version

        return package_version()
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lpips_runtime' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__ + ["__version__"])
