"""Digests that pin weights: file sha256 and the tensor digest defined in models/nets.toml (both live in
the runtime, which recomputes them from exports too; re-exported here for the weights modules)."""
from __future__ import annotations

from lpips_runtime.model.hashing import file_sha256, tensor_digest  # noqa: F401 - re-exported
