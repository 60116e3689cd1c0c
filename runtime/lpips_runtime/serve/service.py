"""What the routes of ``lpips-serve`` share: one ``Service`` per served model (its Scorer, dynamic
batcher, decode pool, readiness and labelled metrics), and the ``ModelRepository`` that holds them
by name and version.

Every image goes through ``Scorer.load_pair`` (the one place inputs are validated) in a thread pool
off the event loop; prepared pairs go to the model's ``DynamicBatcher``, which runs them through
``Scorer.run_prepared``. /v1 and /v2 requests for one model share that batcher.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import LpipsError, first_line
from ..formatting import float32_json
from ..io.images import EncodedImage
from .batcher import DynamicBatcher, QueueFull, Reservation
from .http_errors import ServiceError, from_lpips_error, overloaded
from .metrics import ServiceMetrics
from .schemas import PairOutcome
from .settings import ServeSettings
from .tracing import span
from .uploads import too_many_pairs

log = logging.getLogger("lpips_runtime.serve")

# A scored pair: its distance and each metric the model computes, by output name ("distance", "psnr", ...).
Scores = dict[str, float]


def model_name(spec) -> str:
    """The protocol name of a model: ``lpips-<net>`` (``-baseline`` for the uncalibrated one); the LPIPS
    version is the model's version."""
    return f"lpips-{spec.net}" + ("" if spec.calibrated else "-baseline")


class Service:
    """One served model: its Scorer (owned: closed at shutdown), batcher, decode pool and readiness."""

    def __init__(self, scorer, settings: ServeSettings, metrics: ServiceMetrics,
                 on_fatal: Callable[[str], None] | None = None):
        self.scorer, self.settings = scorer, settings
        self.on_fatal = on_fatal or (lambda message: None)
        self.model = scorer.describe()  # the model and the precision its distances are computed in
        self.name, self.version = model_name(scorer.spec), scorer.spec.version
        self.outputs: tuple[str, ...] = ("distance", *scorer.metrics)
        identity = {key: str(value).lower() if isinstance(value, bool) else value
                    for key, value in scorer.identity.items() if key not in ("model", "version")}
        self.metrics = metrics.for_model(self.name, self.version, {
            "description": self.model, **identity, "outputs": ",".join(self.outputs)})
        self.status = "loading"  # -> ready -> draining, or failed
        self.reason = ""  # why it failed, for the repository index
        self.batcher: DynamicBatcher | None = None
        self.pool: ThreadPoolExecutor | None = None

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self.pool = ThreadPoolExecutor(max_workers=s.decode_workers or self.scorer.workers,
                                       thread_name_prefix="lpips-decode")
        self.batcher = DynamicBatcher(
            self._run_batch, max_batch=s.max_batch, max_wait_s=s.max_wait_ms / 1000, max_queue=s.max_queue,
            max_queue_pixels=s.max_queue_pixels, workers=self.scorer.pipeline_depth,
            on_batch=self.metrics.record_batch, on_depth=self.metrics.queue_depth.set,
            on_wait=self.metrics.queue_wait.observe)

    def _run_batch(self, parts0, parts1, spatial: bool):
        """The batcher's model call: maps ([N,1,H,W]) for ``spatial``, else one ``Scores`` per pair."""
        if spatial:
            return self.scorer.run_prepared(parts0, parts1, spatial=True)
        out = self.scorer.run_prepared(parts0, parts1, every_output=True)
        return [{name: float(out[name][i]) for name in self.outputs} for i in range(len(parts0))]

    async def load(self) -> None:
        """Open the model and run one pair through it, in a thread; then report ready."""
        try:
            await asyncio.get_running_loop().run_in_executor(self.pool, self._warm_up)
        except Exception as exc:  # noqa: BLE001 - any failure to load is fatal for a server, said in one line
            message = first_line(exc)
            self.status, self.reason = "failed", message
            log.error("lpips-serve: the model cannot run: %s (%s version %s)", message, self.name, self.version)
            self.on_fatal(message)
            return
        if self.status == "loading":
            self.status = "ready"
            self.metrics.ready.set(1)
            log.info("lpips-serve: %s ready as %s version %s (%s on %s)", self.model, self.name, self.version,
                     self.scorer.backend_name, self.scorer.device)

    def _warm_up(self) -> None:
        h, w = self.settings.warmup_size
        rng = np.random.default_rng(0)
        a, b = self.scorer.load_pair(rng.integers(0, 256, (h, w, 3), np.uint8),
                                     rng.integers(0, 256, (h, w, 3), np.uint8))
        self.scorer.run_prepared([a], [b], every_output=True)
        if self.settings.heatmap:
            self.scorer.run_prepared([a], [b], spatial=True)

    def begin_drain(self) -> None:
        """Shutting down: report not ready (load balancers stop sending); answers in flight still come."""
        if self.status != "failed":
            self.status = "draining"
        self.metrics.ready.set(0)

    async def stop(self) -> None:
        self.begin_drain()
        if self.batcher is not None:
            await self.batcher.drain()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.scorer.close()

    # -- per request ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def check_ready(self) -> None:
        if self.status in ("loading", "failed"):
            raise ServiceError(503, "not_ready", f"the model {self.name} is {self.status}: retry later",
                               {"Retry-After": str(self.settings.retry_after_s)})

    def reserve(self, count: int) -> Reservation:
        if count > self.settings.max_pairs:
            raise too_many_pairs(count, self.settings.max_pairs)
        try:
            return self.batcher.reserve(count)
        except QueueFull as exc:
            raise overloaded(str(exc), self.settings.retry_after_s) from None

    async def in_pool(self, fn, *args):
        """Run a blocking call in the decode pool; library errors become their HTTP answer."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except LpipsError as exc:
            raise from_lpips_error(exc) from None

    async def score(self, reservation: Reservation, pair) -> Scores:
        """One reserved pair (two ``EncodedImage``, or two HxWx3 uint8 RGB arrays): decoded and checked by
        the Scorer in the pool, then batched."""
        try:
            with span("lpips.decode", model=self.name):
                started = time.perf_counter()
                a, b = await self.in_pool(self.load_pair, *pair)
                self.metrics.decode.observe(time.perf_counter() - started)
        except BaseException:
            reservation.release()
            raise
        return await self.run(reservation, a, b)

    async def run(self, reservation: Reservation, a: np.ndarray, b: np.ndarray, spatial: bool = False):
        """A reserved, prepared pair through the batcher: its ``Scores``, or its map with ``spatial``."""
        try:
            with span("lpips.infer", model=self.name, spatial=spatial):
                return await self.batcher.put(reservation, a, b, spatial)
        except QueueFull as exc:
            raise overloaded(str(exc), self.settings.retry_after_s) from None
        except LpipsError as exc:
            raise from_lpips_error(exc) from None
        except Exception as exc:  # a model call that failed: every pair of its batch says so, in one line
            log.exception("lpips-serve: a model call failed")
            raise ServiceError(500, "scoring_failed", f"the model call failed: {type(exc).__name__}: {exc}") from None

    def load_pair(self, img0, img1) -> tuple[np.ndarray, np.ndarray]:
        """Two uploads -> model-ready arrays, by ``Scorer.load_pair`` (which validates them and refuses an
        image whose header declares more than the Scorer's ``max_pixels`` before decoding it)."""
        return self.scorer.load_pair(img0, img1)

    def prepare_heatmap(self, img0: EncodedImage, img1: EncodedImage):
        """As ``lpips-score --heatmap``: decode once, reconcile sizes, keep the reference for the picture."""
        rgb0, rgb1 = self.scorer.decode_pair(img0, img1)
        a, b = self.scorer.load_pair(rgb0, rgb1)
        return a, b, rgb0

    def outcome(self, index: int, value) -> PairOutcome:
        if isinstance(value, ServiceError):
            self.metrics.pairs.labels(outcome="failed").inc()
            return PairOutcome(index=index, error=value.message, code=value.code)
        self.metrics.pairs.labels(outcome="scored").inc()
        return PairOutcome(index=index, distance=float32_json(value["distance"]),
                           **{m: float32_json(value[m]) for m in self.outputs[1:]})

    def count(self, outcome: str, pairs: int = 1) -> None:
        self.metrics.pairs.labels(outcome=outcome).inc(pairs)


class ModelRepository:
    """The served models by protocol name and version; the first one given answers /v1."""

    def __init__(self, services: Sequence[Service]):
        if not services:
            raise LpipsError("lpips-serve needs at least one model")
        self.services = list(services)
        self.default = self.services[0]
        self._by_name: dict[str, dict[str, Service]] = {}
        for service in self.services:
            versions = self._by_name.setdefault(service.name, {})
            if service.version in versions:
                raise LpipsError(f"{service.name} version {service.version} is given twice: serve each model once")
            versions[service.version] = service

    def names(self) -> list[str]:
        return list(self._by_name)

    def versions(self, name: str) -> list[str]:
        return sorted(self._by_name.get(name, {}))

    def find(self, name: str, version: str | None = None) -> Service:
        """The service of ``name`` (and ``version``; default: the newest LPIPS version served), else 404."""
        versions = self._by_name.get(name)
        if not versions:
            raise ServiceError(404, "not_found", f"unknown model '{name}': this server serves "
                               f"{', '.join(self.names())} (GET /v2/repository/index lists them)")
        if version in (None, ""):
            return versions[max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))]
        if version not in versions:
            raise ServiceError(404, "not_found", f"model '{name}' has no version '{version}': this server "
                               f"serves version {', '.join(sorted(versions))}")
        return versions[version]

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.services)

    def begin_drain(self) -> None:
        for service in self.services:
            service.begin_drain()


def server_version() -> str:
    """The installed lpips-rt version (``0+unknown`` from a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lpips-rt")
    except PackageNotFoundError:
        return "0+unknown"
