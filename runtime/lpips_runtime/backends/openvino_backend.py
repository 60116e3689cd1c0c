"""OpenVINO backend (CPU): our fp32 ONNX exports compiled by OpenVINO, computed in fp32 or in bfloat16.

bf16 runs only where the CPU computes bfloat16 natively (OpenVINO lists ``BF16`` among the CPU's
``OPTIMIZATION_CAPABILITIES``: AVX512_BF16 on AMD Zen 4/5, AMX on Intel Sapphire Rapids and later).
After every compilation the compiled model is read back: its ``INFERENCE_PRECISION_HINT`` and the
precision each of its convolutions actually runs in must be the ones asked for, so that a result
reported as bf16 was computed in bf16 and one reported as fp32 in fp32. (OpenVINO's own default on
such CPUs is bf16: the fp32 hint is always set explicitly.)

In bf16 the graph is cut after its first ReLU: the stem (input scaling, first convolution, ReLU)
runs in fp32 and everything after it in bf16. Rounding the input image itself to bfloat16's 8-bit
mantissa costs about a grey level after the scaling layer, noise that differs between the two images
and that LPIPS measures: without the fp32 stem no net met the accuracy bound on natural images (max
abs error 1.2-3.7e-3 against <= 1e-3 with it); the stem costs from nothing (vgg) to a third or more of
bf16's time (squeeze, whose first feature map is the largest). benchmarks/README.md, "OpenVINO and bf16".

Shapes: see ``SHAPE_MODE``. Compiled models are also written to OpenVINO's model cache
(``<lpips-rt cache>/openvino``), so that a second process skips compilation.
"""
from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..model.cachedir import default_cache_dir
from ..errors import BackendError, ModelFileError
from ..model.modelfile import ModelSpec
from ..optional import require
from ..system import physical_cores
from .base import Backend

# lpips-rt's precision name -> OpenVINO's element type name
_OV_TYPES = {"fp32": "f32", "bf16": "bf16"}
# "dynamic": one compiled model per graph serves every (N, H, W); "static": one compiled model per input
# shape, reshaped before compilation, the most recent MAX_COMPILED_SHAPES kept (see benchmarks/README.md,
# "OpenVINO start-up", for the measurements behind the choice).
SHAPE_MODE = "dynamic"
MAX_COMPILED_SHAPES = 8


def require_openvino():
    return require("openvino", "openvino", "the OpenVINO backend")


def openvino_cache_dir() -> Path:
    """Where OpenVINO keeps compiled models between processes (``CACHE_DIR``)."""
    return default_cache_dir() / "openvino"


# -- what the CPU and a compiled model say ------------------------------------------------------------


def cpu_capabilities(core) -> list[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (e.g. ["BF16", "FP32", "INT8", ...])."""
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def check_cpu_supports(core, precision: str) -> None:
    """``BackendError`` (one line, naming the missing feature and the fix) if the CPU cannot compute ``precision``."""
    if precision == "bf16":
        caps = cpu_capabilities(core)
        if "BF16" not in caps:
            raise BackendError(f"bf16 needs a CPU with native bfloat16 (AVX512_BF16 or AMX); OpenVINO finds only "
                               f"{', '.join(caps) or 'none'} on this one: use --precision fp32")


def runtime_precisions(compiled) -> Counter:
    """(layer type, precision it runs in) -> count, over the nodes of a compiled model's runtime graph."""
    found: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        found[(info["layerType"].astype(str), info["runtimePrecision"].astype(str))] += 1
    return found


def check_compiled(compiled, precision: str, where: str) -> None:
    """Refuse a compiled model that does not compute in ``precision`` (read back from OpenVINO)."""
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    convs = {p: n for (layer, p), n in runtime_precisions(compiled).items() if layer == "Convolution"}
    want = _OV_TYPES[precision]
    if hint != want or not convs or set(convs) != {want}:
        got = ", ".join(f"{n} in {p}" for p, n in sorted(convs.items())) or "none"
        raise BackendError(f"OpenVINO compiled {where} with inference precision {hint} (convolutions: {got}), "
                           f"not the {precision} asked for: use --precision fp32 or another OpenVINO version")


# -- graph surgery --------------------------------------------------------------------------------------


def _ancestors(results) -> set:
    """Every node ``results`` depend on, themselves included (OpenVINO nodes hash by identity)."""
    seen, stack = set(), list(results)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(value.get_node() for value in node.input_values())
    return seen


def _used_parameters(results, parameters) -> list:
    """Those of ``parameters`` that ``results`` depend on."""
    seen = _ancestors(results)
    return [p for p in parameters if p in seen]


def split_stem(ov, model):
    """(stem, rest, cut name, order) of ``model`` cut after its first ReLU, or None if it has none (a head).

    ``stem``: the original inputs -> the first ReLU's output, then the original outputs that do not
    depend on it (the PSNR/SSIM outputs of an export with --metrics: computed from the inputs alone, they
    stay in float32 with the stem); ``rest``: that output (a new input named ``cut name``) and any
    original input it still reads (e.g. an image whose shape sizes a map) -> the other original outputs.
    ``order``: for each original output, (0 for the stem or 1 for the rest, its index there)."""
    relu = next((op for op in model.get_ordered_ops() if op.get_type_name() == "Relu"), None)
    if relu is None:
        return None
    cut = relu.output(0)
    results = model.get_results()
    early = [i for i, result in enumerate(results) if relu not in _ancestors([result])]
    late = [i for i in range(len(results)) if i not in early]
    stem = ov.Model([cut, *(results[i].input_value(0) for i in early)], model.get_parameters(), "lpips-stem")
    rest = model.clone()
    relu_rest = next(op for op in rest.get_ordered_ops() if op.get_friendly_name() == relu.get_friendly_name())
    name = "lpips_stem_out"
    param = ov.opset13.parameter(cut.get_partial_shape(), cut.get_element_type(), name=name)
    param.output(0).set_names({name})
    for target in list(relu_rest.output(0).get_target_inputs()):
        target.replace_source_output(param.output(0))
    rest_results = [rest.get_results()[i] for i in late]
    params = [param] + _used_parameters(rest_results, rest.get_parameters())
    order = [(0, 1 + early.index(i)) if i in early else (1, late.index(i)) for i in range(len(results))]
    return stem, ov.Model(rest_results, params, "lpips-rest"), name, order


# -- compiled models and their infer requests -------------------------------------------------------------


class _Compiled:
    """One compiled model and a pool of its infer requests (an infer request serves one caller at a time;
    requests are made on demand and reused; with one CPU stream they run one after another)."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        self._idle: list = []
        self._lock = threading.Lock()

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            request = self._idle.pop() if self._idle else self.compiled.create_infer_request()
        try:
            try:
                out = request.infer({name: feeds[name] for name in self.input_names}, share_inputs=True,
                                    share_outputs=False)  # copies: the request's buffers are reused by the next call
            except RuntimeError as exc:
                raise _cannot_run(feeds, self.input_names, exc) from exc
            return [np.asarray(out[o]) for o in self.compiled.outputs]
        finally:
            with self._lock:
                self._idle.append(request)


def _cannot_run(feeds: dict[str, np.ndarray], names: list[str], exc: Exception) -> BackendError:
    """One line naming the shapes and OpenVINO's reason (the last line of its report), not a C++ trace."""
    shapes = ", ".join("x".join(map(str, feeds[n].shape)) for n in names)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return BackendError(f"OpenVINO cannot run inputs of shape {shapes}: {lines[-1] if lines else exc} "
                        "(--backend ort runs it)")


class _ShapeGate:
    """Refuses, before any inference, input shapes that OpenVINO's shape inference rejects.

    Why: OpenVINO 2026.4's CPU plugin refuses a ceil-mode MaxPool whose input is smaller than its kernel
    (squeeze below 25x25, which ONNX Runtime scores), but only when it runs on more than one thread; on one
    thread it returns a wrong distance without a word. And once an inference has failed, the compiled model
    gives wrong distances for every later input. So the model's own ``reshape`` (shape inference without
    compiling) is asked first, once per new smallest shape: a conv/pool graph's intermediate sizes never
    shrink when an input grows, so a shape at least as large on every axis as one that passed passes too.
    """

    KEEP = 16  # shapes that passed, kept to answer later calls without a probe

    def __init__(self, model, names: list[str]):
        self.model, self.names = model, names
        self._passed: list[tuple[tuple[int, ...], ...]] = []
        self._lock = threading.Lock()

    def check(self, feeds: dict[str, np.ndarray]) -> None:
        shapes = tuple((1, *feeds[n].shape[1:]) for n in self.names)  # the batch size changes no spatial size
        with self._lock:
            if any(all(a >= b for s, p in zip(shapes, passed) for a, b in zip(s, p)) for passed in self._passed):
                return
        probe = self.model.clone()
        try:
            probe.reshape({name: list(shape) for name, shape in zip(self.names, shapes)})
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and others with a C++ report
            raise _cannot_run(feeds, self.names, exc) from exc
        with self._lock:
            self._passed = [shapes, *self._passed][:self.KEEP]


class _Pipeline:
    """The compiled form of one graph for one shape key: the whole graph, or (bf16) an fp32 stem and a bf16 rest
    (``order``: where each of the graph's outputs comes from, as ``split_stem`` gives it)."""

    def __init__(self, parts: list[_Compiled], cut_name: str | None, order: list[tuple[int, int]] | None = None):
        self.parts, self.cut_name, self.order = parts, cut_name, order

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if len(self.parts) == 1:
            return self.parts[0].infer(feeds)
        stem = self.parts[0].infer(feeds)
        outputs = (stem, self.parts[1].infer({**feeds, self.cut_name: stem[0]}))
        return [outputs[part][index] for part, index in self.order]


class OpenVinoGraph:
    """An ONNX graph compiled by OpenVINO for the CPU: named inputs -> every output, in ``output_names``
    order, as float32 host arrays owned by the caller. Thread-safe.

    ``precision``: "fp32", or "bf16" (the fp32 stem, the rest in bfloat16; ``BackendError`` on a CPU
    without native bfloat16). ``threads``: OpenVINO's inference threads (default: physical cores).
    ``shape_mode`` ("dynamic"/"static", default ``SHAPE_MODE``) and ``fp32_stem=False`` (bf16 everywhere)
    exist for the benchmarks that justify the defaults.
    """

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, precision: str = "fp32",
                 shape_mode: str | None = None, cache_dir: Path | None = None, fp32_stem: bool = True):
        if device != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU, not '{device}': use --device cpu")
        if precision not in _OV_TYPES:
            raise BackendError(f"OpenVINO computes in {' or '.join(_OV_TYPES)}, not '{precision}'")
        self.ov = require_openvino()
        self.path, self.precision = Path(path), precision
        self.shape_mode = shape_mode or SHAPE_MODE
        self.fp32_stem = fp32_stem
        self.core = self.ov.Core()
        check_cpu_supports(self.core, precision)
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError with a multi-line report
            raise ModelFileError(f"OpenVINO cannot read {path}: {str(exc).strip().splitlines()[0]}") from exc
        self.input_names = [i.get_any_name() for i in self.model.inputs]
        self.output_names = [o.get_any_name() for o in self.model.outputs]
        cache = Path(cache_dir) if cache_dir is not None else openvino_cache_dir()
        self._config = {"INFERENCE_NUM_THREADS": threads or physical_cores(), "PERFORMANCE_HINT": "LATENCY",
                        "CACHE_DIR": str(cache)}
        self._compiled: OrderedDict[tuple, _Pipeline] = OrderedDict()
        self._lock = threading.Lock()
        self._gate = _ShapeGate(self.model, self.input_names)

    def _compile(self, model, precision: str, where: str) -> _Compiled:
        try:
            compiled = self.core.compile_model(model, "CPU", {**self._config,
                                                              "INFERENCE_PRECISION_HINT": _OV_TYPES[precision]})
        except Exception as exc:
            raise BackendError(f"OpenVINO cannot compile {where}: {str(exc).strip().splitlines()[0]}") from exc
        check_compiled(compiled, precision, where)
        return _Compiled(compiled)

    def _build(self, shapes: dict[str, tuple] | None) -> _Pipeline:
        model = self.model.clone()
        if shapes is not None:
            model.reshape({name: list(shape) for name, shape in shapes.items()})
        where = self.path.name + ("" if shapes is None else " for " + ", ".join(
            f"{n} {list(s)}" for n, s in shapes.items()))
        parts = split_stem(self.ov, model) if self.precision == "bf16" and self.fp32_stem else None
        if parts is None:
            return _Pipeline([self._compile(model, self.precision, where)], None)
        stem, rest, cut, order = parts
        return _Pipeline([self._compile(stem, "fp32", f"the stem of {where}"),
                          self._compile(rest, "bf16", where)], cut, order)

    def _pipeline(self, feeds: dict[str, np.ndarray]) -> _Pipeline:
        shapes = {name: tuple(feeds[name].shape) for name in self.input_names} if self.shape_mode == "static" else None
        key = tuple(shapes.items()) if shapes else ()
        with self._lock:  # one compilation at a time: concurrent first calls of a shape compile it once
            pipeline = self._compiled.get(key)
            if pipeline is None:
                pipeline = self._compiled[key] = self._build(shapes)
                while len(self._compiled) > MAX_COMPILED_SHAPES:
                    self._compiled.popitem(last=False)  # callers still running it keep their reference
            else:
                self._compiled.move_to_end(key)
            return pipeline

    def compile_now(self) -> None:
        """Compile the dynamic-shape model now rather than on the first call (no-op for static shapes)."""
        if self.shape_mode != "static":
            self._pipeline({})

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise BackendError(f"{self.path.name} needs inputs {', '.join(missing)}")
        self._gate.check(feeds)
        pipeline = self._pipeline(feeds)
        try:
            return pipeline.run(feeds)
        except BackendError:
            self._forget(pipeline)  # a compiled model whose inference failed gives wrong results from then on
            raise

    def _forget(self, pipeline: _Pipeline) -> None:
        """Drop ``pipeline`` from the compiled models (if still there): the next call compiles afresh."""
        with self._lock:
            for key, held in list(self._compiled.items()):
                if held is pipeline:
                    del self._compiled[key]

    def close(self) -> None:
        with self._lock:
            self._compiled.clear()


class OpenVinoBackend(Backend):
    """The fused graph on OpenVINO (``lpips-rt[openvino]``), in fp32 or bf16 (``inference_precision``)."""

    name = "openvino"
    # int8: declared so that --precision int8 reaches the per-net check (lpips_runtime.model.int8), which offers
    # it for no net yet; the graph itself computes fp32 or bf16.
    inference_precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "int8")
    export_precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # the fp16 export is for GPUs

    def __init__(self, spec: ModelSpec, path: Path | None, device: str = "cpu", threads: int | None = None,
                 inference_precision: str = "fp32"):
        super().__init__(spec, path, device, threads)
        if path is None:
            raise BackendError("the openvino backend needs an exported .onnx file")
        self.inference_precision = inference_precision
        self.graph = OpenVinoGraph(path, device, threads, inference_precision)
        self.check_outputs(self.graph.output_names)  # "distance" (or "distance_map"), then any metrics
        self.graph.compile_now()  # compilation problems (and the precision check) surface when opened

    def infer(self, img0: np.ndarray, img1: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.graph.run({"img0": img0, "img1": img1})))

    def close(self) -> None:
        self.graph.close()
