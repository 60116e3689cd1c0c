"""Engine sidecars and optimisation profiles (standard library only; no TensorRT needed)."""
from __future__ import annotations

import pytest

from lpips_runtime.model.engine_meta import (
    DEFAULT_MAX_BATCH,
    EngineSidecar,
    GpuInfo,
    Profile,
    binding_shape,
    check_sidecar,
    engine_path_for,
    parse_shape,
    read_sidecar,
    file_sha256,
    sidecar_path_for,
    write_sidecar,
)
from lpips_runtime.errors import BackendError, InputError, LpipsError
from lpips_runtime.model.nets import get_net


def _sidecar(**changes) -> EngineSidecar:
    fields = dict(tensorrt_flavour="tensorrt", tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                  targets=("90",),
                  profile=Profile((1, 31, 31), (8, 256, 256), (16, 1080, 1920)), source_onnx="m.onnx",
                  source_onnx_sha256="ab" * 32, input_dtype="uint8", input_layout="nhwc", precision="fp16",
                  workspace_bytes=1 << 32)
    fields.update(changes)
    return EngineSidecar(**fields)


@pytest.mark.parametrize("text,expected", [("1x256x256", (1, 256, 256)), (" 8 x 1080 x 1920 ", (8, 1080, 1920)),
                                           ("64X31X31", (64, 31, 31))])
def test_parse_shape(text, expected):
    assert parse_shape(text) == expected


@pytest.mark.parametrize("text", ["256x256", "1x0x256", "axbxc", "1x2x3x4", ""])
def test_parse_shape_rejects(text):
    with pytest.raises(LpipsError, match="NxHxW"):
        parse_shape(text)


def test_default_profile_starts_at_the_nets_minimum():
    for name in ("alex", "vgg", "squeeze"):
        net = get_net(name)
        profile = Profile.parse(net)
        assert profile.min == (1, net.min_side, net.min_side)
        assert profile.contains(1, 1080, 1920) and profile.max == (DEFAULT_MAX_BATCH[name], 1080, 1920)
        assert profile.opt == (min(4, DEFAULT_MAX_BATCH[name]), 256, 256)  # the optimum lies within the max


def test_profile_overrides_and_validation():
    net = get_net("alex")
    assert Profile.parse(net, max_shape="64x512x512").max == (64, 512, 512)
    assert Profile.parse(net, max_shape="4x512x512").opt == (4, 256, 256)  # defaulted optimum clamped
    with pytest.raises(LpipsError, match="min <= opt <= max"):
        Profile.parse(net, opt_shape="32x256x256", max_shape="16x256x256")
    with pytest.raises(LpipsError, match="minimum side 31"):
        Profile.parse(net, min_shape="1x16x16")


def test_profile_check_names_the_rebuild():
    profile = Profile((1, 31, 31), (8, 256, 256), (16, 1080, 1920))
    profile.check(16, 1080, 1920)
    with pytest.raises(InputError, match=r"batch 32x256x256 .* outside .* 1x31x31 \.\. 16x1080x1920.*--max-shape"):
        profile.check(32, 256, 256)


def test_binding_shape_follows_the_layout():
    assert binding_shape((2, 100, 200), "nchw") == (2, 3, 100, 200)
    assert binding_shape((2, 100, 200), "nhwc") == (2, 100, 200, 3)


def test_paths():
    engine = engine_path_for("models/lpips-alex-v0.1-fp16.onnx")
    assert engine.name == "lpips-alex-v0.1-fp16.engine"
    assert sidecar_path_for(engine).name == "lpips-alex-v0.1-fp16.engine.json"


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "m.engine"
    write_sidecar(engine, _sidecar())
    assert read_sidecar(engine) == _sidecar()


def test_read_sidecar_errors(tmp_path):
    engine = tmp_path / "m.engine"
    with pytest.raises(BackendError, match="missing.*lpips-export --trt"):
        read_sidecar(engine)
    sidecar_path_for(engine).write_text('{"format": "something else"}')
    with pytest.raises(BackendError, match="not an lpips-rt engine sidecar"):
        read_sidecar(engine)


def test_check_sidecar(tmp_path):
    sidecar, gpu = _sidecar(), GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
    check_sidecar(sidecar, "m.engine", "tensorrt", "10.13.0.35", gpu, "ab" * 32)
    with pytest.raises(BackendError, match="built with tensorrt 10.13.0.35, this is 11.0.0.1.*rebuild m.engine with"):
        check_sidecar(sidecar, "m.engine", "tensorrt", "11.0.0.1", gpu)
    with pytest.raises(BackendError, match="built by tensorrt, this runtime uses tensorrt-rtx: rebuild"):
        check_sidecar(sidecar, "m.engine", "tensorrt-rtx", "10.13.0.35", gpu)
    with pytest.raises(BackendError, match=r"built for NVIDIA H100 80GB HBM3 \(9.0\), this GPU is NVIDIA L4 \(8.9\)"):
        check_sidecar(sidecar, "m.engine", "tensorrt", "10.13.0.35", GpuInfo("NVIDIA L4", "8.9"))
    with pytest.raises(BackendError, match="another m.onnx than the one beside it"):
        check_sidecar(sidecar, "m.engine", "tensorrt", "10.13.0.35", gpu, "cd" * 32)


def test_check_sidecar_rtx_targets_and_engine_digest(tmp_path):
    """An RTX engine runs on any GPU of its compute capabilities (no GPU name); the engine file must be the one
    the sidecar describes."""
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine bytes")
    sidecar = _sidecar(tensorrt_flavour="tensorrt-rtx", tensorrt_version="1.7.1.116", gpu_name="",
                       targets=("80", "86", "89", "120", "121"), engine_sha256=file_sha256(engine))
    for gpu in (GpuInfo("NVIDIA GeForce RTX 4090", "8.9"), GpuInfo("NVIDIA RTX A6000", "8.6")):
        check_sidecar(sidecar, engine, "tensorrt-rtx", "1.7.1.116", gpu, rebuild="lpips-export --net alex --trt")
    with pytest.raises(BackendError, match=r"built for compute capability 8.0, 8.6, 8.9, 12.0, 12.1, this GPU is "
                                           r"NVIDIA H100 80GB HBM3 \(9.0\); rebuild m.engine with lpips-export --net "
                                           r"alex --trt$"):
        check_sidecar(sidecar, engine, "tensorrt-rtx", "1.7.1.116", GpuInfo("NVIDIA H100 80GB HBM3", "9.0"),
                      rebuild="lpips-export --net alex --trt")
    engine.write_bytes(b"engine bytes, truncated or replaced")
    with pytest.raises(BackendError, match="not the engine its sidecar describes"):
        check_sidecar(sidecar, engine, "tensorrt-rtx", "1.7.1.116", None)
