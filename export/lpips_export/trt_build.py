"""Build a TensorRT engine from an lpips-rt ONNX export, with its sidecar: full TensorRT (on the GPU it
is for) or TensorRT for RTX (no GPU needed: its CPU-only ahead-of-time build; the GPU-specific kernels
are compiled on the user's GPU when the engine is loaded).

The network is strongly typed: every layer runs in the type the ONNX graph gives it, so the mixed
graph (float16 backbone, float32 head) becomes an FP16 engine whose head stays float32. The weak
typing of old (``BuilderFlag.FP16``, precision constraints) is deprecated in TensorRT 10.12, removed in
11 and absent from TensorRT-RTX, and it would let TensorRT pick float16 for the head. One optimisation
profile covers both inputs. The builder's detailed log gives what the sidecar records beyond the
inputs: the type each ONNX node runs in and the device memory the profile needs.

CI builds real TensorRT-RTX engines (tests/export/test_trt_engines.py); full TensorRT cannot be
installed on our test machines, so its GPU query and timing cache are checked against a fake module.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from lpips_runtime.backends import cuda_mem

from lpips_runtime.model import trt_flavour
from lpips_runtime.model.engine_meta import (
    TIMING_CACHE_NAME,
    EngineSidecar,
    Profile,
    binding_shape,
    engine_path_for,
    file_sha256,
    write_sidecar,
)
from lpips_runtime.errors import LpipsError
from lpips_runtime.model.modelfile import read_model
from lpips_runtime.model.trt_logger import capturing_logger

log = logging.getLogger("lpips_export")

GIB = 1 << 30


class EngineBuildError(LpipsError):
    """TensorRT could not parse the ONNX file or build the engine (the message carries its errors)."""


def require_tensorrt(flavour: str | None = None):
    """The TensorRT module of ``flavour`` (``full``/``rtx``; None/``auto``: the installed one)."""
    chosen = trt_flavour.pick(flavour)
    return trt_flavour.load(chosen, "building a TensorRT engine (--trt)")


def network_flags(trt) -> int:
    """Creation flags of a strongly typed network (TensorRT 10.x needs the flag; 11 and RTX are strongly typed anyway)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def default_timing_cache(models_dir: str | Path) -> Path:
    return Path(models_dir) / TIMING_CACHE_NAME


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- what the builder's log says -------------------------------------------------------------------

_FLOAT_TYPES = {"Float": "float32", "Half": "float16"}


def layer_precisions(messages: list[str]) -> dict[str, str]:
    """ONNX node name -> the type it runs in, from the engine layer lines of a DETAILED build log
    ("Name: ..., LayerType: ..., Inputs: [...Datatype: Half...], Outputs: [...], Metadata: [ONNX Layer: /x]").

    A layer's type is that of its first input and its outputs (integer and uint8 tensors aside):
    "float16", "float32", or "mixed" for a layer that converts between the two (a fused cast)."""
    result: dict[str, str] = {}
    for line in (line for message in messages for line in message.splitlines()):
        if "LayerType:" not in line or "ONNX Layer:" not in line:
            continue
        inputs, _, rest = line.partition("Outputs:")
        first = [t for t in re.findall(r"Datatype: (\w+)", inputs.partition("Inputs:")[2]) if t in _FLOAT_TYPES][:1]
        outs = [t for t in re.findall(r"Datatype: (\w+)", rest.partition("TacticName:")[0]) if t in _FLOAT_TYPES]
        kinds = {_FLOAT_TYPES[t] for t in first + outs}
        kind = kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "other"
        for node in re.findall(r"ONNX Layer: ([^\]]+)\]", line):
            result[node.strip()] = kind
    return result


def _logged_bytes(messages: list[str], label: str) -> int:
    """The last "<label>: N bytes" the builder logged (0 if none)."""
    found = [int(m) for line in messages for m in re.findall(rf"{re.escape(label)}: (\d+) bytes", line)]
    return found[-1] if found else 0


def _requested_bytes(messages: list[str]) -> int | None:
    """The allocation an out-of-memory build failed on ("Requested size was N bytes"), if it did."""
    found = [int(m) for line in messages for m in re.findall(r"Requested size was (\d+) bytes", line)]
    return max(found) if found else None


def network_io(network) -> dict[str, dict]:
    """The parsed network's inputs and outputs: name -> {"mode", "dtype", "shape"} (-1: dynamic), as the
    engine will have them (what the C++ example and the backend bind)."""
    io = {}
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor = get(i)
            io[tensor.name] = {"mode": mode, "dtype": str(tensor.dtype).rsplit(".", 1)[-1].lower(),
                               "shape": [int(d) for d in tensor.shape]}
    return io


# -- the build ------------------------------------------------------------------------------------

def _targets(trt, flavour: trt_flavour.Flavour, config, sms: tuple[str, ...], device: int) -> tuple[tuple[str, ...], str]:
    """Point ``config`` at the engine's GPUs; return (compute capabilities, GPU name or "")."""
    if flavour is trt_flavour.FULL:
        if sms:
            raise LpipsError("--trt-sm picks TensorRT-RTX targets; full TensorRT builds for the GPU it runs on")
        rt = cuda_mem.runtime("trt")
        gpu = cuda_mem.device_info(rt, device)
        cuda_mem.set_device(rt, device)
        return (trt_flavour.sm_of(gpu.compute_capability),), gpu.name
    if not sms:  # TensorRT-RTX's default: portable across its Ampere-and-newer targets
        return trt_flavour.RTX_PORTABLE, ""
    config.num_compute_capabilities = len(sms)
    for i, sm in enumerate(sms):
        config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{sm}"), i)
    return sms, ""


def build_engine(onnx_path: str | Path, profile: Profile | None = None, timing_cache: str | Path | None = None,
                 workspace_gib: float | None = None, device: int = 0, flavour: str | None = None,
                 sms: tuple[str, ...] = ()) -> tuple[Path, EngineSidecar]:
    """Build ``<onnx stem>.engine`` and its ``.engine.json`` sidecar next to ``onnx_path``.

    ``profile``: the (N, H, W) range the engine accepts (default ``Profile.default``);
    ``workspace_gib``: the builder's memory limit (None: TensorRT's own default, the GPU's memory);
    ``flavour``: ``full`` or ``rtx`` (None: the installed one, full TensorRT where both are);
    ``sms``: TensorRT-RTX target compute capabilities ("86", "89"; empty: its portable set);
    ``timing_cache`` (full TensorRT only; TensorRT-RTX has none): loaded if present and saved back after
    the build (default: the models folder's ``lpips-rt.timing-cache``).
    Raises ``EngineBuildError`` with TensorRT's own messages on failure (one naming --max-shape and
    --workspace when the profile needs more memory than allowed), ``MissingExtraError`` without TensorRT.
    """
    chosen = trt_flavour.pick(flavour)
    trt = trt_flavour.load(chosen, "building a TensorRT engine (--trt)")
    onnx_path = Path(onnx_path)
    info = read_model(onnx_path)  # an lpips-rt export, digest-checked: the sidecar describes it
    profile = profile or Profile.default(info.net)
    profile.validate(info.net)

    logger = capturing_logger(trt, keep_all=True)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    targets, gpu_name = _targets(trt, chosen, config, tuple(sms), device)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or [logger.errors()]
        raise EngineBuildError(f"{chosen.name} could not parse {onnx_path}: {' | '.join(errors[:3])}")

    if workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * GIB))
    workspace = int(config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE))
    # No TF32: it would round the float32 stem and head to float16's mantissa (the float16 layers are
    # typed by the graph; no precision flag is set, and BuilderFlag.FP16 is never used).
    config.clear_flag(trt.BuilderFlag.TF32)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the log then lists each layer's types
    optimisation = builder.create_optimization_profile()
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if set(inputs) not in ({"img0", "img1"}, {"img"}):
        raise EngineBuildError(f"{onnx_path} has inputs {', '.join(inputs)}: engines are built from fused graphs "
                               "(img0, img1) and encoders (img); a split head runs on ONNX Runtime")
    for name in inputs:
        optimisation.set_shape(name, *(binding_shape(s, info.input_layout) for s in (profile.min, profile.opt, profile.max)))
    config.add_optimization_profile(optimisation)
    cache = None
    if chosen is trt_flavour.FULL:  # TensorRT-RTX's timing-cache calls are deprecated no-ops
        timing_cache = Path(timing_cache) if timing_cache is not None else default_timing_cache(onnx_path.parent)
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building %s %s engine from %s (for %s; %s)", chosen.name, trt.__version__, onnx_path.name,
             gpu_name or "compute capability " + ", ".join(targets), profile.describe())
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        requested = _requested_bytes(logger.messages)
        if requested is not None:
            raise EngineBuildError(
                f"the profile's maximum {'x'.join(map(str, profile.max))} (NxHxW) needs {requested / GIB:.2f} GiB, "
                f"more than the builder's workspace ({workspace / GIB:.2f} GiB): lower --max-shape or raise --workspace")
        raise EngineBuildError(f"{chosen.name} could not build an engine from {onnx_path}: {logger.errors()}")
    if cache is not None:
        _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))

    engine_path = engine_path_for(onnx_path)
    data = bytes(serialized)
    _atomic_write(engine_path, data)
    sidecar = EngineSidecar(
        tensorrt_flavour=chosen.name, tensorrt_version=trt.__version__, targets=targets, gpu_name=gpu_name,
        profile=profile, source_onnx=onnx_path.name, source_onnx_sha256=file_sha256(onnx_path),
        input_dtype=info.input_dtype, input_layout=info.input_layout, precision=info.precision,
        workspace_bytes=workspace, activation_bytes=_logged_bytes(logger.messages, "Total Activation Memory"),
        weights_bytes=_logged_bytes(logger.messages, "Total Weights Memory"),
        layer_precisions=layer_precisions(logger.messages), engine_sha256=file_sha256(engine_path),
        io=network_io(network))
    write_sidecar(engine_path, sidecar)
    log.info("wrote %s (%.1f MB; needs %.2f GiB of activations at its maximum) and its sidecar", engine_path,
             len(data) / 1e6, sidecar.activation_bytes / GIB)
    return engine_path, sidecar
