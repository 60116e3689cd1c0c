"""Digests that pin weights: file sha256 and the tensor digest defined in models/nets.toml."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from lpips_runtime.hashing import file_sha256  # noqa: F401 - re-exported: the weights modules use it


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
