"""Build a TensorRT engine from an lpips-rt ONNX export, with its sidecar.

The network is strongly typed: every layer runs in the type the ONNX graph gives it, so the mixed
graph (float16 backbone, float32 head) becomes an FP16 engine whose head stays float32. The weak
typing of old (``BuilderFlag.FP16``, precision constraints) is deprecated in TensorRT 10.12 and
removed in 11, and it would let TensorRT pick float16 for the head. One optimisation profile covers
both inputs; a timing cache shared by all builds in a folder makes rebuilds fast.

Written to the TensorRT 10/11 documented API, not exercised in CI: TensorRT cannot be installed on
our test machines. The calls it makes are checked against a fake ``tensorrt`` module in the tests.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from lpips_runtime import cuda_mem
from lpips_runtime.engine_meta import (
    TIMING_CACHE_NAME,
    EngineSidecar,
    Profile,
    binding_shape,
    engine_path_for,
    file_sha256,
    write_sidecar,
)
from lpips_runtime.errors import LpipsError
from lpips_runtime.modelfile import read_model
from lpips_runtime.optional import require
from lpips_runtime.trt_logger import capturing_logger

log = logging.getLogger("lpips_export")

DEFAULT_WORKSPACE_GIB = 4.0


class EngineBuildError(LpipsError):
    """TensorRT could not parse the ONNX file or build the engine (the message carries its errors)."""


def require_tensorrt():
    return require("tensorrt", "trt", "building a TensorRT engine (--trt)")


def network_flags(trt) -> int:
    """Creation flags of a strongly typed network (TensorRT 10.x needs the flag; 11 is strongly typed anyway)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def default_timing_cache(models_dir: str | Path) -> Path:
    return Path(models_dir) / TIMING_CACHE_NAME


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_engine(onnx_path: str | Path, profile: Profile | None = None, timing_cache: str | Path | None = None,
                 workspace_gib: float = DEFAULT_WORKSPACE_GIB, device: int = 0) -> tuple[Path, EngineSidecar]:
    """Build ``<onnx stem>.engine`` and its ``.engine.json`` sidecar next to ``onnx_path``.

    ``profile``: the (N, H, W) range the engine accepts (default ``Profile.default``);
    ``timing_cache``: loaded if present and saved back after the build (default: the models folder's
    ``lpips-rt.timing-cache``). Raises ``EngineBuildError`` with TensorRT's own messages on failure,
    ``MissingExtraError`` without ``tensorrt``.
    """
    trt = require_tensorrt()
    onnx_path = Path(onnx_path)
    info = read_model(onnx_path)  # an lpips-rt export, digest-checked: the sidecar describes it
    profile = profile or Profile.default(info.net)
    profile.validate(info.net)
    timing_cache = Path(timing_cache) if timing_cache is not None else default_timing_cache(onnx_path.parent)
    rt = cuda_mem.runtime("trt")
    gpu = cuda_mem.device_info(rt, device)
    cuda_mem.set_device(rt, device)

    logger = capturing_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or [logger.errors()]
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {' | '.join(errors[:3])}")

    config = builder.create_builder_config()
    workspace = int(workspace_gib * (1 << 30))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    # No TF32: it would round the float32 stem and head to float16's mantissa (the float16 layers are
    # typed by the graph; no precision flag is set, and BuilderFlag.FP16 is never used).
    config.clear_flag(trt.BuilderFlag.TF32)
    optimisation = builder.create_optimization_profile()
    for name in ("img0", "img1"):
        optimisation.set_shape(name, *(binding_shape(s, info.input_layout) for s in (profile.min, profile.opt, profile.max)))
    config.add_optimization_profile(optimisation)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building TensorRT %s engine from %s (%s; %s)", trt.__version__, onnx_path.name, gpu.name,
             profile.describe())
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path}: {logger.errors()}")
    _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))

    engine_path = engine_path_for(onnx_path)
    _atomic_write(engine_path, bytes(serialized))
    sidecar = EngineSidecar(
        tensorrt_version=trt.__version__, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
        profile=profile, source_onnx=onnx_path.name, source_onnx_sha256=file_sha256(onnx_path),
        input_dtype=info.input_dtype, input_layout=info.input_layout, precision=info.precision,
        workspace_bytes=workspace)
    write_sidecar(engine_path, sidecar)
    log.info("wrote %s (%.1f MB) and its sidecar", engine_path, engine_path.stat().st_size / 1e6)
    return engine_path, sidecar
