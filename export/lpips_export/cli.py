"""``lpips-export``: build LPIPS from verified weights, write ONNX, and check what was written.

With no variant option it writes the bundle (``lpips_runtime.model.bundle``): every graph the front ends use for the
net, version and calibration, and a manifest. stdout carries one line per file written (path and size; with -q
the path alone), and with --fetch-weights where each backbone came from; the one-line check summary, notices
and anything torch or onnx print go to stderr.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import click

from lpips_runtime.model.bundle import bundle_specs, refresh_manifest_entry
from lpips_runtime.commands.common import parse_metrics_option, setup_logging, tool_version_option
from lpips_runtime.errors import LpipsError
from lpips_runtime.model.locate import default_models_dir
from lpips_runtime.model.modelfile import FRAME_CHANNELS, FRAME_LAYOUTS, PARTS, PRECISIONS, ModelSpec
from lpips_runtime.model.nets import DEFAULT_VERSION, NET_NAMES, VERSIONS
from lpips_runtime.optional import require
from lpips_runtime.model.pixel_metrics import METRICS
from lpips_runtime.stdio import stdout_to_stderr


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--net", type=click.Choice(NET_NAMES), default="alex", show_default=True, help="Backbone.")
@click.option("--version", "lpips_version", type=click.Choice(VERSIONS), default=DEFAULT_VERSION,
              show_default=True, help="LPIPS version (0.0 skips the input scaling, as the original release).")
@click.option("--baseline", is_flag=True, help="Uncalibrated baseline: plain channel sum, no linear layers.")
@click.option("--spatial", is_flag=True, help="Output the per-pixel distance map [N,1,H,W].")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="fp16: float16 backbone, float32 head and I/O (for GPUs). [default: fp32; fp16 with --trt]")
@click.option("--input", "input_type", type=click.Choice(["float32", "uint8"]), default="float32", show_default=True,
              help="uint8: the graph takes 8-bit frames and scales them itself.")
@click.option("--layout", type=click.Choice(FRAME_LAYOUTS), help="uint8 frame layout. [default: nhwc]")
@click.option("--channels", type=click.Choice(FRAME_CHANNELS),
              help="uint8 frame channel order (bgr: as OpenCV decodes). [default: bgr]")
@click.option("--metrics", metavar="LIST", callback=parse_metrics_option, default="",
              help="Also output these, computed in the same pass on the input's 8-bit values: comma-separated "
                   f"from {', '.join(METRICS)} (psnr_y/ssim_y: on the BT.601 luma), e.g. psnr,ssim.")
@click.option("--trt", is_flag=True,
              help="Also build a TensorRT engine: with TensorRT for RTX (lpips-rt[trt-rtx]; no GPU needed, runs on "
                   "RTX GPUs, Ampere and newer) or full TensorRT (lpips-rt[trt], on the GPU it is for).")
@click.option("--trt-flavour", type=click.Choice(["auto", "full", "rtx"]), default="auto", show_default=True,
              help="--trt with full TensorRT or TensorRT for RTX (auto: the installed one, full where both are).")
@click.option("--trt-sm", metavar="LIST",
              help="--trt-flavour rtx target compute capabilities, e.g. 86,89 (7.5: Turing, only when asked). "
                   "[default: TensorRT-RTX's portable set, 8.0 8.6 8.9 12.0 12.1]")
@click.option("--min-shape", metavar="NxHxW", help="--trt profile minimum. [default: 1 x min side^2]")
@click.option("--opt-shape", metavar="NxHxW", help="--trt profile optimum. [default: 4x256x256, within the max]")
@click.option("--max-shape", metavar="NxHxW",
              help="--trt profile maximum. [default: 8 (alex), 4 (squeeze), 1 (vgg) x 1080x1920: under 4 GiB of "
                   "GPU memory, see docs/gpu.md]")
@click.option("--timing-cache", type=click.Path(dir_okay=False),
              help="--trt timing cache, reused across builds. [default: <out>/lpips-rt.timing-cache]")
@click.option("--workspace", type=click.FloatRange(min=0.25),
              help="--trt builder memory limit in GiB. [default: TensorRT's, the GPU's memory]")
@click.option("--part", type=click.Choice(PARTS), default="fused", show_default=True,
              help="fused: two images -> distance; encoder: images -> features of every tap; head: two feature "
                   "sets -> distance (encoder + head: the feature cache of lpips-score --ref/--all-pairs).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder the .onnx (and .engine) is written to. [default: where lpips-score looks: "
                   "$LPIPS_RT_MODELS, else ./models if the working folder has one, else the user data folder "
                   "(~/.local/share/lpips-rt/models)]")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True, help="ONNX opset.")
@click.option("--backbone-weights", type=click.Path(dir_okay=False),
              help="A torchvision state dict (.pth) or .npz to use instead of the usual sources.")
@click.option("--offline", is_flag=True, help="Never try torchvision's download (same as LPIPS_RT_OFFLINE=1).")
@click.option("--no-check", is_flag=True, help="Skip the ONNX checker and ORT-vs-torch check (not advised).")
@click.option("--fetch-weights", is_flag=True,
              help="Only fetch and verify the backbone weights of --net (e.g. before going offline); print "
                   "where they come from. No export.")
@click.option("--distance-only", is_flag=True,
              help="Write only the plain distance graph (lpips-<net>-v<version>.onnx), not the whole bundle.")
@click.option("--from-templates", is_flag=True,
              help="Build the stock graphs from the shipped graph templates and the verified weights, without "
                   "torch (what happens anyway when torch is not installed; needs lpips-rt[light-export]).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the written paths.")
@tool_version_option
def main(net, lpips_version, baseline, spatial, precision, input_type, layout, channels, metrics, trt, trt_flavour,
         trt_sm, min_shape,
         opt_shape, max_shape, timing_cache, workspace, part, out_dir, opset, backbone_weights, offline, no_check,
         fetch_weights, distance_only, from_templates, quiet):
    """Export LPIPS (alex, vgg or squeeze) to self-contained ONNX files with dynamic N, H, W.

    With no variant option (--spatial, --part, --input, --metrics, --precision, --trt, --distance-only) it
    writes the bundle every front end uses: distance, spatial map, encoder and heads (feature cache,
    tiles), uint8 RGB frame graphs (lpips-video), PSNR/SSIM graphs, and a manifest with their sha256.
    A variant option writes that one file.

    Inputs img0, img1: float32 [N,3,H,W] RGB in [-1,1] (--input uint8: uint8 frames, [N,H,W,3]
    BGR by default); output distance: float32 [N] (distance_map [N,1,H,W] with --spatial), and with
    --metrics one float32 [N] output per metric (PSNR in dB, SSIM as scikit-image computes them).
    Metadata in the file records net, version, precision, weight digests and the input contract.
    With --trt, an FP16 TensorRT engine (strongly typed, one profile) and its .engine.json sidecar
    are built next to the .onnx.
    """
    setup_logging(quiet, info=True)
    if offline:
        os.environ["LPIPS_RT_OFFLINE"] = "1"
    if fetch_weights:
        from .fetch_weights import fetch_and_print

        fetch_and_print([net], backbone_weights)
        return
    if input_type == "float32" and (layout or channels):
        raise click.UsageError("--layout/--channels describe uint8 frames: add --input uint8")
    if not trt and (any(v is not None for v in (min_shape, opt_shape, max_shape, timing_cache, trt_sm, workspace))
                    or trt_flavour != "auto"):
        raise click.UsageError("--min-shape/--opt-shape/--max-shape/--timing-cache/--workspace/--trt-flavour/--trt-sm "
                               "go with --trt")
    try:
        if trt:  # fail before the (slow) export, in one line naming the extra
            from .trt_build import require_tensorrt

            require_tensorrt(trt_flavour)
            from lpips_runtime.model.trt_flavour import parse_sms

            sms = parse_sms(trt_sm)
        if part == "encoder" and (baseline or spatial):
            raise click.UsageError("an encoder has no linear layers and no spatial output: drop --baseline/--spatial")
        if part != "fused" and (precision == "fp16" or input_type == "uint8" or trt):
            raise click.UsageError("split exports (--part encoder/head) are float32 with float inputs")
        if part != "fused" and metrics:
            raise click.UsageError("--metrics needs both images' pixels: it goes with the fused graph, not --part")
        frames = f"{layout or 'nhwc'}-{channels or 'bgr'}" if input_type == "uint8" else None
        spec = ModelSpec(net, lpips_version, calibrated=not baseline, spatial=spatial,
                         precision=precision or ("fp16" if trt else "fp32"), frames=frames, part=part,
                         metrics=metrics)
        variant = spatial or precision or input_type == "uint8" or metrics or part != "fused" or trt
        if distance_only and variant:
            raise click.UsageError("--distance-only writes the plain distance graph: drop the variant options")
        out = Path(out_dir) if out_dir else default_models_dir()
        specs = [spec] if distance_only else bundle_specs(net, lpips_version, not baseline)
        if not variant and (from_templates or not _torch_installed()):
            _build_from_templates(specs, out, backbone_weights, opset, from_templates, quiet)
            return
        require("torch", "export", "lpips-export")
        require("onnx", "export", "lpips-export")
        from .onnx_export import export_model

        if not (variant or distance_only):
            _export_bundle(spec, out, opset, backbone_weights, not no_check, quiet)
            return
        profile = None
        if trt:
            from lpips_runtime.model.engine_meta import Profile
            from lpips_runtime.model.nets import get_net

            profile = Profile.parse(get_net(net), min_shape, opt_shape, max_shape)  # bad shapes: error now
        with stdout_to_stderr():  # torch/onnx chatter: stdout carries the written paths only
            path, report = export_model(spec, out, opset=opset, backbone_weights=backbone_weights,
                                        check=not no_check)
        refresh_manifest_entry(path, spec)
        _written(path, quiet)
        if report is not None and not quiet:
            click.echo(f"checked: onnx.checker ok; {report.summary()}", err=True)
        if trt:
            from .trt_build import build_engine

            with stdout_to_stderr():
                engine, sidecar = build_engine(path, profile, timing_cache, workspace, flavour=trt_flavour, sms=sms)
            if not quiet:
                counts = ", ".join(f"{n} {kind}" for kind, n in sidecar.precision_counts().items())
                click.echo(f"engine: {sidecar.tensorrt_flavour} {sidecar.tensorrt_version} for "
                           f"{sidecar.describe_targets()}, profile {sidecar.profile.describe()}, "
                           f"{sidecar.activation_bytes / (1 << 30):.2f} GiB of activations at its maximum; "
                           f"layers: {counts or 'not reported'}", err=True)
            _written(engine, quiet)
    except LpipsError as exc:
        raise click.ClickException(str(exc)) from None


def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules["torch"] = None
        return False


def _written(path: Path, quiet: bool) -> None:
    """The stdout line of one file written: its path, and (unless quiet) its size."""
    path = Path(path)
    size = path.stat().st_size
    click.echo(str(path) if quiet else f"{path}  " + (f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"))


def _build_from_templates(specs, out: Path, backbone_weights, opset: int, forced: bool, quiet: bool) -> None:
    """The torch-free path (``template_build``): the same files the torch export writes, from graph templates."""
    from lpips_runtime.model.bundle import write_manifest

    from .template_build import build_from_template

    if backbone_weights is not None or opset != 17:
        raise click.UsageError("--backbone-weights and --opset need the torch export: pip install 'lpips-rt[export]'")
    require("onnx", "light-export", "lpips-export without torch")  # one line, before anything is said
    if not quiet:
        why = "--from-templates" if forced else "torch is not installed"
        click.echo(f"building from graph templates ({why}): the torch export's graphs with the verified "
                   "backbone weights filled in, each checked as the runtime checks models", err=True)
    paths = []
    for spec in specs:
        paths.append(build_from_template(spec, out))
        refresh_manifest_entry(paths[-1], spec)
        _written(paths[-1], quiet)
    if len(specs) > 1:
        _written(write_manifest(out, specs[0], paths, _exporter_label()), quiet)


def _exporter_label() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lpips-rt {version('lpips-rt')}"
    except PackageNotFoundError:
        return "lpips-rt source"


def _export_bundle(spec: ModelSpec, out: Path, opset: int, backbone_weights, check: bool, quiet: bool) -> None:
    """Export every graph of ``spec``'s bundle into ``out`` (weights fetched once), then its manifest; one stdout
    line per file as it is written, one stderr line summing up the checks."""
    from lpips_runtime.model.bundle import bundle_specs, write_manifest

    from .backbone_weights import reuse_loaded
    from .onnx_export import export_model

    members = bundle_specs(spec.net, spec.version, spec.calibrated)
    paths, reports = [], []
    with reuse_loaded():
        for member in members:
            with stdout_to_stderr():  # torch/onnx chatter: stdout carries the written paths only
                path, report = export_model(member, out, opset=opset, backbone_weights=backbone_weights,
                                            check=check)
            paths.append(path)
            reports.append((member, report))
            _written(path, quiet)
    _written(write_manifest(out, spec, paths, _exporter_label()), quiet)
    if check and not quiet:
        worst = max(float(r) for m, r in reports if m.precision == "fp32")
        frames = max((r.frames_vs_float for m, r in reports if r.frames_vs_float is not None), default=0.0)
        metric = {}
        for _, r in reports:
            for name, gap, _limit in r.metrics:
                metric[name] = max(metric.get(name, 0.0), gap)
        click.echo(f"checked {len(reports)} graphs: onnx.checker ok; max |ORT - torch| {worst:.2e} (limit 1e-05); "
                   f"uint8 vs float32 graph {frames:.2e} (limit 1e-06); "
                   + ", ".join(f"{n} max |ORT - torch| {g:.2e}" for n, g in metric.items()), err=True)


if __name__ == "__main__":
    main()
