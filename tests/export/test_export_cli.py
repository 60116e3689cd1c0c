"""``lpips-export`` end to end (offline), through click's CliRunner."""
from __future__ import annotations

from click.testing import CliRunner

from lpips_export.cli import main
from lpips_runtime.model.modelfile import read_model


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--backbone-weights" in result.output


def test_vgg_and_squeeze_offline(tmp_path):
    for net in ("squeeze", "vgg"):
        result = CliRunner().invoke(main, ["--net", net, "--out", str(tmp_path), "--offline", "--distance-only"])
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


def test_backbone_weights_that_are_not_weights_get_our_message(tmp_path):
    import torch

    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    objects = tmp_path / "objects.pth"
    torch.save({"features.0.weight": torch.zeros(1), "when": __import__("datetime").datetime(2026, 1, 1)}, objects)
    for path, message in ((text, "is not a weights file"), (objects, "holds Python objects besides tensors")):
        result = CliRunner().invoke(main, ["--net", "alex", "--backbone-weights", str(path), "--out", str(tmp_path)])
        assert result.exit_code == 1
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"Error: {path} ") and message in line and "weights_only` set to `False" not in line
        assert "torch.save (.pth, .pt) or an .npz" in line


def test_fetch_weights_command(tmp_path):
    from lpips_export import fetch_weights

    result = CliRunner().invoke(main, ["--fetch-weights", "--net", "squeeze", "--offline"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("squeeze: vendored file ") and "squeeze backbone:" in result.stderr
    assert CliRunner().invoke(fetch_weights.main, ["--help"]).exit_code == 0
    listed = CliRunner().invoke(fetch_weights.main, ["squeeze", "--offline"])
    assert listed.exit_code == 0 and listed.stdout == result.stdout
    assert CliRunner().invoke(fetch_weights.main, ["resnet"]).exit_code == 2


def test_without_torch_one_line_naming_the_extra():
    import subprocess
    import sys

    block = "import sys\nsys.modules['torch'] = None\nsys.modules['torchvision'] = None\n"
    commands = {"from lpips_export.fetch_weights import main\nmain()": ["alex"],
                # the bundle is built from templates without torch (test_template_build); a variant needs torch
                "from lpips_export.cli import main\nmain()": ["--net", "alex", "--spatial"]}
    for code, args in commands.items():
        done = subprocess.run([sys.executable, "-c", block + code, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stdout == "", done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("Error: ") and line.endswith("pip install 'lpips-rt[export]'"), line


def test_tool_version():
    from lpips_runtime import __version__

    result = CliRunner().invoke(main, ["-V"])
    assert result.exit_code == 0 and result.stdout == f"lpips-rt {__version__}\n"
