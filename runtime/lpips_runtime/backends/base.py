"""The backend interface: the Scorer validates inputs once, a backend only computes."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ModelFileError
from ..model.modelfile import ModelSpec


class Backend(ABC):
    """Runs one LPIPS graph on one device.

    ``infer`` receives two arrays already validated and laid out in the graph's input format (float32
    [N,3,H,W] in [-1,1], or uint8 frames for frame models), with equal shapes, and returns every
    output of the graph as ``{name: host float32 array owned by the caller}`` for the names of
    ``outputs`` (``spec.outputs``): the distances [N] (or maps [N,1,H,W]) first, then one [N] per
    metric of ``spec.metrics``. ``run`` returns the first alone. Implementations provide ``infer``
    and must be safe to call from several threads at once.
    """

    name: ClassVar[str]
    needs_file: ClassVar[bool] = True  # False: builds the graph from the spec alone (torch)
    # Batches a caller may keep in flight (submitted, result not yet taken): 1 for the synchronous
    # CPU backends, 2 for the GPU ones (one batch staged and uploaded while the other computes).
    pipeline_depth: ClassVar[int] = 1
    # Precisions this backend can compute an fp32 export in. A backend offering more than fp32 takes the
    # keyword ``inference_precision`` (see ``backends.open_backend``).
    inference_precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    # The exports (``ModelSpec.precision``) this backend reads.
    export_precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cpu", threads: int | None = None):
        self.spec, self.path, self.device, self.threads = spec, path, device, threads
        self.outputs: tuple[str, ...] = spec.outputs

    @abstractmethod
    def infer(self, img0: np.ndarray, img1: np.ndarray) -> dict[str, np.ndarray]:
        """Compute every output of the graph for one batch (see the class docstring for the contract)."""

    def run(self, img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
        """The distances [N] (or maps [N,1,H,W]) of one batch: ``infer``'s first output."""
        return self.infer(img0, img1)[self.outputs[0]]

    def check_outputs(self, names) -> None:
        """Refuse a graph whose outputs are not ``outputs`` (a file that does not match its metadata)."""
        if tuple(names) != self.outputs:
            raise ModelFileError(f"{self.path} has outputs {list(names)}, but {self.spec.describe()} has "
                                 f"{list(self.outputs)}: re-export it")

    def submit(self, parts0: Sequence[np.ndarray], parts1: Sequence[np.ndarray]):
        """Start one batch given as pieces to join on axis 0 (e.g. one [1,...] array per pair, as
        decoded), laid out as ``infer`` takes them. Returns a pending batch whose ``result()`` gives what
        ``infer`` would, and must be called exactly once. The GPU backends write the pieces straight into
        pinned staging memory and return before the batch is done; this default computes at once."""
        from .staging import Done

        a = parts0[0] if len(parts0) == 1 else np.concatenate(parts0)
        b = parts1[0] if len(parts1) == 1 else np.concatenate(parts1)
        return Done(self.infer(a, b))

    def close(self) -> None:
        """Release sessions, device buffers and streams. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
