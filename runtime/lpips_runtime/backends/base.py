"""The backend interface: the Scorer validates inputs once, a backend only computes."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..modelfile import ModelSpec


class Backend(ABC):
    """Runs one LPIPS graph on one device.

    ``run`` receives two arrays already validated and laid out in the graph's input format (float32
    [N,3,H,W] in [-1,1], or uint8 frames for frame models), with equal shapes, and returns the graph
    output as a host float32 array owned by the caller: distances [N], or maps [N,1,H,W].
    Implementations must be safe to call from several threads at once.
    """

    name: ClassVar[str]
    needs_file: ClassVar[bool] = True  # False: builds the graph from the spec alone (torch)

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cpu", threads: int | None = None):
        self.spec, self.path, self.device, self.threads = spec, path, device, threads

    @abstractmethod
    def run(self, img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
        """Compute the graph output for one batch (see the class docstring for the contract)."""

    def close(self) -> None:
        """Release sessions, device buffers and streams. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
