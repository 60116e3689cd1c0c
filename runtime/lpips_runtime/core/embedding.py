"""Embed once, compare many: a ``Scorer``'s feature cache over the split graphs (encoder + head).

One reference against N images costs N+1 encoder runs instead of 2N; all pairs of N images cost N
encoder runs plus block matrix products (``features.distance_block``) instead of N(N-1)/2 fused runs.
The split graphs run on the scorer's backend where it runs single graphs (ONNX Runtime on the CPU or
CUDA; OpenVINO): the encoder in the scorer's precision (bf16 included), the head always in float32, and
the block products in float64 on ONNX Runtime (``lpips_runtime.core.gram``).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from ..backends import open_graph
from ..errors import InputError, ModelFileError, error_text
from .features import FeatureStore, Features, check_comparable, distance_block, energies, layer_scales
from .gram import GramProduct
from ..io.images import ImageSource, check_unit_batch, describe
from .pair_result import PairResult

SIZE_INPUT = "image_size"  # the spatial head's shape-only input (see lpips_export.parts)
DEFAULT_FEATURE_MEMORY = 1 << 30  # features held in RAM by an all-pairs run before it spills to disk
_SCRATCH = 256 << 20  # float64 scratch of one block product (rows + columns), bytes
# Scorer backend -> the backend that runs its (float32) heads, where not the same one. OpenVINO's head took
# 1.6-3x ONNX Runtime's time (one reference against 32 images at 256x256, 1 thread: alex 269 vs 87 ms,
# squeeze 620 vs 376 ms, vgg 2.31 vs 1.46 s), and the block products run on ONNX Runtime anyway.
_HEAD_BACKEND = {"openvino": "ort"}


class ImageModel(Protocol):
    """What a ``FeatureCache`` uses of its ``Scorer``: public attributes and methods only."""

    backend_name: str
    device: str
    threads: int | None
    batch_size: int
    workers: int
    inference_precision: str
    spec: object  # modelfile.ModelSpec: its ``frames`` say the input layout
    net: object  # nets.NetSpec: its ``channels`` size the head's probes
    resize: object  # images.ResizePolicy

    def model_info(self, spatial: bool = False, part: str = "fused"): ...

    def check_size(self, height: int, width: int) -> None: ...

    def load_one(self, src: ImageSource, like: tuple[int, int] | None = None) -> np.ndarray: ...


class FeatureCache:
    """Encoder and head sessions of one ``Scorer`` (created on first use, shared by its threads)."""

    def __init__(self, scorer: ImageModel):
        self.scorer = scorer
        encoder_info = scorer.model_info(part="encoder")
        # Features of the same encoder computed in another precision are not comparable either.
        self.encoder_name = encoder_info.path.name + (
            "" if scorer.inference_precision == "fp32" else f" ({scorer.inference_precision})")
        self._encoder = open_graph(scorer.backend_name, encoder_info.path, scorer.device, scorer.threads,
                                   scorer.inference_precision)
        self._heads: dict = {}
        self._weights: list[np.ndarray] | None = None
        self._gram: GramProduct | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._encoder.close()
        self._gram = None
        for head in self._heads.values():
            head.close()
        self._heads.clear()

    # -- graphs --------------------------------------------------------------------------------

    def _head(self, spatial: bool):
        with self._lock:
            if spatial not in self._heads:
                info = self.scorer.model_info(spatial, part="head")
                self._heads[spatial] = open_graph(_HEAD_BACKEND.get(self.scorer.backend_name, self.scorer.backend_name),
                                                  info.path, self.scorer.device, self.scorer.threads)
            return self._heads[spatial]

    def encode(self, batch: np.ndarray) -> Features:
        """Model-ready images [N,...] (validated) -> their features, in chunks of the scorer's batch size."""
        size = self.scorer.batch_size
        outs = [self._encoder.run({"img": batch[i:i + size]}) for i in range(0, len(batch), size)]
        layers = tuple(o[0] if len(outs) == 1 else np.concatenate(o) for o in zip(*outs))
        hw = batch.shape[1:3] if self.scorer.spec.frames and self.scorer.spec.frames.startswith("nhwc") \
            else batch.shape[2:4]
        return Features(layers, (int(hw[0]), int(hw[1])), self.encoder_name)

    def head(self, f0: Features, f1: Features, spatial: bool = False) -> np.ndarray:
        """Distances float32 [N] (or maps [N,1,H,W]) of two feature sets of N images each, or of one
        image against N (broadcast)."""
        check_comparable(f0, f1)
        if len(f0) != len(f1) and 1 not in (len(f0), len(f1)):
            raise InputError(f"feature batches of {len(f0)} and {len(f1)} images: pass equal counts, or one image")
        feeds = {f"feat{i}_0": a for i, a in enumerate(f0.layers)}
        feeds.update({f"feat{i}_1": b for i, b in enumerate(f1.layers)})
        if spatial:
            feeds[SIZE_INPUT] = np.empty((0, *f0.image_size), np.float32)
        return self._head(spatial).run(feeds)[0]

    def one_to_many_batch(self, ref: Features, batch: np.ndarray) -> np.ndarray:
        """float32 [N]: distances of one reference's features to a validated model-ready batch, encoded
        and compared ``batch_size`` images at a time (features of at most one chunk alive at once)."""
        size = self.scorer.batch_size
        return np.concatenate([self.head(ref, self.encode(batch[i:i + size])) for i in range(0, len(batch), size)])

    def gram_product(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """float64 ``a @ b.T`` on ONNX Runtime with the scorer's threads (see ``lpips_runtime.core.gram``)."""
        if self._gram is None:
            self._gram = GramProduct(self.scorer.threads)
        return self._gram(a, b)

    def weights(self) -> list[np.ndarray]:
        """The head's per-channel weights w_l [C_l] (ones for the baseline), read by running the head on
        unit vectors: a 1x1 feature map e_c against zeros gives exactly w_lc, so the head file stays
        the only source of the weights."""
        if self._weights is None:
            channels = self.scorer.net.channels
            found = []
            for layer, c in enumerate(channels):
                probe = [np.zeros((c, k, 1, 1), np.float32) for k in channels]
                probe[layer] = np.eye(c, dtype=np.float32).reshape(c, c, 1, 1)
                zeros = [np.zeros((c, k, 1, 1), np.float32) for k in channels]
                found.append(self.head(Features(tuple(probe), (1, 1), self.encoder_name),
                                       Features(tuple(zeros), (1, 1), self.encoder_name)).astype(np.float64))
            if any(not np.isfinite(w).all() or w.min() < 0 for w in found):
                # LPIPS weights are non-negative (the official training clamps them): a head that says otherwise
                # would give negative distances
                raise ModelFileError(f"{self.scorer.model_info(part='head').path} has negative or non-finite "
                                     "per-channel weights: not an LPIPS head; re-export it")
            self._weights = found
        return self._weights

    # -- inputs --------------------------------------------------------------------------------

    def embed(self, images) -> Features:
        """Features of one image (N=1), a float NCHW batch, or a list of same-size images."""
        if isinstance(images, Features):
            return images
        scorer = self.scorer
        if isinstance(images, np.ndarray) and images.dtype.kind == "f" and images.ndim == 4:
            if scorer.spec.frames is not None:
                raise InputError("this model takes uint8 frames: pass images, not float NCHW batches")
            batch = check_unit_batch(images, "images")
            scorer.check_size(batch.shape[2], batch.shape[3])
            return self.encode(batch)
        if isinstance(images, (list, tuple)):
            if not images:
                raise InputError("no images to embed")
            loaded = list(self._decode(images))
            for index, _, arr, error in loaded:
                if error is not None:
                    raise InputError(f"image {index}: {error}")
            shapes = {arr.shape for _, _, arr, _ in loaded}
            if len(shapes) > 1:
                raise InputError(f"images of {len(shapes)} different sizes: embed same-size images together "
                                 "(or set resize='WxH')")
            return self.encode(np.concatenate([arr for _, _, arr, _ in loaded]))
        return self.encode(scorer.load_one(images))

    def _decode(self, sources: Iterable[ImageSource], like: tuple[int, int] | None = None):
        """Yield (index, name, model-ready [1,...] array or None, error or None) in order, decoding in
        the scorer's thread pool a chunk ahead."""
        chunk = max(2 * self.scorer.batch_size, 8)
        items = iter(enumerate(sources))
        with ThreadPoolExecutor(max_workers=self.scorer.workers, thread_name_prefix="lpips-decode") as pool:
            def submit():
                out = []
                for index, src in items:
                    out.append((index, describe(src), pool.submit(self.scorer.load_one, src, like)))
                    if len(out) == chunk:
                        break
                return out

            upcoming = submit()
            while upcoming:
                current, upcoming = upcoming, submit()
                for index, name, future in current:
                    try:
                        yield index, name, future.result(), None
                    except Exception as exc:  # one bad image fails its pairs, not the run
                        yield index, name, None, error_text(exc)

    def _encode_stream(self, sources: Sequence[ImageSource], like: tuple[int, int] | None = None):
        """Yield, per decoded chunk of ``batch_size`` images, (items, batches): items are
        (index, name, Features of 1 image (a view) or None, error or None) in order; batches are
        (indices, Features) of the chunk's same-size images, encoded together."""
        pending: list = []

        def flush():
            groups: dict[tuple, list] = {}
            for item in pending:
                if item[2] is not None:
                    groups.setdefault((item[2].shape, item[2].dtype.str), []).append(item)
            feats, batches = {}, []
            for members in groups.values():
                try:
                    encoded = self.encode(np.concatenate([m[2] for m in members]))
                except Exception as exc:
                    for m in members:
                        feats[m[0]] = error_text(exc)
                    continue
                batches.append(([m[0] for m in members], encoded))
                for k, m in enumerate(members):
                    feats[m[0]] = encoded[k]
            out = []
            for index, name, arr, error in pending:
                got = feats.get(index, error)
                out.append((index, name, got if isinstance(got, Features) else None,
                            None if isinstance(got, Features) else got))
            pending.clear()
            return out, batches

        for item in self._decode(sources, like):
            pending.append(item)
            if len(pending) >= self.scorer.batch_size:
                yield flush()
        if pending:
            yield flush()

    # -- one against many ---------------------------------------------------------------------------

    def iter_one_to_many(self, ref, sources: Sequence[ImageSource]) -> Iterator[PairResult]:
        """One ``PairResult`` per source, in order: the distance of ``ref`` (image or Features) to it."""
        ref_name = "<features>" if isinstance(ref, Features) else describe(ref)
        ref_feats = self.embed(ref)
        if len(ref_feats) != 1:
            raise InputError(f"the reference must be one image, got {len(ref_feats)}")
        like = ref_feats.image_size if self.scorer.resize.mode == "first" else None
        for chunk, batches in self._encode_stream(sources, like):
            values = {}
            for indices, batch in batches:
                if batch.image_size != ref_feats.image_size:
                    continue
                try:  # the whole encoded batch at once: no copy of its features
                    values.update(zip(indices, map(float, self.head(ref_feats, batch))))
                except Exception as exc:
                    values.update((i, error_text(exc)) for i in indices)
            for index, name, feats, error in chunk:
                if feats is not None and index not in values:
                    (h0, w0), (h1, w1) = ref_feats.image_size, feats.image_size
                    error = (f"size mismatch: {ref_name} is {w0}x{h0}, {name} is {w1}x{h1} "
                             "(LPIPS compares same-size images; see --resize)")
                got = values.get(index, error)
                yield (PairResult(index, ref_name, name, distance=got) if isinstance(got, float)
                       else PairResult(index, ref_name, name, error=got))

    # -- all pairs ----------------------------------------------------------------------------------

    def iter_all_pairs(self, sources: Sequence[ImageSource], skip: frozenset = frozenset(),
                       feature_memory: int = DEFAULT_FEATURE_MEMORY, spill_dir=None,
                       block: int | None = None) -> Iterator[PairResult]:
        """Every pair i<j of ``sources`` in ``itertools.combinations`` order, as ``PairResult`` rows.

        Each image is encoded once (into a ``FeatureStore`` per image size: RAM up to ``feature_memory`` bytes,
        else a file in ``spill_dir``); distances are then computed in strips of ``block`` rows against
        column blocks of ``block`` images, so RAM holds the store (or nothing of it, when spilled) plus
        about 4 x block x bytes_per_image of float64 scratch and a block x N float32 strip. Pairs whose
        (name0, name1) is in ``skip`` are not yielded (and images only they need are not encoded).
        """
        names = [describe(s) for s in sources]
        n = len(names)
        # An image is encoded unless every one of its n-1 pairs is skipped (a resumed run).
        done_count = np.zeros(n, np.int64)
        position = {name: i for i, name in enumerate(names)}
        for a, b in skip:
            if a in position and b in position:
                done_count[position[a]] += 1
                done_count[position[b]] += 1
        wanted = [i for i in range(n) if done_count[i] < n - 1]
        errors: dict[int, str] = {}
        sizes: dict[int, tuple[int, int]] = {}
        stores: dict[tuple[int, int], tuple[FeatureStore, list[int], list[float]]] = {}
        slot: dict[int, int] = {}
        try:
            for chunk, _ in self._encode_stream([sources[i] for i in wanted]):
                for k, _, feats, error in chunk:
                    index = wanted[k]
                    if feats is None:
                        errors[index] = error
                        continue
                    sizes[index] = feats.image_size
                    if feats.image_size not in stores:
                        stores[feats.image_size] = (FeatureStore(n, feats, feature_memory, spill_dir), [], [])
                    store, members, energy = stores[feats.image_size]
                    slot[index] = len(members)
                    store.put(len(members), feats)
                    members.append(index)
                    energy.append(float(energies(feats, layer_scales(self.weights(), feats))[0]))
            bpi = {size: st[0].view(0, 1).bytes_per_image for size, st in stores.items()}
            step = block or max(8, min(256, _SCRATCH // (4 * max(bpi.values(), default=1))))
            pair = -1
            for r0 in range(0, n, step):
                r1 = min(n, r0 + step)
                strip = self._strip(stores, sizes, slot, range(r0, r1), step)
                for i in range(r0, r1):
                    for j in range(i + 1, n):
                        pair += 1
                        if (names[i], names[j]) in skip:
                            continue
                        if i in errors or j in errors:
                            yield PairResult(pair, names[i], names[j], error=errors.get(i) or errors[j])
                        elif sizes[i] != sizes[j]:
                            (h0, w0), (h1, w1) = sizes[i], sizes[j]
                            yield PairResult(pair, names[i], names[j], error=(
                                f"size mismatch: {names[i]} is {w0}x{h0}, {names[j]} is {w1}x{h1} "
                                "(LPIPS compares same-size images; see --resize)"))
                        else:
                            yield PairResult(pair, names[i], names[j], distance=float(strip[i][slot[j]]))
        finally:
            for store, _, _ in stores.values():
                store.close()

    def matrix_of(self, feats: Features, block: int | None = None) -> np.ndarray:
        """float32 [N,N] distances between the images of one ``Features`` batch (zero diagonal)."""
        scales = layer_scales(self.weights(), feats)
        e = energies(feats, scales)
        n, step = len(feats), block or max(8, min(256, _SCRATCH // (4 * feats.bytes_per_image)))
        out = np.zeros((n, n), np.float32)
        for r0 in range(0, n, step):
            rows = feats[r0:r0 + step]
            for c0 in range(r0, n, step):
                values = distance_block(rows, feats[c0:c0 + step], scales, e[r0:r0 + step], e[c0:c0 + step],
                                        self.gram_product)
                out[r0:r0 + len(rows), c0:c0 + values.shape[1]] = values
                out[c0:c0 + values.shape[1], r0:r0 + len(rows)] = values.T
        np.fill_diagonal(out, 0.0)
        return out

    def _strip(self, stores, sizes, slot, rows: range, step: int) -> dict[int, np.ndarray]:
        """Distances of each row image to the images of its size group from the strip's first row on:
        {row index: float32 [members] (entries before the strip's first slot left at 0)}."""
        out = {}
        for size, (store, members, energy) in stores.items():
            row_members = [i for i in rows if sizes.get(i) == size]
            if not row_members:
                continue
            s0, s1 = slot[row_members[0]], slot[row_members[-1]] + 1
            row_feats = store.view(s0, s1)
            scales = layer_scales(self.weights(), row_feats)
            e = np.asarray(energy)
            values = np.zeros((s1 - s0, len(members)), np.float32)
            for c0 in range(s0, len(members), step):
                c1 = min(len(members), c0 + step)
                values[:, c0:c1] = distance_block(row_feats, store.view(c0, c1), scales, e[s0:s1], e[c0:c1],
                                                  self.gram_product)
            for k, i in enumerate(range(s0, s1)):
                values[k, i] = 0.0  # an image against itself (the expansion leaves ~1e-16)
                out[members[i]] = values[k]
        return out

