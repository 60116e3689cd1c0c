"""Scorer(metrics=...): PSNR/SSIM next to the distance through every entry point, the rules for model
files, and the feature cache's refusals. (Parity of the values with scikit-image:
tests/export/test_pixel_metrics.py.)"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from conftest import assert_metrics_match, crop, distort, photo, skimage_metrics
from lpips_runtime import LpipsError, ModelFileError, Scorer
from lpips_runtime.errors import InputError
from lpips_runtime.model.pixel_metrics import (SSIM_SIGMA, SSIM_TRUNCATE, format_metric, gaussian_taps, json_number,
                                         parse_metrics)

METRICS = ("psnr", "ssim")


@pytest.fixture(scope="module")
def models(exported, tmp_path_factory):
    """A models folder with alex's psnr+ssim graph, the plain graph and the plain spatial graph."""
    folder = tmp_path_factory.mktemp("metric-models")
    for path in (exported("alex", metrics=METRICS), exported("alex"), exported("alex", spatial=True)):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def pair():
    ref = crop(photo("coffee"), 96, 120)
    return ref, distort(ref, "jpeg", 0.6)


def test_metric_names_and_forms():
    assert parse_metrics(" SSIM, psnr ,psnr") == ("psnr", "ssim") and parse_metrics("") == parse_metrics(None) == ()
    with pytest.raises(LpipsError, match="unknown metric 'msssim': choose from psnr, ssim, psnr_y, ssim_y"):
        parse_metrics("msssim")
    assert json_number(math.inf) is None and json_number(27.5) == 27.5
    assert format_metric("psnr", math.inf) == "inf" and format_metric("ssim", 0.5) == "0.500000"
    # The window is scipy.ndimage's Gaussian (what scikit-image filters with): its response to an impulse.
    impulse = np.zeros(21)
    impulse[10] = 1
    expected = gaussian_filter1d(impulse, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="constant")[5:16]
    np.testing.assert_allclose(gaussian_taps(), expected, rtol=0, atol=1e-15)


def test_scores_and_distance(models, pair):
    with Scorer("alex", metrics="ssim,psnr", models_dir=models) as scorer:
        assert scorer.metrics == METRICS and scorer.model_info().path.name == "lpips-alex-v0.1-psnr-ssim.onnx"
        scores = scorer.scores(*pair)
        assert list(scores) == ["distance", "psnr", "ssim"] and all(isinstance(v, float) for v in scores.values())
        assert scores["distance"] == scorer.distance(*pair)
        same = scorer.scores(pair[0], pair[0].copy())
        assert same == {"distance": 0.0, "psnr": math.inf, "ssim": 1.0}
        # the map comes from the plain spatial graph: maps carry no metrics
        assert scorer.distance_map(*pair).shape == (96, 120)
        assert scorer.model_info(spatial=True).path.name == "lpips-alex-v0.1-spatial.onnx"
    with Scorer("alex", models_dir=models) as plain:
        assert plain.scores(*pair) == {"distance": scores["distance"]}  # no metrics: the distance alone


def test_score_pairs_carry_the_metrics(models, pair, tmp_path):
    with Scorer("alex", metrics=METRICS, models_dir=models, batch_size=2) as scorer:
        results = list(scorer.score_pairs([pair, (pair[0], pair[0]), (pair[0], tmp_path / "missing.png"), pair]))
        expected = scorer.scores(*pair)
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[0].metrics == results[3].metrics == {m: expected[m] for m in METRICS}
    assert results[1].metrics == {"psnr": math.inf, "ssim": 1.0} and results[2].metrics is None
    with Scorer("alex", models_dir=models) as plain:
        assert next(plain.score_pairs([pair])).metrics is None


def test_a_model_file_decides(models, pair):
    path = models / "lpips-alex-v0.1-psnr-ssim.onnx"
    with Scorer(path) as scorer:
        assert scorer.metrics == METRICS and set(scorer.scores(*pair)) == {"distance", *METRICS}
    assert Scorer(path, metrics=["ssim", "psnr"]).metrics == METRICS
    with pytest.raises(ModelFileError, match=r"computes psnr, ssim, not ssim_y: use `lpips-export --net alex "
                                             r"--metrics ssim_y --out .*`"):
        Scorer(path, metrics="ssim_y")
    with pytest.raises(ModelFileError, match="computes no metrics, not psnr"):
        Scorer(models / "lpips-alex-v0.1.onnx", metrics="psnr")


def test_missing_export_names_the_command(tmp_path):
    with pytest.raises(ModelFileError, match=r"no exported model lpips-alex-v0.1-psnr_y\.onnx in .*: run "
                                             r"`lpips-export --net alex --metrics psnr_y --out "):
        Scorer("alex", metrics="psnr_y", models_dir=tmp_path, auto_export=False).model_info()


def test_feature_cache_paths(models, pair, split_models):
    with Scorer("alex", metrics=METRICS, models_dir=models) as scorer:
        with pytest.raises(LpipsError, match=r"score_one_to_many compares cached features, which have no pixels "
                                             r"for psnr, ssim: use score_pairs"):
            list(scorer.score_one_to_many(pair[0], [pair[1]]))
        with pytest.raises(LpipsError, match=r"use score_pairs\(itertools.combinations\(images, 2\)\)"):
            list(scorer.score_all_pairs([pair[0], pair[1]]))
    with Scorer("squeeze", metrics=METRICS, models_dir=split_models("squeeze"), auto_export=False) as scorer:
        # Distances through the cache are unaffected: the encoder and head have no metrics.
        features = scorer.embed(pair[0])
        assert scorer.model_info(part="encoder").path.name == "lpips-squeeze-v0.1-encoder.onnx"
        with pytest.raises(InputError, match="scores needs the images, not Features"):
            scorer.scores(features, pair[1])
        assert scorer.distance_matrix([pair[0], pair[1]]).shape == (2, 2)


def test_pairs_with_metrics_are_never_tiled(models, split_models):
    # Tiles run the split encoder, one image at a time: it has no pair for PSNR/SSIM. A Scorer with metrics
    # refuses explicit tiles and scores a pair above its memory budget in one piece, with exact metrics.
    with pytest.raises(LpipsError, match=r"tiles cannot compute psnr, ssim: .*use tile='auto' or 'off'"):
        Scorer("alex", metrics=METRICS, models_dir=models, tile=128)
    ref = crop(photo("coffee"), 400, 500)
    dist = distort(ref, "jpeg", 0.6)
    budget = 16 << 20  # alex needs about 46 MB for this pair at once: a Scorer without metrics tiles it
    with Scorer("alex", models_dir=split_models("alex"), max_memory=budget, auto_export=False) as plain, \
            Scorer("alex", metrics=METRICS, models_dir=models, max_memory=budget) as with_metrics:
        assert plain.tile_plan(400, 500) is not None and with_metrics.tile_plan(400, 500) is None
        got, tiled = with_metrics.scores(ref, dist), plain.scores(ref, dist)
        assert list(tiled) == ["distance"] and abs(tiled["distance"] - got["distance"]) <= 1e-5
        assert_metrics_match(got, skimage_metrics(ref, dist, METRICS), "one piece above the budget")
        for result in with_metrics.score_pairs([(ref, dist), (ref, ref)]):
            assert_metrics_match(result.metrics, skimage_metrics(ref, dist if result.index == 0 else ref, METRICS),
                                 f"score_pairs {result.index}")
