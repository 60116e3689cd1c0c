"""``lpips-score``: LPIPS distances of image pairs from the command line.

stdout carries results only (the distance, JSON, or result rows); messages, progress and the summary
go to stderr. Exit codes: 0 every pair scored; 1 an error stopped the run (one line on stderr, no
traceback), including a run that finds nothing to score, a full disk and a closed stdout; 2 bad usage;
3 the run finished but some pairs failed (each has a row with its error); 130 interrupted (SIGINT);
141 the reader of stdout went away (``| head``), quietly, as for a tool killed by SIGPIPE.
"""
from __future__ import annotations

import json
import sys

import click

from .common import (
    errors_to_click,
    heatmap_options,
    model_options,
    open_scorer,
    require_stdout,
    scorer_option,
    setup_logging,
    tool_version_option,
)
from ..cluster.cli import RAY_OPTION_NAMES, ray_options
from ..cluster.cli import check_usage as check_ray_usage
from ..io.pairs import IMAGE_SUFFIXES
from ..model.pixel_metrics import format_metric, json_number
from ..records.results import FORMATS

_LIST_LIMIT = 20  # names shown per side for unpaired or skipped files; the rest are counted
_BATCH_ONLY = ("out", "resume", "overwrite", "summary_json", "fmt", "recursive", "header")


def _mode(images, dir0, dir1, all_pairs, pairs_csv, ref, ref_dir) -> str:
    chosen = [name for name, on in (("pair", bool(images)), ("dirs", bool(dir0 or dir1)),
                                    ("all-pairs", bool(all_pairs)), ("pairs", bool(pairs_csv)),
                                    ("ref", bool(ref or ref_dir))) if on]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of: two images A B, --dir0/--dir1, --all-pairs DIR, --pairs CSV, "
                               "--ref IMG --dir DIR")
    if chosen[0] == "pair" and len(images) != 2:
        raise click.UsageError(f"expected two images, got {len(images)}")
    if chosen[0] == "dirs" and not (dir0 and dir1):
        raise click.UsageError("--dir0 and --dir1 go together")
    if chosen[0] == "ref" and not (ref and ref_dir):
        raise click.UsageError("--ref and --dir go together")
    return chosen[0]


def _row_format(out: str | None, fmt: str | None, as_json: bool) -> str | None:
    """The --format of batch rows, with --json as a synonym of jsonl (a contradiction is a usage error)."""
    if as_json:
        if fmt == "csv":
            raise click.UsageError("--json writes JSON lines: drop --format csv or --json")
        fmt = "jsonl"
    from ..errors import InputError
    from ..records.results import format_for

    try:
        return format_for(out, fmt)
    except InputError as exc:
        if as_json and out not in (None, "-"):
            raise click.UsageError(f"--json writes JSON lines, but --out {out} is not a .jsonl file: "
                                   "name it .jsonl or drop --json") from None
        raise click.UsageError(str(exc)) from None


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f" ... and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else "")


def _check_heatmap_path(ctx, _param, value):
    if value is None:
        return value
    import cv2

    if not cv2.haveImageWriter(value):
        raise click.BadParameter(f"OpenCV cannot write '{value}': use a picture format such as .png or .jpg")
    return value


_SUFFIXES = " ".join(sorted(IMAGE_SUFFIXES))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--dir0", type=click.Path(file_okay=False),
              help="Pair the images at the same relative path in DIR0 and DIR1.")
@click.option("--dir1", type=click.Path(file_okay=False))
@click.option("--all-pairs", type=click.Path(file_okay=False), help="Score every pair i<j of one folder.")
@click.option("--consecutive", is_flag=True, help="With --all-pairs: only neighbours (i, i+1) in name order.")
@click.option("--ref", type=click.Path(dir_okay=False), help="One reference image, scored against every image in --dir.")
@click.option("--dir", "ref_dir", type=click.Path(file_okay=False), help="The folder of images for --ref.")
@click.option("--recursive", "-r", is_flag=True,
              help=f"Folders: include subfolders (the path relative to the folder pairs --dir0/--dir1). "
                   f"Images are files named {_SUFFIXES} (any case); other files are listed as skipped, "
                   "hidden ones ignored.")
@click.option("--pairs", "pairs_csv", type=click.Path(dir_okay=False),
              help="CSV of two path columns (relative to the CSV's folder; further columns ignored).")
@click.option("--header/--no-header", default=None,
              help="Whether the first row of --pairs is a header. [default: a header unless one of its two "
                   "cells names an image type or an existing file]")
@click.option("--out", metavar="FILE|-",
              help="Write rows to FILE (.csv or .jsonl; relative image paths are written relative to its "
                   "folder; locked while written: a second run on it is refused) or to stdout (-). "
                   "[default: stdout]")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Row format. [default: from the --out suffix; csv on stdout]")
@click.option("--resume", is_flag=True,
              help="Skip pairs already in --out and append the rest. The file is checked first: one of another "
                   "format or model, or a damaged row, is an error naming the line; an incomplete last row "
                   "(a kill, a full disk) is dropped and redone.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON output: a JSON object for a pair; JSON lines in batch modes (--format jsonl).")
@click.option("--summary-json", type=click.Path(dir_okay=False),
              help="Batch modes: write n, mean, std, std error, min, max, failures, model, device and speed "
                   "to this JSON file (also when interrupted, with complete: false).")
@click.option("--heatmap", type=click.Path(dir_okay=False), callback=_check_heatmap_path,
              help="Write the spatial distance map as a picture (.png, .jpg, ...) with a colour bar.")
@heatmap_options(allow_auto=True)
@model_options
@scorer_option("batch_size")
@scorer_option("workers")
@scorer_option("resize")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary line, no device notice.")
@tool_version_option
@ray_options
def main(images, dir0, dir1, all_pairs, consecutive, ref, ref_dir, recursive, pairs_csv, header, out, fmt, resume,
         overwrite, as_json, summary_json, heatmap, heatmap_alpha, heatmap_max, colormap, batch_size, workers, resize,
         quiet, **model_opts):
    """LPIPS distance of two images (A B), or of many pairs (--dir0/--dir1, --all-pairs, --pairs,
    --ref/--dir).

    --all-pairs and --ref/--dir encode each image once and compare the cached features (ort and openvino
    backends): one reference against N images costs N+1 encoder runs, all pairs of N images N runs
    (with --metrics they score pair by pair through the fused graph instead: PSNR and SSIM need pixels).

    --metrics psnr,ssim adds a column per metric (PSNR in dB, inf for identical images: null in JSON)
    and its mean to the summary.

    \b
    lpips-score ref.png out.png                      prints the distance
    lpips-score ref.png out.png --heatmap diff.png   and writes where they differ
    lpips-score --dir0 gt/ --dir1 pred/ --out scores.csv --summary-json summary.json
    lpips-score --ref gt.png --dir outputs/ --out - --format jsonl
    lpips-score --pairs pairs.csv --out results/ --ray --actors 4   on a Ray cluster

    Exit codes: 0 all scored; 1 error (one line on stderr), nothing to score included; 2 usage;
    3 finished, but some pairs failed (their rows say why); 130 interrupted; 141 stdout's reader went
    away (| head).
    """
    setup_logging(quiet)
    mode = _mode(images, dir0, dir1, all_pairs, pairs_csv, ref, ref_dir)
    ray_opts = {name: model_opts.pop(name) for name in RAY_OPTION_NAMES}
    check_ray_usage(ray_opts, mode, dict(out=out, fmt=fmt, as_json=as_json, resume=resume, heatmap=heatmap,
                                         consecutive=consecutive, metrics=model_opts["metrics"]))
    given = dict(out=out, resume=resume, overwrite=overwrite, summary_json=summary_json, fmt=fmt,
                 recursive=recursive, header=header)
    if mode == "pair" and any(given[k] not in (None, False) for k in _BATCH_ONLY):
        raise click.UsageError("--out, --format, --resume, --overwrite, --summary-json, --recursive and "
                               "--header are for batch modes; a single pair prints its distance")
    if mode != "pair" and (heatmap or heatmap_max is not None):
        raise click.UsageError("--heatmap is for a single pair A B")
    if header is not None and mode != "pairs":
        raise click.UsageError("--header/--no-header describe the --pairs file")
    if recursive and mode == "pairs":
        raise click.UsageError("--recursive is for folders (--dir0/--dir1, --dir, --all-pairs)")
    if resume and out in (None, "-"):
        raise click.UsageError("--resume needs --out FILE")
    how = dict(dir0=dir0, dir1=dir1, all_pairs=all_pairs, consecutive=consecutive, pairs_csv=pairs_csv, ref=ref,
               ref_dir=ref_dir, recursive=recursive, header=header)
    if ray_opts["use_ray"]:
        from ..cluster.cli import run_batch_mode

        with errors_to_click():
            sys.exit(run_batch_mode(ray_opts, model_opts, mode, how, lambda: _collect_pairs(mode, how), out=out,
                                    resume=resume, overwrite=overwrite, summary_json=summary_json, quiet=quiet,
                                    batch_size=batch_size, resize=resize))
    row_format = _row_format(out, fmt, as_json) if mode != "pair" else None
    with errors_to_click():
        if mode == "pair":
            require_stdout("print the distance")
        elif out in (None, "-"):
            require_stdout("write the rows (give --out FILE)")
        scorer = open_scorer(model_opts, quiet=quiet, batch_size=batch_size, workers=workers, resize=resize)
        with scorer:
            if mode == "pair":
                _score_one(scorer, images, as_json, heatmap, heatmap_alpha, heatmap_max, colormap)
                return
            code = _score_many(scorer, mode, how, out, row_format, resume, overwrite, summary_json, quiet)
    sys.exit(code)


def _score_one(scorer, images, as_json, heatmap, alpha, vmax, colormap) -> None:
    from .common import echo_result
    from ..formatting import float32_json, human
    from ..io.heatmap import pair_heatmap, write_image
    from ..io.names import json_fields

    if heatmap:
        scorer.model_info()  # model problems first, as for a plain pair
        # Decode once for the distance, the map and the picture (drawn over the reference as scored).
        rgb0, rgb1 = scorer.decode_pair(images[0], images[1])
        values = scorer.scores(rgb0, rgb1)
        dmap = scorer.distance_map(rgb0, rgb1)
        write_image(heatmap, pair_heatmap(scorer.spec.net, scorer.describe(), values["distance"], dmap, rgb0, alpha,
                                          colormap, vmax))
    else:
        values = scorer.scores(images[0], images[1])
    if as_json:
        identity = scorer.identity
        echo_result(json.dumps(json_fields({
            "img0": images[0], "img1": images[1], "distance": float32_json(values["distance"]),
            **{m: json_number(float32_json(values[m])) for m in scorer.metrics},
            **{key: value for key, value in identity.items() if key != "model"}, "model": identity["model"]})))
    else:
        echo_result(" ".join([human(values["distance"]),
                              *(f"{m}={format_metric(m, values[m])}" for m in scorer.metrics)]))


def _uses_cache(scorer, mode: str, consecutive: bool) -> bool:
    """The feature cache serves one-vs-many and all-pairs runs on the backends that run split graphs. "first"
    resizing makes an image's size depend on its partner, so all pairs then go through the fused graph pair
    by pair; so do runs with --metrics (cached features have no pixels for PSNR/SSIM)."""
    from ..backends import GRAPH_BACKENDS

    if scorer.backend_name not in GRAPH_BACKENDS or scorer.metrics:
        return False
    return mode == "ref" or (mode == "all-pairs" and not consecutive and scorer.resize.mode != "first")


def _collect_pairs(mode: str, how: dict) -> list:
    """The pairs of a batch mode; what was left out is said on stderr. Nothing to score is an error."""
    from pathlib import Path

    from ..errors import InputError
    from ..io.pairs import folder_pairs, pair_folders, read_pair_list, scan_folder

    recursive = how["recursive"]
    if mode == "dirs":
        pairing = pair_folders(how["dir0"], how["dir1"], recursive)
        for side, folder, only, skipped in (("0", how["dir0"], pairing.only0, pairing.skipped0),
                                            ("1", how["dir1"], pairing.only1, pairing.skipped1)):
            if only:
                click.echo(f"only in dir{side} ({folder}), not scored: {_listing(only)}", err=True)
            if skipped:
                click.echo(f"not images (by extension) in dir{side} ({folder}), skipped: {_listing(skipped)}",
                           err=True)
        if not pairing.pairs:
            raise InputError(f"nothing to score: no image has the same relative path in {how['dir0']} and "
                             f"{how['dir1']}" + ("" if recursive else " (subfolders: --recursive)"))
        return pairing.pairs
    if mode == "pairs":
        listing = read_pair_list(how["pairs_csv"], how["header"])
        if listing.header is not None and how["header"] is None:
            click.echo(f"first row of {how['pairs_csv']} taken as a header: {','.join(listing.header)} "
                       "(--no-header scores it)", err=True)
        if not listing.pairs:
            raise InputError(f"nothing to score: {how['pairs_csv']} lists no pairs")
        return listing.pairs
    folder = how["all_pairs"] if mode == "all-pairs" else how["ref_dir"]
    scan = scan_folder(folder, recursive)
    if scan.skipped:
        click.echo(f"not images (by extension) in {folder}, skipped: {_listing(scan.skipped)}", err=True)
    if mode == "all-pairs":
        pairs = folder_pairs(folder, how["consecutive"], recursive)
        if not pairs:
            raise InputError(f"nothing to score: {folder} has {len(scan.images)} image(s), all-pairs needs two")
        return pairs
    # --ref/--dir: the reference itself is left out when it lies in the folder (its distance would be 0).
    ref = Path(how["ref"])
    pairs = [(ref, p) for p in scan.images if p.resolve() != ref.resolve()]
    if not pairs:
        raise InputError(f"nothing to score: no image in {folder} besides the reference")
    return pairs


def _score_many(scorer, mode, how, out, row_format, resume, overwrite, summary_json, quiet) -> int:
    from pathlib import Path

    from .batchrun import BatchRun
    from ..io.pairs import list_images
    from ..records.results import ResultWriter, pair_columns
    from ..records.summary import RunSummary

    pairs = _collect_pairs(mode, how)
    summary = RunSummary(scorer.identity)
    target = None if out in (None, "-") else out
    writer = ResultWriter(target, columns=pair_columns(scorer.metrics), fmt=row_format,
                          constants={"model": scorer.describe()}, resume=resume, overwrite=overwrite,
                          stream=sys.stdout, summary=summary)
    keys = [writer.key_of({"img0": a, "img1": b}) for a, b in pairs]
    todo = [p for p, key in zip(pairs, keys) if key not in writer.done]
    cached = _uses_cache(scorer, mode, how["consecutive"])
    scorer.prepare(feature_cache=cached)  # the model is ready before the clock starts
    if not cached:
        results = scorer.score_pairs(todo)
    elif mode == "ref":
        results = scorer.score_one_to_many(Path(how["ref"]), [p[1] for p in todo]) if todo else iter(())
    else:
        skip = {(str(a), str(b)) for (a, b), key in zip(pairs, keys) if key in writer.done}
        results = scorer.score_all_pairs(list_images(how["all_pairs"], how["recursive"]), skip=skip)
    summary.start()
    run = BatchRun(target, quiet=quiet).start(len(todo), already=len(pairs) - len(todo))
    try:
        with run.scoring(writer):
            for result in results:
                writer.write(result)
                run.update()
    except Exception:  # a full disk, a closed pipe, a failing backend: what was written stays, the summary says so
        if summary_json:
            summary.write_json(summary_json, complete=False)
        raise
    finally:
        getattr(results, "close", lambda: None)()  # a generator stopped early releases what it holds now
    if summary_json:
        summary.write_json(summary_json, complete=not run.interrupted)
    return run.finish([summary.line()], summary.stats.failures)


if __name__ == "__main__":
    main()
