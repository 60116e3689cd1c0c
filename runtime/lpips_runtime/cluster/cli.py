"""``lpips-score --ray``: the batch modes on a Ray cluster. ``lpips_runtime.commands.score`` parses and
dispatches here; the modes themselves live in ``run`` (pair tables) and ``allpairs``."""
from __future__ import annotations


import click

from ..errors import InputError
from . import PART_FORMATS

_RAY_OPTIONS = (
    click.option("--ray", "use_ray", is_flag=True,
                 help="Run the batch mode on a Ray cluster (pip install 'lpips-rt[ray]'); --out is then a folder."),
    click.option("--ray-address", help="Cluster to join (e.g. auto, 10.0.0.5:6379; default: $RAY_ADDRESS, "
                                       "else a local cluster for this run)."),
    click.option("--actors", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Scoring actors (one Scorer each)."),
    click.option("--cpus-per-actor", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                 help="CPUs each actor reserves (its ONNX Runtime threads unless --threads)."),
    click.option("--gpus-per-actor", type=click.FloatRange(min=0), help="GPUs each actor reserves; a fraction "
                 "shares a GPU (default: 1 with --device cuda, else 0; with --device auto, actors given GPUs run "
                 "on CUDA)."),
    click.option("--threshold", type=float, help="--all-pairs --ray: write the pairs closer than this."),
    click.option("--top-k", type=click.IntRange(min=0), default=0, help="--all-pairs --ray: write each image's "
                 "k nearest."),
    click.option("--part-format", type=click.Choice(PART_FORMATS), default="parquet", show_default=True,
                 help="--ray: format of the result files in the --out folder."),
    click.option("--part-rows", type=click.IntRange(min=1), default=10_000, show_default=True,
                 help="--ray: rows per result file (a killed run redoes at most this many pairs)."),
)
RAY_OPTION_NAMES = ("use_ray", "ray_address", "actors", "cpus_per_actor", "gpus_per_actor", "threshold", "top_k",
                    "part_format", "part_rows")


def ray_options(command):
    """Decorate a click command with the cluster options (their keyword names: ``RAY_OPTION_NAMES``)."""
    for option in reversed(_RAY_OPTIONS):
        command = option(command)
    return command


def check_usage(ray_opts: dict, mode: str, given: dict) -> None:
    """``click.UsageError`` for option combinations the cluster modes do not take. ``given``: the
    values of --out, --format (fmt), --json (as_json), --resume, --heatmap, --consecutive and --metrics."""
    if not ray_opts["use_ray"]:
        named = [f"--{n.replace('_', '-')}" for n in ("ray_address", "threshold") if ray_opts[n] is not None]
        named += ["--top-k"] if ray_opts["top_k"] else []
        if named:
            raise click.UsageError(f"{named[0]} goes with --ray")
        return
    if mode == "pair" or given["heatmap"]:
        raise click.UsageError("--ray is for batch modes (--pairs, --dir0/--dir1, --all-pairs, --ref/--dir)")
    if given["out"] in (None, "-"):
        raise click.UsageError("--ray writes a folder of result files: give --out FOLDER")
    if given["fmt"] or given["as_json"]:
        raise click.UsageError("--ray writes Parquet or CSV files: choose with --part-format, not --format/--json")
    all_pairs = mode == "all-pairs" and not given["consecutive"]
    searched = ray_opts["threshold"] is not None or ray_opts["top_k"]
    if all_pairs and given["metrics"] and searched:
        raise click.UsageError("--threshold/--top-k search cached features, which have no pixels for --metrics: "
                               "drop one (--all-pairs --ray --metrics writes every pair, as without --ray)")
    if not all_pairs and searched:
        raise click.UsageError("--threshold/--top-k are for --all-pairs DIR --ray")
    if all_pairs and given["resume"] and not given["metrics"]:
        raise click.UsageError("--all-pairs --ray does not resume (it keeps no per-pair rows): rerun it with "
                               "--overwrite")


def _gpus(ray_opts: dict, device: str) -> float:
    from ..backends import is_cuda

    gpus = ray_opts["gpus_per_actor"]
    if gpus is None:
        return 1.0 if is_cuda(device) else 0.0
    if gpus and not (is_cuda(device) or device == "auto"):
        raise InputError("--gpus-per-actor reserves GPUs for --device cuda actors: add --device cuda")
    return gpus


def run_batch_mode(ray_opts: dict, model_opts: dict, mode: str, how: dict, pairs, *, out: str, resume: bool,
                   overwrite: bool, summary_json: str | None, quiet: bool, **scorer_settings) -> int:
    """The --ray branch of ``lpips-score``: ``how`` holds the mode's options (as ``lpips_runtime.commands.score``
    names them) and ``pairs()`` lists a folder mode's pairs. ``--all-pairs`` searches cached features
    (``allpairs``) unless metrics are asked for: those need the pixels of each pair, so every pair is
    scored and written as in the other modes (as the local ``--all-pairs --metrics`` does). Returns the
    exit code (``batchrun``'s)."""
    from ..commands.batchrun import BatchRun
    from . import uris
    from .session import cluster_errors, ray_session
    from .settings import settings_from_cli

    gpus = _gpus(ray_opts, model_opts["device"])
    settings = settings_from_cli(model_opts, gpus=gpus, **scorer_settings)
    common = dict(actors=ray_opts["actors"], cpus_per_actor=ray_opts["cpus_per_actor"], gpus_per_actor=gpus)
    run = BatchRun(out, quiet=quiet)
    if mode == "all-pairs" and not how["consecutive"] and not settings.metrics:  # with metrics: pair by pair
        from .allpairs import all_pairs

        images = uris.list_image_files(how["all_pairs"], how["recursive"])
        with ray_session(ray_opts["ray_address"]), cluster_errors(), _StageProgress(not quiet) as stages:
            report = all_pairs(images, out, settings, threshold=ray_opts["threshold"], top_k=ray_opts["top_k"],
                               overwrite=overwrite, on_progress=stages.update, **common)
        if summary_json:
            report.summary.write_json(summary_json)
        return run.finish([report.line()], report.summary.stats.failures)

    from .run import write_pair_scores

    source = how["pairs_csv"] if mode == "pairs" else pairs()  # a --pairs table is read by the cluster
    with ray_session(ray_opts["ray_address"]), cluster_errors(), run.scoring():
        report = write_pair_scores(source, out, settings, csv_header=how["header"], fmt=ray_opts["part_format"],
                                   resume=resume, overwrite=overwrite, part_rows=ray_opts["part_rows"],
                                   on_start=lambda todo, already: run.start(todo, already), on_rows=run.update,
                                   **common)
    if run.interrupted:
        return run.finish()
    if summary_json:
        report.summary.write_json(summary_json)
    return run.finish([report.summary.line()], report.summary.stats.failures)


class _StageProgress:
    """One progress bar per stage of an all-pairs run (images embedded, then tiles computed)."""

    def __init__(self, enabled: bool):
        self.enabled, self.stage, self.bar = enabled, None, None

    def update(self, stage: str, done: int, total: int) -> None:
        from ..commands.progress import Progress

        if stage != self.stage:
            self.close()
            unit = "images" if stage == "embed" else "tiles"
            self.stage, self.bar = stage, Progress(total, self.enabled, unit=unit).__enter__()
        self.bar.update(done - self.bar.count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
