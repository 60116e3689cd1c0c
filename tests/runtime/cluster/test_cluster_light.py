"""The cluster package's parts that need no running cluster: CLI usage errors, the result folder's
atomic parts and resume bookkeeping, URI handling, and that nothing of Ray is imported up front."""
from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from lpips_runtime.commands.score import main
from lpips_runtime.errors import InputError

pa = pytest.importorskip("pyarrow", reason="pyarrow comes with the ray extra")


@pytest.mark.parametrize("args, message", [
    (["a.png", "b.png", "--ray", "--out", "o"], "--ray is for batch modes"),
    (["--dir0", "x", "--dir1", "y", "--ray"], "give --out FOLDER"),
    (["--dir0", "x", "--dir1", "y", "--threshold", "0.1"], "--threshold goes with --ray"),
    (["--dir0", "x", "--dir1", "y", "--ray-address", "auto"], "--ray-address goes with --ray"),
    (["--dir0", "x", "--dir1", "y", "--ray", "--out", "o", "--top-k", "3"], "are for --all-pairs DIR --ray"),
    (["--all-pairs", "x", "--ray", "--out", "o", "--resume"], "does not resume"),
    (["--all-pairs", "x", "--ray", "--out", "o", "--metrics", "psnr", "--top-k", "3"], "no pixels for --metrics"),
])
def test_usage_errors(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output


def test_gpus_need_cuda_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    result = CliRunner().invoke(main, ["--all-pairs", str(tmp_path / "d"), "--ray", "--out", str(tmp_path / "o"),
                                       "--gpus-per-actor", "0.5"])
    assert result.exit_code == 1 and "add --device cuda" in result.output and "Traceback" not in result.output


def test_importing_the_package_imports_no_ray():
    code = ("import sys, lpips_runtime.cluster, lpips_runtime.commands.score; "
            "print([m for m in ('ray', 'pyarrow') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def _rows(*pairs, model="LPIPS-alex v0.1"):
    from lpips_runtime.cluster.pipeline import result_schema

    return pa.table({"img0": [a for a, _, _ in pairs], "img1": [b for _, b, _ in pairs],
                     "distance": [d if not isinstance(d, str) else None for *_, d in pairs],
                     "error": [d if isinstance(d, str) else None for *_, d in pairs],
                     "model": [model] * len(pairs)}, schema=result_schema())


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_result_folder_parts_resume_and_refusals(tmp_path, fmt):
    from lpips_runtime.cluster.output import ResultFolder, read_results

    folder = ResultFolder(tmp_path / "r", "LPIPS-alex v0.1", fmt)
    folder.write(_rows(("a", "b", 0.25), ("a", "c", "c: no such file")))
    (tmp_path / "r" / f".part-killed-00009.{fmt}.tmp").write_bytes(b"half a file")  # a killed run's leftover
    with pytest.raises(InputError, match="pass --resume"):
        ResultFolder(tmp_path / "r", "LPIPS-alex v0.1", fmt)
    resumed = ResultFolder(tmp_path / "r", "LPIPS-alex v0.1", fmt, resume=True)
    assert resumed.done.to_pylist() == ["a\0b", "a\0c"] and resumed.rows_before == 2
    assert not list((tmp_path / "r").glob(".*.tmp"))
    assert (resumed.summary.stats.n, resumed.summary.stats.failures, resumed.summary.resumed) == (1, 1, 2)
    resumed.write(_rows(("b", "c", 0.5)))
    assert sorted(read_results(tmp_path / "r").column("img1").to_pylist()) == ["b", "c", "c"]
    assert resumed.summary.stats.n == 2 and resumed.summary.this_run == 1
    with pytest.raises(InputError, match="holds results of LPIPS-alex v0.1, not LPIPS-vgg v0.1"):
        ResultFolder(tmp_path / "r", "LPIPS-vgg v0.1", fmt, resume=True)
    ResultFolder(tmp_path / "r", "LPIPS-vgg v0.1", fmt, overwrite=True)
    assert read_results(tmp_path / "r").num_rows == 0


def test_csv_parts_hold_the_shortest_float32_decimal(tmp_path):
    from lpips_runtime.cluster.output import ResultFolder

    part = ResultFolder(tmp_path / "r", "m", "csv").write(_rows(("a", "b", 0.14583078026771545), model="m"))
    assert part.read_text().splitlines() == ["img0,img1,distance,error,model", "a,b,0.14583078,,m"]


def test_uris():
    from lpips_runtime.cluster import uris
    from lpips_runtime.io.images import EncodedImage

    assert uris.join("lists", "a.png") == "lists/a.png" and uris.join("", "a.png") == "a.png"
    assert uris.join("s3://bucket/lists", "a.png") == "s3://bucket/lists/a.png"
    assert uris.join("s3://bucket/lists", "/abs/a.png") == "/abs/a.png"
    assert uris.join("lists", "gs://b/a.png") == "gs://b/a.png"
    assert uris.parent("s3://bucket/lists/pairs.csv") == "s3://bucket/lists" and uris.parent("pairs.csv") == ""
    assert uris.image_source("file:///x/a.png", None) == "/x/a.png" and uris.image_source("rel/a.png", 10) == "rel/a.png"
    with pytest.raises(InputError, match="mem://x.png: cannot open its filesystem"):
        uris.read_bytes("mem://x.png")
    assert isinstance(EncodedImage(b"", "n"), EncodedImage)


def test_table_format():
    from lpips_runtime.cluster.table import table_format

    assert table_format("s3://b/pairs.csv") == "csv" and table_format("pairs.parquet") == "parquet"
    assert table_format("gs://b/table/") == "parquet"
    with pytest.raises(InputError, match="a .csv or .parquet"):
        table_format("pairs.xlsx")


def test_remote_reads_are_capped(tmp_path):
    from lpips_runtime.cluster import uris

    (tmp_path / "f.bin").write_bytes(bytes(100))
    uri = (tmp_path / "f.bin").as_uri()  # read through pyarrow's filesystem, as s3:// or gs:// would be
    assert uris.read_bytes(uri, 100) == bytes(100) and uris.read_bytes(uri) == bytes(100)
    with pytest.raises(InputError, match="f.bin: more than the 99 bytes allowed"):
        uris.read_bytes(uri, 99)


def test_workers_get_the_limits_and_the_graphs_to_tile_with(split_models):
    """Cluster workers build their Scorers with the driver's pixel limit, tiling and memory budget, and
    get the split graphs that tiles run on: a worker's tiled distance equals the driver's."""
    import cv2
    import numpy as np

    from conftest import crop, distort, photo
    from lpips_runtime import Scorer
    from lpips_runtime.cluster.settings import ScorerSettings, WorkerModel
    from lpips_runtime.errors import ImageTooLargeError
    from lpips_runtime.io.images import EncodedImage

    models = split_models("alex")
    settings = ScorerSettings("alex", models_dir=str(models), auto_export=False, max_pixels=20_000, tile=64,
                              max_memory=64 << 20)
    model = WorkerModel.resolve(settings)
    assert sorted(model.files) == ["lpips-alex-v0.1-encoder.onnx", "lpips-alex-v0.1-head.onnx",
                                   "lpips-alex-v0.1.onnx"]
    assert list(WorkerModel.resolve(ScorerSettings("alex", models_dir=str(models), tile="off")).files) == \
        ["lpips-alex-v0.1.onnx"]

    a = crop(photo("chelsea"), 96, 128)
    b = distort(a, "blur", 0.5)
    big = cv2.imencode(".png", crop(photo("coffee"), 150, 150))[1].tobytes()  # 22,500 pixels
    decoder = model.without_files().decoder()
    with pytest.raises(ImageTooLargeError, match="above the limit of 20,000"):
        decoder.load_pair(EncodedImage(big, "big.png"), EncodedImage(big, "big.png"))
    x0, x1 = decoder.load_pair(a, b)
    with model.scorer(1.0) as worker, Scorer("alex", models_dir=models, auto_export=False, tile=64) as driver:
        assert (worker.max_pixels, worker.tile, worker.max_memory) == (20_000, 64, 64 << 20)
        assert worker.tile_plan(96, 128) is not None  # this pair really is scored in tiles
        assert worker.distance_prepared(x0, x1)[0] == np.float32(driver.distance(a, b))


def test_an_actor_with_more_cpus_than_its_node_has_cores_gets_one_thread_per_core(split_models):
    """Ray's logical CPUs may exceed a node's cores (``--num-cpus``): an actor of more CPUs than its process
    may use gets a Scorer with one thread per usable CPU, not a refusal that kills the actor (found when an
    actor of 4 logical CPUs died on a 2-core machine)."""
    from lpips_runtime.cluster.settings import ScorerSettings, WorkerModel
    from lpips_runtime.limits import available_cpus

    model = WorkerModel.resolve(ScorerSettings("alex", models_dir=str(split_models("alex")), auto_export=False))
    with model.scorer(float(available_cpus() + 2)) as wide, model.scorer(1.0) as narrow:
        assert (wide.threads, narrow.threads) == (available_cpus(), 1)
    with model.scorer(0.5) as half:  # a fraction of a CPU still gets a thread
        assert half.threads == 1


def test_settings_from_the_command_line_keep_the_limits():
    from lpips_runtime.cluster.settings import ScorerSettings

    ctx = main.make_context("lpips-score", ["--dir0", "x", "--dir1", "y", "--max-pixels", "5M", "--tile", "off",
                                            "--max-memory", "256M", "--precision", "bf16"])
    settings = ScorerSettings.from_cli(ctx.params, batch_size=4)
    assert (settings.max_pixels, settings.tile, settings.max_memory) == (5_000_000, "off", 256 << 20)
    assert settings.backend == "openvino" and settings.batch_size == 4  # the command line's default for bf16


# -- resources (issue 25, defect 3): the plan and the stall watchdog, without a cluster -------------


@pytest.mark.parametrize("actors, cpus, total, decode_in_actors", [
    (1, 1.0, 4, False), (2, 1.0, 4, False), (2, 1.0, 2, True), (1, 2.0, 2, True), (1, 1.5, 2, True),
    ((1, 3), 1.0, 4, False), ((1, 4), 1.0, 4, True)])
def test_resource_plan_leaves_a_cpu_for_decode_tasks_or_decodes_in_actors(actors, cpus, total, decode_in_actors):
    from lpips_runtime.cluster.resources import plan

    assert plan(actors, cpus, total={"CPU": total}).decode_in_actors is decode_in_actors


def test_resource_plan_refuses_actors_that_cannot_fit():
    from lpips_runtime.cluster.resources import plan
    from lpips_runtime.errors import ClusterError

    with pytest.raises(ClusterError, match="need 3 CPUs; the cluster has 2"):
        plan(3, 1.0, total={"CPU": 2})
    with pytest.raises(ClusterError, match="need 1 GPUs; the cluster has 0"):
        plan(2, 0.5, gpus_per_actor=0.5, total={"CPU": 2})


def test_a_run_without_rows_says_why_and_stops():
    import logging
    import threading

    from lpips_runtime.cluster.run import _watched
    from lpips_runtime.errors import ClusterError

    never = threading.Event()

    def stuck():
        never.wait()
        yield from ()

    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("lpips_runtime.cluster")  # the CLI's handlers may stop propagation above it
    logger.addHandler(handler)
    try:
        with pytest.raises(ClusterError, match="stopped making progress: no rows for"):
            list(_watched(stuck(), stall_timeout_s=1.0, warn_s=0.3))
    finally:
        logger.removeHandler(handler)
        never.set()
    assert any("pending resources" in message for message in said), said


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_result_folder_with_metrics(tmp_path, fmt):
    """Metric columns after the distance; CSV parts are the bytes ``lpips-score --out x.csv`` writes for the
    same results; resume restores the metric statistics, and other metrics are refused."""
    import numpy as np

    from lpips_runtime.cluster.output import ResultFolder, read_results
    from lpips_runtime.cluster.pipeline import result_schema
    from lpips_runtime.core.pair_result import PairResult
    from lpips_runtime.records.results import ResultWriter, pair_columns

    metrics, model = ("psnr", "ssim"), "LPIPS-alex v0.1 (+psnr+ssim)"
    results = [PairResult(0, "/i/a.png", "/j/a.png", np.float32(0.14583078), metrics={"psnr": np.float32(27.123457),
                                                                                       "ssim": np.float32(0.8123)}),
               PairResult(1, "/i/b.png", "/j/b.png", np.float32(0.0), metrics={"psnr": np.float32("inf"),
                                                                               "ssim": np.float32(1.0)}),
               PairResult(2, "/i/c.png", "/j/c.png", error="size mismatch: 96x128 vs 80x128")]
    table = pa.table({"img0": [r.img0 for r in results], "img1": [r.img1 for r in results],
                      "distance": [None if r.distance is None else float(r.distance) for r in results],
                      "psnr": [r.metrics and float(r.metrics["psnr"]) for r in results],
                      "ssim": [r.metrics and float(r.metrics["ssim"]) for r in results],
                      "error": [r.error for r in results], "model": [model] * 3}, schema=result_schema(metrics))
    assert table.column_names == list(pair_columns(metrics))
    part = ResultFolder(tmp_path / "r", model, fmt, metrics=metrics).write(table)
    if fmt == "csv":
        with ResultWriter(tmp_path / "local.csv", columns=pair_columns(metrics), constants={"model": model}) as local:
            for result in results:
                local.write(result)
        assert part.read_bytes() == (tmp_path / "local.csv").read_bytes()

    def as_float32(rows):  # a CSV part holds the float32's shortest decimal, not the float64 of the float32
        return [{k: np.float32(v) if k in ("distance", *metrics) and v is not None else v for k, v in row.items()}
                for row in rows]

    assert as_float32(read_results(tmp_path / "r").to_pylist()) == as_float32(table.to_pylist())

    with pytest.raises(InputError, match="not img0,img1,distance,error,model: resume with the same --metrics"):
        ResultFolder(tmp_path / "r", "LPIPS-alex v0.1", fmt, resume=True)
    resumed = ResultFolder(tmp_path / "r", model, fmt, resume=True, metrics=metrics)
    summary = resumed.summary
    assert (summary.stats.n, summary.stats.failures, summary.resumed) == (2, 1, 3)
    assert (summary.metrics["psnr"].infinite, summary.metrics["psnr"].finite.n, summary.metrics["ssim"].finite.n) \
        == (1, 1, 2)
    assert np.float32(summary.metrics["psnr"].finite.mean) == np.float32(27.123457)


def test_all_pairs_search_refuses_metrics(tmp_path):
    """The feature search has no pixels: asked for metrics it says what scores them instead, before any Ray work."""
    from lpips_runtime.cluster import ScorerSettings, all_pairs

    with pytest.raises(InputError, match="no pixels for psnr: score the pairs with write_pair_scores"):
        all_pairs(["a.png", "b.png"], tmp_path / "ap", ScorerSettings(metrics="psnr"))
    assert not (tmp_path / "ap").exists()
