"""Torch fallback: the export package's LPIPSModule built from verified weights (parity reference)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..model.modelfile import ModelSpec
from ..optional import require
from .base import Backend


class TorchBackend(Backend):
    """Runs ``lpips_export.LPIPSModule`` eagerly on the CPU or a CUDA device; needs the export extra."""

    name = "torch"
    needs_file = False

    def __init__(self, spec: ModelSpec, path: Path | None = None, device: str = "cpu", threads: int | None = None):
        super().__init__(spec, path, device, threads)
        torch = require("torch", "export", "the torch backend")
        require("torchvision", "export", "the torch backend")
        from lpips_export.build import build_lpips
        from lpips_export.module import FrameFormat

        if device != "cpu" and not torch.cuda.is_available():
            raise BackendError(f"device '{device}' asked for, but torch sees no CUDA GPU")
        frames = None
        if spec.frames:
            layout, channels = spec.frames.split("-")
            frames = FrameFormat(layout, channels)
        trunk = torch.float16 if spec.precision == "fp16" else torch.float32
        # The natural form (torch.sum/mean, plain Sub): nothing is exported from here, and eager torch
        # runs it 20-30% faster than the portable one's unit-weight convolutions (benchmarks/README.md).
        module, self.provenance = build_lpips(spec.net, spec.version, spec.calibrated, spec.spatial,
                                              trunk_dtype=trunk, frame_format=frames, portable=False,
                                              metrics=spec.metrics)
        self._torch = torch
        self._device = torch.device(device)
        self.module = module.to(self._device)
        if threads:
            torch.set_num_threads(threads)

    def infer(self, img0: np.ndarray, img1: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            a = torch.from_numpy(img0).to(self._device)
            b = torch.from_numpy(img1).to(self._device)
            out = self.module(a, b)
            out = out if isinstance(out, tuple) else (out,)  # a tuple when the spec has metrics
            return {name: t.to(torch.float32).cpu().numpy() for name, t in zip(self.outputs, out)}

    def close(self) -> None:
        self.module = None
