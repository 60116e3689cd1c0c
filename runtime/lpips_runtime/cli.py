"""``lpips-score``: LPIPS distances of image pairs from the command line.

Exit codes: 0 every pair scored; 1 an error stopped the run (one line on stderr); 2 bad usage;
3 the run finished but some pairs failed (each has a row with its error); 130 interrupted.
"""
from __future__ import annotations

import json
import sys

import click

from .cli_common import errors_to_click, model_options, open_scorer, setup_logging
from .cluster.cli import RAY_OPTION_NAMES, ray_options
from .cluster.cli import check_usage as check_ray_usage

EXIT_PAIRS_FAILED = 3
EXIT_INTERRUPTED = 130
_LIST_LIMIT = 20  # names shown per side for unpaired files; the rest are counted


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


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f" ... and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else "")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--dir0", type=click.Path(file_okay=False), help="Pair files of the same name in DIR0 and DIR1.")
@click.option("--dir1", type=click.Path(file_okay=False))
@click.option("--all-pairs", type=click.Path(file_okay=False), help="Score every pair i<j of one folder.")
@click.option("--consecutive", is_flag=True, help="With --all-pairs: only neighbours (i, i+1) in name order.")
@click.option("--ref", type=click.Path(dir_okay=False), help="One reference image, scored against every image in --dir.")
@click.option("--dir", "ref_dir", type=click.Path(file_okay=False), help="The folder of images for --ref.")
@click.option("--pairs", "pairs_csv", type=click.Path(dir_okay=False),
              help="CSV of two path columns (relative to the CSV's folder).")
@click.option("--out", type=click.Path(), help="Stream rows to a .csv or .jsonl file (--ray: a folder).")
@click.option("--resume", is_flag=True, help="Skip pairs already in --out and append the rest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="JSON output (a JSON object; JSON lines in batch modes).")
@click.option("--heatmap", type=click.Path(dir_okay=False), help="Write the spatial distance map as a picture.")
@click.option("--heatmap-alpha", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="Weight of the colours over the reference image (1: colours only).")
@click.option("--heatmap-max", type=click.FloatRange(min=0, min_open=True),
              help="Map value shown as the top colour (default: the map's maximum).")
@click.option("--colormap", type=click.Choice(["inferno", "jet", "viridis", "magma", "turbo"]), default="inferno",
              show_default=True)
@model_options
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Decoding threads (default: up to 4).")
@click.option("--resize", default="none", show_default=True,
              help="none (sizes must match), first (resize the second to the first), or WxH (both).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
@ray_options
def main(images, dir0, dir1, all_pairs, consecutive, ref, ref_dir, pairs_csv, out, resume, overwrite, as_json, heatmap,
         heatmap_alpha, heatmap_max, colormap, batch_size, workers, resize, quiet, **model_opts):
    """LPIPS distance of two images (A B), or of many pairs (--dir0/--dir1, --all-pairs, --pairs,
    --ref/--dir).

    --all-pairs and --ref/--dir encode each image once and compare the cached features (ONNX Runtime
    backend): one reference against N images costs N+1 encoder runs, all pairs of N images N runs.

    \b
    lpips-score ref.png out.png                      prints the distance
    lpips-score ref.png out.png --heatmap diff.png   and writes where they differ
    lpips-score --dir0 gt/ --dir1 pred/ --out scores.csv
    lpips-score --ref gt.png --dir outputs/ --out scores.csv
    lpips-score --pairs pairs.csv --out results/ --ray --actors 4   on a Ray cluster
    """
    setup_logging(quiet)
    mode = _mode(images, dir0, dir1, all_pairs, pairs_csv, ref, ref_dir)
    ray_opts = {name: model_opts.pop(name) for name in RAY_OPTION_NAMES}
    check_ray_usage(ray_opts, mode, out, consecutive, heatmap, resume)
    if mode == "pair" and (out or resume):
        raise click.UsageError("--out/--resume are for batch modes; a single pair prints its distance")
    if mode != "pair" and heatmap:
        raise click.UsageError("--heatmap is for a single pair A B")
    if resume and not out:
        raise click.UsageError("--resume needs --out")
    if ray_opts["use_ray"]:
        from .cluster.cli import run_batch_mode

        with errors_to_click():  # --pairs tables are read by the cluster; other modes list their pairs here
            sys.exit(run_batch_mode(ray_opts, model_opts, table=pairs_csv,
                                    folder=all_pairs if mode == "all-pairs" and not consecutive else None,
                                    pairs=lambda: _batch_pairs(mode, dir0, dir1, all_pairs, consecutive, pairs_csv,
                                                               ref, ref_dir),
                                    out=out, resume=resume, overwrite=overwrite, quiet=quiet,
                                    batch_size=batch_size, resize=resize))
    with errors_to_click():
        scorer = open_scorer(model_opts, batch_size=batch_size, workers=workers, resize=resize)
        with scorer:
            if mode == "pair":
                _score_one(scorer, images, as_json, heatmap, heatmap_alpha, heatmap_max, colormap)
                return
            code = _score_many(scorer, mode, dir0, dir1, all_pairs, consecutive, pairs_csv, ref, ref_dir, out,
                               resume, overwrite, as_json, quiet)
    sys.exit(code)


def _score_one(scorer, images, as_json, heatmap, alpha, vmax, colormap) -> None:
    from .heatmap import render_heatmap, write_image
    from .images import load_rgb

    if heatmap:
        scorer.model_info()  # model problems first, as for a plain pair
        # Decode once for the distance, the map and the picture (drawn over the reference as scored).
        rgb0, rgb1 = scorer.resize.apply(load_rgb(images[0]), load_rgb(images[1]), (images[0], images[1]))
        value = scorer.distance(rgb0, rgb1)
        dmap = scorer.distance_map(rgb0, rgb1)
        write_image(heatmap, render_heatmap(dmap, rgb0 if alpha < 1 else None, alpha, colormap, vmax))
    else:
        value = scorer.distance(images[0], images[1])
    if as_json:
        spec = scorer.spec
        click.echo(json.dumps({"img0": images[0], "img1": images[1], "distance": value, "net": spec.net,
                               "version": spec.version, "calibrated": spec.calibrated,
                               "backend": scorer.backend_name, "device": scorer.device}))
    else:
        click.echo(f"{value:.6f}")


def _uses_cache(scorer, mode: str, consecutive: bool) -> bool:
    """The feature cache serves one-vs-many and all-pairs runs on ONNX Runtime. "first" resizing makes an
    image's size depend on its partner, so all pairs then go through the fused graph pair by pair."""
    if scorer.backend_name != "ort":
        return False
    return mode == "ref" or (mode == "all-pairs" and not consecutive and scorer.resize.mode != "first")


def _batch_pairs(mode, dir0, dir1, all_pairs, consecutive, pairs_csv, ref, ref_dir) -> list:
    """The pairs of a batch mode (listing the files found in one folder only, on stderr)."""
    from pathlib import Path

    from .pairs import folder_pairs, list_images, pair_folders, read_pairs_csv

    if mode == "dirs":
        pairing = pair_folders(dir0, dir1)
        pairs = pairing.pairs
        for side, folder, names in (("0", dir0, pairing.only0), ("1", dir1, pairing.only1)):
            if names:
                click.echo(f"only in dir{side} ({folder}), not scored: {_listing(names)}", err=True)
    elif mode == "all-pairs":
        pairs = folder_pairs(all_pairs, consecutive)
    elif mode == "ref":
        # The reference itself is left out when it lies in the folder (its distance would be 0).
        pairs = [(Path(ref), p) for p in list_images(ref_dir) if p.resolve() != Path(ref).resolve()]
    else:
        pairs = read_pairs_csv(pairs_csv)
    return pairs


def _score_many(scorer, mode, dir0, dir1, all_pairs, consecutive, pairs_csv, ref, ref_dir, out, resume,
                overwrite, as_json, quiet) -> int:
    from pathlib import Path

    from .pairs import list_images
    from .progress import Progress
    from .results import ResultWriter

    pairs = _batch_pairs(mode, dir0, dir1, all_pairs, consecutive, pairs_csv, ref, ref_dir)
    label = scorer.spec.describe()
    writer = (ResultWriter(out, label, resume=resume, overwrite=overwrite) if out
              else ResultWriter(None, label, stream=sys.stdout, jsonl=as_json))
    todo = [p for p in pairs if (str(p[0]), str(p[1])) not in writer.done]
    if writer.done and not quiet:
        click.echo(f"resuming {out}: {len(pairs) - len(todo)} pairs already there, {len(todo)} to go", err=True)
    progress = Progress(len(todo), enabled=not quiet and sys.stderr.isatty())
    if not _uses_cache(scorer, mode, consecutive):
        results = scorer.score_pairs(todo)
    elif mode == "ref":
        results = scorer.score_one_to_many(Path(ref), [p[1] for p in todo]) if todo else iter(())
    else:
        results = scorer.score_all_pairs(list_images(all_pairs), skip=writer.done)
    try:
        for result in results:
            writer.write(result)
            progress.update()
    except KeyboardInterrupt:
        progress.close()
        writer.close()
        where = f"; rerun with --resume to finish {out}" if out else ""
        click.echo(f"interrupted after {progress.count} of {len(todo)} pairs{where}", err=True)
        return EXIT_INTERRUPTED
    progress.close()
    writer.close()
    if not quiet:
        click.echo(writer.summary.line(), err=True)
    return EXIT_PAIRS_FAILED if writer.summary.failures else 0


if __name__ == "__main__":
    main()
