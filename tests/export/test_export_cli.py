"""``lpips-export`` end to end (offline), through click's CliRunner."""
from __future__ import annotations

from click.testing import CliRunner

from lpips_export.cli import main
from lpips_runtime.modelfile import read_model


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--backbone-weights" in result.output


def test_vgg_and_squeeze_offline(tmp_path):
    for net in ("squeeze", "vgg"):
        result = CliRunner().invoke(main, ["--net", net, "--out", str(tmp_path), "--offline"])
        assert result.exit_code == 0, result.output
        path = tmp_path / f"lpips-{net}-v0.1.onnx"
        assert str(path) in result.output and "checked: onnx.checker ok" in result.output
        assert read_model(path).net.name == net


def test_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["--net", "alex", "--backbone-weights", str(tmp_path / "none.pth"),
                                       "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: backbone weights file not found: {tmp_path}/none.pth"]
    assert CliRunner().invoke(main, ["--net", "resnet"]).exit_code == 2
