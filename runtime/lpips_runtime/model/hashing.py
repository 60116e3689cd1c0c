"""Digests shared by the runtime (engine sidecars, the tensors inside exports) and the export stage
(weight files): file sha256 and the tensor digest defined in models/nets.toml."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_digest(items: Iterable[tuple[str, object]]) -> str:
    """sha256 over (key UTF-8 bytes, little-endian float32 bytes) for each (key, tensor) in order.

    Tensors may be numpy arrays or torch tensors; they are converted to float32 first, so the digest
    names values, not storage dtypes.
    """
    h = hashlib.sha256()
    for key, tensor in items:
        arr = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        h.update(key.encode("utf-8"))
        h.update(np.ascontiguousarray(arr, dtype="<f4").tobytes())
    return h.hexdigest()
