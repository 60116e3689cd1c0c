"""``Scorer``: the runtime's Python API. Chooses and opens the model, validates and prepares inputs once
(decoding, sizes, tiles), and hands arrays to a backend. Its other jobs live in their own modules: the
options (``options``), the streaming pipeline of batch runs (``stream``), the feature-cache methods
(``scorer_features`` over ``embedding``) and tiling arithmetic (``tiling``)."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..backends import Backend, backend_class, check_precisions, is_cuda, open_backend, split_precision
from ..errors import BackendError, InputError, LpipsError, ModelFileError
from .features import Features
from ..io.images import ImageSource, ResizePolicy, check_unit_batch, describe, load_rgb, rgb_to_unit_nchw
from ..model.int8 import check_int8
from ..limits import check_batch_size, check_workers
from ..model.locate import default_models_dir, locate_model
from ..model.modelfile import ModelInfo, ModelSpec, read_model
from ..model.nets import NET_NAMES, NetSpec, get_net
from .options import DEFAULTS, OPTION_NAMES, ScorerOptions
from .pair_result import PairResult
from .scorer_features import ScorerFeatures, is_float_batch
from .stream import PairStream, TiledPair
from .tiling import TilePlan, plan_tiles, tiled_lpips


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


FRAMES_FOR_CUDA = "nhwc-bgr"  # the frame layout preferred on a GPU: what cv2.imread gives, batched


class Scorer(ScorerFeatures):
    """LPIPS distances through an exported graph.

    ``model``: a net name ("alex", "vgg", "squeeze": the export is looked up in ``models_dir`` and
    written on demand when the export extra is installed) or the path of an lpips-rt ``.onnx`` export.
    Images are paths, encoded bytes, HxWx3 uint8/uint16 RGB arrays, or float NCHW batches in [-1,1].
    Thread-safe: one Scorer may serve many threads.

    ``precision``: "fp32" (the default, equal to the official package to 1e-5), "fp16" (with a net name:
    the mixed export, float16 backbone and float32 head, meant for GPUs), or "bf16": the fp32 export
    computed in bfloat16 on ``backend="openvino"`` (CPUs with native bfloat16 only; faster than fp32,
    distances within 1.2e-3 of fp32: docs/openvino.md). Another backend with bf16 is an error that names
    the fix. "int8" is declared but offered for no net yet (``BackendError`` naming the net's precisions:
    lpips_runtime.model.int8, docs/performance.md). ``self.precision`` is what the distances are computed in; ``describe()`` includes it.

    Frame graphs (uint8 inputs; scaling, layout and channel order inside the graph) are used:

    * always when ``model`` is the path of a frame export;
    * with a net name, ``frames="auto"`` (default) and a CUDA device: when the
      ``-u8nhwcbgr`` export of the same net/version/precision already exists in ``models_dir``
      (it is never exported on demand: run ``lpips-export ... --input uint8``); otherwise the float graph;
    * with a net name and ``frames="<layout>-<channels>"`` (e.g. "nhwc-bgr"): that frame export,
      located or exported on demand like any other; ``frames=None``: never.

    With a frame graph, decoded 8-bit images go to the backend as uint8 frames with no float
    conversion on the CPU (4x fewer bytes to the GPU); 16-bit images and float batches are refused
    (use a float graph for those).

    ``metrics`` (e.g. ``("psnr", "ssim")`` or "psnr,ssim"; names of ``pixel_metrics.METRICS``): use the
    graphs that also compute these, in the same pass, on the images' 8-bit values (definitions:
    ``lpips_runtime.model.pixel_metrics``); ``scores`` and every ``PairResult`` of ``score_pairs`` then carry
    them. With a model path the file decides: its metrics are used, and ``metrics``, if given, must
    name the same ones. ``distance_map`` uses the spatial graph without metrics. The feature cache has
    no pixels: ``score_one_to_many``/``score_all_pairs`` refuse a Scorer with metrics (``embed``,
    ``one_to_many`` and ``distance_matrix`` give distances as always).

    Bounded memory and input:

    * ``max_pixels`` (default ``images.DEFAULT_MAX_PIXELS``, 100 Mpx): encoded images (paths, bytes) whose
      header declares more pixels are refused before decoding (``ImageTooLargeError``); None: OpenCV's own
      limit. A fixed ``resize`` size must be within it too.
    * ``max_memory`` (bytes, default 1 GiB): the working memory of one inference call (batches are formed
      by pixels, not only by ``batch_size``), and of the pairs decoded ahead. Roughly, a run peaks at its
      baseline (the model, ONNX Runtime, ~0.1-0.3 GB) + the decoded pair being tiled + up to 2 x max_memory.
    * ``tile``: "auto" (default) scores a pair in tiles when it would need more than ``max_memory`` at once,
      "off" never, an int always above that side (square tiles of about that many pixels). Tiled results
      equal untiled ones (``lpips_runtime.core.tiling``: <= 1e-5, maps included); tiles run the split encoder on
      ONNX Runtime (``backend="ort"``, fp32 float-input graphs, no ``metrics``: the encoder sees one image,
      not the pair PSNR/SSIM need; others do not tile).

    ``spin_between_runs=False`` (ONNX Runtime on the CPU): its worker threads stop spin-waiting when a
    model call ends instead of burning a core until the next one, which a process doing other work
    between calls (a server decoding and answering requests) wants; calls themselves are unchanged.
    """

    def __init__(
        self,
        model: str | Path = DEFAULTS.model,
        *,
        version: str = DEFAULTS.version,
        baseline: bool = DEFAULTS.baseline,
        backend: str = DEFAULTS.backend,
        device: str = DEFAULTS.device,
        precision: str = DEFAULTS.precision,
        frames: str | None = DEFAULTS.frames,
        threads: int | None = DEFAULTS.threads,
        batch_size: int = DEFAULTS.batch_size,
        workers: int | None = DEFAULTS.workers,
        resize: str | ResizePolicy = DEFAULTS.resize,
        models_dir: str | Path | None = DEFAULTS.models_dir,
        auto_export: bool = DEFAULTS.auto_export,
        max_pixels: int | None = DEFAULTS.max_pixels,
        tile: str | int = DEFAULTS.tile,
        max_memory: int = DEFAULTS.max_memory,
        metrics: str | Sequence[str] = DEFAULTS.metrics,
        spin_between_runs: bool = DEFAULTS.spin_between_runs,
    ):
        # The keywords are ``ScorerOptions``' fields, one for one (tests/runtime/core/test_options.py holds them equal).
        self.options = o = ScorerOptions(**{name: value for name, value in locals().items() if name in OPTION_NAMES})
        model, version, backend, device = o.model, o.version, o.backend, o.device
        self.backend_name, self.device = backend, device
        file_precision, self.inference_precision = split_precision(o.precision)
        self.threads, self.batch_size, self.max_pixels, self.max_memory, self.tile = \
            o.threads, o.batch_size, o.max_pixels, o.max_memory, o.tile
        self.workers = o.workers or _default_workers()
        self.resize = o.resize
        self.auto_export, self.spin_between_runs = o.auto_export, o.spin_between_runs
        models_dir, metrics = o.models_dir, o.metrics
        backend_cls = backend_class(backend, device)  # unknown name: error now, not at first use
        self._models: dict[tuple[bool, str], ModelInfo] = {}  # (spatial, part) -> checked file
        self._map_metrics: tuple[str, ...] = ()  # of the spatial graph: maps need none, unless given such a file
        if str(model) in NET_NAMES:
            self.models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
            spec = ModelSpec(str(model), version, not o.baseline, False, file_precision, metrics=metrics)
            self.spec = replace(spec, frames=self._choose_frames(spec, o.frames, device))
        else:
            info = read_model(model)
            if info.part != "fused":
                raise ModelFileError(f"{model} is the {info.part} of a split export: give the fused model "
                                     f"({info.spec.with_part('fused').filename()}) or a net name")
            if metrics and metrics != info.metrics:
                has = f"computes {', '.join(info.metrics)}" if info.metrics else "computes no metrics"
                raise ModelFileError(f"{model} {has}, not {', '.join(metrics)}: use "
                                     f"`{replace(info.spec, metrics=metrics).export_command(Path(model).parent)}`")
            self._models[(info.spec.spatial, "fused")] = info
            self.spec = replace(info.spec, spatial=False)
            if info.spec.spatial:
                self._map_metrics = info.metrics
            # Siblings (e.g. the spatial variant) are looked for next to the given file.
            self.models_dir = Path(models_dir) if models_dir is not None else Path(model).parent
        check_precisions(backend, backend_cls, self.spec.precision, self.inference_precision)
        if self.inference_precision == "int8":
            check_int8(self.spec.net)  # offered per net, where its accuracy was measured to hold
        self._needs_file = backend_cls.needs_file
        if isinstance(self.tile, int) and self.metrics:
            raise LpipsError(f"tiles cannot compute {', '.join(self.metrics)}: the split encoder that tiles run sees "
                             "one image at a time, not the pair; use tile='auto' or 'off' (pairs with metrics are "
                             "scored in one piece), or no metrics")
        if isinstance(self.tile, int) and not self.can_tile():
            raise BackendError(f"tiles run the split float32 encoder on ONNX Runtime ({self.spec.describe()} on the "
                               f"{backend} backend has none): use backend='ort' with an fp32 float graph, or tile='off'")
        self._backends: dict[bool, Backend] = {}
        self._cache: FeatureCache | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: ScorerOptions) -> "Scorer":
        """A Scorer with ``options`` (``ScorerOptions.open``)."""
        return cls(**options.keywords())

    # -- set-up ----------------------------------------------------------------------------

    def _choose_frames(self, spec: ModelSpec, frames: str | None, device: str) -> str | None:
        """The frame layout for a net-name model's float ``spec`` (see the class docstring for the rule)."""
        if frames is None:
            return None
        if frames != "auto":
            return frames  # validated by ModelSpec
        if not is_cuda(device):
            return None
        preferred = replace(spec, frames=FRAMES_FOR_CUDA)
        return FRAMES_FOR_CUDA if (self.models_dir / preferred.filename()).is_file() else None

    @property
    def net(self) -> NetSpec:
        return get_net(self.spec.net)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics computed next to the distance (``()``: none)."""
        return self.spec.metrics

    @property
    def precision(self) -> str:
        """What the distances are computed in: "fp32", "fp16" (the mixed export) or "bf16"."""
        return self.inference_precision if self.inference_precision != "fp32" else self.spec.precision

    def describe(self) -> str:
        """The model and the precision its distances are computed in, e.g. "LPIPS-alex v0.1 (bf16)": the
        ``model`` label of result files (results of different labels are never mixed in one file)."""
        label = self.spec.describe()
        if self.inference_precision == "fp32":
            return label
        return label[:-1] + f", {self.inference_precision})" if label.endswith(")") else \
            f"{label} ({self.inference_precision})"

    @property
    def identity(self) -> dict:
        """What computes this Scorer's results, with the same keys in every front end (result JSON, run
        summaries, service metrics labels, cluster result folders): ``model`` (``describe()``), ``net``,
        ``version``, ``calibrated``, ``precision`` (what the distances are computed in), ``backend``, ``device``."""
        spec = self.spec
        return {"model": self.describe(), "net": spec.net, "version": spec.version, "calibrated": spec.calibrated,
                "precision": self.precision, "backend": self.backend_name, "device": self.device}

    def model_parts(self, *, distances: bool = True, maps: bool = False, feature_cache: bool = False) -> tuple[str, ...]:
        """The model files a job of this Scorer reads (``part_info`` locates each): for ``distances`` "fused"
        (with the Scorer's metrics); for ``maps`` "spatial" (distance maps, heatmaps); for the
        ``feature_cache`` "encoder" and "head" (``embed``, ``one_to_many``, ``score_all_pairs``). Pairs
        past ``max_memory`` also need ``tile_parts()``."""
        return (("fused",) if distances else ()) + (("spatial",) if maps else ()) + \
            (("encoder", "head") if feature_cache else ())

    def tile_parts(self) -> tuple[str, ...]:
        """The split graphs that pairs too large for ``max_memory`` are scored with, tile by tile
        ("encoder", "head"), or () when this Scorer never tiles (``tile="off"``, or ``can_tile()`` is False)."""
        return ("encoder", "head") if self.tile != "off" and self.can_tile() else ()

    def part_info(self, part: str) -> ModelInfo:
        """The checked file of one of ``model_parts``/``tile_parts``, located or exported on first use."""
        return self.model_info(spatial=True) if part == "spatial" else self.model_info(part=part)

    def __repr__(self) -> str:
        return (f"Scorer({self.describe()}, backend={self.backend_name!r}, device={self.device!r}, "
                f"precision={self.precision!r}, threads={self.threads}, batch_size={self.batch_size})")

    def _spec_for(self, spatial: bool) -> ModelSpec:
        """The distance graph's spec, or the spatial graph's (which computes metrics only when the
        Scorer was given such a file: ``distance_map`` returns the map alone)."""
        return replace(self.spec, spatial=True, metrics=self._map_metrics) if spatial else self.spec

    def model_info(self, spatial: bool = False, part: str = "fused") -> ModelInfo:
        """The checked model file used for distances (or maps), or a ``part`` of its split export
        ("encoder", "head"), located or exported on first use."""
        with self._lock:
            key = (spatial and part != "encoder", part)
            if key not in self._models:
                spec = self._spec_for(spatial).with_part(part)
                self._models[key] = locate_model(spec, self.models_dir, self.auto_export)
            return self._models[key]

    def _backend(self, spatial: bool) -> Backend:
        backend = self._backends.get(spatial)
        if backend is not None:
            return backend
        path = self.model_info(spatial).path if self._needs_file else None
        with self._lock:
            if spatial not in self._backends:
                backend = open_backend(self.backend_name, self._spec_for(spatial), path, self.device, self.threads,
                                       self.inference_precision, **self._backend_options())
                try:
                    self._probe(backend, path)
                except BaseException:
                    backend.close()
                    raise
                self._backends[spatial] = backend
            return self._backends[spatial]

    def _backend_options(self) -> dict:
        # Only ONNX Runtime's CPU thread pool spin-waits; the other backends have no such option.
        if self.spin_between_runs or self.backend_name != "ort" or is_cuda(self.device):
            return {}
        return {"spin_between_runs": False}

    def _probe(self, backend: Backend, path: Path | None) -> None:
        """Refuse a graph that does not behave as an LPIPS distance on a small probe pair: its outputs must be
        finite and never negative, 0 for an image against itself and positive for an image against its
        negative. The file's weights are checked by ``read_model``; this catches graphs rebuilt around them
        (a negated or offset output), at the cost of one tiny batch per opened backend."""
        # 64 px: every backend's pooling arithmetic is happy there (OpenVINO's ceil-mode MaxPool refuses squeeze
        # inputs below ~32 px that ONNX Runtime and torch accept), and it is still one tiny batch.
        side = max(self.net.min_side + 7, 64)
        a = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        x, y = self._model_input(a), self._model_input(255 - a)
        out = backend.run(np.concatenate([x, x]), np.concatenate([x, y])).reshape(2, -1).astype(np.float64)
        same, other = out[0], out[1]
        if not np.isfinite(out).all() or out.min() < 0 or np.abs(same).max() > 1e-4 or other.max() <= 0:
            raise ModelFileError(f"{path or self.spec.describe()} does not compute an LPIPS distance: on a probe pair it "
                                 f"gives {float(same.max()):.3g} for an image against itself and "
                                 f"{float(other.min()):.3g}..{float(other.max()):.3g} against its negative "
                                 "(want 0 and > 0, never negative): re-export it")

    def prepare(self, feature_cache: bool = False) -> "Scorer":
        """Locate (or export) the model and open the backend now instead of on first use, e.g. so that a
        run's clock starts at its first pair. ``feature_cache``: the split graphs (encoder and head) that
        ``embed``, ``one_to_many`` and ``score_all_pairs`` use, instead of the fused graph."""
        if feature_cache:
            self._feature_cache()
            self.model_info(part="head")
        else:
            self._backend(False)
        return self

    def close(self) -> None:
        with self._lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()
            if self._cache is not None:
                self._cache.close()
                self._cache = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- input preparation (the one place inputs are validated) -----------------------------

    def check_size(self, height: int, width: int) -> None:
        """``InputError`` unless the net can score images of this size (``NetSpec.check_size``)."""
        self.net.check_size(height, width)

    def decode_pair(self, src0: ImageSource, src1: ImageSource) -> tuple[np.ndarray, np.ndarray]:
        """Decode (under ``max_pixels``), reconcile sizes and check them -> two HxWx3 RGB uint8/uint16 arrays
        (what ``load_pair`` converts; front ends that also draw the pair, e.g. heatmaps, start here)."""
        rgb0, rgb1 = load_rgb(src0, max_pixels=self.max_pixels), load_rgb(src1, max_pixels=self.max_pixels)
        rgb0, rgb1 = self.resize.apply(rgb0, rgb1, (describe(src0), describe(src1)))
        self.check_size(*rgb0.shape[:2])
        return rgb0, rgb1

    def load_pair(self, src0: ImageSource, src1: ImageSource) -> tuple[np.ndarray, np.ndarray]:
        """Decode/validate two single images and reconcile their sizes -> two model-ready [1,...] arrays."""
        rgb0, rgb1 = self.decode_pair(src0, src1)
        return self._model_input(rgb0), self._model_input(rgb1)

    def _prepare_pair(self, src0: ImageSource, src1: ImageSource):
        """A pair ready to score: model-ready (a, b) arrays, or a ``TiledPair`` pair (kept as decoded, converted
        tile by tile) when its size calls for tiles (``tile_plan``)."""
        rgb0, rgb1 = self.decode_pair(src0, src1)
        plan = self.tile_plan(*rgb0.shape[:2])
        if plan is None:
            return self._model_input(rgb0), self._model_input(rgb1)
        self._model_input(rgb0[:1, :1])  # the model's input checks (e.g. 8-bit frames) now, not tile by tile
        return TiledPair(rgb0, rgb1, plan)

    def tile_plan(self, height: int, width: int) -> TilePlan | None:
        """The tiles a pair of ``height`` x ``width`` is scored in, or None for one piece: per ``tile``,
        and with "auto" when one piece would need more than ``max_memory`` (see ``NetSpec.work_bytes_per_pixel``)."""
        if self.tile == "off" or not self.can_tile():
            return None
        net = self.net
        if self.tile == "auto":
            if net.work_bytes_per_pixel * height * width <= self.max_memory:
                return None
            plan = plan_tiles(net, height, width, max_crop_pixels=self.max_memory // net.work_bytes_per_pixel)
        elif height <= self.tile and width <= self.tile:
            return None
        else:
            plan = plan_tiles(net, height, width, tile=self.tile)
        return plan if plan.count > 1 else None

    def can_tile(self) -> bool:
        """Tiles run the split encoder, which exists for fp32 float-input graphs on ONNX Runtime only (frame and
        fp16 graphs have no split export yet), and sees one image at a time, so it cannot give the PSNR/SSIM
        of a pair: other Scorers, and Scorers with metrics, score every pair in one piece."""
        return (self.backend_name == "ort" and self.spec.frames is None and self.spec.precision == "fp32"
                and not self.metrics)

    def _pairs_per_batch(self, pixels: int, batch_size: int) -> int:
        """Pairs of ``pixels`` each in one inference call: ``batch_size``, fewer when they would need more
        than ``max_memory`` (at least one)."""
        return max(1, min(batch_size, self.max_memory // max(1, self.net.work_bytes_per_pixel * pixels)))

    def _score_tiled(self, pair: TiledPair, spatial: bool):
        """Distance (float) or map (float32 [H,W]) of a pair scored tile by tile (``lpips_runtime.core.tiling``)."""
        def crops(rgb):
            return lambda rows, cols: self._model_input(rgb[rows[0]:rows[1], cols[0]:cols[1]])

        cache = self._feature_cache()
        return tiled_lpips(pair.plan, crops(pair.rgb0), crops(pair.rgb1), cache.encode, cache.weights(), spatial)

    def _run_tiled(self, plan: TilePlan, a: np.ndarray, b: np.ndarray, spatial: bool) -> np.ndarray:
        """Validated float batches scored image by image in tiles: float32 [N] or [N,1,H,W]."""
        def crops(batch, i):
            return lambda rows, cols: np.ascontiguousarray(batch[i:i + 1, :, rows[0]:rows[1], cols[0]:cols[1]])

        cache = self._feature_cache()
        outs = [tiled_lpips(plan, crops(a, i), crops(b, i), cache.encode, cache.weights(), spatial)
                for i in range(len(a))]
        return np.stack(outs)[:, None] if spatial else np.asarray(outs, np.float32)

    def load_one(self, src: ImageSource, like: tuple[int, int] | None = None) -> np.ndarray:
        """Decode/validate one image -> a model-ready [1,...] array. ``like``: (H, W) to resize it to
        (the reference's size, for resize policy "first"); a fixed policy resizes to its own size."""
        rgb = load_rgb(src, max_pixels=self.max_pixels)
        if self.resize.mode == "fixed":
            rgb = self.resize.apply(rgb, rgb)[0]
        elif like is not None and rgb.shape[:2] != tuple(like):
            rgb = ResizePolicy("fixed", (like[1], like[0])).apply(rgb, rgb)[0]
        self.check_size(*rgb.shape[:2])
        return self._model_input(rgb)

    def _model_input(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 RGB -> the graph's input layout with a batch axis of 1."""
        frames = self.spec.frames
        if frames is None:
            return rgb_to_unit_nchw(rgb)
        if rgb.dtype != np.uint8:
            raise InputError(f"this model takes 8-bit frames, got {rgb.dtype} samples (use a float32 model)")
        layout, channels = frames.split("-")
        img = rgb[:, :, ::-1] if channels == "bgr" else rgb
        img = img.transpose(2, 0, 1) if layout == "nchw" else img
        return np.ascontiguousarray(img)[None]

    def _check_batches(self, img0: np.ndarray, img1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.spec.frames is not None:
            raise InputError("this model takes uint8 frames: pass images, not float NCHW batches")
        a, b = check_unit_batch(img0, "img0"), check_unit_batch(img1, "img1")
        if a.shape != b.shape:
            raise InputError(f"batch shapes differ: img0 {list(a.shape)} vs img1 {list(b.shape)}")
        self.check_size(a.shape[2], a.shape[3])
        return a, b

    def _run(self, spatial: bool, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """Run validated float NCHW batches: in chunks of ``batch_size`` pairs (fewer for large images, see
        ``max_memory``), or image by image in tiles (``tile_plan``; never with metrics): every output by name."""
        height, width = a.shape[2], a.shape[3]
        plan = self.tile_plan(height, width)
        if plan is not None:
            return {self._spec_for(spatial).outputs[0]: self._run_tiled(plan, a, b, spatial)}
        backend = self._backend(spatial)
        step = self._pairs_per_batch(height * width, self.batch_size)
        if len(a) <= step:
            return backend.infer(a, b)
        chunks = [backend.infer(a[i:i + step], b[i:i + step]) for i in range(0, len(a), step)]
        return {name: np.concatenate([c[name] for c in chunks]) for name in backend.outputs}

    # -- prepared batches (for front ends that batch across callers, e.g. lpips-serve) ---------

    @property
    def pipeline_depth(self) -> int:
        """How many batches this Scorer's backend can usefully have in flight at once (1 on the CPU,
        2 on the GPU backends: one staged and uploaded while the other computes)."""
        return backend_class(self.backend_name, self.device).pipeline_depth

    def run_prepared(self, parts0: Sequence[np.ndarray], parts1: Sequence[np.ndarray], *,
                     spatial: bool = False, every_output: bool = False):
        """Score pairs already prepared by ``load_pair`` (model-ready [1,...] arrays, all of one shape
        and dtype) in one backend batch (chunks of ``batch_size`` if longer, fewer pairs if they would need
        more than ``max_memory``; pair by pair in tiles past it, see ``tile_plan``): float32 [N] distances,
        or [N,1,H,W] maps with ``spatial``. Each value equals ``distance``/``distance_map`` of that pair
        alone (bit for bit on ONNX Runtime's CPU backend: tests/runtime/core/test_scorer.py). ``every_output``:
        a dict of every output by name instead ("distance" and this Scorer's ``metrics``, float32 [N] each)."""
        if not parts0 or len(parts0) != len(parts1):
            raise InputError(f"run_prepared takes two equally long, non-empty lists of arrays, "
                             f"got {len(parts0)} and {len(parts1)}")
        first = parts0[0]
        for part in (*parts0, *parts1):
            if not isinstance(part, np.ndarray) or part.shape != first.shape or part.dtype != first.dtype \
                    or part.ndim != 4 or part.shape[0] != 1:
                raise InputError("run_prepared takes [1,...] arrays of one shape and dtype, as load_pair returns them")
        names = self._spec_for(spatial).outputs  # the distances (maps), then the metrics if any
        if self.tile_plan(first.shape[2], first.shape[3]) is not None:  # float NCHW: only those tile
            # Too large for one piece within max_memory: pair by pair in tiles, as ``distance`` scores them.
            # Tiles never run with metrics (``can_tile``): the distances are every output.
            values = np.concatenate([self._run(spatial, a, b)[names[0]] for a, b in zip(parts0, parts1)])
            return {names[0]: values} if every_output else values
        backend = self._backend(spatial)
        size = self._pairs_per_batch(first.size // 3, self.batch_size)  # [1,...] arrays of 3 channels
        outs = [backend.submit(parts0[i:i + size], parts1[i:i + size]).result()
                for i in range(0, len(parts0), size)]
        merged = {name: outs[0][name] if len(outs) == 1 else np.concatenate([o[name] for o in outs])
                  for name in (names if every_output else names[:1])}
        return merged if every_output else merged[names[0]]

    # -- public API --------------------------------------------------------------------------

    def distance(self, img0, img1):
        """LPIPS distance. Two single images -> float; float NCHW batches or lists of images ->
        float32 array [N]. Either side may be ``Features`` (from ``embed``): the other side is embedded
        and the head compares them (one image against N broadcasts). Raises ``InputError`` (one line)
        for anything that cannot be scored."""
        return self._score(img0, img1, spatial=False)

    def distance_map(self, img0, img1):
        """Per-pixel distance map (the spatial LPIPS). Two single images -> float32 [H,W];
        batches -> float32 [N,1,H,W]; lists -> list of [H,W] maps. ``Features`` as in ``distance``."""
        return self._score(img0, img1, spatial=True)

    def scores(self, img0, img1) -> dict:
        """The LPIPS distance and every metric of this Scorer, by name ({"distance": ..., "psnr": ...,
        "ssim": ...}): floats for two single images; float32 arrays [N] for float NCHW batches or lists of
        images. Inputs and errors as ``distance``, except that ``Features`` are refused (the metrics need
        the pixels)."""
        if isinstance(img0, Features) or isinstance(img1, Features):
            raise InputError("scores needs the images, not Features: PSNR and SSIM are computed from pixels")
        return self._score(img0, img1, spatial=False, every_output=True)

    def _score(self, img0, img1, spatial: bool, every_output: bool = False):
        """``distance``/``distance_map``; ``every_output`` (not spatial): ``scores``."""
        if isinstance(img0, Features) or isinstance(img1, Features):
            cache = self._feature_cache()
            f0, f1 = cache.embed(img0), cache.embed(img1)
            out = cache.head(f0, f1, spatial)
            if len(out) == 1 and len(f0) == len(f1) == 1:
                return out[0, 0] if spatial else float(out[0])
            return out
        backend = self._backend(spatial)  # model problems first: they are set-up errors, not input errors
        first = backend.outputs[0]
        if is_float_batch(img0) and img0.ndim == 4 or is_float_batch(img1) and img1.ndim == 4:
            out = self._run(spatial, *self._check_batches(img0, img1))
            return out if every_output else out[first]
        if isinstance(img0, (list, tuple)) or isinstance(img1, (list, tuple)):
            if not isinstance(img0, (list, tuple)) or not isinstance(img1, (list, tuple)) or len(img0) != len(img1):
                raise InputError("pass two lists of the same length (or two images, or two NCHW batches)")
            results = []
            for result in self._iter_results(zip(img0, img1), spatial=spatial):
                if not result.ok:
                    raise InputError(f"pair {result.index}: {result.error}")
                results.append(result)
            if every_output:
                return {"distance": np.asarray([r.distance for r in results], dtype=np.float32),
                        **{m: np.asarray([r.metrics[m] for r in results], dtype=np.float32) for m in self.metrics}}
            out = [r.distance for r in results]
            return out if spatial else np.asarray(out, dtype=np.float32)
        prepared = self._prepare_pair(img0, img1)
        if isinstance(prepared, TiledPair):  # never with metrics (``can_tile``): the distance alone
            value = self._score_tiled(prepared, spatial)
            return {first: value} if every_output else value
        out = self._run(spatial, *prepared)
        if every_output:
            return {name: float(value[0]) for name, value in out.items()}
        return out[first][0, 0] if spatial else float(out[first][0])

    # -- prepared inputs: for front ends that decode in other processes (lpips_runtime.cluster) ---------

    def distance_prepared(self, img0: np.ndarray, img1: np.ndarray, every_output: bool = False):
        """float32 [N]: distances of two model-ready batches, each the concatenation along axis 0 of
        N ``load_pair`` outputs of one shape (decoded and validated by ``load_pair`` elsewhere, e.g. in
        another process of a cluster), run in chunks of ``batch_size``. ``every_output``: a dict of every
        output by name instead ("distance" and this Scorer's ``metrics``, float32 [N] each)."""
        if img0.shape != img1.shape or img0.dtype != img1.dtype or img0.ndim != 4 or not len(img0):
            raise InputError(f"prepared batches must be two non-empty [N,...] arrays of one shape and dtype, got "
                             f"{list(img0.shape)} {img0.dtype} and {list(img1.shape)} {img1.dtype}")
        out = self._run(False, img0, img1)
        return out if every_output else out[self._backend(False).outputs[0]]

    def score_pairs(self, pairs: Iterable[tuple[ImageSource, ImageSource]], batch_size: int | None = None,
                    workers: int | None = None) -> Iterator[PairResult]:
        """Score many pairs, yielding one ``PairResult`` per pair in input order.

        Decoding runs in a thread pool, one chunk ahead of inference; same-size pairs are batched
        (up to ``batch_size``). A pair that fails (unreadable file, size mismatch, ...) yields a
        result with its error and the run goes on.
        """
        yield from self._iter_results(pairs, False, batch_size, workers)

    def score_folders(self, dir0: str | Path, dir1: str | Path, **options) -> Iterator[PairResult]:
        """``score_pairs`` over the images of identical name in two folders, sorted by name
        (``pairs.pair_folders`` also lists the names found on one side only)."""
        from ..io.pairs import pair_folders

        yield from self.score_pairs(pair_folders(dir0, dir1).pairs, **options)

    def score_pair_list(self, csv_path: str | Path, **options) -> Iterator[PairResult]:
        """``score_pairs`` over a CSV of two path columns (relative to the CSV's folder)."""
        from ..io.pairs import read_pairs_csv

        yield from self.score_pairs(read_pairs_csv(csv_path), **options)

    def _iter_results(self, pairs, spatial: bool, batch_size: int | None = None,
                      workers: int | None = None) -> Iterator[PairResult]:
        """``PairResult``s of ``pairs`` in input order, through the streaming pipeline (``stream.PairStream``):
        decoded a chunk ahead within ``max_memory``, batched by size, tiled where one piece would not fit."""
        batch_size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        workers = self.workers if workers is None else check_workers(workers)
        backend = self._backend(spatial)  # a missing model or backend fails the whole run now, not pair by pair
        stream = PairStream(backend, self._prepare_pair, self._spec_for(spatial).outputs, self._pairs_per_batch,
                            lambda pair: self._score_tiled(pair, spatial), self.max_memory, batch_size, workers,
                            spatial)
        yield from stream.run(pairs)
