"""Build an ``LPIPSModule`` with verified weights: the one entry point export and torch backend share."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lpips_runtime.nets import get_net

from .backbone_weights import load_backbone
from .linear_weights import load_linear
from .module import FrameFormat, LPIPSModule


@dataclass(frozen=True)
class Provenance:
    """Where a built module's weights came from (recorded in every export's metadata)."""

    backbone_source: str
    backbone_digest: str
    linear_sha256: str  # "" for the uncalibrated baseline


def build_lpips(
    net: str = "alex",
    version: str = "0.1",
    calibrated: bool = True,
    spatial: bool = False,
    *,
    trunk_dtype: torch.dtype = torch.float32,
    frame_format: FrameFormat | None = None,
    portable: bool = True,
    metrics: tuple[str, ...] = (),
    backbone_weights: str | Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool | None = None,
) -> tuple[LPIPSModule, Provenance]:
    """An eval-mode ``LPIPSModule`` on the CPU with verified backbone and linear weights (and, with
    ``metrics``, PSNR/SSIM outputs: see ``LPIPSModule``)."""
    spec = get_net(net)
    module = LPIPSModule(spec, version, calibrated, spatial, trunk_dtype=trunk_dtype, frame_format=frame_format,
                          portable=portable, metrics=metrics)
    keys = [f"features.{k}" for k in module.features.state_dict()]
    backbone = load_backbone(spec, keys, backbone_weights, cache_dir, allow_download)
    module.load_backbone(backbone.state)
    linear_sha = ""
    if calibrated:
        linear_state, linear_sha = load_linear(spec, version)
        module.load_linear(linear_state)
    return module, Provenance(backbone.source, backbone.digest, linear_sha)
