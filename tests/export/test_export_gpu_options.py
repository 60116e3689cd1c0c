"""lpips-export's GPU options: parsing, one-line errors, and the files an fp16 uint8 export writes."""
from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

import fake_cuda
import fake_tensorrt
from lpips_export.cli import main
from lpips_runtime.model.engine_meta import read_sidecar
from lpips_runtime.model.modelfile import ModelSpec, read_model


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_help_lists_the_gpu_options():
    result = _run("--help")
    assert result.exit_code == 0
    for option in ("--precision", "--input", "--layout", "--channels", "--trt", "--min-shape", "--opt-shape",
                   "--max-shape", "--timing-cache", "--workspace", "--trt-flavour", "--trt-sm"):
        assert option in result.output


def test_trt_without_tensorrt_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    result = _run("--trt", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: building or running TensorRT engines (full TensorRT: lpips-rt[trt]) "
                                     "needs the 'tensorrt_rtx' module: pip install 'lpips-rt[trt-rtx]'")
    result = _run("--trt", "--trt-flavour", "full", "--out", str(tmp_path))
    assert result.output.strip() == ("Error: building a TensorRT engine (--trt) needs the 'tensorrt' module: "
                                     "pip install 'lpips-rt[trt]'")
    assert not list(tmp_path.iterdir())  # failed before exporting anything


@pytest.mark.parametrize("args,message", [
    (["--layout", "nchw"], "add --input uint8"),
    (["--channels", "rgb"], "add --input uint8"),
    (["--max-shape", "8x256x256"], "go with --trt"),
    (["--timing-cache", "x.cache"], "go with --trt"),
    (["--trt-sm", "86"], "go with --trt"),
    (["--trt-flavour", "rtx"], "go with --trt"),
    (["--workspace", "2"], "go with --trt"),
])
def test_usage_errors(args, message):
    result = _run(*args)
    assert result.exit_code == 2 and message in result.output


def test_bad_profile_is_refused_before_exporting(monkeypatch, tmp_path):
    fake_cuda.install(monkeypatch)
    fake_tensorrt.install(monkeypatch)
    result = _run("--trt", "--max-shape", "8x256", "--out", str(tmp_path))
    assert result.exit_code == 1 and "use NxHxW" in result.output
    assert not list(tmp_path.iterdir())


def test_fp16_uint8_export_with_engine(monkeypatch, tmp_path):
    fake_cuda.install(monkeypatch)
    fake_tensorrt.install(monkeypatch)
    result = _run("--net", "squeeze", "--input", "uint8", "--trt", "--max-shape", "4x512x512", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    spec = ModelSpec("squeeze", precision="fp16", frames="nhwc-bgr")  # --trt implies fp16
    onnx_path = tmp_path / spec.filename()
    assert "max relative error vs the float32 torch module" in result.output
    info = read_model(onnx_path)
    assert (info.precision, info.input_dtype, info.input_layout, info.input_channels) == \
        ("fp16", "uint8", "nhwc", "bgr")
    assert info.metadata["input"] == "img0, img1: uint8 [N,H,W,3] BGR in [0,255]"
    sidecar = read_sidecar(onnx_path.with_suffix(".engine"))
    assert sidecar.profile.max == (4, 512, 512) and sidecar.input_layout == "nhwc"
    assert (tmp_path / "lpips-rt.timing-cache").is_file()
    written = [line.split("  ")[0] for line in result.stdout.strip().splitlines()]  # "path  size" lines
    assert written == [str(onnx_path), str(onnx_path.with_suffix(".engine"))]
