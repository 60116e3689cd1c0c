"""Cached LPIPS features and the arithmetic that compares many of them at once.

An LPIPS distance is a sum over the tapped layers l of the spatial mean of a channel-weighted squared
difference of unit-normalised features: ``d(a, b) = sum_l sum_{c,y,x} s_lc (a_lcyx - b_lcyx)^2`` with
``s_lc = w_lc / (h_l w_l)`` (``w``: the linear head's weights, all ones for the baseline). Expanding the
square turns a whole block of distances into one matrix product:
``d(a_i, b_j) = e(a_i) + e(b_j) - 2 G_ij``, ``e(a) = sum s a^2``, ``G_ij = sum s a_i b_j``, so a block of
R x C distances costs one GEMM instead of R*C head runs. It is computed in float64: the energies are
O(1) while distances may be 1e-3, and a float32 product over ~10^5-10^6 terms would lose the 1e-6 that
the fused graph is matched to.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Features:
    """The encoder's output for N images of one size: what ``Scorer.embed`` returns.

    ``layers[l]``: float32 [N, C_l, h_l, w_l], unit-normalised along C (C-contiguous; may be a view into
    a larger batch). ``image_size``: (H, W) of the images. ``encoder``: file name of the encoder that
    wrote them; features of different encoders (net, version, precision) are never compared.
    Memory: ``nbytes`` (``bytes_per_image`` per image; e.g. LPIPS-alex at 256x256 about 2.6 MB per image,
    see benchmarks/README.md for every net and size).
    """

    layers: tuple[np.ndarray, ...]
    image_size: tuple[int, int]
    encoder: str

    def __len__(self) -> int:
        return int(self.layers[0].shape[0])

    def __repr__(self) -> str:  # the arrays themselves are megabytes of numbers
        h, w = self.image_size
        return (f"Features({len(self)} image(s) of {w}x{h}, {len(self.layers)} taps, "
                f"{self.nbytes / 2**20:.2f} MiB, encoder={self.encoder!r})")

    def __getitem__(self, index) -> "Features":
        """Image ``index`` (an int keeps a batch axis of 1) or a slice, as views (no copy)."""
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"image {index} of {len(self)}")
            index = slice(index, index + 1 if index != -1 else None)
        return Features(tuple(layer[index] for layer in self.layers), self.image_size, self.encoder)

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    @property
    def bytes_per_image(self) -> int:
        return sum(layer[:1].nbytes for layer in self.layers)

    def copy(self) -> "Features":
        """An owned copy (a slice of a large batch otherwise keeps the whole batch alive)."""
        return Features(tuple(np.array(layer) for layer in self.layers), self.image_size, self.encoder)

    @staticmethod
    def concat(parts: Sequence["Features"]) -> "Features":
        if not parts:
            raise InputError("no features to join")
        first = parts[0]
        for other in parts[1:]:
            check_comparable(first, other)
        return Features(tuple(np.concatenate(ls) for ls in zip(*(p.layers for p in parts))), first.image_size,
                        first.encoder)


def check_comparable(a: Features, b: Features) -> None:
    """``InputError`` unless ``a`` and ``b`` come from the same encoder and same-size images."""
    if a.encoder != b.encoder:
        raise InputError(f"features of different models ({a.encoder} vs {b.encoder}) cannot be compared")
    if a.image_size != b.image_size:
        (h0, w0), (h1, w1) = a.image_size, b.image_size
        raise InputError(f"size mismatch: features of a {w0}x{h0} image vs a {w1}x{h1} image "
                         "(LPIPS compares same-size images; see --resize)")


def layer_scales(weights: Sequence[np.ndarray], features: Features) -> list[np.ndarray]:
    """Per-layer float64 [C_l] factors ``s_lc = w_lc / (h_l w_l)`` for features of this size."""
    return [np.asarray(w, np.float64) / (layer.shape[2] * layer.shape[3])
            for w, layer in zip(weights, features.layers)]


def energies(features: Features, scales: Sequence[np.ndarray]) -> np.ndarray:
    """float64 [N]: ``e(a) = sum_l sum s_lc a^2`` of each image."""
    out = np.zeros(len(features))
    for layer, s in zip(features.layers, scales):
        sq = np.square(layer.reshape(len(features), layer.shape[1], -1), dtype=np.float64).sum(axis=2)
        out += (sq * s).sum(axis=1)  # elementwise, not a BLAS call: see lpips_runtime.core.gram
    return out


def weighted_square_difference(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """float32 [h, w]: ``sum_c w_c (a_c - b_c)^2`` of two unit-normalised feature maps [C, h, w] of one tap
    (the head's per-position term before its spatial mean; ``weights`` float32 [C], ones for the baseline)."""
    diff = np.subtract(a, b, dtype=np.float32)
    np.square(diff, out=diff)
    return np.tensordot(weights, diff, axes=(0, 0)).astype(np.float32, copy=False)


def _numpy_gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b.T


def distance_block(rows: Features, cols: Features, scales: Sequence[np.ndarray],
                   e_rows: np.ndarray | None = None, e_cols: np.ndarray | None = None,
                   gram_product: Callable[[np.ndarray, np.ndarray], np.ndarray] = _numpy_gram) -> np.ndarray:
    """float32 [R, C]: LPIPS distance of every row image to every column image.

    Scratch memory: about (R + C) x (largest layer's C*h*w) x 8 bytes (one layer at a time in float64).
    Pass precomputed ``energies`` to skip recomputing them per block, and ``gram_product(A, B) = A @ B.T``
    to run the float64 products elsewhere than numpy's BLAS (the scorer uses ``gram.GramProduct``).
    """
    e_rows = energies(rows, scales) if e_rows is None else e_rows
    e_cols = energies(cols, scales) if e_cols is None else e_cols
    gram = np.zeros((len(rows), len(cols)))
    for a, b, s in zip(rows.layers, cols.layers, scales):
        a64 = a.reshape(len(rows), -1).astype(np.float64)
        b64 = (b.astype(np.float64) * s[None, :, None, None]).reshape(len(cols), -1)
        gram += gram_product(a64, b64)
    out = e_rows[:, None] + e_cols[None, :] - 2.0 * gram
    return np.maximum(out, 0.0).astype(np.float32)  # a squared distance: rounding must not make it negative


class FeatureStore:
    """Features of N same-size images, filled image by image, read back in blocks.

    Held in RAM when ``N * bytes_per_image <= max_memory``; otherwise written once to a temporary file in
    ``spill_dir`` (default: the system temp folder; put it on a disk, not a RAM-backed /tmp) and read back
    through a memory map, so RAM stays at about two blocks whatever N is. Disk use: N * bytes_per_image.

    The spill file has no name from the start (``O_TMPFILE`` on Linux; elsewhere unlinked as soon as it is
    created): it lives only as long as this process holds it open, so however the run ends (``close``,
    SIGTERM, SIGKILL, a crash) nothing is left behind in ``spill_dir`` and the kernel frees its blocks.
    """

    def __init__(self, n: int, template: Features, max_memory: int, spill_dir: str | Path | None = None):
        self.n, self.image_size, self.encoder = n, template.image_size, template.encoder
        shapes = [(n, *layer.shape[1:]) for layer in template.layers]
        total = n * template.bytes_per_image
        self.spilled = total > max_memory
        self._file = None
        if not self.spilled:
            self._layers = [np.empty(shape, np.float32) for shape in shapes]
            return
        folder = Path(spill_dir) if spill_dir is not None else Path(tempfile.gettempdir())
        self._file = tempfile.TemporaryFile(prefix="lpips-features-", suffix=".f32", dir=folder)
        try:
            os.ftruncate(self._file.fileno(), total)  # sparse until written
            self._layers, offset = [], 0
            for shape in shapes:
                self._layers.append(np.memmap(self._file, np.float32, "r+", offset, shape))
                offset += int(np.prod(shape)) * 4
        except BaseException:
            self.close()
            raise

    def put(self, index: int, features: Features) -> None:
        """Store ``features`` (k images) at positions index..index+k-1."""
        check_comparable(self.view(0, 0), features)
        for dst, src in zip(self._layers, features.layers):
            dst[index:index + len(features)] = src

    def view(self, start: int, stop: int) -> Features:
        return Features(tuple(np.asarray(layer[start:stop]) for layer in self._layers), self.image_size,
                        self.encoder)

    def close(self) -> None:
        self._layers = []  # the maps close when their last view goes; the blocks are freed with the last of them
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
