"""Import optional dependencies on demand, with an error that names the extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` telling which ``lpips-rt[extra]`` provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(module, extra, purpose) from None
