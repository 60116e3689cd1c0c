"""Pair scoring and all-pairs search on the session's shared local Ray cluster (``ray_cluster``), inside a
private network namespace: results equal the single-process Scorer bit for bit (fp32 CPU), a SIGKILLed driver resumes
with every pair exactly once, a killed actor loses nothing, all pairs equal ``distance_matrix``, and
``--metrics`` runs write the local run's rows and summary."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import crop, distort, photo
from ray_netns import (METRICS, loopback_only_connections, models, models_for_namespace,  # noqa: F401
                       ray_cluster, test_ray_tests_in_private_network_namespace)

pytestmark = pytest.mark.ray
SCRIPT = str(Path(sys.executable).with_name("lpips-score"))
H, W = 64, 80  # small images: the cluster's overheads, not the network, are under test


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Same-size distortions of a photograph, plus an odd-size one, a corrupt file and a too-small one."""
    root = tmp_path_factory.mktemp("imgs")
    base = crop(photo("chelsea"), H, W)
    names = []
    for i in range(12):
        names.append(f"im{i:02d}.png")
        kind = ["blur", "noise", "jpeg", "colour"][i % 4]
        cv2.imwrite(str(root / names[-1]), distort(base, kind, 0.1 + i / 15, seed=i)[..., ::-1])
    cv2.imwrite(str(root / "other-size.png"), crop(photo("coffee"), H + 8, W)[..., ::-1])
    (root / "corrupt.png").write_bytes((root / "im00.png").read_bytes()[:150])
    cv2.imwrite(str(root / "tiny.png"), crop(photo("coffee"), 20, 20)[..., ::-1])
    return root, names


def _scorer(models, **kw):
    from lpips_runtime import Scorer

    return Scorer("alex", models_dir=models, auto_export=False, **kw)


def _reference(models, pairs) -> dict:
    """(img0, img1) -> (float32 distance or None, error) from the single-process Scorer."""
    with _scorer(models) as scorer:
        return {(r.img0, r.img1): (None if r.distance is None else np.float32(r.distance), r.error)
                for r in scorer.score_pairs(pairs)}


def _as_dict(rows) -> dict:
    out = {}
    for r in rows:
        key = (r["img0"], r["img1"])
        assert key not in out, f"pair written twice: {key}"
        out[key] = (None if r["distance"] is None else np.float32(r["distance"]), r["error"])
    return out


def _settings(models, **kw):
    from lpips_runtime.cluster import ScorerSettings

    return ScorerSettings(models_dir=str(models), **kw)


def test_only_loopback_traffic(ray_cluster):
    @ray_cluster.remote
    def ping():
        return os.getpid()

    assert ray_cluster.get([ping.remote() for _ in range(4)])
    seen, off_loopback = loopback_only_connections()
    assert seen > 5 and not off_loopback, off_loopback


def test_pair_table_equals_single_process_scorer(ray_cluster, models, images, tmp_path):
    """Every input form (list, CSV with header and relative paths, Parquet with other column names,
    Ray Dataset with file:// URIs) gives the Scorer's rows, errors included, bit for bit. Each form
    holds its own share of the pairs, spelled its way, and one pipeline (one actor pool) scores them all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lpips_runtime.cluster import score_pair_table
    from lpips_runtime.cluster.table import read_pair_table

    root, names = images
    pairs = [(str(root / a), str(root / b)) for a in names[:5] for b in names if a != b]
    failing = [(str(root / names[0]), str(root / n)) for n in ("other-size.png", "corrupt.png", "tiny.png", "gone.png")]
    listed, in_csv, in_parquet, in_dataset = pairs[:15] + failing, pairs[15:30], pairs[30:45], pairs[45:]

    (tmp_path / "imgs").symlink_to(root)  # a table's relative paths are relative to its folder
    table = tmp_path / "pairs.csv"
    table.write_text("img0,img1\n" + "".join(f"imgs/{Path(a).name},imgs/{Path(b).name}\n" for a, b in in_csv))
    via_link = [(str(tmp_path / "imgs" / Path(a).name), str(tmp_path / "imgs" / Path(b).name)) for a, b in in_csv]
    pq.write_table(pa.table({"ref": [a for a, _ in in_parquet], "test": [b for _, b in in_parquet],
                             "n": range(len(in_parquet))}), tmp_path / "pairs.parquet")
    dataset = ray_cluster.data.from_items([{"img0": f"file://{a}", "img1": f"file://{b}"} for a, b in in_dataset])
    every_form = read_pair_table(listed).union(read_pair_table(str(table)),
                                               read_pair_table(str(tmp_path / "pairs.parquet"), ("ref", "test")),
                                               dataset)
    rows = score_pair_table(every_form, _settings(models, batch_size=4), actors=2).take_all()

    expected = _reference(models, listed + via_link + in_parquet + in_dataset)
    assert sum(e is not None for _, e in expected.values()) == len(failing)
    uri_rows = {(f"file://{a}", f"file://{b}") for a, b in in_dataset}
    got = {(k[0][7:], k[1][7:]) if k in uri_rows else k: v for k, v in _as_dict(rows).items()}
    assert len(uri_rows & {(r["img0"], r["img1"]) for r in rows}) == len(in_dataset)  # URIs kept as given
    assert got == expected
    assert {r["model"] for r in rows} == {"LPIPS-alex v0.1"}


def _count_parts(folder: Path) -> int:
    return len(list(folder.glob("part-*.csv")))


def test_cli_resume_after_sigkill_of_the_driver(ray_cluster, models, images, tmp_path):
    """``lpips-score --ray`` joined to the running cluster, SIGKILLed after some parts; ``--resume``
    scores only the missing pairs: every pair exactly once across both runs, equal to the Scorer."""
    from lpips_runtime.cluster import read_results

    root, names = images
    # 56 pairs: the kill comes after 2 parts of 6 rows, well before the end (rows arrive a batch of 2 at a
    # time from one actor: 44 pairs to go), and the resume must score the rest.
    pairs = [(f"imgs/{a}", f"imgs/{b}") for a in names[:5] for b in names if a != b]
    pairs += [("imgs/im00.png", "imgs/other-size.png")]
    (tmp_path / "imgs").symlink_to(root)
    listing = tmp_path / "pairs.csv"
    listing.write_text("".join(f"{a},{b}\n" for a, b in pairs))
    out = tmp_path / "results"
    address = ray_cluster.get_runtime_context().gcs_address
    args = [SCRIPT, "--pairs", str(listing), "--out", str(out), "--ray", "--ray-address", address,
            "--models-dir", str(models), "--batch-size", "2", "--part-rows", "6", "--part-format", "csv",
            "--actors", "1"]
    # As a user's shell: no RAY_AUTH_MODE (ray.init set it here); lpips-score finds the cluster's token itself.
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and (not out.exists() or _count_parts(out) < 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    stdout, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{stderr}"
    first = read_results(out)
    assert 0 < first.num_rows < len(pairs), "not killed midway"
    assert stdout == ""  # results go to the folder, never to stdout

    done = _score(*args[1:], "--resume")  # in this process (on the shared cluster): no second driver start
    assert done.exit_code == 3, done.output  # the size-mismatched pair failed (and has its row)
    assert f"resuming {out}: {first.num_rows} pairs already there, {len(pairs) - first.num_rows} to go" \
        in done.stderr
    assert "failures=1" in done.stderr.splitlines()[-1]
    assert not list(out.glob(".*.tmp"))
    rows = read_results(out).to_pylist()
    got = _as_dict(rows)  # fails on a pair written twice
    # Each pair exactly once, and the Scorer's value: CSV parts hold the shortest decimal of the float32.
    assert got == _reference(models, [(str(tmp_path / a), str(tmp_path / b)) for a, b in pairs])


def test_killed_actor_loses_nothing(ray_cluster, models, images, tmp_path):
    """SIGKILL one scoring actor's process once results flow: Ray restarts it and retries its
    batches; every pair is written exactly once and equals the Scorer."""
    from lpips_runtime.cluster import read_results, write_pair_scores

    root, names = images
    pairs = [(str(root / a), str(root / b)) for a in names[:8] for b in names[:8] if a != b]  # 28 batches of 2
    killed = []

    def kill_one_actor(n):
        if killed:
            return
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    title = (entry / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if title.startswith("ray::MapWorker") and "PairScorerActor" in title:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
                    return

    report = write_pair_scores(pairs, tmp_path / "out", _settings(models, batch_size=2), actors=2, part_rows=20,
                               on_rows=kill_one_actor)
    assert killed, "no scoring actor found to kill"
    assert report.scored == len(pairs) and report.summary.stats.failures == 0
    assert _as_dict(read_results(tmp_path / "out").to_pylist()) == _reference(models, pairs)


def test_all_pairs_equal_distance_matrix(ray_cluster, models, images, tmp_path):
    """Near duplicates, k nearest and the mean over every pair equal ``Scorer.distance_matrix`` of
    the same images to 1e-6; unreadable and odd-size images fail their pairs, counted."""
    import pyarrow.parquet as pq

    from lpips_runtime.cluster import all_pairs, read_results

    root, names = images
    good = [str(root / n) for n in names]
    listed = good[:5] + [str(root / "corrupt.png")] + good[5:9] + [str(root / "other-size.png")] + good[9:]
    report = all_pairs(listed, tmp_path / "ap", _settings(models), threshold=0.25, top_k=3, actors=2, tile=4)
    with _scorer(models) as scorer:
        matrix = scorer.distance_matrix(good).astype(np.float64)
    n, iu = len(good), np.triu_indices(len(good), 1)
    assert report.images == len(listed) and report.summary.stats.n == n * (n - 1) // 2
    assert report.summary.stats.failures == len(listed) * (len(listed) - 1) // 2 - n * (n - 1) // 2
    summary = json.loads((tmp_path / "ap" / "summary.json").read_text())
    assert abs(summary["mean"] - matrix[iu].mean()) <= 1e-6
    assert abs(summary["std_error"] - matrix[iu].std() / np.sqrt(len(iu[0]))) <= 1e-6
    assert abs(summary["min"] - matrix[iu].min()) <= 1e-6 and abs(summary["max"] - matrix[iu].max()) <= 1e-6
    assert {f["image"] for f in summary["failed_images"]} == {str(root / "corrupt.png")}

    index = {name: i for i, name in enumerate(good)}
    close = read_results(tmp_path / "ap" / "near-duplicates").to_pylist()
    expected_close = {(good[i], good[j]) for i, j in zip(*iu) if matrix[i, j] < 0.25}
    assert 0 < len(expected_close) < len(iu[0]) and {(r["img0"], r["img1"]) for r in close} == expected_close
    assert max(abs(r["distance"] - matrix[index[r["img0"]], index[r["img1"]]]) for r in close) <= 1e-6

    nearest = pq.read_table(tmp_path / "ap" / "nearest.parquet").to_pylist()
    assert len(nearest) == 3 * n
    for r in nearest:
        i = index[r["image"]]
        row = np.delete(matrix[i], i)
        assert abs(np.sort(row)[r["rank"] - 1] - r["distance"]) <= 1e-6
        assert abs(matrix[i, index[r["neighbour"]]] - r["distance"]) <= 1e-6


def test_cli_all_pairs_and_usage(ray_cluster, models, images, tmp_path):
    root, names = images
    clean = tmp_path / "clean"
    clean.mkdir()
    for n in names[:6]:
        (clean / n).symlink_to(root / n)
    base = ["--all-pairs", clean, "--ray", "--models-dir", models, "--out", tmp_path / "ap"]
    done = _score(*base, "--threshold", "0.3", "--top-k", "2")  # in this process: on the shared cluster
    assert done.exit_code == 0, done.output
    assert done.stdout == "" and "images=6 near-duplicates=" in done.stderr and "n=15 mean=" in done.stderr
    summary = json.loads((tmp_path / "ap" / "summary.json").read_text())
    assert summary["n"] == 15 and summary["top_k"] == 2 and summary["failures"] == 0
    again = _score(*base)
    assert again.exit_code == 1 and "pass --overwrite" in again.stderr and "Traceback" not in again.output


def _score(*args):
    """``lpips-score`` in this process: with --ray it uses the shared cluster (``ray_session`` joins the
    connected session), which spares each run a driver's start."""
    from click.testing import CliRunner

    from lpips_runtime.commands.score import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _csv_rows(paths) -> tuple[set, list[str]]:
    """(the headers, the data lines sorted) of CSV files: cluster parts hold rows in no particular order."""
    headers, lines = set(), []
    for path in paths:
        header, *rows = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
        headers.add(header)
        lines += rows
    return headers, sorted(lines)


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.csv"))


def test_cli_metrics_write_the_local_rows_and_summary(ray_cluster, models, images, tmp_path):
    """``--ray --metrics psnr,ssim`` (a pair list, then all pairs of a folder) writes the bytes of the local
    run's CSV rows (header and every cell: distance, PSNR with inf for an identical pair, SSIM, the error of
    a failed pair, model) and its summary; a resumed run redoes a lost part only and keeps that summary;
    resuming with other metrics is refused (exit 1, one line)."""
    root, names = images
    pairs = [(root / a, root / b) for a, b in zip(names[:7], names[1:8])]
    pairs += [(root / names[0], root / names[0]), (root / names[0], root / "other-size.png")]
    listing = tmp_path / "pairs.csv"
    listing.write_text("".join(f"{a},{b}\n" for a, b in pairs))
    common = ["--models-dir", models, "--metrics", "psnr,ssim", "--batch-size", "2"]
    local = _score("--pairs", listing, "--out", tmp_path / "local.csv", "--summary-json", tmp_path / "local.json",
                   *common)
    assert local.exit_code == 3, local.output  # the size mismatch has its row
    out = tmp_path / "ray"
    ray_args = ["--pairs", listing, "--out", out, "--ray", "--part-format", "csv", "--part-rows", "3", *common]
    done = _score(*ray_args, "--summary-json", tmp_path / "ray.json")
    assert done.exit_code == 3 and done.stdout == "", done.output
    expected = _csv_rows([tmp_path / "local.csv"])
    assert "img0,img1,distance,psnr,ssim,error,model\n" in expected[0] and ",inf,1.0,," in "".join(expected[1])
    assert _csv_rows(_parts(out)) == expected
    summary_line = local.stderr.strip().splitlines()[-1]
    assert "psnr=" in summary_line and "ssim=" in summary_line and done.stderr.strip().splitlines()[-1] == summary_line
    local_json, ray_json = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "ray"))
    for key in ("n", "failures", "model", "net", "precision", "backend"):
        assert ray_json[key] == local_json[key], key
    for name in METRICS:  # pooled in another order: equal to float64 rounding
        for key, value in local_json["metrics"][name].items():
            assert ray_json["metrics"][name][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, key)

    # A lost part (as if the driver died before writing it) is redone by --resume, nothing else.
    parts = _parts(out)
    lost = len(parts[1].read_text().splitlines()) - 1
    parts[1].unlink()
    again = _score(*ray_args, "--resume")
    assert again.exit_code == 3, again.output
    assert f"{len(pairs) - lost} pairs already there, {lost} to go" in again.stderr
    assert _csv_rows(_parts(out)) == expected and again.stderr.strip().splitlines()[-1] == summary_line
    other = _score(*[a for a in ray_args if a not in ("--metrics", "psnr,ssim")], "--resume")
    assert other.exit_code == 1 and "resume with the same --metrics" in other.output
    assert "Traceback" not in other.output and len(other.output.strip().splitlines()) == 1

    # --all-pairs with metrics scores every pair through the fused graph, as the local run does; Parquet
    # parts (the default) hold the same float32 values.
    from lpips_runtime.cluster import read_results

    folder = tmp_path / "four"
    folder.mkdir()
    for name in names[:4]:
        (folder / name).symlink_to(root / name)
    local = _score("--all-pairs", folder, "--out", tmp_path / "all.csv", *common)
    done = _score("--all-pairs", folder, "--out", tmp_path / "all", "--ray", *common)
    assert local.exit_code == done.exit_code == 0, done.output
    columns = ["img0", "img1", "distance", "psnr", "ssim", "error", "model"]

    def values(rows):
        return sorted(tuple(np.float32(r[c]) if c in ("distance", *METRICS) else r[c] or None for c in columns)
                      for r in rows)

    with open(tmp_path / "all.csv", newline="") as f:
        expected = values(csv.DictReader(f))
    table = read_results(tmp_path / "all")
    assert table.column_names == columns and len(expected) == 6 and values(table.to_pylist()) == expected
