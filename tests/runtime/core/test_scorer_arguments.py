"""API arguments are validated with one-line LpipsError/InputError messages (issue 11: batch_size=-1 yielded
nothing, workers=-1 raised a bare ValueError, 0 silently became the default, threads=100000 ran for minutes,
a zero-height batch ended in a numpy error)."""
from __future__ import annotations

import numpy as np
import pytest

from lpips_runtime.errors import InputError, LpipsError
from lpips_runtime.limits import available_cpus
from lpips_runtime.core.scorer import Scorer


@pytest.fixture(scope="module")
def scorer(split_models):
    with Scorer("squeeze", models_dir=split_models("squeeze"), auto_export=False) as s:
        yield s


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("value", [-1, 0])
def test_score_pairs_batch_size(scorer, photo_set, value):
    results = scorer.score_pairs([(photo_set[0], photo_set[1])], batch_size=value)
    with pytest.raises(LpipsError) as info:
        next(results)
    assert f"batch_size={value}: use 1 or more" in _one_line(info)


@pytest.mark.parametrize("value", [-1, 0, 10**6])
def test_score_pairs_workers(scorer, photo_set, value):
    with pytest.raises(LpipsError) as info:
        next(scorer.score_pairs([(photo_set[0], photo_set[1])], workers=value))
    assert f"workers={value}: use 1..{4 * available_cpus()} decoding threads" in _one_line(info)


@pytest.mark.parametrize("keyword, value, message", [
    ("batch_size", -1, "batch_size=-1: use 1 or more"),
    ("batch_size", 0, "batch_size=0: use 1 or more"),
    ("batch_size", 2.5, "batch_size must be a whole number"),
    ("workers", -1, "workers=-1: use 1.."),
    ("workers", 0, "workers=0: use 1.."),
    ("threads", 0, "threads=0: this machine has"),
    ("threads", 100000, f"threads=100000: this machine has {available_cpus()} CPUs available"),
    ("max_memory", 0, "max_memory=0 bytes: give at least 1 MiB"),
    ("max_pixels", 0, "max_pixels=0: give a positive number"),
    ("tile", 8, "tile=8: a tile side is at least 16 pixels"),
    ("tile", "big", "tile 'big': use auto, off, or a tile side"),
])
def test_constructor_arguments(split_models, keyword, value, message):
    with pytest.raises(LpipsError) as info:
        Scorer("squeeze", models_dir=split_models("squeeze"), auto_export=False, **{keyword: value})
    assert message in _one_line(info)


def test_threads_bounded_by_the_machine_accepts_the_machine(split_models):
    Scorer("squeeze", models_dir=split_models("squeeze"), auto_export=False, threads=available_cpus()).close()


def test_zero_size_batches_and_images(scorer):
    with pytest.raises(InputError) as info:
        scorer.distance(np.zeros((1, 3, 0, 40), np.float32), np.zeros((1, 3, 0, 40), np.float32))
    assert "images of 40x0 pixels: no pixels to compare" in _one_line(info)
    with pytest.raises(InputError) as info:
        scorer.distance(np.zeros((0, 40, 3), np.uint8), np.zeros((0, 40, 3), np.uint8))
    assert "an image needs at least one row and column" in _one_line(info)
    with pytest.raises(InputError, match="empty batch"):
        scorer.distance(np.zeros((0, 3, 40, 40), np.float32), np.zeros((0, 3, 40, 40), np.float32))
