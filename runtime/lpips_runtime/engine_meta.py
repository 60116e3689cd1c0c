"""TensorRT engine files: where they live, their optimisation profile, and the JSON sidecar that ties
an engine to the TensorRT version, GPU and ONNX file it was built from. Standard library only.

An engine ``models/<stem>.engine`` is built from ``models/<stem>.onnx``; its sidecar is
``models/<stem>.engine.json``. A serialized engine only loads on the TensorRT version and GPU model
it was built for, and TensorRT's own refusal says little; the sidecar lets the runtime say why
before it tries.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import BackendError, InputError, LpipsError
from .hashing import file_sha256  # noqa: F401 - part of this module's API (sidecars record it)
from .nets import NetSpec

SIDECAR_FORMAT = "lpips-rt-engine/1"
TIMING_CACHE_NAME = "lpips-rt.timing-cache"  # one per models folder, shared by every build there
DEFAULT_OPT = (8, 256, 256)
DEFAULT_MAX = (16, 1080, 1920)


def engine_path_for(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".engine")


def sidecar_path_for(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"NxHxW"`` (e.g. ``"8x256x256"``) -> (N, H, W); ``LpipsError`` naming the format otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*", str(text).lower())
    if not match or min(int(g) for g in match.groups()) < 1:
        raise LpipsError(f"shape '{text}': use NxHxW with positive integers, e.g. 8x256x256")
    return int(match[1]), int(match[2]), int(match[3])


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class Profile:
    """One optimisation profile over (N, H, W): every batch the engine runs must lie within min..max."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    @classmethod
    def default(cls, net: NetSpec) -> "Profile":
        """1 x min_side^2 .. 16 x 1080x1920, tuned for 8 x 256x256."""
        return cls((1, net.min_side, net.min_side), DEFAULT_OPT, DEFAULT_MAX)

    @classmethod
    def parse(cls, net: NetSpec, min_shape: str | None = None, opt_shape: str | None = None,
              max_shape: str | None = None) -> "Profile":
        """The default profile with any of the three shapes replaced (``"NxHxW"`` strings), validated.
        A defaulted optimum is clamped into the given min..max (``--max-shape 4x512x512`` alone works)."""
        default = cls.default(net)
        low = parse_shape(min_shape) if min_shape else default.min
        high = parse_shape(max_shape) if max_shape else default.max
        opt = parse_shape(opt_shape) if opt_shape else tuple(
            min(max(d, lo), hi) for d, lo, hi in zip(default.opt, low, high))
        profile = cls(low, opt, high)
        profile.validate(net)
        return profile

    def validate(self, net: NetSpec) -> None:
        if any(not (lo <= mid <= hi) for lo, mid, hi in zip(self.min, self.opt, self.max)):
            raise LpipsError(f"profile needs min <= opt <= max in every dimension, got min {_fmt(self.min)}, "
                             f"opt {_fmt(self.opt)}, max {_fmt(self.max)}")
        if min(self.min[1:]) < net.min_side:
            raise LpipsError(f"profile min {_fmt(self.min)} is below LPIPS-{net.name}'s minimum side "
                             f"{net.min_side}: use at least 1x{net.min_side}x{net.min_side}")

    def contains(self, n: int, h: int, w: int) -> bool:
        return all(lo <= d <= hi for lo, d, hi in zip(self.min, (n, h, w), self.max))

    def check(self, n: int, h: int, w: int) -> None:
        """``InputError`` (naming the rebuild) if a batch N x H x W is outside this profile."""
        if not self.contains(n, h, w):
            raise InputError(f"batch {n}x{h}x{w} (NxHxW) is outside the TensorRT engine's profile "
                             f"{_fmt(self.min)} .. {_fmt(self.max)}: use a smaller batch, or rebuild it with "
                             f"lpips-export --trt --max-shape/--min-shape covering it")

    def describe(self) -> str:
        return f"min {_fmt(self.min)}, opt {_fmt(self.opt)}, max {_fmt(self.max)}"

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: dict) -> "Profile":
        return cls(*(tuple(int(d) for d in data[k]) for k in ("min", "opt", "max")))


def binding_shape(nhw: tuple[int, int, int], layout: str) -> tuple[int, int, int, int]:
    """(N, H, W) -> the graph input's dims for ``layout`` ("nchw": [N,3,H,W], "nhwc": [N,H,W,3])."""
    n, h, w = nhw
    return (n, h, w, 3) if layout == "nhwc" else (n, 3, h, w)


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class EngineSidecar:
    """What an engine was built from and for (written next to it as JSON)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: Profile
    source_onnx: str  # file name of the ONNX it was built from
    source_onnx_sha256: str
    input_dtype: str  # "float32" | "uint8"
    input_layout: str  # "nchw" | "nhwc"
    precision: str  # the ONNX's precision: "fp32" | "fp16"
    workspace_bytes: int
    format: str = SIDECAR_FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        data["profile"] = self.profile.as_dict()
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "EngineSidecar":
        data = json.loads(text)
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {SIDECAR_FORMAT!r}")
        data["profile"] = Profile.from_dict(data["profile"])
        return cls(**data)


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path_for(engine_path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(sidecar.to_json())
    os.replace(tmp, path)
    return path


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    """The sidecar of ``engine_path``; ``BackendError`` if it is missing or unreadable."""
    path = sidecar_path_for(engine_path)
    try:
        return EngineSidecar.from_json(path.read_text())
    except FileNotFoundError:
        raise BackendError(f"{path} is missing: an engine without its sidecar cannot be checked; "
                           "rebuild it with lpips-export --trt") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"{path} is not an lpips-rt engine sidecar ({exc}); rebuild with lpips-export --trt") \
            from None


def check_sidecar(sidecar: EngineSidecar, engine_path: str | Path, tensorrt_version: str, gpu: GpuInfo,
                  onnx_sha256: str | None = None) -> None:
    """Refuse (``BackendError``, one line naming the rebuild) an engine built for another TensorRT,
    another GPU, or from another ONNX file than the one it stands next to."""
    rebuild = f"rebuild {Path(engine_path).name} here with lpips-export --trt"
    if sidecar.tensorrt_version != tensorrt_version:
        raise BackendError(f"{engine_path} was built with TensorRT {sidecar.tensorrt_version}, this is "
                           f"TensorRT {tensorrt_version}: engines load only on the version that built them; {rebuild}")
    if (sidecar.gpu_name, sidecar.compute_capability) != (gpu.name, gpu.compute_capability):
        raise BackendError(f"{engine_path} was built for {sidecar.gpu_name} (compute capability "
                           f"{sidecar.compute_capability}), this GPU is {gpu.name} ({gpu.compute_capability}); {rebuild}")
    if onnx_sha256 is not None and sidecar.source_onnx_sha256 != onnx_sha256:
        raise BackendError(f"{engine_path} was built from another {sidecar.source_onnx} than the one beside it "
                           f"(sha256 differs): {rebuild}")
