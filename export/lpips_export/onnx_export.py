"""Trace an ``LPIPSModule`` to one self-contained ONNX file with dynamic batch/height/width,
stamp it with metadata, and prove it against the torch module on ONNX Runtime."""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version as dist_version
from pathlib import Path

import numpy as np
import torch

from lpips_runtime.errors import LpipsError, MissingExtraError
from lpips_runtime.modelfile import FORMAT, ModelSpec, scan_model_bytes

from .build import Provenance
from .module import LPIPSModule
from .parts import SIZE_INPUT, EncoderGraph, HeadGraph, feature_names

log = logging.getLogger("lpips_export")

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-5  # max abs difference allowed between ORT and the torch module (fp32)


class ExportCheckError(LpipsError):
    """The written file failed its own checks (ONNX checker, or ORT vs torch beyond tolerance)."""


def module_spec(module: LPIPSModule, part: str = "fused") -> ModelSpec:
    """The ``ModelSpec`` a module (or one ``part`` of it) exports as: names the file, recorded in its metadata."""
    fmt = module.frame_format
    return ModelSpec(module.net.name, module.version, module.calibrated, module.spatial,
                     "fp16" if module.trunk_dtype == torch.float16 else "fp32",
                     f"{fmt.layout}-{fmt.channels}" if fmt is not None else None, part)


def model_filename(module: LPIPSModule, part: str = "fused") -> str:
    return module_spec(module, part).filename()


def _exporter_version() -> str:
    try:
        return dist_version("lpips-rt")
    except PackageNotFoundError:
        return "source"


def input_contract(module: LPIPSModule) -> dict[str, str]:
    """The metadata describing what the graph's two inputs must hold."""
    if module.frame_format is None:
        return {"input_dtype": "float32", "input_layout": "nchw", "input_channels": "rgb",
                "input": "img0, img1: float32 [N,3,H,W] RGB in [-1,1]"}
    fmt = module.frame_format
    dims = "[N,H,W,3]" if fmt.layout == "nhwc" else "[N,3,H,W]"
    return {"input_dtype": "uint8", "input_layout": fmt.layout, "input_channels": fmt.channels,
            "input": f"img0, img1: uint8 {dims} {fmt.channels.upper()} in [0,255]"}


def _part_contract(module: LPIPSModule, spec: ModelSpec) -> dict[str, str]:
    """Input/output contract of a split part (the fused graph's is ``input_contract`` + "output")."""
    dims = "[N,C_l,h_l,w_l]"
    channels = ",".join(str(c) for c in module.net.channels)
    if spec.part == "encoder":
        contract = input_contract(module)
        return {**contract, "input": contract["input"].replace("img0, img1", "img"),
                "output": f"feat0..feat{module.net.n_layers - 1}: float32 {dims}, unit-normalised along C",
                "channels": channels}
    size = f"; {SIZE_INPUT}: float32 [0,H,W] (shape only: the output size)" if spec.spatial else ""
    return {"input_dtype": "float32", "input_layout": "nchw", "input_channels": "",
            "input": f"feat<l>_0 [N0,...], feat<l>_1 [N1,...]: float32 {dims} as the encoder writes them, "
                     f"N0 == N1 or one of them 1{size}",
            "output": "distance_map: float32 [N,1,H,W]" if spec.spatial else "distance: float32 [max(N0,N1)]",
            "channels": channels}


def build_metadata(module: LPIPSModule, provenance: Provenance, opset: int, part: str = "fused") -> dict[str, str]:
    spec = module_spec(module, part)
    meta = {
        "format": FORMAT,
        "kind": spec.kind,
        "net": module.net.name,
        "version": module.version,
        "calibrated": "true" if spec.calibrated else "false",
        "precision": spec.precision,
        "min_side": str(module.net.min_side),
        "output": ("distance_map: float32 [N,1,H,W]" if module.spatial else "distance: float32 [N]"),
        "backbone_digest": provenance.backbone_digest,
        "backbone_source": provenance.backbone_source,
        "linear_sha256": provenance.linear_sha256 if spec.calibrated else "",
        "exporter": f"lpips-rt {_exporter_version()}",
        "torch_version": torch.__version__,
        "opset": str(opset),
    }
    meta.update(input_contract(module) if part == "fused" else _part_contract(module, spec))
    return meta


def _example_inputs(module: LPIPSModule, n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    if module.frame_format is None:
        return tuple(torch.rand(n, 3, h, w, generator=g) * 2 - 1 for _ in range(2))
    shape = (n, h, w, 3) if module.frame_format.layout == "nhwc" else (n, 3, h, w)
    return tuple(torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for _ in range(2))


def _image_axes(module: LPIPSModule) -> dict[int, str]:
    nhwc = module.frame_format is not None and module.frame_format.layout == "nhwc"
    return {0: "N", 1: "H", 2: "W"} if nhwc else {0: "N", 2: "H", 3: "W"}


def _output_name(module: LPIPSModule) -> str:
    return "distance_map" if module.spatial else "distance"


def _dynamic_axes(module: LPIPSModule) -> dict[str, dict[int, str]]:
    image_axes = _image_axes(module)
    out = {"distance_map": {0: "N", 2: "H", 3: "W"}} if module.spatial else {"distance": {0: "N"}}
    return {"img0": image_axes, "img1": image_axes, **out}


def _encode(module: LPIPSModule, img: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return module.encode(module.prepare(img))


def _graph_io(module: LPIPSModule, part: str, n: int = 1, h: int = 64, w: int = 64, seed: int = 0):
    """(torch graph, example args, input names, output names, dynamic axes) of one part.

    The head's example features come from the encoder, so that tracing sees real shapes.
    """
    if part == "fused":
        return (module, _example_inputs(module, n, h, w, seed), ["img0", "img1"], [_output_name(module)],
                _dynamic_axes(module))
    outs = feature_names(module)
    if part == "encoder":
        axes = {"img": _image_axes(module), **{o: {0: "N", 2: f"h{i}", 3: f"w{i}"} for i, o in enumerate(outs)}}
        return EncoderGraph(module), _example_inputs(module, n, h, w, seed)[:1], ["img"], outs, axes
    a, b = _example_inputs(module, n, h, w, seed)
    feats = _encode(module, a) + _encode(module, b)
    names = feature_names(module, "0") + feature_names(module, "1")
    axes = {name: {0: "N0" if name.endswith("_0") else "N1", 2: f"h{name[4:-2]}", 3: f"w{name[4:-2]}"}
            for name in names}
    args = list(feats)
    if module.spatial:
        args.append(torch.zeros(0, h, w))
        names.append(SIZE_INPUT)
        axes[SIZE_INPUT] = {1: "H", 2: "W"}
    out = _output_name(module)
    axes[out] = {0: "N", 2: "H", 3: "W"} if module.spatial else {0: "N"}
    return HeadGraph(module), tuple(args), names, [out], axes


def export_onnx(module: LPIPSModule, provenance: Provenance, path: str | Path,
                opset: int = DEFAULT_OPSET, part: str = "fused") -> Path:
    """Write ``module`` (or its encoder or head ``part``) as one self-contained ONNX file at ``path``
    (atomically) and return the path."""
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("onnx", "export", "exporting to ONNX") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph, args, inputs, outputs, axes = _graph_io(module, part)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")  # unique: concurrent exports must not clash
    with warnings.catch_warnings():
        # The TorchScript-based exporter is the one that honours our custom Split symbolic and
        # dynamic_axes; torch marks it deprecated. The file is checked below either way.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, args, str(tmp), dynamo=False, opset_version=opset,
            input_names=inputs, output_names=outputs, dynamic_axes=axes, do_constant_folding=True,
        )
    model = onnx.load(str(tmp))
    model.producer_name, model.producer_version = "lpips-rt", _exporter_version()
    what = {"fused": "perceptual distance", "encoder": "encoder (features of one image batch)",
            "head": "head (distance of two feature sets)"}[part]
    model.doc_string = (f"LPIPS ({module.net.name}, v{module.version}) {what}; "
                        "see metadata_props for the input/output contract")
    meta = build_metadata(module, provenance, opset, part)
    onnx.helper.set_model_props(model, meta)
    _, meta["graph_sha256"] = scan_model_bytes(model.SerializeToString())
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(tmp))  # < 2 GB: weights stay inside the file
    os.replace(tmp, path)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def check_shapes(module: LPIPSModule) -> list[tuple[int, int, int]]:
    """Shapes (N, H, W) every export is checked on: the minimum side, odd, non-square, batch > 1."""
    m = module.net.min_side
    return [(1, m, m), (1, 67, 67), (2, 64, 100), (3, 45, 131)]


def verify_export(path: str | Path, module: LPIPSModule,
                  tolerance: float = PARITY_TOLERANCE, part: str = "fused") -> float:
    """Full ONNX check, then ORT (CPU) vs ``module`` on ``check_shapes``; returns the max abs difference
    over every output (for an encoder: every tap's features; for a head: fed the torch features).

    Raises ``ExportCheckError`` if the checker fails or the difference exceeds ``tolerance``.
    """
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportCheckError(f"onnx.checker rejected {path}: {str(exc).splitlines()[0]}") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n, h, w in check_shapes(module):
        graph, args, inputs, _, _ = _graph_io(module, part, n, h, w, seed=n * 1000 + h)
        with torch.no_grad():
            expected = graph(*args)
        expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
        got = session.run(None, {name: a.numpy() for name, a in zip(inputs, args)})
        for g, e in zip(got, expected):
            if g.shape != e.shape:
                raise ExportCheckError(f"{path}: output shape {g.shape} != torch {e.shape} at {n}x{h}x{w}")
            worst = max(worst, float(np.max(np.abs(g - e))))
        log.info("  check N=%d %dx%d: max |ort - torch| = %.2e", n, h, w, worst)
    if not worst <= tolerance:
        raise ExportCheckError(f"{path}: ORT differs from torch by {worst:.2e} (> {tolerance:.0e})")
    return worst


def export_model(spec: ModelSpec, out_dir: str | Path = "models", opset: int = DEFAULT_OPSET,
                 backbone_weights: str | Path | None = None, check: bool = True,
                 portable: bool = True) -> tuple[Path, float | None]:
    """Build ``spec`` (any part) from verified weights, write ``out_dir/<spec.filename()>``, and check it.

    ``portable=False`` writes the natural graph form (see ``LPIPSModule``), for measurements only: the
    file name does not say which form it holds.

    Returns (path, max abs ORT-vs-torch difference or None when unchecked). A file that fails its
    check is deleted, so no unverified export is left where the runtime would pick it up.
    """
    from .build import build_lpips
    from .module import FrameFormat

    frames = FrameFormat(*spec.frames.split("-")) if spec.frames else None
    trunk = torch.float16 if spec.precision == "fp16" else torch.float32
    # An encoder needs no linear layers; the module is built calibrated only where the spec has them.
    module, provenance = build_lpips(spec.net, spec.version, spec.calibrated, spec.spatial, trunk_dtype=trunk,
                                     frame_format=frames, backbone_weights=backbone_weights, portable=portable)
    path = export_onnx(module, provenance, Path(out_dir) / spec.filename(), opset=opset, part=spec.part)
    if not check:
        return path, None
    try:
        return path, verify_export(path, module, part=spec.part)
    except ExportCheckError:
        path.unlink(missing_ok=True)
        raise
