"""Exports with PSNR/SSIM outputs (lpips-export --metrics): names, outputs and metadata, the default
export left as it was, the export self-check, and the command line."""
from __future__ import annotations

import onnx
import pytest
from click.testing import CliRunner

from lpips_export.cli import main
from lpips_export.onnx_export import ExportCheckError, build_metadata, verify_export
from lpips_runtime.model.modelfile import ModelSpec, read_model
from lpips_runtime.model.pixel_metrics import DEFINITIONS, METRICS

SPEC = ModelSpec("alex", metrics=METRICS)


def test_outputs_metadata_and_name(exported_spec):
    path = exported_spec(SPEC)
    assert path.name == "lpips-alex-v0.1-psnr-ssim-psnr_y-ssim_y.onnx"
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["distance", *METRICS]
    for output in model.graph.output:  # every output float32 [N], N dynamic
        dims = output.type.tensor_type.shape.dim
        assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and [d.dim_param for d in dims] == ["N"]
    info = read_model(path)
    assert info.metrics == METRICS and info.spec == SPEC and info.kind == "distance"
    assert info.metadata["metrics"] == "psnr,ssim,psnr_y,ssim_y"
    assert all(DEFINITIONS[m] in info.metadata["metrics_definition"] for m in METRICS)
    assert "psnr: float32 [N] in dB (+inf for identical images)" in info.metadata["output"]


def test_default_export_has_no_trace_of_metrics(exported, build_module):
    # The default graph and its metadata are what they were before metrics existed (the C++ contract):
    # one output, no metrics keys, none of the metric-only operators.
    model = onnx.load(str(exported("alex")))
    assert [o.name for o in model.graph.output] == ["distance"]
    assert not {"Round", "Log"} & {n.op_type for n in model.graph.node}
    module, provenance = build_module("alex")
    meta = build_metadata(module, provenance, 17)
    assert "metrics" not in meta and "metrics_definition" not in meta and meta["output"] == "distance: float32 [N]"


def test_the_self_check_compares_every_metric(exported_spec, monkeypatch):
    import lpips_export.onnx_export as onnx_export
    from lpips_export.build import build_lpips

    module, _ = build_lpips("alex", metrics=METRICS)
    report = verify_export(exported_spec(SPEC), module)
    assert [name for name, _, _ in report.metrics] == list(METRICS)
    assert all(worst <= limit for _, worst, limit in report.metrics) and "ssim_y max |ORT - torch|" in report.summary()
    # A check that cannot fail proves nothing: with no tolerance left, the same file is refused.
    monkeypatch.setattr(onnx_export, "METRIC_TOLERANCE", {"psnr": -1.0, "ssim": -1.0})
    with pytest.raises(ExportCheckError, match="output psnr differs from the torch module"):
        verify_export(exported_spec(SPEC), module)


def test_parts_and_specs():
    assert ModelSpec("alex", metrics="ssim,psnr,ssim").metrics == ("psnr", "ssim")  # canonical order, no duplicates
    spec = ModelSpec("vgg", precision="fp16", frames="nhwc-bgr", metrics=("ssim_y",))
    assert spec.filename() == "lpips-vgg-v0.1-fp16-u8nhwcbgr-ssim_y.onnx"
    assert spec.outputs == ("distance", "ssim_y")
    assert spec.export_command() == ("lpips-export --net vgg --precision fp16 --input uint8 --layout nhwc "
                                     "--channels bgr --metrics ssim_y")
    assert spec.describe() == "LPIPS-vgg v0.1 (fp16, uint8 nhwc-bgr, +ssim_y)"
    assert ModelSpec("alex", spatial=True, metrics=("psnr",)).outputs == ("distance_map", "psnr")
    # Encoder and head never see two images' pixels: the same file as without metrics.
    assert spec.with_part("encoder").metrics == () and spec.with_part("head").filename() == "lpips-vgg-v0.1-head.onnx"


def test_command_line(tmp_path):
    result = CliRunner().invoke(main, ["--net", "squeeze", "--metrics", "ssim, psnr", "--no-check", "--offline",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "lpips-squeeze-v0.1-psnr-ssim.onnx"
    assert result.output.strip().splitlines()[-1].split("  ")[0] == str(path) and read_model(path).metrics == ("psnr", "ssim")
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "--metrics" in help_text and "psnr_y" in help_text


@pytest.mark.parametrize("args,message", [
    (["--metrics", "psnr,lpips"], "unknown metric 'lpips'"),
    (["--metrics", "psnr", "--part", "encoder"], "--metrics needs both images' pixels"),
])
def test_bad_metric_options_are_usage_errors(args, message, tmp_path):
    result = CliRunner().invoke(main, ["--net", "alex", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output
