"""``lpips-video --metrics psnr,ssim``: per-frame PSNR/SSIM columns equal to scikit-image on the same
decoded frames, frames of infinite PSNR (identical), the pooled statistics of each metric (worst frame:
the lowest), and --resume reading the metrics back."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("av")

from conftest import assert_metrics_match, skimage_metrics  # noqa: E402
from lpips_runtime.model.modelfile import ModelSpec  # noqa: E402
from lpips_runtime.video.cli import main  # noqa: E402
from video_clips import decode_reference, distorted, pan, write  # noqa: E402

N = 8
METRICS = ("psnr", "ssim")


@pytest.fixture(scope="module")
def setup(exported_spec, tmp_path_factory):
    """(models folder with the uint8 frame graph with metrics, lossless REF and DIST clips)."""
    root = tmp_path_factory.mktemp("video-metrics")
    models = root / "models"
    models.mkdir()
    path = exported_spec(ModelSpec("alex", frames="nhwc-rgb", metrics=METRICS))
    (models / path.name).symlink_to(path)
    ref = pan(N)
    return models, write(root / "ref.mkv", ref), write(root / "dist.mkv", distorted(ref))


def _invoke(models, *args):
    return CliRunner().invoke(main, [*map(str, args), "--models-dir", str(models), "--metrics", "ssim,psnr"])


def test_columns_values_and_pooled_statistics(setup, tmp_path):
    models, ref_path, dist_path = setup
    summary = tmp_path / "summary.json"
    result = _invoke(models, ref_path, dist_path, "--summary", summary)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["frame", "pts_ref", "pts_dist", "distance", "psnr", "ssim", "error", "model"]
    ref, dist = decode_reference(ref_path, "rgb24"), decode_reference(dist_path, "rgb24")
    psnr, ssim = [], []
    for row, (_, a), (_, b) in zip(rows, ref, dist):
        expected = skimage_metrics(a, b, METRICS)
        assert_metrics_match({m: float(row[m]) for m in METRICS}, expected, f"frame {row['frame']}")  # "inf" too
        psnr.append(expected["psnr"])
        ssim.append(expected["ssim"])
    identical = [k for k, p in enumerate(psnr) if math.isinf(p)]
    assert identical == [0, 6]  # every sixth frame of the distorted copy is the frame itself
    assert all(rows[k]["psnr"] == "inf" and float(rows[k]["ssim"]) == 1.0 for k in identical)  # CSV's +inf
    stats = json.loads(summary.read_text())["metrics"]
    finite = [(p, k) for k, p in enumerate(psnr) if not math.isinf(p)]
    assert stats["psnr"]["frames"] == N - 2 and stats["psnr"]["identical"] == 2
    assert stats["psnr"]["worst_frame"] == min(finite)[1]  # the lowest PSNR is the worst
    assert stats["psnr"]["mean"] == pytest.approx(np.mean([p for p, _ in finite]), abs=1e-4)
    assert stats["ssim"]["frames"] == N and stats["ssim"]["worst_frame"] == int(np.argmin(ssim))
    assert stats["ssim"]["min"] == pytest.approx(min(ssim), abs=1e-5)
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith(f"psnr: n={N - 2} mean=") and lines[-2].endswith("identical=2 (inf, left out)")
    assert lines[-1].startswith(f"ssim: n={N} mean=")


def test_resume_reads_the_metrics_back(setup, tmp_path):
    models, ref_path, dist_path = setup
    out = tmp_path / "frames.jsonl"
    first = _invoke(models, ref_path, dist_path, "--out", out)
    lines = out.read_text().splitlines(keepends=True)
    assert json.loads(lines[0])["psnr"] is None  # identical frame: +inf is null in JSON lines
    out.write_text("".join(lines[:4]) + lines[4][:7])  # interrupted while writing frame 4
    again = _invoke(models, ref_path, dist_path, "--out", out, "--resume")
    assert again.exit_code == 0, again.output
    # the pooled statistics (identical frames included) are the same as in one uninterrupted run
    assert again.stderr.strip().splitlines()[-2:] == first.stderr.strip().splitlines()[-2:]
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == list(range(N))
