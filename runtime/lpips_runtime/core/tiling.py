"""Exact LPIPS of images too large to score at once, tile by tile.

An LPIPS distance is, for each tapped layer l, the mean over the positions of its feature map of
``sum_c w_lc (a_lcyx - b_lcyx)^2`` (unit-normalised features ``a``, ``b`` of the two images), summed over
the layers. The backbones are local: position j of tap l (stride S_l) is computed from the input rows
``j*S_l - P_l ... j*S_l - P_l + R_l - 1`` (``TapGeometry``), and from nothing else. So a crop of the image
gives exactly the full image's features at every position whose receptive field lies inside the crop,
provided the crop starts at a multiple of the deepest tap's stride (then every layer's grid in the crop is
the full image's, shifted by a whole number of positions), and where the crop's edge is the image's edge,
the zero padding there is the full image's padding too.

``plan_tiles`` cuts the image into owned rectangles whose boundaries are multiples of the deepest stride;
each tile is encoded from its rectangle plus a halo (``Halo``) wide enough for every owned position of every
tap. Each tap's positions are split among the tiles exactly once, the per-position terms of the owned
ones are summed (in float64) and divided by the FULL map's position count. The result equals the untiled
graph's to float32 rounding (tests: <= 1e-5, measured ~1e-7) for every net, version and size.

The spatial map (``spatial=True``) is exact too: the official map upsamples each tap's per-position map
bilinearly (half-pixel centres, ``align_corners=False``) to the input size and sums them; here the tap
maps are assembled from the tiles' owned positions and upsampled on the host with the same rule.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import LpipsError
from .features import Features, weighted_square_difference
from ..model.nets import NetSpec, get_net

MAX_TILES_PER_SIDE = 64  # finer grids only add halo: the budget is then too small to matter


@dataclass(frozen=True)
class TapGeometry:
    """Position j of a tap's map reads input pixels ``j*stride - offset ... j*stride - offset + field - 1``."""

    stride: int
    offset: int
    field: int


def tap_geometry(net: NetSpec) -> tuple[TapGeometry, ...]:
    """Stride, offset and receptive field of every tap, composed from ``net.geometry``."""
    return _tap_geometry(net.name)


@lru_cache(maxsize=None)
def _tap_geometry(name: str) -> tuple[TapGeometry, ...]:
    net = get_net(name)
    if len(net.geometry) < net.taps[-1]:
        raise LpipsError(f"models/nets.toml lists no layer geometry for every layer of {net.name}")
    taps, stride, offset, field = [], 1, 0, 1
    for index, layer in enumerate(net.geometry[:net.taps[-1]]):
        offset += layer.padding * stride
        field += (layer.kernel - 1) * stride
        stride *= layer.stride
        if index + 1 in net.taps:
            taps.append(TapGeometry(stride, offset, field))
    return tuple(taps)


def tap_sizes(net: NetSpec, size: int) -> tuple[int, ...]:
    """Length of each tap's map along an input side of ``size`` pixels."""
    out, n = [], size
    for index, layer in enumerate(net.geometry[:net.taps[-1]]):
        n = layer.output_size(n)
        if index + 1 in net.taps:
            out.append(n)
    return tuple(out)


@dataclass(frozen=True)
class Halo:
    """Input pixels a tile's crop needs beyond its owned rectangle, and the grid crops start on."""

    before: int  # above / left of the owned rectangle
    after: int  # below / right of it
    step: int  # the deepest tap's stride: crop origins are multiples of it

    @classmethod
    def of(cls, net: NetSpec) -> "Halo":
        taps = tap_geometry(net)
        # Owned positions of tap l start at B/S_l (B a multiple of step): the first reads from B - P_l;
        # the last before the next boundary B' reads up to B' - S_l - P_l + R_l - 1.
        return cls(max(t.offset for t in taps), max(t.field - t.stride - t.offset for t in taps), taps[-1].stride)


@dataclass(frozen=True)
class Span:
    """One tile along one axis: the input pixels it is encoded from, and the positions it owns."""

    crop: tuple[int, int]  # [start, stop) input pixels; start is a multiple of the deepest stride
    owned: tuple[tuple[int, int], ...]  # per tap: [start, stop) positions of the FULL map owned by this tile


def _boundaries(length: int, count: int, step: int) -> list[int] | None:
    """``count`` + 1 owned-region boundaries along an axis (inner ones on the ``step`` grid), or None if
    the axis is too short for ``count`` distinct tiles."""
    inner = [round(length * i / count / step) * step for i in range(1, count)]
    bounds = [0, *inner, length]
    return bounds if all(a < b for a, b in zip(bounds, bounds[1:])) else None


def _spans(net: NetSpec, length: int, count: int) -> tuple[Span, ...] | None:
    halo = Halo.of(net)
    bounds = _boundaries(length, count, halo.step)
    if bounds is None:
        return None
    sizes = tap_sizes(net, length)
    spans = []
    for t, (b0, b1) in enumerate(zip(bounds, bounds[1:])):
        last = t == count - 1
        start = max(0, (b0 - halo.before) // halo.step * halo.step)
        stop = length if last else min(length, b1 + halo.after)
        owned = tuple((min(b0 // g.stride, n), n if last else min(b1 // g.stride, n))
                      for g, n in zip(tap_geometry(net), sizes))
        spans.append(Span((start, stop), owned))
    return tuple(spans)


def _axis_options(net: NetSpec, length: int) -> tuple[tuple[int, int, int], ...]:
    """(count, largest crop, sum of crops) of each possible tile count along an axis."""
    return _axis_options_of(net.name, length)


@lru_cache(maxsize=256)
def _axis_options_of(name: str, length: int) -> tuple[tuple[int, int, int], ...]:
    net = get_net(name)
    options = []
    for count in range(1, min(MAX_TILES_PER_SIDE, max(1, length // Halo.of(net).step)) + 1):
        spans = _spans(net, length, count)
        if spans is not None:
            lengths = [s.crop[1] - s.crop[0] for s in spans]
            options.append((count, max(lengths), sum(lengths)))
    return tuple(options)


@dataclass(frozen=True)
class TilePlan:
    """How to score an ``height`` x ``width`` pair in tiles: every (row span, column span) is one tile."""

    net: NetSpec
    height: int
    width: int
    rows: tuple[Span, ...]
    cols: tuple[Span, ...]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def largest_crop(self) -> int:
        """Pixels of the largest tile crop (what one encoder run holds)."""
        return max(r.crop[1] - r.crop[0] for r in self.rows) * max(c.crop[1] - c.crop[0] for c in self.cols)

    @property
    def computed_pixels(self) -> int:
        """Input pixels encoded per image, halos included (>= height * width)."""
        return sum(r.crop[1] - r.crop[0] for r in self.rows) * sum(c.crop[1] - c.crop[0] for c in self.cols)

    def map_sizes(self) -> list[tuple[int, int]]:
        """(h_l, w_l) of every tap's full map."""
        return [(r[1], c[1]) for r, c in zip(self.rows[-1].owned, self.cols[-1].owned)]


def plan_tiles(net: NetSpec, height: int, width: int, *, tile: int | None = None,
               max_crop_pixels: int | None = None) -> TilePlan:
    """Tiles for an ``height`` x ``width`` image: owned tiles of about ``tile`` x ``tile`` pixels, or (with
    ``max_crop_pixels``) the grid that encodes the fewest pixels in total (halos included) while no tile's
    crop exceeds ``max_crop_pixels`` (the finest grid when none fits)."""
    rows_opts, cols_opts = _axis_options(net, height), _axis_options(net, width)
    if tile is not None:
        want_rows, want_cols = -(-height // tile), -(-width // tile)
        ny = max((o for o in rows_opts if o[0] <= want_rows), key=lambda o: o[0])[0]
        nx = max((o for o in cols_opts if o[0] <= want_cols), key=lambda o: o[0])[0]
    else:
        if max_crop_pixels is None:
            raise LpipsError("plan_tiles needs a tile size or a crop budget")
        rows, cols = np.array(rows_opts), np.array(cols_opts)
        largest = np.outer(rows[:, 1], cols[:, 1])
        total = np.outer(rows[:, 2], cols[:, 2]).astype(np.float64)
        fits = largest <= max_crop_pixels
        if fits.any():
            cost = np.where(fits, total, np.inf) + 1e-9 * np.add.outer(rows[:, 0], cols[:, 0])  # ties: fewer tiles
        else:
            cost = largest.astype(np.float64)
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        ny, nx = int(rows[i, 0]), int(cols[j, 0])
    return TilePlan(net, height, width, _spans(net, height, ny), _spans(net, width, nx))


# A crop source: ((row start, row stop), (col start, col stop)) -> the model-ready input of that crop.
CropSource = Callable[[tuple[int, int], tuple[int, int]], np.ndarray]


def tiled_lpips(plan: TilePlan, crop0: CropSource, crop1: CropSource, encode: Callable[[np.ndarray], Features],
                weights: Sequence[np.ndarray], spatial: bool = False):
    """The LPIPS distance (float) of one pair, or with ``spatial`` its map (float32 [H,W]), from tiles.

    ``crop0``/``crop1`` give each tile's model-ready input of the two images; ``encode`` turns one into
    ``Features`` (the split encoder); ``weights``: the head's per-channel weights w_l [C_l].
    Memory: one tile's encoder run plus the first image's features of that tile; with ``spatial``, also
    the tap maps (small) and the [H,W] result.
    """
    sizes = plan.map_sizes()
    sums = np.zeros(len(sizes))
    maps = [np.zeros(size, np.float32) for size in sizes] if spatial else None
    w32 = [np.asarray(w, np.float32).reshape(-1) for w in weights]
    geometry = tap_geometry(plan.net)
    for row in plan.rows:
        for col in plan.cols:
            owned = []  # per tap: (window of the crop's map, window of the full map), or None if it owns nothing
            for g, (y0, y1), (x0, x1) in zip(geometry, row.owned, col.owned):
                oy, ox = row.crop[0] // g.stride, col.crop[0] // g.stride  # the crop's first position
                owned.append(None if y0 == y1 or x0 == x1 else
                             ((0, slice(None), slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox)),
                              (slice(y0, y1), slice(x0, x1))))
            # Keep only the owned part of the first image's features (a copy), so that the encoder's
            # buffers for the whole crop are free again before the second image is encoded.
            f0 = encode(crop0(row.crop, col.crop))
            kept = [None if o is None else np.array(f0.layers[layer][o[0]]) for layer, o in enumerate(owned)]
            del f0
            f1 = encode(crop1(row.crop, col.crop))
            for layer, (o, a) in enumerate(zip(owned, kept)):
                if o is None:
                    continue
                (ys, xs) = o[1]
                term = weighted_square_difference(a, f1.layers[layer][o[0]], w32[layer])
                if term.shape != (ys.stop - ys.start, xs.stop - xs.start):  # plan and encoder disagree: never silently
                    raise LpipsError(f"tile {row.crop}x{col.crop}: tap {layer} map too small for its owned positions")
                sums[layer] += term.sum(dtype=np.float64)
                if maps is not None:
                    maps[layer][ys, xs] = term
            del f1, kept
    if maps is None:
        return float(sum(s / (h * w) for s, (h, w) in zip(sums, sizes)))
    out = np.zeros((plan.height, plan.width), np.float32)
    for m in maps:
        add_upsampled(out, m)
    return out


_ROW_BLOCK = 256  # output rows upsampled at once: bounds the scratch memory to a few rows of the map


def _linear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear resampling with half-pixel centres (``align_corners=False``),
    as PyTorch computes them in float32: src = (dst + 0.5) * in/out - 0.5, clamped at 0."""
    scale = np.float32(size_in / size_out)
    src = np.maximum((np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5),
                     np.float32(0))
    i0 = np.minimum(src.astype(np.int64), size_in - 1)
    i1 = np.minimum(i0 + 1, size_in - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, frac


def add_upsampled(out: np.ndarray, tap_map: np.ndarray) -> None:
    """``out`` (float32 [H,W]) += ``tap_map`` (float32 [h,w]) resized bilinearly to HxW, half-pixel
    centres (what the official spatial LPIPS does per tap with ``F.interpolate(..., align_corners=False)``)."""
    height, width = out.shape
    y0, y1, fy = _linear_taps(tap_map.shape[0], height)
    x0, x1, fx = _linear_taps(tap_map.shape[1], width)
    for r0 in range(0, height, _ROW_BLOCK):
        r1 = min(height, r0 + _ROW_BLOCK)
        wy = fy[r0:r1, None]
        rows = tap_map[y0[r0:r1]] * (1 - wy) + tap_map[y1[r0:r1]] * wy  # [rows, w]
        out[r0:r1] += rows[:, x0] * (1 - fx) + rows[:, x1] * fx
