"""Build an ``LPIPSModule`` with verified weights: the one entry point export and torch backend share."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lpips_runtime.model.nets import get_net

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
    pretrained_backbone: bool = True,
    linear_weights: str | dict | None = "official",
) -> tuple[LPIPSModule, Provenance]:
    """An eval-mode ``LPIPSModule`` on the CPU with verified backbone and linear weights (and, with
    ``metrics``, PSNR/SSIM outputs: see ``LPIPSModule``).

    For training-time uses (``lpips_runtime.torch.LPIPS``'s official options): ``pretrained_backbone=False``
    keeps torchvision's random initialisation (``pnet_rand``); ``linear_weights`` is ``"official"`` (the
    verified files of the installed lpips package), a state dict with the official keys
    ``lin{i}.model.1.weight`` (a user's ``model_path``, loaded strictly), or ``None`` (random, ``pretrained=False``).
    """
    spec = get_net(net)
    module = LPIPSModule(spec, version, calibrated, spatial, trunk_dtype=trunk_dtype, frame_format=frame_format,
                          portable=portable, metrics=metrics, random_init=not pretrained_backbone)
    if pretrained_backbone:
        keys = [f"features.{k}" for k in module.features.state_dict()]
        backbone = load_backbone(spec, keys, backbone_weights, cache_dir, allow_download)
        module.load_backbone(backbone.state)
        source, digest = backbone.source, backbone.digest
    else:
        source, digest = "random initialisation (torchvision's)", ""
    linear_sha = ""
    if calibrated and isinstance(linear_weights, str):
        if linear_weights != "official":
            raise ValueError(f"linear_weights must be 'official', a state dict or None, not {linear_weights!r}")
        linear_state, linear_sha = load_linear(spec, version)
        module.load_linear(linear_state)
    elif calibrated and linear_weights is not None:
        module.load_linear(linear_weights)
        linear_sha = "user state dict"
    return module, Provenance(source, digest, linear_sha)
