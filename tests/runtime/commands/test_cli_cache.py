"""lpips-score --ref/--dir and --all-pairs through the feature cache: rows, resume, exit codes."""
from __future__ import annotations

import csv
import itertools

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import crop, photo
from lpips_runtime.commands.score import main
from lpips_runtime.core.scorer import Scorer

TOL = 1e-6


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photo_set):
    root = tmp_path_factory.mktemp("cli-cache")
    for i, img in enumerate(photo_set[:5]):
        cv2.imwrite(str(root / f"img{i}.png"), img[..., ::-1])
    return root


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _invoke(models, *args):
    return CliRunner().invoke(main, ["--net", "squeeze", "--models-dir", str(models), *map(str, args)])


def test_help_names_the_new_modes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--ref" in result.output and "--dir" in result.output


def test_ref_dir(split_models, folder, tmp_path):
    models = split_models("squeeze")
    out = tmp_path / "ref.csv"
    result = _invoke(models, "--ref", folder / "img0.png", "--dir", folder, "--out", out)
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert [r["img1"] for r in rows] == [str(folder / f"img{i}.png") for i in range(1, 5)]  # ref itself left out
    with Scorer("squeeze", models_dir=models, auto_export=False) as scorer:
        expected = [scorer.distance(folder / "img0.png", folder / f"img{i}.png") for i in range(1, 5)]
    assert np.abs(np.array([float(r["distance"]) for r in rows]) - expected).max() <= TOL
    assert "n=4 mean=" in result.output


def test_all_pairs_through_the_cache_and_resume(split_models, folder, tmp_path):
    models = split_models("squeeze")
    out = tmp_path / "all.csv"
    assert _invoke(models, "--all-pairs", folder, "--out", out).exit_code == 0
    rows = _rows(out)
    names = [str(folder / f"img{i}.png") for i in range(5)]
    assert [(r["img0"], r["img1"]) for r in rows] == list(itertools.combinations(names, 2))
    with Scorer("squeeze", models_dir=models, auto_export=False) as scorer:
        expected = scorer.distance([r["img0"] for r in rows], [r["img1"] for r in rows])
    assert np.abs(np.array([float(r["distance"]) for r in rows]) - expected).max() <= TOL
    # resume: keep the first 4 rows, the rest is computed again and appended in order
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:5]))
    result = _invoke(models, "--all-pairs", folder, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "4 pairs already there, 6 to go" in result.output
    again = _rows(out)
    assert [(r["img0"], r["img1"]) for r in again] == [(r["img0"], r["img1"]) for r in rows]
    assert all(abs(float(a["distance"]) - float(b["distance"])) <= TOL for a, b in zip(again, rows))


def test_failed_images_give_rows_and_exit_code_3(split_models, folder, tmp_path):
    models = split_models("squeeze")
    work = tmp_path / "mixed"
    work.mkdir()
    for name in ("img0.png", "img1.png"):
        (work / name).write_bytes((folder / name).read_bytes())
    (work / "broken.png").write_bytes(b"\x89PNG not really")
    cv2.imwrite(str(work / "small.png"), crop(photo("rocket"), 40, 40))
    result = _invoke(models, "--all-pairs", work, "--json", "-q")
    assert result.exit_code == 3
    assert result.output.count('"error": null') == 1 and result.output.count("size mismatch") == 2
    result = _invoke(models, "--ref", work / "img0.png", "--dir", work)
    assert result.exit_code == 3 and "failures=2" in result.output
    missing = _invoke(models, "--ref", work / "nope.png", "--dir", work)
    assert missing.exit_code == 1 and "no such file" in missing.output


def test_usage_errors(split_models, folder):
    assert _invoke(split_models("squeeze"), "--ref", folder / "img0.png").exit_code == 2
    assert _invoke(split_models("squeeze"), "--dir", folder, "--all-pairs", folder).exit_code == 2
