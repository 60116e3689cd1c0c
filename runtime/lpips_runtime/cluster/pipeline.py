"""Pair scoring as a Ray Data pipeline: pair table -> decode in CPU tasks (``Scorer.load_pair``, the one
place inputs are validated) -> score in an actor pool holding one Scorer per actor, same-size pairs
batched -> rows ``img0, img1, distance, error, model`` (the columns of ``lpips-score --out``; with
metrics, one column per metric after the distance, as there).

A pair that cannot be scored (unreadable, size mismatch, too small...) becomes a row with its error, as
in every batch mode; nothing of the Scorer is copied here: decoding, validation and inference are its
methods (``load_pair``, ``distance_prepared``).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ClusterError, LpipsError, error_text
from . import uris
from .resources import plan
from .session import require_ray
from .settings import ScorerSettings, WorkerModel
from .table import read_pair_table


def result_schema(metrics: tuple[str, ...] = ()):
    """Arrow schema of result rows, in the column order of ``lpips-score --out`` (``results.pair_columns``):
    distance and each of ``metrics`` are float64 holding the float32 result exactly (PSNR +inf for
    identical images); exactly one of ``distance`` and ``error`` is null, and the metrics are null
    exactly when the distance is."""
    import pyarrow as pa

    from ..records.results import NUMBER_COLUMNS, pair_columns

    numbers = (*NUMBER_COLUMNS, *metrics)
    return pa.schema([(name, pa.float64() if name in numbers else pa.string()) for name in pair_columns(metrics)])


def _decoded_schema():
    import pyarrow as pa

    # Decoded images travel as raw bytes plus dtype and shape: Arrow's binary type carries any array
    # (and a failed pair's empty one) without tensor-extension rules; large_binary lifts the 2 GiB cap.
    return pa.schema([("img0", pa.string()), ("img1", pa.string()), ("error", pa.string()),
                      ("dtype", pa.string()), ("shape", pa.list_(pa.int64())),
                      ("data0", pa.large_binary()), ("data1", pa.large_binary())])


_decoders: dict = {}  # per worker process: decoding tasks reuse their Scorer (it holds no model)


def decode_pairs(table, model: WorkerModel):
    """Ray Data task: ``img0, img1`` rows -> decoded, validated model-ready arrays (or each pair's error)."""
    key = (model.spec, model.settings)
    decoder = _decoders.get(key)
    if decoder is None:
        decoder = _decoders[key] = model.decoder()
    return _decode_with(decoder, table)


def _decode_with(decoder, table):
    import pyarrow as pa

    out = {name: [] for name in _decoded_schema().names}
    for img0, img1 in zip(table.column("img0").to_pylist(), table.column("img1").to_pylist()):
        try:
            if not img0 or not img1:
                raise LpipsError("empty path in the pair table")
            a, b = decoder.load_pair(uris.image_source(img0, decoder.max_pixels),
                                  uris.image_source(img1, decoder.max_pixels))
            row = (None, a.dtype.str, list(a.shape), a.tobytes(), b.tobytes())
        except Exception as exc:  # one pair's failure is its row, never the run's
            row = (error_text(exc), None, None, b"", b"")
        for name, value in zip(("img0", "img1", "error", "dtype", "shape", "data0", "data1"), (img0, img1, *row)):
            out[name].append(value)
    return pa.table(out, schema=_decoded_schema())


class PairScorerActor:
    """Ray Data actor: one Scorer per actor over the shipped model; scores decoded rows in batches of
    same-size pairs."""

    def __init__(self, model: WorkerModel, cpus: float = 1.0):
        self.label = model.label
        self.scorer = model.scorer(cpus)
        self.scorer.model_info()  # a bad model fails the actor's start, not each batch
        self.schema = result_schema(self.scorer.metrics)

    def __call__(self, table):
        import pyarrow as pa

        n = table.num_rows
        outputs = ("distance", *self.scorer.metrics)
        values: dict[str, list] = {name: [None] * n for name in outputs}
        error = table.column("error").to_pylist()
        groups: dict[tuple, list[int]] = {}
        dtypes, shapes = table.column("dtype").to_pylist(), table.column("shape").to_pylist()
        for i in range(n):
            if error[i] is None:
                groups.setdefault((dtypes[i], tuple(shapes[i])), []).append(i)
        data0, data1 = table.column("data0"), table.column("data1")
        for (dtype, shape), rows in groups.items():
            a = np.concatenate([np.frombuffer(data0[i].as_py(), dtype).reshape(shape) for i in rows])
            b = np.concatenate([np.frombuffer(data1[i].as_py(), dtype).reshape(shape) for i in rows])
            try:
                out = self.scorer.distance_prepared(a, b, every_output=True)
            except Exception as exc:  # e.g. a backend failure: each pair of the batch records it
                for i in rows:
                    error[i] = error_text(exc)
                continue
            for name in outputs:
                for i, value in zip(rows, out[name]):
                    values[name][i] = float(value)
        columns = {"img0": table.column("img0"), "img1": table.column("img1"), **values, "error": error,
                   "model": [self.label] * n}
        return pa.table({name: columns[name] for name in self.schema.names}, schema=self.schema)


class DecodingPairScorerActor(PairScorerActor):
    """``PairScorerActor`` that decodes its ``img0, img1`` rows itself: the pipeline's shape when the
    actors leave no CPU for decode tasks (``resources.plan``)."""

    def __init__(self, model: WorkerModel, cpus: float = 1.0):
        super().__init__(model, cpus)
        self.decoder = model.decoder()

    def __call__(self, table):
        return super().__call__(_decode_with(self.decoder, table))


def actor_pool(actors: int | tuple[int, int]):
    """``ActorPoolStrategy`` of a fixed size, or autoscaling between (min, max) actors."""
    import ray.data

    if isinstance(actors, tuple):
        return ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
    return ray.data.ActorPoolStrategy(size=actors)


def score_dataset(pairs, model: WorkerModel, *, actors: int | tuple[int, int] = 1, cpus_per_actor: float = 1.0,
                  gpus_per_actor: float = 0.0, pairs_per_task: int | None = None, fuse_decode: bool = False,
                  decode_resources: dict | None = None, actor_resources: dict | None = None):
    """The lazy Dataset of result rows for a Dataset of ``img0, img1`` rows.

    ``actors``: a fixed pool size or (min, max) to autoscale; each actor takes ``cpus_per_actor`` CPUs
    (its ORT threads unless ``threads`` is set) and ``gpus_per_actor`` GPUs (a fraction shares one GPU
    among actors; use ``device="cuda"``). ``pairs_per_task`` (default: the batch size) sizes the decode
    tasks; ``decode_resources``/``actor_resources`` are custom Ray resources they require (to pin them to
    nodes).

    Decoding runs in its own CPU tasks, overlapping inference, on any CPU of the cluster. Ray Data
    would otherwise fuse it into the actors whenever both ask for the same resources (1-CPU actors):
    an actor then decodes and scores in turn, which measured 1.4-1.5x slower with 2 actors on 2 cores
    and no faster with 1 (benchmarks/README.md, "Ray"); ``fuse_decode=True`` allows it.

    Resources (``resources.plan``): actors that cannot all fit the cluster are a ``ClusterError``; when
    they leave less than one CPU free, they decode their pairs themselves (decode tasks would wait for
    a CPU forever).

    Worker faults: Ray Data restarts dead actors and retries their batches and dead decode tasks
    without limit (its defaults: max_restarts=-1, max_task_retries=-1, max_retries=-1), so a lost
    worker costs time, not pairs.
    """
    batch = model.settings.batch_size
    pool = dict(batch_size=batch, batch_format="pyarrow", compute=actor_pool(actors), num_cpus=cpus_per_actor,
                num_gpus=gpus_per_actor or None, resources=actor_resources)
    if plan(actors, cpus_per_actor, gpus_per_actor).decode_in_actors:
        return pairs.map_batches(DecodingPairScorerActor, fn_constructor_kwargs={"model": model, "cpus": cpus_per_actor},
                                 **pool)
    separate = {} if fuse_decode else {"ray_remote_args_fn": _no_extra_options}
    with warnings.catch_warnings():
        # Ray 2.60 deprecates ray_remote_args_fn (for 2.64); its one effect used here, that the
        # operator is never fused, has no other spelling yet. The [ray] extra pins the 2.60 line.
        warnings.filterwarnings("ignore", message=".*ray_remote_args_fn.*deprecated")
        decoded = pairs.repartition(target_num_rows_per_block=pairs_per_task or batch).map_batches(
            decode_pairs, fn_kwargs={"model": model.without_files()}, batch_format="pyarrow", batch_size=None,
            num_cpus=1, resources=decode_resources, **separate)
    return decoded.map_batches(PairScorerActor, fn_constructor_kwargs={"model": model, "cpus": cpus_per_actor}, **pool)


def _no_extra_options() -> dict:
    """Per-task Ray options of the decode tasks: none; Ray Data never fuses an operator that has
    such a function into the next one, so decoding stays in its own tasks."""
    return {}


def score_pair_table(source, settings: ScorerSettings = ScorerSettings(), *, columns: tuple[str, str] | None = None,
                     **options):
    """LPIPS over a pair table on the connected Ray cluster: a lazy Ray Dataset of ``img0, img1,
    distance, error, model`` rows (with ``settings.metrics``, their columns after the distance), in no
    particular order (``.write_parquet(...)``, ``.iter_rows()``...).

    ``source``: a CSV/Parquet file or folder (local path or URI), a Ray Dataset, or a list of (img0,
    img1) pairs; ``columns`` picks the pair columns (see ``table``). ``options``: see ``score_dataset``.
    The model is located (or exported) here on the driver and shipped to the actors.
    Needs a connected Ray session (``ray_session`` or ``ray.init``).
    """
    ray = require_ray()
    if not ray.is_initialized():
        raise ClusterError("no Ray session: call ray.init(...) or use lpips_runtime.cluster.ray_session()")
    return score_dataset(read_pair_table(source, columns), WorkerModel.resolve(settings), **options)
