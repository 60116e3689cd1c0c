"""Real TensorRT engines, built by TensorRT for RTX on a machine without a GPU (its CPU-only ahead-of-time
build): every net x {fp32, fp16} x {float, uint8 frames} x {distance, spatial}, the encoder of the split
export and the PSNR/SSIM graph parse and build; each engine's layer types (the builder's detailed log),
its IO tensors against the ONNX contract, and its profile are what the sidecar says; the default profiles
build (issue 20, defect 2), and an engine that cannot fit is one line naming --max-shape/--workspace;
corrupt and foreign engines are refused by our loader in one line.

Loading and running an engine needs an RTX GPU, which CI has not: that is tests/runtime/backends/test_gpu.py's
job. Under CI (CI=true) TensorRT-RTX is installed by `make test`, so these tests never skip there.
"""
from __future__ import annotations

import os
import re

import pytest

from lpips_runtime.model.modelfile import ModelSpec, read_model

if os.environ.get("CI", "").lower() in ("1", "true"):
    import tensorrt_rtx as trt  # make test installs lpips-rt[trt-rtx]: missing is a failure, not a skip
else:
    trt = pytest.importorskip("tensorrt_rtx", reason="needs lpips-rt[trt-rtx]")

import fake_cuda  # noqa: E402
from lpips_export.trt_build import EngineBuildError, build_engine  # noqa: E402
from lpips_runtime.backends.trt_backend import TrtBackend, check_engine_bytes  # noqa: E402
from lpips_runtime.model.engine_meta import DEFAULT_ACTIVATION_BUDGET, Profile, file_sha256, read_sidecar  # noqa: E402
from lpips_runtime.errors import BackendError  # noqa: E402
from lpips_runtime.model.nets import get_net  # noqa: E402
from lpips_runtime.model.trt_flavour import RTX_PORTABLE  # noqa: E402

SMALL_MAX = (2, 128, 128)  # the matrix proves parse/build/types/IO; the default profiles are built below


def _small(net: str) -> Profile:
    m = get_net(net).min_side
    return Profile((1, m, m), (1, 64, 64), SMALL_MAX)


@pytest.fixture
def onnx_copy(tmp_path, exported_unchecked):
    """factory(spec) -> a copy of its export in a fresh folder (the engine is written next to it)."""

    def get(spec):
        src = exported_unchecked(spec)
        dst = tmp_path / src.name
        dst.write_bytes(src.read_bytes())
        return dst

    return get


def _onnx_io(path) -> dict[str, tuple[str, str, list]]:
    """name -> (mode, dtype, dims: -1 for a named dimension) of an ONNX file's inputs and outputs."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dtype = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.UINT8: "uint8"}
    io = {}
    for mode, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            io[v.name] = (mode, dtype[v.type.tensor_type.elem_type], dims)
    return io


HEAD = re.compile(r"^/(lins\.\d+/|Sqrt|GlobalAveragePool|Resize|Sub_\d|Div_[2-9])")


def _check_precisions(sidecar, spec: ModelSpec) -> None:
    """fp32 engines: float32 everywhere. fp16: the normalisation and head float32, the stem conv float32 (or
    fused with the cast to float16 after it); the backbone after the stem float16 (or fused with a cast)."""
    kinds = sidecar.layer_precisions
    assert kinds, "the build log listed no layers"
    if spec.precision == "fp32":
        assert not {k for k in kinds.values() if k in ("float16", "mixed")}, kinds
        return
    # The stem convolution reads float32; TensorRT may fuse the cast to float16 that follows it ("mixed")
    assert kinds["/features.0/Conv"] in ("float32", "mixed")
    head = {n: k for n, k in kinds.items() if HEAD.match(n)}
    assert head and set(head.values()) == {"float32"}, head
    trunk = {n: k for n, k in kinds.items() if re.match(r"^/features\.(\d+)/", n) and
             int(re.match(r"^/features\.(\d+)/", n)[1]) >= 2}
    assert trunk and set(trunk.values()) <= {"float16", "mixed"}, trunk
    assert list(trunk.values()).count("float16") >= len(trunk) // 2, trunk


# vgg's exports and builds cost 5-20x alex's (a 58 MB graph): in the default run it is built as fp32 distance,
# fp16 uint8-frame spatial (here) and fp16 distance at its default profile (below); its other six variants
# (the same input and output layers as alex's and squeeze's, which all run) are marked slow (--run-slow).
VGG_IN_DEFAULT_RUN = {("fp32", None, False), ("fp16", "nhwc-bgr", True)}
MATRIX = [pytest.param(spec, marks=[pytest.mark.slow] if spec.net == "vgg" and
                       (spec.precision, spec.frames, spec.spatial) not in VGG_IN_DEFAULT_RUN else [])
          for spec in (ModelSpec(net, spatial=spatial, precision=precision, frames=frames)
                       for net in ("alex", "squeeze", "vgg") for precision in ("fp32", "fp16")
                       for frames in (None, "nhwc-bgr") for spatial in (False, True))]


@pytest.mark.parametrize("spec", MATRIX, ids=lambda s: s.filename().removesuffix(".onnx"))
def test_engine_builds_with_its_types_io_and_profile(spec, onnx_copy):
    onnx_path = onnx_copy(spec)
    profile = _small(spec.net)
    engine, sidecar = build_engine(onnx_path, profile, flavour="rtx")
    assert read_sidecar(engine) == sidecar and sidecar.engine_sha256 == file_sha256(engine)
    assert (sidecar.tensorrt_flavour, sidecar.tensorrt_version, sidecar.gpu_name) == ("tensorrt-rtx", trt.__version__, "")
    assert sidecar.targets == RTX_PORTABLE and sidecar.profile == profile
    info = read_model(onnx_path)
    assert (sidecar.input_dtype, sidecar.input_layout, sidecar.precision) == \
        (info.input_dtype, info.input_layout, spec.precision)
    got = {name: (t["mode"], t["dtype"], t["shape"]) for name, t in sidecar.io.items()}
    assert got == _onnx_io(onnx_path)
    _check_precisions(sidecar, spec)
    assert 0 < sidecar.activation_bytes < 1 << 30 and sidecar.weights_bytes > 0


def test_encoder_and_metric_graphs_build(onnx_copy):
    enc = ModelSpec("squeeze", part="encoder")
    engine, sidecar = build_engine(onnx_copy(enc), _small("squeeze"), flavour="rtx")
    assert {n for n, t in sidecar.io.items() if t["mode"] == "output"} == {f"feat{i}" for i in range(7)}
    assert set(sidecar.layer_precisions.values()) == {"float32"}
    spec = ModelSpec("alex", precision="fp16", frames="nhwc-bgr", metrics=("psnr", "ssim"))
    onnx_path = onnx_copy(spec)
    _, sidecar = build_engine(onnx_path, _small("alex"), flavour="rtx")
    assert {n: t["dtype"] for n, t in sidecar.io.items()} == \
        {"img0": "uint8", "img1": "uint8", "distance": "float", "psnr": "float", "ssim": "float"}
    _check_precisions(sidecar, spec)


def test_a_split_head_is_refused_in_one_line(onnx_copy):
    with pytest.raises(EngineBuildError, match="a split head runs on ONNX Runtime"):
        build_engine(onnx_copy(ModelSpec("squeeze", part="head")), _small("squeeze"), flavour="rtx")


@pytest.mark.parametrize("spec", [ModelSpec("alex", precision="fp16", frames="nhwc-bgr"),
                                  ModelSpec("squeeze", spatial=True), ModelSpec("vgg", precision="fp16")],
                         ids=lambda s: s.filename().removesuffix(".onnx"))
def test_default_profile_builds_within_its_budget(spec, onnx_copy):
    """Defect 2: 16x1080x1920 did not build with the 4 GiB workspace (alex 4.2 GiB, squeeze 15.1 GiB)."""
    onnx_path = onnx_copy(spec)
    engine, sidecar = build_engine(onnx_path, flavour="rtx")
    assert sidecar.profile == Profile.default(get_net(spec.net))
    assert {name: (t["mode"], t["dtype"], t["shape"]) for name, t in sidecar.io.items()} == _onnx_io(onnx_path)
    _check_precisions(sidecar, spec)
    assert sidecar.profile.max[1:] == (1080, 1920)
    assert 0 < sidecar.activation_bytes <= DEFAULT_ACTIVATION_BUDGET


def test_a_profile_that_cannot_fit_is_one_line(onnx_copy):
    spec = ModelSpec("squeeze")
    m = get_net("squeeze").min_side
    with pytest.raises(EngineBuildError) as info:
        build_engine(onnx_copy(spec), Profile((1, m, m), (1, 256, 256), (4, 1080, 1920)), workspace_gib=1,
                     flavour="rtx")
    message = str(info.value)
    assert "\n" not in message and "--max-shape" in message and "--workspace" in message
    assert re.search(r"4x1080x1920 \(NxHxW\) needs \d+\.\d\d GiB, more than the builder's workspace \(1\.00 GiB\)",
                     message)


def test_rtx_targets_are_recorded(onnx_copy):
    _, sidecar = build_engine(onnx_copy(ModelSpec("alex")), _small("alex"), flavour="rtx", sms=("86", "89"))
    assert sidecar.targets == ("86", "89") and sidecar.describe_targets() == "compute capability 8.6, 8.9"


# -- our loader refuses what it cannot run, in one line (no GPU needed for these) --------------------

@pytest.fixture
def built(onnx_copy):
    spec = ModelSpec("alex", precision="fp16", frames="nhwc-bgr")
    onnx_path = onnx_copy(spec)
    engine, _ = build_engine(onnx_path, _small("alex"), flavour="rtx")
    return spec, onnx_path, engine


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_foreign_and_corrupt_bytes_are_malformed_to_tensorrt_rtx(built):
    _, onnx_path, engine = built
    for data in (onnx_path.read_bytes(), b"\0" * 4096, b""):  # (a truncated engine: the sidecar digest)
        with pytest.raises(BackendError) as info:
            check_engine_bytes(trt, data, engine, "lpips-export --net alex --trt")
        assert "is not a TensorRT engine (malformed, truncated or foreign): rebuild it with lpips-export" in _one_line(info)


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_loader_refuses_a_corrupt_or_foreign_engine(built, monkeypatch, damage):
    """Through TrtBackend itself on an RTX-class GPU (cuda-python faked: no GPU here): a truncated engine
    fails its sidecar digest; a foreign file whose digest was written into the sidecar fails TensorRT-RTX's
    validity check. Both before deserialising, in one line naming the rebuild."""
    import json

    spec, onnx_path, engine = built
    fake_cuda.install(monkeypatch, gpu_name="NVIDIA GeForce RTX 4090", capability=(8, 9))
    if damage == "truncate":
        engine.write_bytes(engine.read_bytes()[: engine.stat().st_size // 2])
        expected = "not the engine its sidecar describes"
    else:
        engine.write_bytes(onnx_path.read_bytes())
        sidecar = engine.with_name(engine.name + ".json")
        data = json.loads(sidecar.read_text())
        data["engine_sha256"] = file_sha256(engine)
        sidecar.write_text(json.dumps(data))
        expected = "is not a TensorRT engine"
    with pytest.raises(BackendError) as info:
        TrtBackend(spec, onnx_path, "cuda")
    text = _one_line(info)
    assert expected in text and "lpips-export --net alex --precision fp16 --input uint8" in text
    assert "--trt --trt-flavour rtx" in text


def test_loader_refuses_a_gpu_outside_the_targets(built, monkeypatch):
    """An H100 (9.0, the GPU machines we borrow) is not among TensorRT-RTX's targets."""
    spec, onnx_path, _ = built
    fake_cuda.install(monkeypatch, gpu_name="NVIDIA H100 80GB HBM3", capability=(9, 0))
    with pytest.raises(BackendError) as info:
        TrtBackend(spec, onnx_path, "cuda")
    assert re.search(r"built for compute capability 8\.0, .*12\.1, this GPU is NVIDIA H100 80GB HBM3 \(9\.0\); "
                     r"rebuild .* with lpips-export .*--trt --trt-flavour rtx$", _one_line(info))


# -- the command line, as a new user on a laptop without a GPU runs it ---------------------------------

def test_lpips_export_trt_on_a_machine_without_a_gpu(tmp_path):
    """`lpips-export --net alex --precision fp16 --input uint8 --trt` (issue 20's target), here with
    TensorRT-RTX chosen explicitly and a small profile: exit 0, stdout the two paths, the engine's record
    on stderr."""
    from click.testing import CliRunner

    from lpips_export.cli import main

    result = CliRunner().invoke(main, ["--net", "alex", "--precision", "fp16", "--input", "uint8", "--trt",
                                       "--trt-flavour", "rtx", "--trt-sm", "86,89", "--max-shape", "2x128x128",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    onnx_path = tmp_path / ModelSpec("alex", precision="fp16", frames="nhwc-bgr").filename()
    engine = onnx_path.with_suffix(".engine")
    written = result.stdout.strip().splitlines()
    assert [line.split("  ")[0] for line in written] == [str(onnx_path), str(engine)]  # path  size
    assert re.search(r"engine: tensorrt-rtx \S+ for compute capability 8\.6, 8\.9, profile min 1x31x31, opt "
                     r"2x128x128, max 2x128x128, 0\.\d\d GiB of activations at its maximum; layers: \d+ float16, "
                     r"\d+ float32, \d+ mixed", result.stderr)
    assert read_sidecar(engine).targets == ("86", "89")


def test_lpips_export_refuses_an_rtx_target_it_cannot_build(tmp_path):
    from click.testing import CliRunner

    from lpips_export.cli import main

    result = CliRunner().invoke(main, ["--trt", "--trt-flavour", "rtx", "--trt-sm", "90", "--out", str(tmp_path)])
    assert result.exit_code == 1 and not list(tmp_path.iterdir())
    assert result.output.strip() == ("Error: --trt-sm '90': TensorRT-RTX builds for 75, 80, 86, 89, 120, 121 "
                                     "(Hopper 9.0 and other data-centre GPUs need full TensorRT)")
