"""TensorRT engine files: where they live, their optimisation profile, and the JSON sidecar that ties
an engine to the TensorRT flavour and version, the GPUs and the ONNX file it was built for. Standard
library only.

An engine ``models/<stem>.engine`` is built from ``models/<stem>.onnx``; its sidecar is
``models/<stem>.engine.json``. A serialized engine only loads on the TensorRT flavour and version that
built it, and on the GPUs it targets (full TensorRT: the build GPU's model; TensorRT-RTX: a set of
compute capabilities), and TensorRT's own refusal says little; the sidecar lets the runtime say why
before it tries.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BackendError, InputError, LpipsError
from .hashing import file_sha256  # noqa: F401 - part of this module's API (sidecars record it)
from .nets import NetSpec

SIDECAR_FORMAT = "lpips-rt-engine/2"  # /1 (before TensorRT-RTX) named one GPU and no flavour: rebuild those
TIMING_CACHE_NAME = "lpips-rt.timing-cache"  # one per models folder, shared by every build there
DEFAULT_OPT = (4, 256, 256)
DEFAULT_HW = (1080, 1920)
# The default profile's largest batch of 1080x1920 frames, per net: the largest power of two whose engine
# needs at most DEFAULT_ACTIVATION_BUDGET of activations in every variant (fp32/fp16, float/uint8 input,
# distance/spatial), as TensorRT-RTX 1.7 reports it ("Total Activation Memory" in its build log;
# benchmarks/trt_profiles.py, docs/gpu.md). Measured at these maxima: alex 2.00-2.29 GiB, squeeze 3.64-3.79,
# vgg 2.89-3.36; at the next power of two, from the per-pair cost, alex 3.7-4.0 (issue 20 measured 4.0), squeeze
# 7.2-7.5, vgg 5.8-6.7. The old 16x1080x1920 needed
# 4.0 GiB (alex) to 15.1 GiB (squeeze): more than the 4 GiB workspace the builder had, and many RTX cards.
DEFAULT_MAX_BATCH = {"alex": 8, "vgg": 1, "squeeze": 4}
DEFAULT_ACTIVATION_BUDGET = 4 << 30


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
        """1 x min_side^2 .. ``DEFAULT_MAX_BATCH[net]`` x 1080x1920, tuned for 4 x 256x256 (clamped to the max)."""
        high = (DEFAULT_MAX_BATCH.get(net.name, 1), *DEFAULT_HW)
        return cls((1, net.min_side, net.min_side), tuple(min(o, m) for o, m in zip(DEFAULT_OPT, high)), high)

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
    """What an engine was built from and for (written next to it as JSON).

    ``targets``: the compute capabilities ("86", "89", ...) the engine runs on: full TensorRT's one build
    GPU (whose model ``gpu_name`` also names), TensorRT-RTX's portable set or the ``--trt-sm`` ones
    (``gpu_name`` empty: an RTX build needs no GPU). ``layer_precisions``: each ONNX node's type in the
    built engine ("float16", "float32", or "mixed" where TensorRT fused it into a layer converting
    between the two), from the builder's detailed log. ``activation_bytes``/``weights_bytes``: the
    device memory the engine needs at its profile's maximum, as the builder reported it (0: not reported).
    """

    tensorrt_flavour: str  # "tensorrt" | "tensorrt-rtx"
    tensorrt_version: str
    targets: tuple[str, ...]
    gpu_name: str
    profile: Profile
    source_onnx: str  # file name of the ONNX it was built from
    source_onnx_sha256: str
    input_dtype: str  # "float32" | "uint8"
    input_layout: str  # "nchw" | "nhwc"
    precision: str  # the ONNX's precision: "fp32" | "fp16"
    workspace_bytes: int
    engine_sha256: str = ""  # of the .engine file: a corrupt or replaced engine is refused before TensorRT reads it
    activation_bytes: int = 0
    weights_bytes: int = 0
    layer_precisions: dict = field(default_factory=dict)
    io: dict = field(default_factory=dict)  # name -> {"mode": input|output, "dtype", "shape"}: the engine's tensors
    format: str = SIDECAR_FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        data["profile"] = self.profile.as_dict()
        data["targets"] = list(self.targets)
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "EngineSidecar":
        data = json.loads(text)
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {SIDECAR_FORMAT!r}")
        data["profile"] = Profile.from_dict(data["profile"])
        data["targets"] = tuple(str(t) for t in data["targets"])
        return cls(**data)

    def describe_targets(self) -> str:
        sms = ", ".join(f"{t[:-1]}.{t[-1]}" for t in self.targets)
        return f"{self.gpu_name} ({sms})" if self.gpu_name else f"compute capability {sms}"

    def precision_counts(self) -> dict[str, int]:
        """How many ONNX nodes run in each type ({"float16": 12, "float32": 40, ...})."""
        counts: dict[str, int] = {}
        for kind in self.layer_precisions.values():
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path_for(engine_path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(sidecar.to_json())
    os.replace(tmp, path)
    return path


def read_sidecar(engine_path: str | Path, rebuild: str = "lpips-export --trt") -> EngineSidecar:
    """The sidecar of ``engine_path``; ``BackendError`` (naming ``rebuild``) if it is missing or unreadable."""
    path = sidecar_path_for(engine_path)
    try:
        return EngineSidecar.from_json(path.read_text())
    except FileNotFoundError:
        raise BackendError(f"{path} is missing: an engine without its sidecar cannot be checked; "
                           f"rebuild it with {rebuild}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"{path} is not an lpips-rt engine sidecar ({exc}); rebuild with {rebuild}") from None


def check_sidecar(sidecar: EngineSidecar, engine_path: str | Path, flavour: str, tensorrt_version: str,
                  gpu: GpuInfo | None, onnx_sha256: str | None = None, rebuild: str = "lpips-export --trt") -> None:
    """Refuse (``BackendError``, one line naming ``rebuild``) an engine built by another TensorRT flavour or
    version, for other GPUs than ``gpu`` (None: not checked), or from another ONNX file than the one beside it."""
    name = Path(engine_path).name
    tail = f"rebuild {name} with {rebuild}"
    if sidecar.tensorrt_flavour != flavour:
        raise BackendError(f"{engine_path} was built by {sidecar.tensorrt_flavour}, this runtime uses {flavour}: "
                           f"{tail}")
    if sidecar.tensorrt_version != tensorrt_version:
        raise BackendError(f"{engine_path} was built with {flavour} {sidecar.tensorrt_version}, this is "
                           f"{tensorrt_version}: engines load only on the version that built them; {tail}")
    if gpu is not None:
        sm = re.sub(r"\D", "", gpu.compute_capability)
        fits = sm in sidecar.targets and (not sidecar.gpu_name or sidecar.gpu_name == gpu.name)
        if not fits:
            raise BackendError(f"{engine_path} was built for {sidecar.describe_targets()}, this GPU is {gpu.name} "
                               f"({gpu.compute_capability}); {tail}")
    if sidecar.engine_sha256 and Path(engine_path).is_file() and file_sha256(engine_path) != sidecar.engine_sha256:
        raise BackendError(f"{engine_path} is not the engine its sidecar describes (sha256 differs: corrupt or "
                           f"replaced): {tail}")
    if onnx_sha256 is not None and sidecar.source_onnx_sha256 != onnx_sha256:
        raise BackendError(f"{engine_path} was built from another {sidecar.source_onnx} than the one beside it "
                           f"(sha256 differs): {tail}")
