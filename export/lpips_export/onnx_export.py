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

log = logging.getLogger("lpips_export")

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-5  # max abs difference allowed between ORT and the torch module (fp32)


class ExportCheckError(LpipsError):
    """The written file failed its own checks (ONNX checker, or ORT vs torch beyond tolerance)."""


def module_spec(module: LPIPSModule) -> ModelSpec:
    """The ``ModelSpec`` a module exports as (names the file and is recorded in its metadata)."""
    fmt = module.frame_format
    return ModelSpec(module.net.name, module.version, module.calibrated, module.spatial,
                     "fp16" if module.trunk_dtype == torch.float16 else "fp32",
                     f"{fmt.layout}-{fmt.channels}" if fmt is not None else None)


def model_filename(module: LPIPSModule) -> str:
    return module_spec(module).filename()


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


def build_metadata(module: LPIPSModule, provenance: Provenance, opset: int) -> dict[str, str]:
    meta = {
        "format": FORMAT,
        "kind": "spatial" if module.spatial else "distance",
        "net": module.net.name,
        "version": module.version,
        "calibrated": "true" if module.calibrated else "false",
        "precision": "fp16" if module.trunk_dtype == torch.float16 else "fp32",
        "min_side": str(module.net.min_side),
        "output": ("distance_map: float32 [N,1,H,W]" if module.spatial else "distance: float32 [N]"),
        "backbone_digest": provenance.backbone_digest,
        "backbone_source": provenance.backbone_source,
        "linear_sha256": provenance.linear_sha256,
        "exporter": f"lpips-rt {_exporter_version()}",
        "torch_version": torch.__version__,
        "opset": str(opset),
    }
    meta.update(input_contract(module))
    return meta


def _example_inputs(module: LPIPSModule, n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    if module.frame_format is None:
        return tuple(torch.rand(n, 3, h, w, generator=g) * 2 - 1 for _ in range(2))
    shape = (n, h, w, 3) if module.frame_format.layout == "nhwc" else (n, 3, h, w)
    return tuple(torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for _ in range(2))


def _dynamic_axes(module: LPIPSModule) -> dict[str, dict[int, str]]:
    nhwc = module.frame_format is not None and module.frame_format.layout == "nhwc"
    image_axes = {0: "N", 1: "H", 2: "W"} if nhwc else {0: "N", 2: "H", 3: "W"}
    out = {"distance_map": {0: "N", 2: "H", 3: "W"}} if module.spatial else {"distance": {0: "N"}}
    return {"img0": image_axes, "img1": image_axes, **out}


def export_onnx(module: LPIPSModule, provenance: Provenance, path: str | Path,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write ``module`` as one self-contained ONNX file at ``path`` (atomically) and return the path."""
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("onnx", "export", "exporting to ONNX") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    output = "distance_map" if module.spatial else "distance"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")  # unique: concurrent exports must not clash
    with warnings.catch_warnings():
        # The TorchScript-based exporter is the one that honours our custom Split symbolic and
        # dynamic_axes; torch marks it deprecated. The file is checked below either way.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, _example_inputs(module, 1, 64, 64), str(tmp), dynamo=False, opset_version=opset,
            input_names=["img0", "img1"], output_names=[output], dynamic_axes=_dynamic_axes(module),
            do_constant_folding=True,
        )
    model = onnx.load(str(tmp))
    if module.spatial:  # the tracer leaves the map's channel axis symbolic; it is always 1
        model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 1
    model.producer_name, model.producer_version = "lpips-rt", _exporter_version()
    model.doc_string = (f"LPIPS ({module.net.name}, v{module.version}) perceptual distance; "
                        "see metadata_props for the input/output contract")
    meta = build_metadata(module, provenance, opset)
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
                  tolerance: float = PARITY_TOLERANCE) -> float:
    """Full ONNX check, then ORT (CPU) vs ``module`` on ``check_shapes``; returns the max abs difference.

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
        a, b = _example_inputs(module, n, h, w, seed=n * 1000 + h)
        with torch.no_grad():
            expected = module(a, b).numpy()
        got = session.run(None, {"img0": a.numpy(), "img1": b.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(f"{path}: output shape {got.shape} != torch {expected.shape} at {n}x{h}x{w}")
        diff = float(np.max(np.abs(got - expected)))
        log.info("  check N=%d %dx%d: max |ort - torch| = %.2e", n, h, w, diff)
        worst = max(worst, diff)
    if not worst <= tolerance:
        raise ExportCheckError(f"{path}: ORT differs from torch by {worst:.2e} (> {tolerance:.0e})")
    return worst


def export_model(spec: ModelSpec, out_dir: str | Path = "models", opset: int = DEFAULT_OPSET,
                 backbone_weights: str | Path | None = None, check: bool = True) -> tuple[Path, float | None]:
    """Build ``spec`` from verified weights, write ``out_dir/<spec.filename()>``, and check it.

    Returns (path, max abs ORT-vs-torch difference or None when unchecked). A file that fails its
    check is deleted, so no unverified export is left where the runtime would pick it up.
    """
    from .build import build_lpips
    from .module import FrameFormat

    frames = FrameFormat(*spec.frames.split("-")) if spec.frames else None
    trunk = torch.float16 if spec.precision == "fp16" else torch.float32
    module, provenance = build_lpips(spec.net, spec.version, spec.calibrated, spec.spatial, trunk_dtype=trunk,
                                     frame_format=frames, backbone_weights=backbone_weights)
    path = export_onnx(module, provenance, Path(out_dir) / spec.filename(), opset=opset)
    if not check:
        return path, None
    try:
        return path, verify_export(path, module)
    except ExportCheckError:
        path.unlink(missing_ok=True)
        raise
