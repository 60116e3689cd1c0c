"""The official linear-layer weights, read from the installed ``lpips`` package's data files.

The files are located through package metadata, without importing ``lpips`` (its import pulls in
torchvision and scipy), verified by sha256 and loaded with ``weights_only=True`` on the CPU.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch

from lpips_runtime.errors import MissingExtraError, WeightsError
from lpips_runtime.model.nets import NetSpec, check_version

from .digests import file_sha256


def linear_weights_path(net: NetSpec, version: str) -> Path:
    check_version(version)
    try:
        dist = importlib.metadata.distribution("lpips")
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError("lpips", "export", "the official linear-layer weights") from None
    path = Path(dist.locate_file(f"lpips/weights/v{version}/{net.name}.pth"))
    if not path.is_file():
        raise WeightsError(f"the installed lpips package has no {path}: reinstall lpips==0.1.4")
    return path


def load_linear(net: NetSpec, version: str) -> tuple[dict[str, torch.Tensor], str]:
    """Verified official linear weights (keys ``lin{i}.model.1.weight``) and the file's sha256."""
    path = linear_weights_path(net, version)
    digest = file_sha256(path)
    expected = net.linear_sha256[version]
    if digest != expected:
        raise WeightsError(f"{path} has sha256 {digest[:16]}..., expected {expected[:16]}... (lpips==0.1.4)")
    # The official files are legacy pickles saved on cuda:0: map them to the CPU, tensors only.
    return torch.load(path, map_location="cpu", weights_only=True), digest
