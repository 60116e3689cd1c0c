"""Trace an ``LPIPSModule`` to one self-contained ONNX file with dynamic batch/height/width,
stamp it with metadata, and prove it against the torch module on ONNX Runtime."""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version as dist_version
from pathlib import Path

import numpy as np
import torch

from lpips_runtime.errors import LpipsError, MissingExtraError
from lpips_runtime.model.modelfile import FORMAT, ModelSpec, scan_model_bytes
from lpips_runtime.model.pixel_metrics import DEFINITIONS, UNITS

from .build import Provenance
from .module import LPIPSModule
from .parts import SIZE_INPUT, EncoderGraph, HeadGraph, feature_names

log = logging.getLogger("lpips_export")

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-5  # max abs difference allowed between ORT and the torch module (fp32)
# fp16 (mixed) graphs: max relative error against the float32 torch module. float16 keeps 11
# significant bits (unit roundoff 4.9e-4); the head is float32 and the spatial mean averages the
# trunk's rounding errors, so 1e-3 leaves a distance good to three significant digits (what LPIPS
# results are reported with) while catching any float16 head (errors of 1e-1 and NaN).
FP16_TOLERANCE = 1e-3
# fp16 spatial maps: each pixel's error relative to its map's largest value. A pixel has no spatial
# mean to average the backbone's rounding (measured up to 1.7e-3); 4e-3 is one of the 256 colour
# levels a heat map is rendered with (lpips-score --heatmap), so the picture cannot change by more.
FP16_MAP_TOLERANCE = 4e-3
# uint8-frame graphs (fp32) vs the float32 graph fed by the runtime's preprocessing: the in-graph
# preprocessing is bit-identical to the runtime's, so anything above float32 noise is a bug.
FRAMES_TOLERANCE = 1e-6
# PSNR (dB) and SSIM outputs: max |ORT - torch| on photo-like pairs, whatever the graph's precision and
# input (the metrics are float32 on 8-bit values in every variant). The same limits as the parity
# tests against scikit-image; ORT and torch measured <= 1e-5 dB and 1e-6 apart.
METRIC_TOLERANCE = {"psnr": 1e-4, "ssim": 1e-5}


def metric_tolerance(metric: str) -> float:
    return METRIC_TOLERANCE[metric.split("_")[0]]


class ExportCheckError(LpipsError):
    """The written file failed its own checks (ONNX checker, or ORT vs torch beyond tolerance)."""


def module_spec(module: LPIPSModule, part: str = "fused") -> ModelSpec:
    """The ``ModelSpec`` a module (or one ``part`` of it) exports as: names the file, recorded in its metadata."""
    fmt = module.frame_format
    return ModelSpec(module.net.name, module.version, module.calibrated, module.spatial,
                     "fp16" if module.trunk_dtype == torch.float16 else "fp32",
                     f"{fmt.layout}-{fmt.channels}" if fmt is not None else None, part, module.metrics)


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


def _output_contract(module: LPIPSModule) -> str:
    text = "distance_map: float32 [N,1,H,W]" if module.spatial else "distance: float32 [N]"
    for metric in module.metrics:
        text += f"; {metric}: float32 [N]" + (" in dB (+inf for identical images)" if UNITS[metric] == "dB" else "")
    return text


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
        "output": _output_contract(module),
        "backbone_digest": provenance.backbone_digest,
        "backbone_source": provenance.backbone_source,
        "linear_sha256": provenance.linear_sha256 if spec.calibrated else "",
        "exporter": f"lpips-rt {_exporter_version()}",
        "torch_version": torch.__version__,
        "opset": str(opset),
    }
    meta.update(input_contract(module) if part == "fused" else _part_contract(module, spec))
    if spec.metrics:  # only then: files without metrics keep exactly the metadata they always had
        meta["metrics"] = ",".join(spec.metrics)
        meta["metrics_definition"] = "; ".join(f"{m}: {DEFINITIONS[m]}" for m in spec.metrics)
    if module.trunk_dtype == torch.float16:
        last = module.net.taps[-1]
        meta["precision_detail"] = (f"float16: backbone features[{module.stem_layers}:{last}]; float32: input scaling, "
                                    f"stem features[0:{module.stem_layers}], head, inputs and outputs")
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
    out.update({metric: {0: "N"} for metric in module.metrics})
    return {"img0": image_axes, "img1": image_axes, **out}


def _encode(module: LPIPSModule, img: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return module.encode(module.prepare(img))


# The side of the example images an export is traced with. The graph does not depend on it (every axis is
# dynamic): at 32 and 64 every net's fused, encoder, head, spatial, fp16, uint8-frame and metric graphs were
# byte-identical (2026-12-07). Tracing runs the module once, and a float16 trunk on a CPU runs slowly: vgg's
# fp16 export traced in 1.6 s at 32 against 5.1 s at 64. 32 is at least every net's min_side.
TRACE_SIDE = 32


def _graph_io(module: LPIPSModule, part: str, n: int = 1, h: int = TRACE_SIDE, w: int = TRACE_SIDE, seed: int = 0):
    """(torch graph, example args, input names, output names, dynamic axes) of one part.

    The head's example features come from the encoder, so that tracing sees real shapes.
    """
    if part == "fused":
        return (module, _example_inputs(module, n, h, w, seed), ["img0", "img1"],
                [_output_name(module), *module.metrics], _dynamic_axes(module))
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
    if module.spatial and part != "encoder":  # the tracer leaves the map's channel axis symbolic; it is 1
        model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 1
    model.producer_name, model.producer_version = "lpips-rt", _exporter_version()
    what = {"fused": "perceptual distance", "encoder": "encoder (features of one image batch)",
            "head": "head (distance of two feature sets)"}[part]
    if part == "fused" and module.metrics:
        what += f" with {', '.join(module.metrics)}"
    model.doc_string = (f"LPIPS ({module.net.name}, v{module.version}) {what}; "
                        "see metadata_props for the input/output contract")
    meta = build_metadata(module, provenance, opset, part)
    onnx.helper.set_model_props(model, meta)
    _, meta["graph_sha256"] = scan_model_bytes(model.SerializeToString())
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(tmp))  # < 2 GB: weights stay inside the file
    os.replace(tmp, path)
    log.debug("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)  # lpips-export prints the files it keeps
    return path


def check_shapes(module: LPIPSModule) -> list[tuple[int, int, int]]:
    """Shapes (N, H, W) every export is checked on: the minimum side, odd, non-square, batch > 1."""
    m = module.net.min_side
    return [(1, m, m), (1, 67, 67), (2, 64, 100), (3, 45, 131)]


@dataclass(frozen=True)
class CheckReport:
    """What an export's self-check measured (``float(report)`` is the primary measure)."""

    measure: str  # what ``worst`` is, e.g. "max |ORT - torch|"
    worst: float
    limit: float
    frames_vs_float: float | None = None  # fp32 frame graphs: max |uint8 graph - float32 graph|
    fp16_storage: float | None = None  # fp16 graphs: the same measure with float16 activations, emulated
    metrics: tuple[tuple[str, float, float], ...] = ()  # (metric, max |ORT - torch|, limit) per metric output

    def __float__(self) -> float:
        return self.worst

    # Compare as the number it reports (export_model returned a bare float before).
    def __lt__(self, other) -> bool:
        return self.worst < float(other)

    def __le__(self, other) -> bool:
        return self.worst <= float(other)

    def __gt__(self, other) -> bool:
        return self.worst > float(other)

    def __ge__(self, other) -> bool:
        return self.worst >= float(other)

    def __format__(self, spec: str) -> str:
        return format(self.worst, spec)

    def summary(self) -> str:
        text = f"{self.measure} {self.worst:.2e} (limit {self.limit:.0e})"
        if self.fp16_storage is not None:
            text += f"; with float16 activations (emulated, as on a GPU) {self.fp16_storage:.2e}"
        if self.frames_vs_float is not None:
            text += (f"; uint8 graph vs float32 graph on the runtime's preprocessing: max abs diff "
                     f"{self.frames_vs_float:.2e} (limit {FRAMES_TOLERANCE:.0e})")
        if self.metrics:
            text += "; " + ", ".join(f"{name} max |ORT - torch| {worst:.2e} (limit {limit:.0e})"
                                     for name, worst, limit in self.metrics)
        return text


def verify_export(path: str | Path, module: LPIPSModule, tolerance: float | None = None,
                  reference: LPIPSModule | None = None, part: str = "fused") -> CheckReport:
    """Full ONNX check, then ORT (CPU) against torch on ``check_shapes``.

    ``part``: "fused", or "encoder"/"head" of a split export (float32 only; compared output by output:
    every tap's features, or the head fed the torch features).

    * float32 graphs: max abs difference to ``module`` on random inputs <= ``PARITY_TOLERANCE``;
    * float16 (mixed) graphs: the graph's types must be the mixed ones (float16 backbone, float32
      head and I/O: see ``precision.mixed_precision_problems``), and the max relative error against
      ``reference`` (the float32, float-input module) on photo-like pairs, an all-black vs all-white
      pair included, <= ``FP16_TOLERANCE`` (maps: ``FP16_MAP_TOLERANCE`` of each map's largest value)
      for the file on ORT's CPU provider (which computes float16
      nodes in float32: weight rounding only). The same measure with float16 activations emulated
      (``precision.emulate_fp16_storage``: closer to what a GPU computes) is reported, not enforced:
      it predicts the GPU but is not a property of the file;
    * float32 uint8-frame graphs, in addition: the same frames through this graph and through the
      float32 graph of ``reference`` fed by the runtime's own preprocessing agree to
      ``FRAMES_TOLERANCE`` (both on ORT, so the comparison isolates the in-graph preprocessing);
    * graphs with metrics, in addition: each metric output against the float32 float-input torch module
      (``reference``, else ``module``) on photo-like pairs, an identical pair included, within
      ``METRIC_TOLERANCE``.

    Raises ``ExportCheckError`` on any failure.
    """
    import onnx
    import onnxruntime as ort

    from .precision import mixed_precision_problems

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportCheckError(f"onnx.checker rejected {path}: {str(exc).splitlines()[0]}") from exc
    fp16 = module.trunk_dtype == torch.float16
    if part != "fused" and (fp16 or module.frame_format is not None):
        raise ExportCheckError("split (encoder/head) exports are float32 with float inputs for now")
    if (fp16 or module.frame_format is not None) and reference is None:
        raise ValueError("fp16 and uint8-frame exports are checked against a float32 float-input reference module")
    if fp16:
        problems = mixed_precision_problems(onnx.load(str(path)))
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ExportCheckError(f"{path} is not the mixed-precision graph: {problems[0]}{more}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if fp16:
        limit = tolerance if tolerance is not None else FP16_MAP_TOLERANCE if module.spatial else FP16_TOLERANCE
        worst, emulated = _fp16_error(session, module, reference)
        report = CheckReport("max relative error vs the float32 torch module", worst, limit, fp16_storage=emulated)
    else:
        limit = PARITY_TOLERANCE if tolerance is None else tolerance
        report = CheckReport("max |ORT - torch|", _parity_error(path, session, module, part), limit)
    if not report.worst <= report.limit:  # also catches NaN
        raise ExportCheckError(f"{path}: {report.measure} is {report.worst:.2e} (> {report.limit:.0e})")
    if module.frame_format is not None and not fp16:
        frames = _frames_vs_float_error(session, module, reference)
        report = CheckReport(report.measure, report.worst, report.limit, frames)
        if not frames <= FRAMES_TOLERANCE:
            raise ExportCheckError(f"{path}: the uint8 graph differs from the float32 graph on the runtime's "
                                   f"preprocessing by {frames:.2e} (> {FRAMES_TOLERANCE:.0e})")
    if module.metrics and part == "fused":
        checked = tuple((name, worst, metric_tolerance(name))
                        for name, worst in _metrics_error(session, module, reference).items())
        report = replace(report, metrics=checked)
        for name, worst, limit in checked:
            if not worst <= limit:
                raise ExportCheckError(f"{path}: output {name} differs from the torch module by {worst:.2e} "
                                       f"(> {limit:.0e})")
    return report


def _parity_error(path, session, module: LPIPSModule, part: str = "fused") -> float:
    worst = 0.0
    for n, h, w in check_shapes(module):
        graph, args, inputs, _, _ = _graph_io(module, part, n, h, w, seed=n * 1000 + h)
        with torch.no_grad():
            expected = graph(*args)
        expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
        got = session.run(None, {name: a.numpy() for name, a in zip(inputs, args)})
        if part == "fused":  # the distance only: metrics are checked on photo-like pairs (_metrics_error)
            got, expected = got[:1], expected[:1]
        for g, e in zip(got, expected):
            if g.shape != e.shape:
                raise ExportCheckError(f"{path}: output shape {g.shape} != torch {e.shape} at {n}x{h}x{w}")
            diff = float(np.max(np.abs(g - e)))
            worst = max(worst, diff) if np.isfinite(diff) else float("inf")
        log.debug("  check N=%d %dx%d: max |ort - torch| = %.2e", n, h, w, worst)
    return worst


def _lpips_output(out):
    """A module's distance (or map): its output, or the first of its outputs when it has metrics."""
    return out[0] if isinstance(out, tuple) else out


def _graph_inputs(module: LPIPSModule, images: list[np.ndarray]) -> np.ndarray:
    """uint8 RGB images -> what ``module``'s graph takes (frames, or the runtime's float32 [-1,1] NCHW)."""
    from .check_images import frame_batch, unit_batch

    fmt = module.frame_format
    return unit_batch(images) if fmt is None else frame_batch(images, fmt.layout, fmt.channels)


def _fp16_error(session, module: LPIPSModule, reference: LPIPSModule) -> tuple[float, float]:
    """(max relative error of the ORT session, of the emulated float16 storage) vs ``reference``."""
    from .check_images import check_pairs, unit_batch
    from .precision import emulate_fp16_storage, relative_error

    emulated = emulate_fp16_storage(reference, module.stem_layers)
    worst = worst_emulated = 0.0
    for n, h, w in check_shapes(module):
        first, second = check_pairs(n, h, w, seed=n * 1000 + h)
        a, b = torch.from_numpy(unit_batch(first)), torch.from_numpy(unit_batch(second))
        with torch.no_grad():
            expected, approx = _lpips_output(reference(a, b)).numpy(), _lpips_output(emulated(a, b)).numpy()
        got = session.run(None, {"img0": _graph_inputs(module, first), "img1": _graph_inputs(module, second)})[0]
        rel, rel_emulated = relative_error(got, expected), relative_error(approx, expected)
        log.debug("  check N=%d %dx%d: max relative error vs fp32 torch = %.2e (float16 activations, emulated: "
                 "%.2e)", n, h, w, rel, rel_emulated)
        worst, worst_emulated = max(worst, rel), max(worst_emulated, rel_emulated)
    return worst, worst_emulated


def _metric_gap(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| where equal values (+inf for identical images included) count as 0; NaN as inf."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf where both are +inf: masked below
        gap = np.where(got == expected, 0.0, np.abs(got - expected))
    return float(np.max(np.nan_to_num(gap, nan=np.inf)))


def _metrics_error(session, module: LPIPSModule, reference: LPIPSModule | None) -> dict[str, float]:
    """Per metric output: max |ORT - torch| over ``check_shapes`` of photo-like pairs plus one identical
    pair, fed as the graph takes them (frames or [-1,1]); torch is ``reference`` (float32, float input)
    or ``module`` itself."""
    from .check_images import check_pairs, unit_batch

    torch_module = reference if reference is not None else module
    worst = dict.fromkeys(module.metrics, 0.0)
    for n, h, w in check_shapes(module):
        first, second = check_pairs(n, h, w, seed=n * 1000 + h + 1)
        first, second = first + [first[0]], second + [first[0]]
        with torch.no_grad():
            expected = torch_module(torch.from_numpy(unit_batch(first)), torch.from_numpy(unit_batch(second)))[1:]
        got = session.run(list(module.metrics), {"img0": _graph_inputs(module, first),
                                                 "img1": _graph_inputs(module, second)})
        for name, g, e in zip(module.metrics, got, expected):
            worst[name] = max(worst[name], _metric_gap(g, e.numpy()))
        log.debug("  check N=%d %dx%d: %s", n + 1, h, w,
                 ", ".join(f"{name} max |ort - torch| = {worst[name]:.2e}" for name in module.metrics))
    return worst


def _frames_vs_float_error(session, module: LPIPSModule, reference: LPIPSModule) -> float:
    import tempfile

    import onnxruntime as ort

    from .check_images import check_pairs, unit_batch

    net = reference.net
    provenance = Provenance("export check", net.backbone_digest, net.linear_sha256.get(reference.version, ""))
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="lpips-check-") as tmp:
        twin_path = export_onnx(reference, provenance, Path(tmp) / "float-twin.onnx")
        twin = ort.InferenceSession(str(twin_path), providers=["CPUExecutionProvider"])
        for n, h, w in check_shapes(module):
            first, second = check_pairs(n, h, w, seed=n * 1000 + w)
            got = session.run(None, {"img0": _graph_inputs(module, first), "img1": _graph_inputs(module, second)})[0]
            expected = twin.run(None, {"img0": unit_batch(first), "img1": unit_batch(second)})[0]
            diff = float(np.max(np.abs(got - expected)))
            log.debug("  check N=%d %dx%d: max |uint8 graph - float32 graph| = %.2e", n, h, w, diff)
            worst = max(worst, diff) if np.isfinite(diff) else float("inf")
    return worst


def export_model(spec: ModelSpec, out_dir: str | Path = "models", opset: int = DEFAULT_OPSET,
                 backbone_weights: str | Path | None = None, check: bool = True,
                 portable: bool = True) -> tuple[Path, CheckReport | None]:
    """Build ``spec`` (any part) from verified weights, write ``out_dir/<spec.filename()>``, and check it.

    ``portable=False`` writes the natural graph form (see ``LPIPSModule``), for measurements only: the
    file name does not say which form it holds.

    Returns (path, the check's report, or None when unchecked; ``float(report)`` is its primary
    measure). A file that fails its check is deleted, so no unverified export is left where the
    runtime would pick it up.
    """
    from .build import build_lpips
    from .module import FrameFormat

    frames = FrameFormat(*spec.frames.split("-")) if spec.frames else None
    trunk = torch.float16 if spec.precision == "fp16" else torch.float32
    # An encoder needs no linear layers; the module is built calibrated only where the spec has them.
    module, provenance = build_lpips(spec.net, spec.version, spec.calibrated, spec.spatial, trunk_dtype=trunk,
                                     frame_format=frames, backbone_weights=backbone_weights, portable=portable,
                                     metrics=spec.metrics)
    path = export_onnx(module, provenance, Path(out_dir) / spec.filename(), opset=opset, part=spec.part)
    if not check:
        return path, None
    reference = None
    if frames is not None or trunk != torch.float32:
        reference, _ = build_lpips(spec.net, spec.version, spec.calibrated, spec.spatial,
                                   backbone_weights=backbone_weights, metrics=spec.metrics)
    try:
        return path, verify_export(path, module, reference=reference, part=spec.part)
    except ExportCheckError:
        path.unlink(missing_ok=True)
        raise
