"""Pooled statistics against numpy and scipy computed in the test."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lpips_runtime.records.pooling import Pooling, pool


def test_pool_matches_numpy_and_scipy():
    rng = np.random.default_rng(3)
    x = np.concatenate([[0.0, 0.0], rng.gamma(2.0, 0.05, 301)])
    labels = [f"frame{i}" for i in range(len(x))]
    p = pool(x, labels, failures=4)
    assert (p.n, p.failures) == (len(x), 4)
    assert p.mean == pytest.approx(np.mean(x), rel=1e-12) and p.std == pytest.approx(np.std(x), rel=1e-12)
    assert p.harmonic_mean == pytest.approx(stats.hmean(x + 1) - 1, rel=1e-12)  # VMAF's form, defined at 0
    assert (p.p5, p.p50, p.p95) == pytest.approx(tuple(np.percentile(x, [5, 50, 95])), rel=1e-12)
    assert (p.min, p.max) == (x.min(), x.max())
    assert p.worst == labels[int(np.argmax(x))]
    assert pool(x, higher_is_worse=False).worst == int(np.argmin(x))  # PSNR/SSIM: the lowest is worst
    assert p.line().startswith(f"n={len(x)} mean={np.mean(x):.6f} harmonic_mean=")


def test_ties_empty_and_refused_values():
    assert pool([0.2, 0.5, 0.5, 0.1]).worst == 1  # the first of equal worst values
    empty = pool([], failures=2)
    assert (empty.n, empty.failures, empty.mean, empty.worst) == (0, 2, None, None)
    assert empty.line() == "n=0 failures=2"
    with pytest.raises(ValueError, match="finite"):
        pool([0.1, float("nan")])
    with pytest.raises(ValueError, match="flat"):
        pool(np.zeros((2, 2)))


def test_accumulator_counts_failures_and_keeps_labels():
    acc = Pooling()
    for label, value in [(3, 0.25), (4, None), (5, 0.75), (6, float("nan")), (7, 0.5)]:
        acc.add(label, value)
    s = acc.stats()
    assert (s.n, s.failures, s.worst, s.max, s.mean) == (3, 2, 5, 0.75, pytest.approx(0.5))
    assert s.as_dict()["p50"] == pytest.approx(0.5)
