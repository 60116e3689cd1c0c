"""Embed once, compare many: the ``Scorer`` methods that work through its feature cache
(``embedding.FeatureCache``, the split encoder and head) instead of the fused graph.

``ScorerFeatures`` is a base class of ``Scorer``: these methods are the Scorer's public API, kept here
because they are one job (features, not pairs). The cache is created on first use.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..backends import check_graph_backend
from .embedding import DEFAULT_FEATURE_MEMORY, FeatureCache
from ..errors import InputError, LpipsError
from .features import Features
from ..io.images import ImageSource, check_unit_batch
from .pair_result import PairResult


def _pair_indices(k: int, n: int) -> tuple[int, int]:
    """(i, j) of the k-th pair i<j in ``itertools.combinations(range(n), 2)`` order."""
    i = int(n - 2 - int(np.floor(np.sqrt(-8 * k + 4 * n * (n - 1) - 7) / 2.0 - 0.5)))
    j = int(k + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2)
    return i, j


def is_float_batch(x) -> bool:
    """A float NCHW batch (or any float array): what is passed as pixels in [-1, 1], not decoded."""
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _feature_memory(feature_memory: int | None, max_memory: int | None, method: str) -> int:
    """The ``feature_memory`` of ``distance_matrix``/``score_all_pairs``; ``max_memory``, its old name, still
    works with a ``DeprecationWarning`` (on the Scorer ``max_memory`` is the working memory of scoring)."""
    if max_memory is None:
        return DEFAULT_FEATURE_MEMORY if feature_memory is None else feature_memory
    if feature_memory is not None:
        raise LpipsError(f"{method}: give feature_memory= only (max_memory= is its old name)")
    warnings.warn(f"{method}(max_memory=) is now {method}(feature_memory=): features held in RAM before they "
                  "spill to disk (the Scorer's max_memory is the working memory of scoring)", DeprecationWarning,
                  stacklevel=3)
    return max_memory


class ScorerFeatures:
    """The feature-cache methods of ``Scorer`` (see its docstring). Uses the Scorer's ``batch_size``,
    ``metrics``, ``backend_name``, ``check_size`` and its lock."""

    _cache: FeatureCache | None = None

    def _feature_cache(self) -> FeatureCache:
        if self._cache is None:
            check_graph_backend(self.backend_name)  # before locating (or exporting) the split models
            cache = FeatureCache(self)  # outside the lock: it locates its models through model_info
            with self._lock:
                if self._cache is None:
                    self._cache = cache
        return self._cache

    def embed(self, images) -> Features:
        """Features of one image (N=1), a float NCHW batch [N,3,H,W] in [-1,1], or a list of same-size
        images, to pass to ``distance``/``one_to_many`` instead of images. Memory: ``Features.nbytes``
        (LPIPS-alex 256x256: about 2.6 MB per image; benchmarks/README.md lists every net and size)."""
        return self._feature_cache().embed(images)

    def one_to_many(self, ref, images) -> np.ndarray:
        """float32 [N]: distance of ``ref`` (an image or 1-image ``Features``) to each of ``images``
        (a list of images, a float NCHW batch, or ``Features``), embedding ``ref`` once.
        ``InputError`` on the first image that cannot be scored (``score_one_to_many`` goes on instead)."""
        cache = self._feature_cache()
        if isinstance(images, Features) or is_float_batch(images):
            ref_feats = cache.embed(ref)
            if len(ref_feats) != 1:
                raise InputError(f"the reference must be one image, got {len(ref_feats)}")
            if not isinstance(images, Features):  # encode chunk by chunk, straight into the head
                batch = check_unit_batch(images, "images")
                self.check_size(batch.shape[2], batch.shape[3])
                return cache.one_to_many_batch(ref_feats, batch)
            size = self.batch_size
            return np.concatenate([cache.head(ref_feats, images[i:i + size]) for i in range(0, len(images), size)])
        out = []
        for result in cache.iter_one_to_many(ref, list(images)):
            if not result.ok:
                raise InputError(f"image {result.index}: {result.error}")
            out.append(result.distance)
        return np.asarray(out, dtype=np.float32)

    def distance_matrix(self, images, *, feature_memory: int | None = None, spill_dir: str | Path | None = None,
                        block: int | None = None, max_memory: int | None = None) -> np.ndarray:
        """float32 [N,N] symmetric matrix of LPIPS distances between same-size ``images`` (a list of
        images, a float NCHW batch, or ``Features``; zero diagonal).

        Each image is encoded once (N encoder runs, not N(N-1)/2 pair runs); the distances come from
        block matrix products over the cached features. Memory: the [N,N] result, plus the features
        (N x bytes per image) in RAM up to ``feature_memory`` bytes (default ``DEFAULT_FEATURE_MEMORY``,
        1 GiB), beyond that in a temporary file in ``spill_dir`` (RAM then stays at a few blocks of
        ``block`` images). ``max_memory``: the old name of ``feature_memory`` (deprecated). For very large N
        use ``score_all_pairs``, which streams rows without the matrix. A resize policy of "first" does not
        apply here (no image is "first" of every pair): use a fixed "WxH" to compare different sizes.
        """
        feature_memory = _feature_memory(feature_memory, max_memory, "distance_matrix")
        cache = self._feature_cache()
        if is_float_batch(images):
            images = cache.embed(images)
        if isinstance(images, Features):  # already embedded: straight to the block products
            return cache.matrix_of(images, block)
        images = list(images)
        n = len(images)
        matrix = np.zeros((n, n), np.float32)
        results = cache.iter_all_pairs(images, feature_memory=feature_memory, spill_dir=spill_dir, block=block)
        try:
            for result in results:
                if not result.ok:
                    raise InputError(f"pair {result.img0} / {result.img1}: {result.error}")
                i, j = _pair_indices(result.index, n)
                matrix[i, j] = matrix[j, i] = result.distance
        finally:
            results.close()  # releases the feature store now, not at garbage collection
        return matrix

    def embed_prepared(self, batch: np.ndarray) -> Features:
        """Features of a model-ready batch: the concatenation along axis 0 of ``load_one`` outputs of
        one shape (decoded and validated elsewhere)."""
        if batch.ndim != 4 or not len(batch):
            raise InputError(f"a prepared batch is a non-empty [N,...] array, got {list(batch.shape)}")
        return self._feature_cache().encode(batch)

    def head_weights(self) -> list[np.ndarray]:
        """The head's per-channel weights, one float64 [C_l] per tap (ones for the baseline): with
        ``features.distance_block`` they compare ``Features`` anywhere, without this Scorer."""
        return [w.copy() for w in self._feature_cache().weights()]

    def score_one_to_many(self, ref: ImageSource, images: Iterable[ImageSource]) -> Iterator[PairResult]:
        """Like ``score_pairs`` for the pairs (ref, image): one ``PairResult`` per image, in order,
        through the feature cache (``ref`` encoded once)."""
        self._refuse_metrics_in_cache("score_one_to_many", "score_pairs([(ref, image) for image in images])")
        yield from self._feature_cache().iter_one_to_many(ref, list(images))

    def score_all_pairs(self, images: Sequence[ImageSource], skip: Iterable[tuple[str, str]] = (),
                        *, feature_memory: int | None = None, spill_dir: str | Path | None = None,
                        block: int | None = None, max_memory: int | None = None) -> Iterator[PairResult]:
        """Every pair i<j of ``images`` (``itertools.combinations`` order) through the feature cache,
        streamed: memory as in ``distance_matrix`` without the [N,N] result. Pairs named in ``skip``
        (as ``(str(img0), str(img1))``) are left out, for resuming."""
        feature_memory = _feature_memory(feature_memory, max_memory, "score_all_pairs")
        self._refuse_metrics_in_cache("score_all_pairs", "score_pairs(itertools.combinations(images, 2))")
        yield from self._feature_cache().iter_all_pairs(list(images), frozenset(skip), feature_memory, spill_dir,
                                                        block)

    def _refuse_metrics_in_cache(self, method: str, instead: str) -> None:
        if self.metrics:
            raise LpipsError(f"{method} compares cached features, which have no pixels for {', '.join(self.metrics)}: "
                             f"use {instead} (the fused graph computes them), or a Scorer without metrics")
