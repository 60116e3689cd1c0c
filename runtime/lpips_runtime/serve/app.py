"""The FastAPI app of ``lpips-serve``: a thin HTTP layer over one ``Scorer``.

Every image goes through ``Scorer.load_pair`` (the one place inputs are validated) in a thread pool
off the event loop; prepared pairs go to the ``DynamicBatcher``, which runs them through
``Scorer.run_prepared``. The model is opened and warmed in the background after start: /healthz
answers at once, /readyz and the scoring routes once it is warm.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..optional import require

# Without the [serve] extra: one MissingExtraError naming it, not a bare ModuleNotFoundError.
require("fastapi", "serve", "lpips-serve")

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LpipsError
from ..formatting import float32_json, float32_text
from ..heatmap import COLORMAPS, DEFAULT_ALPHA, pair_heatmap
from ..images import EncodedImage
from .batcher import DynamicBatcher, QueueFull, Reservation
from .guard import RequestGuard
from .http_errors import ServiceError, bad_request, error_body, from_lpips_error, overloaded, unauthorized
from .metrics import MetricsMiddleware, ServiceMetrics
from .schemas import (BATCH_BODY, HEATMAP_RESPONSES, IMAGE_PAIR_FORM, BatchResult, DistanceResult, Health,
                      PairOutcome, Readiness, error_responses)
from .settings import ServeSettings
from .uploads import JSON, MULTIPART, form_pair, form_pairs, json_pairs, require_media_type, uploaded_form

log = logging.getLogger("lpips_runtime.serve")

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                 413: "body_too_large", 415: "unsupported_media_type", 422: "bad_request"}
MAP_TYPES = ("image/png", "application/octet-stream")


class Service:
    """What the routes share: the scorer, its batcher and pools, readiness and metrics."""

    def __init__(self, scorer, settings: ServeSettings, metrics: ServiceMetrics,
                 on_fatal: Callable[[str], None] | None = None):
        self.scorer, self.settings, self.metrics = scorer, settings, metrics
        self.on_fatal = on_fatal or (lambda message: None)
        self.model = scorer.describe()  # the model and the precision its distances are computed in
        self.status = "loading"  # -> ready -> draining, or failed
        self.batcher: DynamicBatcher | None = None
        self.pool: ThreadPoolExecutor | None = None

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self.pool = ThreadPoolExecutor(max_workers=s.decode_workers or self.scorer.workers,
                                       thread_name_prefix="lpips-decode")
        self.batcher = DynamicBatcher(
            lambda a, b, spatial: self.scorer.run_prepared(a, b, spatial=spatial),
            max_batch=s.max_batch, max_wait_s=s.max_wait_ms / 1000, max_queue=s.max_queue,
            max_queue_pixels=s.max_queue_pixels, workers=self.scorer.pipeline_depth,
            on_batch=self.metrics.record_batch, on_depth=self.metrics.queue_depth.set)

    async def load(self) -> None:
        """Open the model(s) and run one pair through each, in a thread; then report ready."""
        try:
            await asyncio.get_running_loop().run_in_executor(self.pool, self._warm_up)
        except Exception as exc:  # noqa: BLE001 - any failure to load is fatal for a server, said in one line
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.status = "failed"
            log.error("lpips-serve: the model cannot run: %s", message)
            self.on_fatal(message)
            return
        if self.status == "loading":
            self.status = "ready"
            self.metrics.ready.set(1)
            log.info("lpips-serve: %s ready (%s on %s)", self.model, self.scorer.backend_name, self.scorer.device)

    def _warm_up(self) -> None:
        h, w = self.settings.warmup_size
        rng = np.random.default_rng(0)
        a, b = self.scorer.load_pair(rng.integers(0, 256, (h, w, 3), np.uint8),
                                     rng.integers(0, 256, (h, w, 3), np.uint8))
        for spatial in (False, True) if self.settings.heatmap else (False,):
            self.scorer.run_prepared([a], [b], spatial=spatial)

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

    def check_ready(self) -> None:
        if self.status in ("loading", "failed"):
            raise ServiceError(503, "not_ready", f"the model is {self.status}: retry later",
                               {"Retry-After": str(self.settings.retry_after_s)})

    def reserve(self, count: int) -> Reservation:
        if count > self.settings.max_pairs:
            raise ServiceError(413, "too_many_pairs",
                               f"{count} pairs in one request, over the limit of {self.settings.max_pairs} "
                               "(lpips-serve --max-pairs): split the batch")
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

    async def score(self, reservation: Reservation, pair: tuple[EncodedImage, EncodedImage]) -> float:
        """One reserved pair: decoded and checked by the Scorer in the pool, then batched."""
        try:
            a, b = await self.in_pool(self.load_pair, *pair)
        except BaseException:
            reservation.release()
            raise
        return await self.run(reservation, a, b)

    async def run(self, reservation: Reservation, a: np.ndarray, b: np.ndarray, spatial: bool = False):
        """A reserved, prepared pair through the batcher: its distance, or its map with ``spatial``."""
        try:
            return await self.batcher.put(reservation, a, b, spatial)
        except QueueFull as exc:
            raise overloaded(str(exc), self.settings.retry_after_s) from None
        except LpipsError as exc:
            raise from_lpips_error(exc) from None
        except Exception as exc:  # a model call that failed: every pair of its batch says so, in one line
            log.exception("lpips-serve: a model call failed")
            raise ServiceError(500, "scoring_failed", f"the model call failed: {type(exc).__name__}: {exc}") from None

    def load_pair(self, img0: EncodedImage, img1: EncodedImage) -> tuple[np.ndarray, np.ndarray]:
        """Two uploads -> model-ready arrays, by ``Scorer.load_pair`` (which validates them and refuses an
        image whose header declares more than the Scorer's ``max_pixels`` before decoding it)."""
        return self.scorer.load_pair(img0, img1)

    def prepare_heatmap(self, img0: EncodedImage, img1: EncodedImage):
        """As ``lpips-score --heatmap``: decode once, reconcile sizes, keep the reference for the picture."""
        rgb0, rgb1 = self.scorer.decode_pair(img0, img1)
        a, b = self.scorer.load_pair(rgb0, rgb1)
        return a, b, rgb0

    # Seam for per-pair values beyond the distance (e.g. PSNR/SSIM once a Scorer computes them): they
    # would travel with the value from ``run`` and be added here and in the /v1/distance answer.
    def outcome(self, index: int, value) -> PairOutcome:
        if isinstance(value, ServiceError):
            self.metrics.pairs.labels("failed").inc()
            return PairOutcome(index=index, error=value.message, code=value.code)
        self.metrics.pairs.labels("scored").inc()
        return PairOutcome(index=index, distance=float32_json(value))


def _error_response(error: ServiceError) -> Response:
    return Response(error_body(error), status_code=error.status, media_type="application/json",
                    headers=error.headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, answers with ``ErrorBody``."""

    async def service_error(request: Request, exc: ServiceError):
        return _error_response(exc)

    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return _error_response(ServiceError(exc.status_code, _STATUS_CODES.get(exc.status_code, "http_error"),
                                            message, dict(exc.headers or {})))

    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(ServiceError(422, "bad_request", f"{where}: {first.get('msg', 'invalid')}"))

    async def unexpected_error(request: Request, exc: Exception):  # the server logs the traceback
        return _error_response(ServiceError(500, "internal_error", f"internal error: {type(exc).__name__}"))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _key_check(api_key: str | None):
    """The dependency that enforces ``Authorization: Bearer <key>`` (constant-time compare), if a key is set."""
    bearer = HTTPBearer(auto_error=False, description="The server's --api-key.")
    expected = api_key.encode() if api_key else b""

    async def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        given = credentials.credentials.encode() if credentials is not None else b""
        if credentials is None or credentials.scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
            raise unauthorized("missing or wrong API key: send the header 'Authorization: Bearer <key>'")

    return require_key


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def create_app(scorer, settings: ServeSettings | None = None, *,
               on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """The service for ``scorer`` (which it owns from now on and closes at shutdown).
    ``on_fatal(message)`` is called when the model cannot be loaded (the CLI then exits 1)."""
    settings = settings or ServeSettings()
    spec = scorer.spec
    metrics = ServiceMetrics({key: str(value).lower() if isinstance(value, bool) else value
                              for key, value in scorer.identity.items()})
    service = Service(scorer, settings, metrics, on_fatal)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        loader = asyncio.get_running_loop().create_task(service.load())
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await service.stop()

    app = FastAPI(
        title="lpips-serve", version=_version(), lifespan=lifespan,
        description="LPIPS perceptual distances over HTTP (lpips-rt). Scoring routes need "
                    "`Authorization: Bearer <key>` when the server was started with an API key; "
                    "every error is JSON `{\"error\": \"...\", \"code\": \"...\"}`.")
    app.state.service = service
    _install_error_handlers(app)
    secured = [Depends(_key_check(settings.api_key))] if settings.api_key else []

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Liveness: the process answers")
    async def healthz():
        return Health(status="alive")

    @app.get("/readyz", response_model=Readiness, tags=["operations"],
             summary="Readiness: the model is loaded and warmed",
             responses={503: {"model": Readiness, "description": "loading, draining or failed"}})
    async def readyz():
        body = Readiness(status=service.status, model=service.model, backend=scorer.backend_name,
                         device=scorer.device)
        return JSONResponse(body.model_dump(), status_code=200 if service.status == "ready" else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             dependencies=secured if settings.metrics_need_key else [],
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}})
    async def metrics_route():
        return Response(metrics.exposition(), media_type=metrics.content_type)

    scoring = {"tags": ["scoring"], "dependencies": secured}

    @app.post("/v1/distance", response_model=DistanceResult, summary="LPIPS distance of two images",
              openapi_extra={"requestBody": IMAGE_PAIR_FORM},
              responses=error_responses(400, 401, 413, 415, 422, 503, 504), **scoring)
    async def distance(request: Request):
        """Two image files as multipart parts `img0` and `img1` (any format `lpips-score` reads, same size)."""
        started = time.perf_counter()
        service.check_ready()
        require_media_type(request, (MULTIPART,))
        with service.reserve(1) as reservation:
            async with uploaded_form(request, 2) as form:
                pair = await form_pair(form)
            try:
                value = await service.score(reservation, pair)
            except ServiceError:
                metrics.pairs.labels("failed").inc()
                raise
        metrics.pairs.labels("scored").inc()
        return DistanceResult(distance=float32_json(value), model=service.model, precision=scorer.precision,
                              elapsed_ms=_elapsed_ms(started))

    @app.post("/v1/distance/batch", response_model=BatchResult, summary="LPIPS distances of many pairs",
              openapi_extra={"requestBody": BATCH_BODY},
              responses=error_responses(400, 401, 413, 415, 503, 504), **scoring)
    async def distance_batch(request: Request):
        """Many pairs: multipart with `img0` and `img1` parts repeated (the i-th of each form pair i), or
        JSON `{"pairs": [{"img0": base64, "img1": base64}, ...]}`. One result per pair, in order: a pair
        that cannot be scored gets its `error` and `code`, the others their distances (status 200)."""
        started = time.perf_counter()
        service.check_ready()
        kind = require_media_type(request, (MULTIPART, JSON))
        if kind == MULTIPART:
            async with uploaded_form(request, 2 * settings.max_pairs) as form:
                pairs = await form_pairs(form)
        else:
            pairs = await service.in_pool(json_pairs, await request.body())
        if not pairs:
            raise bad_request("no pairs in the request")

        async def one(pair):
            if isinstance(pair, ServiceError):
                reservation.release()
                return pair
            try:
                return await service.score(reservation, pair)
            except ServiceError as exc:
                return exc
            except Exception as exc:  # noqa: BLE001 - one pair's surprise must not cost the others their answers
                log.exception("lpips-serve: pair failed")
                return ServiceError(500, "internal_error", f"internal error: {type(exc).__name__}")

        with service.reserve(len(pairs)) as reservation:
            values = await asyncio.gather(*(one(pair) for pair in pairs))
        results = [service.outcome(i, v) for i, v in enumerate(values)]
        return BatchResult(results=results, failures=sum(r.error is not None for r in results),
                           model=service.model, precision=scorer.precision, elapsed_ms=_elapsed_ms(started))

    @app.post("/v1/heatmap", summary="Spatial distance map of two images", response_class=Response,
              openapi_extra={"requestBody": IMAGE_PAIR_FORM},
              responses={**HEATMAP_RESPONSES, **error_responses(400, 401, 406, 413, 415, 422, 503, 504)}, **scoring)
    async def heatmap(request: Request,
                      alpha: float = Query(DEFAULT_ALPHA, ge=0, le=1, description="Weight of the colours over "
                                           "img0 (1: colours only), as lpips-score --heatmap-alpha."),
                      colormap: str = Query("inferno", pattern="^(" + "|".join(COLORMAPS) + ")$"),
                      vmax: str | None = Query(None, pattern=r"^(auto|[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)$",
                                               description="Map value shown as the top colour: a number, or "
                                               "auto (the map's maximum); default: the net's fixed scale. As "
                                               "lpips-score --heatmap-max.")):
        """Two image files as for /v1/distance. `Accept: image/png` (default): the `lpips-score --heatmap`
        picture; `Accept: application/octet-stream`: the map itself, H*W little-endian float32."""
        service.check_ready()
        kind = _negotiate(request.headers.get("accept", ""))
        require_media_type(request, (MULTIPART,))
        if not settings.heatmap:
            raise ServiceError(404, "not_found", "this server runs without heatmaps (lpips-serve --no-heatmap)")
        with service.reserve(2) as reservation:  # the distance and the map: two model runs
            async with uploaded_form(request, 2) as form:
                pair = await form_pair(form)
            a, b, reference = await service.in_pool(service.prepare_heatmap, *pair)
            value, dmap = await asyncio.gather(service.run(reservation, a, b), service.run(reservation, a, b, True))
        headers = {"X-LPIPS-Distance": float32_text(value), "X-LPIPS-Height": str(dmap.shape[0]),
                   "X-LPIPS-Width": str(dmap.shape[1])}
        if kind == "application/octet-stream":
            return Response(dmap.astype("<f4").tobytes(), media_type=kind, headers=headers)
        top = vmax if vmax in (None, "auto") else float(vmax)
        if top == 0:
            raise ServiceError(422, "bad_request", "query.vmax: the heatmap scale must be positive")
        picture = await service.in_pool(_heatmap_png, spec.net, service.model, value, dmap, reference, alpha,
                                        colormap, top)
        return Response(picture, media_type="image/png", headers=headers)

    routes = {route.path for route in app.routes if hasattr(route, "path")}
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, timeout_s=settings.timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    return app


def _negotiate(accept: str) -> str:
    """The map's media type for an ``Accept`` header (PNG unless raw float32 is asked for first)."""
    wanted = [part.split(";", 1)[0].strip().lower() for part in accept.split(",") if part.strip()]
    for kind in wanted or ["image/png"]:
        if kind in MAP_TYPES:
            return kind
        if kind in ("*/*", "image/*"):
            return "image/png"
    raise ServiceError(406, "not_acceptable", f"cannot answer with {accept!r}: accept {' or '.join(MAP_TYPES)}")


def _heatmap_png(net: str, model: str, value: float, dmap: np.ndarray, reference: np.ndarray, alpha: float,
                 colormap: str, vmax: float | str | None) -> bytes:
    """The ``lpips-score --heatmap`` picture (the same ``heatmap.pair_heatmap``), as PNG bytes."""
    import cv2

    ok, data = cv2.imencode(".png", pair_heatmap(net, model, value, dmap, reference, alpha, colormap, vmax))
    if not ok:
        raise LpipsError("OpenCV cannot encode the heatmap as PNG")
    return data.tobytes()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lpips-rt")
    except PackageNotFoundError:
        return "0+unknown"
