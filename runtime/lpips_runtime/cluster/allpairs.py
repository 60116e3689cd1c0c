"""All pairs of N images on a cluster without the N(N-1)/2 table: each image is embedded once by
actors (the split graph's encoder, ``Scorer.embed_prepared``), its features stay in Ray's object store
(spilled to disk beyond it), and tasks compute tiles of the distance matrix with the feature cache's
Gram-product head (``features.distance_block``). Only what is asked comes back to the driver: the
pairs under a threshold (near duplicates), each image's k nearest, and the mean pairwise distance
with its standard error (the diversity score of generative-model papers).

Images of different sizes are compared within their size only (LPIPS compares same-size images);
pairs across sizes and pairs with an unreadable image count as failures.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ClusterError, InputError, LpipsError
from ..core.features import Features, distance_block, energies, layer_scales
from ..records.summary import DistanceStats, RunSummary
from . import uris
from .resources import plan
from .session import require_ray
from .settings import ScorerSettings, WorkerModel

DEFAULT_TILE = 64  # images per embedding call and per side of a distance tile
OUTPUTS = ("near-duplicates", "nearest.parquet", "summary.json")  # what a run writes in its folder


@dataclass
class AllPairsReport:
    """What an all-pairs run found. ``summary``: n, mean, std, std/sqrt(n), min, max over every scored
    pair; ``summary.stats.failures``: pairs that could not be scored."""

    images: int
    summary: RunSummary
    near_duplicates: int
    failed_images: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        return f"images={self.images} near-duplicates={self.near_duplicates} {self.summary.line()}"


# -- on the workers ---------------------------------------------------------------------------------


class Embedder:
    """Actor: one Scorer over the shipped encoder/head; embeds chunks of images."""

    def __init__(self, model: WorkerModel, cpus: float = 1.0):
        self.scorer = model.scorer(cpus)
        self.weights = self.scorer.head_weights()  # opens the split graphs now: a bad model fails here

    def head_weights(self) -> list[np.ndarray]:
        return self.weights

    def embed(self, start: int, names: list[str]):
        """Images ``start..start+len(names)-1`` -> (meta, features): features is a list of
        ``Features``, one per image size in the chunk; meta (small, for the driver) holds per group
        (size, global indices, float64 energies) and the errors of images that failed."""
        errors, groups = {}, {}
        for offset, name in enumerate(names):
            try:
                arr = self.scorer.load_one(uris.image_source(name, self.scorer.max_pixels))
            except Exception as exc:  # one image's failure fails its pairs, not the run
                errors[start + offset] = str(exc) if isinstance(exc, LpipsError) else f"{type(exc).__name__}: {exc}"
                continue
            groups.setdefault((arr.shape, arr.dtype.str), []).append((start + offset, arr))
        meta, feats = {"errors": errors, "groups": []}, []
        for members in groups.values():
            try:
                f = self.scorer.embed_prepared(np.concatenate([arr for _, arr in members]))
            except Exception as exc:
                errors.update((i, f"{type(exc).__name__}: {exc}") for i, _ in members)
                continue
            feats.append(f)
            meta["groups"].append((f.image_size, [i for i, _ in members],
                                   energies(f, layer_scales(self.weights, f))))
        return meta, feats


_gram = None  # per worker process: the ORT float64 product (one thread: a tile task takes one CPU)


def distance_tile(rows_chunk: list[Features], row_group: int, cols_chunk: list[Features], col_group: int,
                  row_index: np.ndarray, col_index: np.ndarray, row_energy: np.ndarray, col_energy: np.ndarray,
                  weights: list[np.ndarray], same: bool, threshold: float | None, k: int) -> dict:
    """Task: one tile of the distance matrix, reduced to what was asked. ``same``: rows and columns are
    the same images (only i<j counts). Returns sums for the mean, the (i, j, d) under ``threshold``
    (global indices, i<j) and, for ``k``, each row's and each column's k nearest in this tile."""
    global _gram
    if _gram is None:
        from ..core.gram import GramProduct

        _gram = GramProduct(threads=1)
    rows, cols = rows_chunk[row_group], cols_chunk[col_group]
    d = distance_block(rows, cols, layer_scales(weights, rows), row_energy, col_energy, _gram)
    if same:
        np.fill_diagonal(d, 0.0)  # an image against itself (the expansion leaves ~1e-16)
        upper = np.triu(np.ones(d.shape, bool), 1)
        values = d[upper]
    else:
        upper, values = None, d.ravel()
    out = {"stats": DistanceStats.of(values)}
    if threshold is not None:
        hit = d < threshold
        if upper is not None:
            hit &= upper
        i, j = np.nonzero(hit)
        out["close"] = (row_index[i], col_index[j], d[i, j])
    if k:
        masked = d.copy()
        if same:
            np.fill_diagonal(masked, np.inf)
        out["rows"] = _nearest(masked, col_index, k)
        if not same:
            out["cols"] = _nearest(masked.T, row_index, k)
    return out


def _nearest(d: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``d``: the k smallest values and the global indices of their columns (inf-padded)."""
    k = min(k, d.shape[1])
    part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
    return np.take_along_axis(d, part, 1), index[part]


# -- on the driver ----------------------------------------------------------------------------------


class _NearestTable:
    """Each image's k nearest so far (distance, neighbour index), merged tile by tile."""

    def __init__(self, n: int, k: int):
        self.k = k
        self.d = np.full((n, k), np.inf, np.float32)
        self.j = np.full((n, k), -1, np.int64)

    def merge(self, who: np.ndarray, values: np.ndarray, neighbours: np.ndarray) -> None:
        d = np.concatenate([self.d[who], values], axis=1)
        j = np.concatenate([self.j[who], neighbours], axis=1)
        order = np.argsort(d, axis=1, kind="stable")[:, :self.k]
        self.d[who] = np.take_along_axis(d, order, 1)
        self.j[who] = np.take_along_axis(j, order, 1)


def all_pairs(images: list[str] | str, out: str | Path, settings: ScorerSettings = ScorerSettings(), *,
              threshold: float | None = None, top_k: int = 0, actors: int = 1, cpus_per_actor: float = 1.0,
              gpus_per_actor: float = 0.0, tile: int = DEFAULT_TILE, overwrite: bool = False,
              tasks_in_flight: int | None = None, actor_resources: dict | None = None,
              tile_resources: dict | None = None,
              on_progress: Callable[[str, int, int], None] | None = None) -> AllPairsReport:
    """Every pair i<j of ``images`` (a list of paths/URIs, or a folder) on the connected cluster.

    Writes into the folder ``out``: ``summary.json`` always; with ``threshold``, ``near-duplicates/``
    (result parts of the pairs with distance < threshold, the columns of ``lpips-score --out``); with
    ``top_k``, ``nearest.parquet`` (image, rank, neighbour, distance). ``on_progress(stage, done,
    total)`` reports the embedding and tile stages. ``actor_resources``/``tile_resources``: custom Ray
    resources the embedding actors and the tile tasks require (to pin them to nodes).

    Memory: the features of every image in the object store (``Features.bytes_per_image`` each,
    spilled to disk beyond the store's size), two chunks of ``tile`` images per tile task, and on the
    driver k neighbours per image.
    """
    from .output import ResultFolder

    if settings.metrics:
        raise InputError(f"all_pairs compares cached features, which have no pixels for {', '.join(settings.metrics)}: "
                         "score the pairs with write_pair_scores (lpips-score --all-pairs --ray --metrics does)")
    ray = require_ray()
    if not ray.is_initialized():
        raise ClusterError("no Ray session: call ray.init(...) or use lpips_runtime.cluster.ray_session()")
    if settings.resize.mode == "first":
        raise InputError("resize 'first' has no first image in all-pairs runs: use none or a fixed WxH")
    if top_k < 0 or tile < 2:
        raise InputError("top_k must be >= 0 and tile >= 2")
    started = time.monotonic()
    names = uris.list_image_files(images) if isinstance(images, (str, Path)) else [str(i) for i in images]
    n = len(names)
    out = Path(out)
    summary_path = out / "summary.json"
    if summary_path.exists() and not overwrite:
        raise InputError(f"{out} holds an all-pairs result: pass --overwrite to replace it")
    model = WorkerModel.resolve(settings, distances=False, feature_cache=True)
    for old in OUTPUTS:  # a previous (or killed) run's files; nothing else in the folder is touched
        if (out / old).is_dir():
            ResultFolder(out / old, model.label, overwrite=True)
        else:
            (out / old).unlink(missing_ok=True)
    close = ResultFolder(out / "near-duplicates", model.label) if threshold is not None else None

    plan(max(1, actors), cpus_per_actor, gpus_per_actor)  # actors that cannot all start: said now, not a hang
    # 1. Embed every image once, in chunks spread over the actors; features stay in the object store.
    actor_cls = ray.remote(Embedder).options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
                                             resources=actor_resources, max_restarts=-1, max_task_retries=-1)
    pool = [actor_cls.remote(model, cpus_per_actor) for _ in range(max(1, actors))]
    weights = ray.put(ray.get(pool[0].head_weights.remote()))
    chunks = []
    for c, start in enumerate(range(0, n, tile)):
        meta, feats = pool[c % len(pool)].embed.options(num_returns=2).remote(start, names[start:start + tile])
        chunks.append((meta, feats))
    failed: dict[int, str] = {}
    tiles_by_size: dict[tuple, list] = {}  # size -> [(features ref, group, indices, energies)]
    for c, (meta_ref, feats_ref) in enumerate(chunks):
        meta = ray.get(meta_ref)
        failed.update(meta["errors"])
        for g, (size, indices, energy) in enumerate(meta["groups"]):
            tiles_by_size.setdefault(size, []).append((feats_ref, g, np.asarray(indices), energy))
        if on_progress:
            on_progress("embed", min(n, (c + 1) * tile), n)
    for actor in pool:
        ray.kill(actor)

    # 2. Tiles of the distance matrix as tasks, at most ``tasks_in_flight`` at once.
    task = ray.remote(distance_tile).options(num_cpus=1, max_retries=-1, resources=tile_resources)
    jobs = [(t[a], t[b], a == b) for t in tiles_by_size.values() for a in range(len(t)) for b in range(a, len(t))]
    limit = tasks_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    nearest = _NearestTable(n, top_k) if top_k else None
    summary = RunSummary(dict(model.identity))
    summary.start()
    near = 0
    pending: dict = {}  # task ref -> (row indices, column indices)
    done_tiles = 0
    submitted = iter(jobs)
    while True:
        while len(pending) < limit:
            job = next(submitted, None)
            if job is None:
                break
            (rref, rg, ri, re), (cref, cg, ci, ce), same = job
            ref = task.remote(rref, rg, cref, cg, ri, ci, re, ce, weights, same, threshold, top_k)
            pending[ref] = (ri, ci)
        if not pending:
            break
        ready, _ = ray.wait(list(pending), num_returns=1)
        ri, ci = pending.pop(ready[0])
        result = ray.get(ready[0])
        summary.add_stats(result["stats"])
        if close is not None and len(result["close"][0]):
            near += _write_close(close, names, *result["close"], model.label)
        if nearest is not None:
            nearest.merge(ri, *result["rows"])
            if "cols" in result:
                nearest.merge(ci, *result["cols"])
        done_tiles += 1
        if on_progress:
            on_progress("tiles", done_tiles, len(jobs))

    # 3. Failures, the k nearest and the summary.
    summary.add_stats(DistanceStats(failures=n * (n - 1) // 2 - summary.stats.n))
    if nearest is not None:
        _write_nearest(out / "nearest.parquet", names, nearest)
    report = AllPairsReport(n, summary, near, {names[i]: e for i, e in sorted(failed.items())},
                            time.monotonic() - started)
    _write_summary(summary_path, report, threshold, top_k)
    return report


def _write_close(folder, names: list[str], i: np.ndarray, j: np.ndarray, d: np.ndarray, label: str) -> int:
    """One result part of near-duplicate pairs (ordered by distance within the part)."""
    import pyarrow as pa

    from .pipeline import result_schema

    order = np.argsort(d, kind="stable")
    i, j, d = i[order], j[order], d[order]
    folder.write(pa.table({"img0": [names[a] for a in i], "img1": [names[b] for b in j],
                           "distance": d.astype(np.float64), "error": pa.nulls(len(d), pa.string()),
                           "model": [label] * len(d)}, schema=result_schema()))
    return len(d)


def _write_nearest(path: Path, names: list[str], nearest: _NearestTable) -> None:
    """``image, rank, neighbour, distance`` rows (rank 1 = nearest; images with fewer comparable
    neighbours than k have fewer rows), written under a temporary name and renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    who, rank = np.nonzero(nearest.j >= 0)
    table = pa.table({"image": [names[a] for a in who], "rank": (rank + 1).astype(np.int32),
                      "neighbour": [names[b] for b in nearest.j[who, rank]],
                      "distance": nearest.d[who, rank].astype(np.float64)})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _write_summary(path: Path, report: AllPairsReport, threshold: float | None, k: int) -> None:
    """``summary.json``: the run summary of ``lpips-score --summary-json`` (n, mean, std, std error,
    min, max, failures, model...) plus what is particular to all pairs."""
    body = {**report.summary.as_dict(), "images": report.images, "threshold": threshold,
            "near_duplicates": report.near_duplicates if threshold is not None else None, "top_k": k or None,
            "seconds": round(report.seconds, 3),
            "failed_images": [{"image": name, "error": error} for name, error in report.failed_images.items()]}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
