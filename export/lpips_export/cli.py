"""``lpips-export``: build LPIPS from verified weights, write ONNX, and check what was written."""
from __future__ import annotations

import logging
import os
import sys

import click

from lpips_runtime.errors import LpipsError
from lpips_runtime.modelfile import PARTS, ModelSpec
from lpips_runtime.optional import require
from lpips_runtime.nets import DEFAULT_VERSION, NET_NAMES, VERSIONS


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("lpips_export")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--net", type=click.Choice(NET_NAMES), default="alex", show_default=True, help="Backbone.")
@click.option("--version", "lpips_version", type=click.Choice(VERSIONS), default=DEFAULT_VERSION,
              show_default=True, help="LPIPS version (0.0 skips the input scaling, as the original release).")
@click.option("--baseline", is_flag=True, help="Uncalibrated baseline: plain channel sum, no linear layers.")
@click.option("--spatial", is_flag=True, help="Output the per-pixel distance map [N,1,H,W].")
@click.option("--part", type=click.Choice(PARTS), default="fused", show_default=True,
              help="fused: two images -> distance; encoder: images -> features of every tap; head: two feature "
                   "sets -> distance (encoder + head: the feature cache of lpips-score --ref/--all-pairs).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="models", show_default=True,
              help="Folder the .onnx is written to.")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True, help="ONNX opset.")
@click.option("--backbone-weights", type=click.Path(dir_okay=False),
              help="A torchvision state dict (.pth) or .npz to use instead of the usual sources.")
@click.option("--offline", is_flag=True, help="Never try torchvision's download (same as LPIPS_RT_OFFLINE=1).")
@click.option("--no-check", is_flag=True, help="Skip the ONNX checker and ORT-vs-torch check (not advised).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the written path.")
def main(net, lpips_version, baseline, spatial, part, out_dir, opset, backbone_weights, offline, no_check, quiet):
    """Export LPIPS (alex, vgg or squeeze) to one self-contained ONNX file with dynamic N, H, W.

    Inputs img0, img1: float32 [N,3,H,W] RGB in [-1,1]; output distance: float32 [N]
    (distance_map [N,1,H,W] with --spatial). Metadata in the file records net, version,
    weight digests and the input contract.
    """
    _setup_logging(quiet)
    if offline:
        os.environ["LPIPS_RT_OFFLINE"] = "1"
    try:
        require("torch", "export", "lpips-export")
        require("onnx", "export", "lpips-export")
        from .onnx_export import export_model

        if part == "encoder" and (baseline or spatial):
            raise click.UsageError("an encoder has no linear layers and no spatial output: drop --baseline/--spatial")
        spec = ModelSpec(net, lpips_version, calibrated=not baseline, spatial=spatial, part=part)
        path, worst = export_model(spec, out_dir, opset=opset, backbone_weights=backbone_weights,
                                   check=not no_check)
        if worst is not None and not quiet:
            click.echo(f"checked: onnx.checker ok; ORT vs torch max abs diff {worst:.2e} (limit 1e-05)")
    except LpipsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(path))


if __name__ == "__main__":
    main()
