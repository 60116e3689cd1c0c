"""``lpips-score --metrics``: the columns in every output (pair line, JSON, CSV and JSON lines of every
batch mode), strict JSON for identical images, the summary's means, and --resume."""
from __future__ import annotations

import csv
import io
import json
import math
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import crop, distort, photo
from lpips_runtime import Scorer
from lpips_runtime.commands.score import main

METRICS = ("psnr", "ssim")


def strict_json(line: str):
    """json.loads that refuses NaN/Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def models(exported, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-metric-models")
    for path in (exported("alex", metrics=METRICS), exported("alex", spatial=True)):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """gt/ and pred/ with a distorted pair (a), an identical pair (b) and a size mismatch (c)."""
    root = tmp_path_factory.mktemp("cli-metric-images")
    ref = crop(photo("astronaut"), 96, 128)
    for side, images in (("gt", {"a": ref, "b": ref, "c": ref}),
                         ("pred", {"a": distort(ref, "jpeg", 0.6), "b": ref, "c": ref[:80]})):
        (root / side).mkdir()
        for name, img in images.items():
            cv2.imwrite(str(root / side / f"{name}.png"), img[..., ::-1])
    return root


def run(models, *args):
    return CliRunner().invoke(main, [*map(str, args), "--models-dir", str(models), "--metrics", "ssim,psnr"])


def test_help_lists_the_option():
    assert "--metrics" in CliRunner().invoke(main, ["--help"]).output


def test_pair_line_and_json(models, folders):
    a0, a1 = folders / "gt" / "a.png", folders / "pred" / "a.png"
    expected = Scorer(models / "lpips-alex-v0.1-psnr-ssim.onnx").scores(a0, a1)
    result = run(models, a0, a1)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{expected['distance']:.6f} psnr={expected['psnr']:.4f} ssim={expected['ssim']:.6f}\n"
    record = strict_json(run(models, a0, a1, "--json").stdout)
    # float32 values, written with the shortest decimal that reads back as the same float32
    assert [np.float32(record[k]) for k in ("distance", "psnr", "ssim")] == [
        np.float32(expected[k]) for k in ("distance", "psnr", "ssim")]
    same = run(models, a0, folders / "gt" / "b.png", "--json")
    assert strict_json(same.stdout)["psnr"] is None and strict_json(same.stdout)["ssim"] == 1.0  # +inf -> null
    assert run(models, a0, folders / "gt" / "b.png").stdout == "0.000000 psnr=inf ssim=1.000000\n"


def test_heatmap_with_metrics(models, folders, tmp_path):
    result = run(models, folders / "gt" / "a.png", folders / "pred" / "a.png", "--heatmap", tmp_path / "h.png")
    assert result.exit_code == 0, result.output
    assert "psnr=" in result.stdout and cv2.imread(str(tmp_path / "h.png")) is not None


def test_folders_to_csv_and_summary(models, folders, tmp_path):
    out = tmp_path / "scores.csv"
    result = run(models, "--dir0", folders / "gt", "--dir1", folders / "pred", "--out", out,
                 "--summary-json", tmp_path / "summary.json")
    assert result.exit_code == 3  # one pair failed (size mismatch), the others are scored
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["img0", "img1", "distance", "psnr", "ssim", "error", "model"]
    expected = Scorer(models / "lpips-alex-v0.1-psnr-ssim.onnx").scores(folders / "gt" / "a.png",
                                                                        folders / "pred" / "a.png")
    assert np.float32(rows[0]["psnr"]) == np.float32(expected["psnr"])
    assert np.float32(rows[0]["ssim"]) == np.float32(expected["ssim"])
    assert (rows[1]["psnr"], float(rows[1]["psnr"]), float(rows[1]["ssim"])) == ("inf", math.inf, 1.0)
    assert rows[2]["psnr"] == rows[2]["ssim"] == rows[2]["distance"] == "" and "size mismatch" in rows[2]["error"]
    summary = result.stderr.strip().splitlines()[-1]
    assert f"psnr={expected['psnr']:.4f} dB (mean of 1; 1 identical: inf, left out)" in summary
    assert f"ssim={(expected['ssim'] + 1) / 2:.6f}" in summary and "failures=1" in summary
    stats = strict_json((tmp_path / "summary.json").read_text())["metrics"]
    assert stats["psnr"]["n"] == 1 and stats["psnr"]["infinite"] == 1
    assert abs(stats["psnr"]["mean"] - expected["psnr"]) <= 1e-5 and stats["psnr"]["min"] == stats["psnr"]["max"]
    assert stats["ssim"]["n"] == 2 and stats["ssim"]["infinite"] == 0 and stats["ssim"]["max"] == 1.0


def test_pairs_csv_as_json_lines(models, folders, tmp_path):
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"{folders}/gt/a.png,{folders}/pred/a.png\n{folders}/gt/b.png,{folders}/pred/b.png\n")
    result = run(models, "--pairs", listing, "--json")
    rows = [strict_json(line) for line in result.stdout.splitlines()]
    assert [row["psnr"] is None for row in rows] == [False, True] and rows[1]["error"] is None
    assert all(set(row) == {"img0", "img1", "distance", "psnr", "ssim", "error", "model"} for row in rows)


@pytest.mark.parametrize("mode", ["ref", "all-pairs"])
def test_feature_cache_modes_score_through_the_fused_graph(models, folders, mode):
    args = ["--ref", folders / "gt" / "a.png", "--dir", folders / "pred"] if mode == "ref" else [
        "--all-pairs", folders / "gt"]
    result = run(models, *args)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"psnr", "ssim"} <= set(rows[0]) and len(rows) == 3
    scored = [row for row in rows if not row["error"]]
    assert scored and all(row["psnr"] and row["ssim"] for row in scored)


def test_resume_keeps_the_metric_means(models, folders, tmp_path):
    out = tmp_path / "scores.jsonl"
    first = run(models, "--dir0", folders / "gt", "--dir1", folders / "pred", "--out", out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:10])  # killed while writing the second row
    again = run(models, "--dir0", folders / "gt", "--dir1", folders / "pred", "--out", out, "--resume")
    assert "1 pairs already there" in again.stderr
    # the same summary line, metric means included
    assert again.stderr.strip().splitlines()[-1] == first.stderr.strip().splitlines()[-1]
    assert [strict_json(line)["img0"] for line in out.read_text().splitlines()] == [
        str(folders / "gt" / name) for name in ("a.png", "b.png", "c.png")]
