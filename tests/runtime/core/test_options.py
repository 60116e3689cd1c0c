"""The Scorer's options are declared once (lpips_runtime.core.options) and every front end reads them from there."""
import inspect
from dataclasses import fields

import pytest

from lpips_runtime import Scorer
from lpips_runtime.errors import LpipsError
from lpips_runtime.core.options import DEFAULTS, OPTION_NAMES, ScorerOptions, option_info


def test_scorer_keywords_are_the_declared_options_with_their_defaults():
    params = inspect.signature(Scorer).parameters
    assert tuple(params) == OPTION_NAMES
    assert {name: p.default for name, p in params.items()} == {f.name: f.default for f in fields(ScorerOptions)}


def _cli_options(command, argv):
    from lpips_runtime.commands.common import resolve_device

    params = command.make_context(command.name or "cmd", argv).params
    return ScorerOptions.from_cli(params, device=resolve_device(params["device"], "ort", quiet=True))


def _commands():
    from lpips_runtime.commands.score import main as score
    from lpips_runtime.serve.cli import main as serve
    from lpips_runtime.video.cli import main as video

    return {"lpips-score": (score, ["a.png", "b.png"]), "lpips-video": (video, ["a.mp4", "b.mp4"]),
            "lpips-serve": (serve, [])}


@pytest.mark.parametrize("name", ["lpips-score", "lpips-video", "lpips-serve"])
def test_every_command_line_defaults_to_the_declared_defaults(name):
    from lpips_runtime.serve.settings import SERVE_MAX_PIXELS

    command, argv = _commands()[name]
    got = _cli_options(command, argv)
    # lpips-serve decodes for strangers: its one different default is a lower pixel limit
    expected = ScorerOptions(max_pixels=SERVE_MAX_PIXELS if name == "lpips-serve" else DEFAULTS.max_pixels)
    assert got == expected


@pytest.mark.parametrize("name", ["lpips-score", "lpips-video", "lpips-serve"])
def test_every_command_line_parses_the_options_alike(name):
    command, argv = _commands()[name]
    got = _cli_options(command, argv + ["--net", "squeeze", "--version", "0.0", "--baseline", "--no-export",
                                        "--precision", "bf16", "--threads", "1", "--metrics", "ssim,psnr",
                                        "--max-pixels", "2.5M", "--tile", "OFF", "--max-memory", "300M"])
    assert (got.model, got.version, got.baseline, got.auto_export, got.backend, got.precision, got.threads,
            got.metrics, got.max_pixels, got.tile, got.max_memory) == \
        ("squeeze", "0.0", True, False, "openvino", "bf16", 1, ("psnr", "ssim"), 2_500_000, "off", 300 << 20)


@pytest.mark.parametrize("argv, message", [(["--max-memory", "12"], "at least 1 MiB"),
                                           (["--tile", "8"], "at least 16 pixels"),
                                           (["--metrics", "vmaf"], "unknown metric 'vmaf'"),
                                           (["--max-pixels", "lots"], "K/M/G suffix")])
def test_a_bad_value_is_a_usage_error_naming_the_rule(argv, message):
    import click

    from lpips_runtime.commands.score import main

    with pytest.raises(click.BadParameter, match=message):
        main.make_context("lpips-score", ["a.png", "b.png", *argv])


def test_help_shows_the_defaults_as_a_command_line_writes_them():
    from click.testing import CliRunner

    from lpips_runtime.commands.score import main

    text = " ".join(CliRunner().invoke(main, ["--help"], terminal_width=200).output.split())
    assert "[default: 100M]" in text and "[default: 1G]" in text and "[default: auto]" in text


def test_values_are_checked_once_on_creation_with_one_line_errors():
    with pytest.raises(LpipsError, match="batch_size=0"):
        ScorerOptions(batch_size=0)
    with pytest.raises(LpipsError, match="batch_size=0"):
        Scorer(batch_size=0)
    with pytest.raises(LpipsError, match="resize policy"):
        ScorerOptions(resize="big")
    with pytest.raises(LpipsError, match="above the pixel limit"):
        ScorerOptions(resize="2000x2000", max_pixels=1000)
    options = ScorerOptions(tile="1024", metrics="ssim,psnr", resize="first")
    assert (options.tile, options.metrics, options.resize.mode) == (1024, ("psnr", "ssim"), "first")


def test_text_stands_for_values_as_on_a_command_line():
    options = ScorerOptions.from_text({"max_memory": "2G", "max_pixels": "50M", "tile": "512", "threads": 1})
    assert (options.max_memory, options.max_pixels, options.tile, options.threads) == (2 << 30, 50_000_000, 512, 1)
    assert ScorerOptions.from_text({"max_pixels": "none"}).max_pixels is None
    with pytest.raises(LpipsError, match="unknown Scorer option.*colour"):
        ScorerOptions.from_text({"colour": "red"})


def test_every_command_line_option_is_declared_with_help_or_a_range():
    for name in OPTION_NAMES:
        info = option_info(name)
        if info.flag is not None and info.flag != "--batch-size":
            assert info.help or info.choices, name


def test_the_scorer_says_its_identity_and_the_parts_it_reads(tmp_path):
    scorer = Scorer("alex", models_dir=tmp_path, auto_export=False)
    assert scorer.options == ScorerOptions(model="alex", models_dir=tmp_path, auto_export=False)
    assert scorer.identity == {"model": scorer.describe(), "net": "alex", "version": "0.1", "calibrated": True,
                               "precision": "fp32", "backend": "ort", "device": "cpu"}
    assert scorer.model_parts() == ("fused",)
    assert scorer.model_parts(maps=True, feature_cache=True) == ("fused", "spatial", "encoder", "head")
    assert scorer.tile_parts() == ("encoder", "head")  # tile="auto" on ONNX Runtime: large pairs are tiled
    assert Scorer("alex", models_dir=tmp_path, tile="off").tile_parts() == ()
    assert Scorer("alex", models_dir=tmp_path, metrics="psnr").tile_parts() == ()  # tiles cannot give PSNR
    assert Scorer.from_options(ScorerOptions(models_dir=tmp_path)).options == ScorerOptions(models_dir=tmp_path)
