"""benchmarks/outside_pairs.py: the outside-style accuracy set is deterministic, covers its sizes and distortions,
and its distortions change the image (an identity "distortion" would make the set test nothing)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from outside_pairs import KINDS, QUICK_SIZES, main, outside_images, outside_set  # noqa: E402


def test_quick_set_is_deterministic_and_grouped_by_reference_and_size():
    one, two = outside_set(quick=True), outside_set(quick=True)
    assert len(one["pairs"]) == 3 * len(QUICK_SIZES) * len(KINDS) == 24
    for (a0, b0), (a1, b1) in zip(one["pairs"], two["pairs"]):
        assert np.array_equal(a0, a1) and np.array_equal(b0, b1)
    assert sorted(i for g in one["groups"] for i in g) == list(range(24))
    shapes = {one["pairs"][g[0]][0].shape for g in one["groups"]}
    assert shapes == {(1, 3, h, w) for (h, w), _ in QUICK_SIZES}
    for ref, other in one["pairs"]:
        assert ref.dtype == np.float32 and ref.shape == other.shape and -1 <= ref.min() and ref.max() <= 1
        assert np.abs(ref - other).mean() > 1e-3


def test_writes_png_folders_for_lpips_score(tmp_path):
    assert main(["--out", str(tmp_path), "--quick"]) == 0
    names = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "dist").iterdir()) and len(names) == 24
    assert {label.split("-")[2] for *_, label in outside_images(quick=True)} == set(KINDS)
