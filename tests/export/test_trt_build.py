"""The engine builder's full-TensorRT path against a fake ``tensorrt`` (full TensorRT cannot be installed
here): the GPU query, the timing cache, the calls it makes and its errors. Real TensorRT-RTX builds are in
test_trt_engines.py; ``test_real_build`` runs full TensorRT where there is one (marked trt)."""
from __future__ import annotations

import json
import sys

import pytest

import fake_cuda
import fake_tensorrt
from lpips_export.trt_build import EngineBuildError, build_engine, default_timing_cache
from lpips_runtime.model.engine_meta import Profile, file_sha256, read_sidecar
from lpips_runtime.errors import MissingExtraError
from lpips_runtime.model.modelfile import ModelSpec
from lpips_runtime.model.nets import get_net


@pytest.fixture
def trt(monkeypatch):
    fake_cuda.install(monkeypatch)
    return fake_tensorrt.install(monkeypatch)


@pytest.fixture
def onnx_copy(tmp_path, exported_spec):
    """factory(spec) -> a copy of its export in a fresh folder (engines are written next to it)."""

    def get(spec):
        src = exported_spec(spec)
        dst = tmp_path / src.name
        dst.write_bytes(src.read_bytes())
        return dst

    return get


def test_build_writes_engine_sidecar_and_timing_cache(trt, onnx_copy):
    onnx_path = onnx_copy(ModelSpec("alex", precision="fp16"))
    engine, sidecar = build_engine(onnx_path, workspace_gib=2)
    assert engine == onnx_path.with_suffix(".engine") and engine.read_bytes() == trt.build_result
    assert read_sidecar(engine) == sidecar
    assert (sidecar.tensorrt_flavour, sidecar.tensorrt_version, sidecar.gpu_name, sidecar.targets) == \
        ("tensorrt", "10.13.0.35", "NVIDIA H100 80GB HBM3", ("90",))
    assert sidecar.engine_sha256 == file_sha256(engine) and sidecar.workspace_bytes == 2 << 30
    assert sidecar.io["img0"] == {"mode": "input", "dtype": "float", "shape": [-1, 3, -1, -1]}
    assert sidecar.source_onnx_sha256 == file_sha256(onnx_path) and sidecar.precision == "fp16"
    assert sidecar.profile == Profile.default(get_net("alex"))
    assert default_timing_cache(onnx_path.parent).is_file()
    assert ("set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 2 << 30) in trt.calls


def test_network_is_strongly_typed_and_no_precision_flag_is_set(trt, onnx_copy):
    build_engine(onnx_copy(ModelSpec("alex", precision="fp16")))
    assert ("create_network", 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) in trt.calls
    assert trt.flags_set() == []  # no weak typing: BuilderFlag.FP16 is deprecated (10.12) / gone (11)
    assert ("clear_flag", trt.BuilderFlag.TF32) in trt.calls  # float32 stem and head stay float32


def test_profile_follows_the_input_layout(trt, onnx_copy):
    profile = Profile((1, 64, 64), (4, 256, 256), (8, 512, 768))
    build_engine(onnx_copy(ModelSpec("squeeze", precision="fp16", frames="nhwc-bgr")), profile)
    (shapes,) = [c[1] for c in trt.calls if c[0] == "add_optimization_profile"]
    expected = ((1, 64, 64, 3), (4, 256, 256, 3), (8, 512, 768, 3))
    assert shapes == {"img0": expected, "img1": expected}


def test_timing_cache_is_reused_across_builds(trt, onnx_copy, tmp_path):
    cache = tmp_path / "shared.timing-cache"
    build_engine(onnx_copy(ModelSpec("alex", precision="fp16")), timing_cache=cache)
    first = cache.read_bytes()
    build_engine(onnx_copy(ModelSpec("alex", precision="fp16", frames="nhwc-bgr")), timing_cache=cache)
    loads = [c[1] for c in trt.calls if c[0] == "create_timing_cache"]
    assert loads == [b"", first]  # the second build starts from what the first one measured
    assert ("set_timing_cache", False) in trt.calls


def test_parser_errors_are_reported(trt, onnx_copy):
    trt.parse_ok = False
    with pytest.raises(EngineBuildError, match="could not parse .*In node 3 \\(Conv\\): fake parser error"):
        build_engine(onnx_copy(ModelSpec("alex", precision="fp16")))


def test_build_failure_reports_the_logger(trt, onnx_copy):
    trt.build_result = None
    onnx_path = onnx_copy(ModelSpec("alex", precision="fp16"))
    with pytest.raises(EngineBuildError, match="could not build .*fake builder: out of tactics"):
        build_engine(onnx_path)
    assert not onnx_path.with_suffix(".engine").exists()


def test_profile_below_the_minimum_side_is_refused(trt, onnx_copy):
    with pytest.raises(Exception, match="minimum side 31"):
        build_engine(onnx_copy(ModelSpec("alex", precision="fp16")), Profile((1, 8, 8), (1, 64, 64), (1, 64, 64)))


def test_without_tensorrt_the_error_names_the_extra(monkeypatch, onnx_copy):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(MissingExtraError, match=r"lpips-rt\[trt\].*pip install .lpips-rt\[trt-rtx\]."):
        build_engine(onnx_copy(ModelSpec("alex", precision="fp16")))
    with pytest.raises(MissingExtraError, match=r"pip install 'lpips-rt\[trt\]'"):
        build_engine(onnx_copy(ModelSpec("alex", precision="fp16")), flavour="full")


def test_workspace_is_left_to_tensorrt_unless_given(trt, onnx_copy):
    _, sidecar = build_engine(onnx_copy(ModelSpec("alex", precision="fp16")))
    assert not [c for c in trt.calls if c[0] == "set_memory_pool_limit"]
    assert sidecar.workspace_bytes == 80 << 30


def test_full_tensorrt_takes_no_rtx_targets(trt, onnx_copy):
    with pytest.raises(Exception, match="--trt-sm picks TensorRT-RTX targets"):
        build_engine(onnx_copy(ModelSpec("alex", precision="fp16")), flavour="full", sms=("86",))


def test_sidecar_is_plain_json(trt, onnx_copy):
    engine, _ = build_engine(onnx_copy(ModelSpec("alex", precision="fp16")))
    data = json.loads(engine.with_name(engine.name + ".json").read_text())
    assert data["format"] == "lpips-rt-engine/2" and data["profile"]["max"] == [8, 1080, 1920]


@pytest.mark.trt
def test_real_build(exported_spec, tmp_path):
    """With real TensorRT and a GPU: the mixed graph builds, and its sidecar names this machine."""
    src = exported_spec(ModelSpec("alex", precision="fp16", frames="nhwc-bgr"))
    onnx_path = tmp_path / src.name
    onnx_path.write_bytes(src.read_bytes())
    engine, sidecar = build_engine(onnx_path, Profile((1, 31, 31), (2, 256, 256), (4, 512, 512)))
    assert engine.stat().st_size > 0 and sidecar.input_layout == "nhwc"
