"""Read an exported LPIPS ONNX file's metadata and check it, without the ``onnx`` package.

An ONNX file is a serialized ``ModelProto``. We walk only its top-level protobuf fields: field 7 is
the graph (every node and weight), field 14 the ``metadata_props`` entries. The graph digest recorded
at export time is the sha256 of the graph field's bytes, so any change to weights or structure is
caught, while the metadata (which holds the digest) stays outside what is hashed.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import LpipsError, ModelFileError
from ..io.fileio import UnreadableFile, read_regular_file
from .nets import NetSpec, check_version, get_net
from .modelweights import WeightCheckError, check_weights
from .pixel_metrics import parse_metrics
from .protobuf import fields as _fields

FORMAT = "lpips-rt/1"  # metadata "format" of every file this project exports
PRECISIONS = ("fp32", "fp16")
FRAME_LAYOUTS = ("nhwc", "nchw")
FRAME_CHANNELS = ("bgr", "rgb")
_GRAPH_FIELD = 7
_METADATA_FIELD = 14


def scan_model_bytes(data: bytes) -> tuple[dict[str, str], str]:
    """(metadata_props as a dict, sha256 of the graph field) of a serialized ModelProto."""
    metadata: dict[str, str] = {}
    graph_hash = None
    for number, wire, value in _fields(data):
        if number == _GRAPH_FIELD and wire == 2:
            graph_hash = hashlib.sha256(value).hexdigest()
        elif number == _METADATA_FIELD and wire == 2:
            entry = {n: bytes(v).decode("utf-8") for n, w, v in _fields(bytes(value)) if w == 2}
            metadata[entry.get(1, "")] = entry.get(2, "")
    if graph_hash is None:
        raise ValueError("no graph")
    return metadata, graph_hash


def model_graph(data: bytes) -> memoryview:
    """The serialized GraphProto (field 7) of a serialized ModelProto."""
    for number, wire, value in _fields(data):
        if number == _GRAPH_FIELD and wire == 2:
            return value
    raise ValueError("no graph")


# What a file computes. "fused": two images -> distance (or map); "encoder": images -> the unit-normalised
# features of every tap; "head": two feature sets -> distance (or map). encoder + head == fused.
PARTS = ("fused", "encoder", "head")
# metadata "kind" of each (part, spatial); an encoder has no spatial variant.
_KINDS = {("fused", False): "distance", ("fused", True): "spatial", ("encoder", False): "encoder",
          ("head", False): "head", ("head", True): "spatial-head"}
_PART_OF_KIND = {kind: key for key, kind in _KINDS.items()}


@dataclass(frozen=True)
class ModelSpec:
    """Which LPIPS graph: the options that name an export and that every backend builds from.

    Fields a part does not depend on are normalised away, so that equal graphs have equal specs (and one
    file name): an encoder has no linear layers and no spatial output (``calibrated=False``,
    ``spatial=False``); a head takes float32 features whatever the trunk and input were
    (``precision="fp32"``, ``frames=None``); neither sees two images' pixels, so neither computes
    ``metrics``. ``metrics`` is kept in ``pixel_metrics.METRICS`` order (any order or a "psnr,ssim"
    string is accepted).
    """

    net: str = "alex"
    version: str = "0.1"
    calibrated: bool = True
    spatial: bool = False
    precision: str = "fp32"  # "fp32", or "fp16" (float16 trunk, float32 head)
    frames: str | None = None  # uint8 frame input as "<layout>-<channels>", e.g. "nhwc-bgr"; None: float32 NCHW
    part: str = "fused"  # one of PARTS
    metrics: tuple[str, ...] = ()  # extra outputs next to the distance, e.g. ("psnr", "ssim"): pixel_metrics

    def __post_init__(self):
        get_net(self.net)
        check_version(self.version)
        if self.precision not in PRECISIONS:
            raise LpipsError(f"unknown precision '{self.precision}': choose one of {', '.join(PRECISIONS)}")
        if self.frames is not None:
            layout, _, channels = self.frames.partition("-")
            if layout not in FRAME_LAYOUTS or channels not in FRAME_CHANNELS:
                raise LpipsError(f"frames '{self.frames}': use <layout>-<channels> with layout "
                                 f"{'/'.join(FRAME_LAYOUTS)} and channels {'/'.join(FRAME_CHANNELS)}")
        if self.part not in PARTS:
            raise LpipsError(f"unknown model part '{self.part}': choose one of {', '.join(PARTS)}")
        object.__setattr__(self, "metrics", parse_metrics(self.metrics) if self.part == "fused" else ())
        if self.part == "encoder":
            object.__setattr__(self, "calibrated", False)
            object.__setattr__(self, "spatial", False)
        elif self.part == "head":
            object.__setattr__(self, "precision", "fp32")
            object.__setattr__(self, "frames", None)

    @property
    def kind(self) -> str:
        """The metadata ``kind`` of this graph ("distance", "spatial", "encoder", "head", "spatial-head")."""
        return _KINDS[(self.part, self.spatial)]

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph's output names: the distance (or its map), then one per metric (fused graphs only:
        the parts' outputs are their features or a distance, see ``PARTS``)."""
        return ("distance_map" if self.spatial else "distance", *self.metrics)

    def with_part(self, part: str, spatial: bool | None = None) -> "ModelSpec":
        """The spec of ``part`` of the same LPIPS (e.g. the encoder and head that split this fused graph)."""
        return replace(self, part=part, spatial=self.spatial if spatial is None else spatial)

    def filename(self) -> str:
        """``lpips-<net>-v<version>[-baseline][-spatial][-fp16][-u8<layout><channels>][-<metric>...]
        [-encoder|-head].onnx``, e.g. ``lpips-alex-v0.1-psnr-ssim.onnx``."""
        parts = [f"lpips-{self.net}-v{self.version}"]
        if not self.calibrated and self.part != "encoder":
            parts.append("baseline")
        if self.spatial:
            parts.append("spatial")
        if self.precision != "fp32":
            parts.append(self.precision)
        if self.frames:
            parts.append("u8" + self.frames.replace("-", ""))
        parts.extend(self.metrics)
        if self.part != "fused":
            parts.append(self.part)
        return "-".join(parts) + ".onnx"

    def export_command(self, out_dir: str | Path | None = None) -> str:
        """The ``lpips-export`` command line that writes this model (into ``out_dir``; None: its default)."""
        args = [f"lpips-export --net {self.net}"]
        if self.version != "0.1":
            args.append(f"--version {self.version}")
        if not self.calibrated and self.part != "encoder":
            args.append("--baseline")
        if self.spatial:
            args.append("--spatial")
        if self.precision != "fp32":
            args.append(f"--precision {self.precision}")
        if self.frames:
            layout, channels = self.frames.split("-")
            args.append(f"--input uint8 --layout {layout} --channels {channels}")
        if self.metrics:
            args.append(f"--metrics {','.join(self.metrics)}")
        if self.part != "fused":
            args.append(f"--part {self.part}")
        if out_dir is not None:
            args.append(f"--out {shlex.quote(str(out_dir))}")
        return " ".join(args)

    def describe(self) -> str:
        extra = [x for x in (("baseline" if not self.calibrated and self.part != "encoder" else ""),
                             ("spatial" if self.spatial else ""),
                             (self.precision if self.precision != "fp32" else ""),
                             (f"uint8 {self.frames}" if self.frames else ""),
                             (self.part if self.part != "fused" else ""),
                             ("+" + "+".join(self.metrics) if self.metrics else "")) if x]
        return f"LPIPS-{self.net} v{self.version}" + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class ModelInfo:
    """What an lpips-rt export says about itself (its ``metadata_props``), after checking."""

    path: Path
    metadata: dict

    @property
    def kind(self) -> str:  # "distance" | "spatial" | "encoder" | "head" | "spatial-head"
        return self.metadata["kind"]

    @property
    def part(self) -> str:
        return _PART_OF_KIND[self.kind][0]

    @property
    def net(self) -> NetSpec:
        return get_net(self.metadata["net"])

    @property
    def version(self) -> str:
        return self.metadata["version"]

    @property
    def calibrated(self) -> bool:
        return self.metadata["calibrated"] == "true"

    @property
    def precision(self) -> str:
        return self.metadata.get("precision", "fp32")

    @property
    def spec(self) -> ModelSpec:
        frames = None
        if self.input_dtype == "uint8":
            frames = f"{self.input_layout}-{self.input_channels}"
        return ModelSpec(self.metadata["net"], self.version, self.calibrated, _PART_OF_KIND[self.kind][1],
                         self.precision, frames, self.part, self.metrics)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the graph outputs next to the distance (metadata ``metrics``, e.g. "psnr,ssim")."""
        return parse_metrics(self.metadata.get("metrics", ""))

    @property
    def input_dtype(self) -> str:  # "float32" (NCHW RGB [-1,1]) or "uint8" (frames)
        return self.metadata.get("input_dtype", "float32")

    @property
    def input_layout(self) -> str:
        return self.metadata.get("input_layout", "nchw")

    @property
    def input_channels(self) -> str:
        return self.metadata.get("input_channels", "rgb")


# The largest model file read: protobuf's own limit (exports are 3-60 MB; larger ONNX files keep their
# weights outside, which lpips-rt exports never do).
MAX_MODEL_BYTES = (2 << 30) - 1

REQUIRED_KEYS = ("format", "kind", "net", "version", "calibrated", "min_side", "backbone_digest", "graph_sha256")


def read_model(path: str | Path) -> ModelInfo:
    """Read and check an lpips-rt ONNX export; ``ModelFileError`` (one line) if it is not a sound one.

    Checks: it is a regular file of at most ``MAX_MODEL_BYTES``; it parses; it carries our metadata; its net
    is known and its recorded backbone and linear-layer digests are the pinned ones; its graph still hashes
    to the recorded digest; and the weights recomputed from its own tensors are the pinned ones
    (``modelweights``: what that proves and what it does not).
    """
    path = Path(path)
    try:
        data = read_regular_file(path, MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except UnreadableFile as exc:
        raise ModelFileError(f"cannot read model {path}: {exc}") from None
    try:
        metadata, graph_hash = scan_model_bytes(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not a readable ONNX model ({exc})") from None
    if metadata.get("format") != FORMAT or any(k not in metadata for k in REQUIRED_KEYS):
        raise ModelFileError(f"{path} is not an LPIPS export of lpips-rt (no '{FORMAT}' metadata): "
                             "export one with lpips-export")
    if metadata["kind"] not in _PART_OF_KIND:
        raise ModelFileError(f"{path} is an lpips-rt export of unknown kind '{metadata['kind']}' "
                             "(written by a newer lpips-rt?): re-export it with this version")
    try:
        net = get_net(metadata["net"])
    except Exception:
        raise ModelFileError(f"{path} names an unknown net '{metadata['net']}'") from None
    if metadata["backbone_digest"] != net.backbone_digest:
        raise ModelFileError(f"{path} was exported from unverified {net.name} backbone weights "
                             f"(digest {metadata['backbone_digest'][:16]}...): re-export it")
    if metadata["calibrated"] == "true" and metadata.get("linear_sha256") != net.linear_sha256.get(
            metadata["version"]):
        raise ModelFileError(f"{path} records linear weights that are not the official v{metadata['version']} "
                             "ones: re-export it")
    try:
        parse_metrics(metadata.get("metrics", ""))
    except LpipsError as exc:
        raise ModelFileError(f"{path} computes metrics this lpips-rt does not know ({exc}): re-export it "
                             "with this version") from None
    if metadata["graph_sha256"] != graph_hash:
        raise ModelFileError(f"{path} has been modified since export (graph digest mismatch): re-export it")
    info = ModelInfo(path=path, metadata=metadata)
    try:
        spec = info.spec
        check_weights(model_graph(data), net, part=spec.part, version=spec.version, calibrated=spec.calibrated,
                      precision=spec.precision)
    except (WeightCheckError, ValueError, LpipsError) as exc:
        raise ModelFileError(f"{path} does not hold the weights its metadata names: {exc}: re-export it") from None
    return info
