"""``lpips-video``: per-frame LPIPS of two videos, with VMAF-style pooled statistics.

Exit codes (``batchrun``'s, as ``lpips-score``): 0 every frame scored; 1 an error stopped the run, the frame
counts differ without --shortest, or there was no frame pair to score (one line on stderr; rows already written
are kept); 2 bad usage; 3 the run
finished but some frames failed to decode or score (each has a row with its error); 130 interrupted.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import click

from ..commands.common import (
    errors_to_click,
    heatmap_options,
    model_options,
    open_scorer,
    scorer_option,
    setup_logging,
)
from ..records.pooling import STAT_NAMES

# Frames per inference batch when --batch-size is not given: about 2 megapixels per batch (1 frame at
# 1080p, 2 at 720p, 16 at 360x360 and below). Measured for alex at 1080p on the CPU: each pair in a batch
# adds about 560 MiB of ONNX Runtime buffers (peak RSS 648 / 1208 / 2296 MiB at batch 1 / 2 / 4) and no
# speed (0.21 / 0.18 / 0.14 pairs/s on a loaded machine): a frame of that size already fills the cores.
AUTO_BATCH_PIXELS = 2_100_000
MAX_AUTO_BATCH = 16


def auto_batch_size(width: int, height: int) -> int:
    return max(1, min(MAX_AUTO_BATCH, AUTO_BATCH_PIXELS // max(1, width * height)))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ref", type=click.Path(dir_okay=False))
@click.argument("dist", type=click.Path(dir_okay=False))
@click.option("--offset", type=int, default=0, show_default=True,
              help="Skip K frames of DIST (REF frame i meets DIST frame i+K); negative: skip -K frames of REF.")
@click.option("--step", type=click.IntRange(min=1), default=1, show_default=True, help="Score every S-th frame pair.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Score at most N frame pairs.")
@click.option("--shortest", is_flag=True, help="Different frame counts are fine: score the common part.")
@click.option("--raw", "raw_size", metavar="WxH", help="Frame size of headerless *.yuv / *.raw inputs.")
@click.option("--pix-fmt", default="yuv420p", show_default=True, help="Pixel format of --raw inputs (FFmpeg's name).")
@click.option("--raw-fps", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True,
              help="Frame rate of --raw inputs (their rows' pts_* are frame index / rate).")
@click.option("--colorspace", type=click.Choice(["auto", "bt709", "bt601", "bt2020", "smpte240m", "fcc"]),
              default="auto", show_default=True, help="YUV matrix; auto: the file's tag (untagged: BT.709 for HD, "
              "BT.601 for SD).")
@click.option("--range", "colour_range", type=click.Choice(["auto", "limited", "full"]), default="auto",
              show_default=True, help="YUV range; auto: the file's tag (untagged: limited, full for yuvj*).")
@click.option("--chroma", type=click.Choice(["bilinear", "nearest"]), default="bilinear", show_default=True,
              help="Chroma upsampling (nearest: swscale's fast path).")
@scorer_option("resize", help="none (sizes must match), first (DIST frames to REF's size), or WxH (both).")
@click.option("--out", type=click.Path(dir_okay=False), help="Stream rows to a .csv or .jsonl file.")
@click.option("--resume", is_flag=True, help="Skip frames already in --out and append the rest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Rows on stdout as JSON lines (default CSV).")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False),
              help="Write the pooled statistics as JSON (also printed on stderr).")
@click.option("--heatmap-video", type=click.Path(dir_okay=False),
              help="Write each frame's spatial distance map as a video (e.g. heat.mp4; one more inference per frame).")
@heatmap_options(allow_auto=False)
@model_options
@scorer_option("batch_size", default=None, show_default=False, help="Frame pairs per inference (default: ~2 Mpx).")
@click.option("-q", "--quiet", is_flag=True, help="No progress, no summary on stderr.")
def main(ref, dist, offset, step, max_frames, shortest, raw_size, pix_fmt, raw_fps, colorspace, colour_range, chroma, resize,
         out, resume, overwrite, as_json, summary_path, heatmap_video, heatmap_alpha, heatmap_max, colormap,
         batch_size, quiet, **model_opts):
    """LPIPS of every frame of DIST against the same frame of REF, pooled like VMAF (mean, harmonic
    mean, std, min, p5, p50, p95, max, worst frame). --metrics psnr,ssim adds their columns and the same
    statistics of each (worst frame: the lowest; frames of infinite PSNR counted apart).

    Reads any container and codec FFmpeg reads (PyAV), Y4M, and headerless raw frames (--raw WxH
    --pix-fmt). 8-bit video is scored through the uint8 frame graph; 10-bit and deeper through the
    float graph from 16-bit RGB.

    \b
    lpips-video ref.mp4 encoded.mp4                         rows on stdout, summary on stderr
    lpips-video ref.y4m out.mkv --out frames.csv --summary summary.json
    lpips-video ref.yuv dec.yuv --raw 1920x1080 --pix-fmt yuv420p10le
    lpips-video ref.mp4 shifted.mp4 --offset 2 --shortest --step 10
    """
    setup_logging(quiet)
    if resume and not out:
        raise click.UsageError("--resume needs --out")
    if out and as_json:
        raise click.UsageError("--json is for rows on stdout; --out chooses by its extension (.csv or .jsonl)")
    if raw_size is None and (pix_fmt != "yuv420p" or raw_fps != 25.0):
        raise click.UsageError("--pix-fmt and --raw-fps go with --raw WxH")
    with errors_to_click():
        from .align import Alignment
        from .compare import VideoComparison
        from .source import RawFormat

        raw = RawFormat.parse(raw_size, pix_fmt, raw_fps) if raw_size else None
        with VideoComparison(ref, dist, raw=raw, alignment=Alignment(offset, step, max_frames, shortest),
                             colorspace=colorspace, colour_range=colour_range, chroma=chroma,
                             resize=resize) as videos:
            # No on-demand export: a missing graph is an error naming the one lpips-export command.
            scorer = open_scorer(model_opts, frames=videos.frame_layout, resize=videos.resize,
                                 batch_size=batch_size or auto_batch_size(*videos.size), auto_export=False)
            with scorer:
                videos.check_scorer(scorer)
                heatmap = _heatmap_writer(scorer, videos, heatmap_video, heatmap_alpha, colormap, heatmap_max)
                code = _score(videos, scorer, out, resume, overwrite, as_json, summary_path, heatmap, quiet)
    sys.exit(code)


def _heatmap_writer(scorer, videos, path, alpha, colormap, vmax):
    if not path:
        return None
    from .heatmap_video import HeatmapVideoWriter

    from ..io.heatmap import heatmap_scale

    scorer.model_info(spatial=True)  # the spatial graph: located or exported now, not after the first frame
    # One scale for every frame (a per-frame maximum would flicker): the net's default, as lpips-score's pictures.
    return HeatmapVideoWriter(path, videos.ref.info.rate, heatmap_scale(scorer.spec.net, None, vmax), alpha,
                              colormap)


def _score(videos, scorer, out, resume, overwrite, as_json, summary_path, heatmap, quiet) -> int:
    from ..errors import InputError
    from ..records.pooling import Pooling
    from ..commands.batchrun import BatchRun
    from ..records.results import ResultWriter, metric_columns
    from .score import FRAME_COLUMNS, FRAME_KEY

    label = replace(scorer.spec, frames=None).describe()  # one label for 8-bit (frame graph) and deeper runs
    writer = ResultWriter(out, columns=metric_columns(FRAME_COLUMNS, scorer.metrics), fmt="jsonl" if as_json else None,
                          constants={"model": label}, key_columns=FRAME_KEY, path_columns=(), resume=resume,
                          overwrite=overwrite, stream=sys.stdout, keep_existing=True)
    pooling = Pooling()
    # PSNR and SSIM: higher is better, so their worst frame is their lowest
    metric_pooling = {m: Pooling(higher_is_worse=False) for m in scorer.metrics}
    for row in writer.existing:  # rows of an earlier run (--resume) count in the statistics
        scored = row.get("distance") not in (None, "")
        pooling.add(int(row["frame"]), float(row["distance"]) if scored else None)
        for m, metric in metric_pooling.items():  # empty in a scored row: PSNR's +inf written as JSON null
            metric.add(int(row["frame"]), (float(row[m]) if row.get(m) not in (None, "") else math.inf)
                       if scored else None)
    done = frozenset(int(key[0]) for key in writer.done)
    if not quiet:
        for source, conversion in zip(videos.sources, videos.conversions):
            info = source.info
            click.echo(f"{source.name}: {info.size()} {info.pix_fmt} {info.codec}; {conversion.describe()}", err=True)
    run = BatchRun(out, unit="frames", quiet=quiet).start(videos.expected_pairs(len(done)), already=len(done))
    with run.scoring(writer, *([heatmap] if heatmap is not None else [])):
        for result in videos.frames(scorer, done, keep_frames=heatmap is not None):
            writer.write_row(result.row())
            pooling.add(result.frame, result.distance)
            for m, metric in metric_pooling.items():
                metric.add(result.frame, result.metrics[m] if result.ok else None)
            if heatmap is not None and result.ok:
                heatmap.write(scorer.distance_map(result.ref, result.dist), result.ref)
            run.update()
    if run.interrupted:
        if summary_path:  # what was scored so far, marked incomplete (as lpips-score --summary-json)
            _write_summary(summary_path, pooling.stats(), label, scorer, videos, None, metric_pooling, complete=False)
        return run.finish()
    stats = pooling.stats()
    lines = [stats.line("worst_frame")]
    for m, metric in metric_pooling.items():
        identical = f" identical={metric.infinite} (inf, left out)" if metric.infinite else ""
        lines.append(f"{m}: {metric.stats().line('worst_frame')}{identical}")
    code = run.finish(lines, stats.failures + len(videos.read_errors))
    failure = videos.failure()
    if summary_path:
        _write_summary(summary_path, stats, label, scorer, videos, failure, metric_pooling)
    for message in videos.read_errors:  # the stream stopped early: frames after it are missing
        click.echo(f"warning: {message}", err=True)
    if failure:
        raise InputError(failure + ("; rows of the common frames are kept" if stats.n or stats.failures else ""))
    if not stats.n and not stats.failures:  # e.g. an --offset past the end with --shortest
        raise InputError("no frame pairs to score: " + ", ".join(
            f"{s.name} has {r.count} frames" for s, r in zip(videos.sources, videos.readers))
            + f" (--offset {videos.alignment.offset}{' --shortest' if videos.alignment.shortest else ''})")
    return code


def _write_summary(path, stats, label, scorer, videos, failure, metric_pooling, complete: bool = True) -> None:
    """The pooled statistics and what was compared, as one JSON object (with metrics: the same statistics
    of each under "metrics", the worst frame being the lowest, and ``identical``: frames of infinite PSNR;
    ``complete``: false when the run was interrupted)."""
    summary = {**scorer.identity, "model": label, "frames_scored": stats.n, "failures": stats.failures,
               "complete": complete}
    summary |= {name: getattr(stats, name) for name in STAT_NAMES}
    summary |= {"worst_frame": stats.worst}
    if metric_pooling:
        summary["metrics"] = {m: {"frames": s.n, **{name: getattr(s, name) for name in STAT_NAMES},
                                  "worst_frame": s.worst, "identical": metric.infinite}
                              for m, metric in metric_pooling.items() for s in [metric.stats()]}
    summary |= {"error": failure, "read_errors": videos.read_errors, **videos.describe()}
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(summary, indent=1) + "\n")
    except OSError as exc:
        raise click.ClickException(f"--summary {path}: cannot write ({exc.strerror})") from None


if __name__ == "__main__":
    main()
