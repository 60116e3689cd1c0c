"""The FastAPI app of ``lpips-serve``: a thin HTTP layer over one ``Scorer`` per served model.

The routes live in their own modules (``routes_ops``: /healthz, /readyz, /metrics; ``routes_v1``:
/v1; ``v2``: the Open Inference Protocol), the models and their batchers in ``service``. This module
composes them: error answers, the API-key check, the interactive docs (served from the
``fastapi-offline`` package's copy of Swagger UI, so they work offline), and the middleware (request
id and tracing outermost, then metrics, then the body-size/time guard). The models are opened and
warmed in the background after start: /healthz answers at once, /readyz and the scoring routes once
every model is warm.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Sequence

from ..optional import require

# Without the [serve] extra: one MissingExtraError naming it, not a bare ModuleNotFoundError.
require("fastapi", "serve", "lpips-serve")

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .admission import BodyBudget
from .guard import RequestGuard
from .http_errors import ServiceError, error_body, unauthorized
from .metrics import MetricsMiddleware, ServiceMetrics
from .routes_ops import ops_router
from .routes_v1 import v1_router
from .service import ModelRepository, Service, server_version
from .settings import ServeSettings
from .tracing import RequestContext
from .v2 import v2_router

log = logging.getLogger("lpips_runtime.serve")

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                 413: "body_too_large", 415: "unsupported_media_type", 422: "bad_request"}
DESCRIPTION = ("LPIPS perceptual distances over HTTP (lpips-rt): the /v1 routes, and the Open Inference Protocol "
               "(KServe v2 / Triton HTTP) under /v2. Scoring routes need `Authorization: Bearer <key>` when the "
               "server was started with an API key; every error is JSON `{\"error\": \"...\", \"code\": \"...\"}`.")


def _error_response(error: ServiceError) -> Response:
    return Response(error_body(error), status_code=error.status, media_type="application/json",
                    headers=error.headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, answers with ``ErrorBody`` (whose ``error`` is also the
    Open Inference Protocol's error body)."""

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
    """The dependency that enforces ``Authorization: Bearer <key>`` (constant-time compare), if a key is set.

    Compared as bytes: the key's UTF-8 bytes against the header's bytes as sent (the server decodes
    header bytes as Latin-1, so encoding them back gives exactly what the client sent); a non-ASCII
    key thus matches a client that sends it in UTF-8, as curl and every HTTP library do."""
    bearer = HTTPBearer(auto_error=False, description="The server's --api-key.")
    expected = api_key.encode("utf-8", "surrogateescape") if api_key else b""  # as the environment held it

    async def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        given = credentials.credentials.encode("latin-1") if credentials is not None else b""
        if credentials is None or credentials.scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
            raise unauthorized("missing or wrong API key: send the header 'Authorization: Bearer <key>'")

    return require_key


def _new_app(lifespan) -> FastAPI:
    """The FastAPI object, with /docs and /redoc from local files when ``fastapi-offline`` is installed
    (the [serve] extra has it), else without them (FastAPI's pages load their scripts from a CDN,
    blank offline): /openapi.json is served either way."""
    kwargs = dict(title="lpips-serve", version=server_version(), lifespan=lifespan, description=DESCRIPTION)
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        log.info("lpips-serve: /docs is off (install fastapi-offline for offline API docs); /openapi.json is on")
        return FastAPI(docs_url=None, redoc_url=None, **kwargs)
    return FastAPIOffline(**kwargs)


def create_app(scorers, settings: ServeSettings | None = None, *,
               on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """The service for ``scorers`` (a Scorer, or several: one per model, each with its batcher; the
    first answers /v1), which it owns from now on and closes at shutdown. ``on_fatal(message)`` is
    called when a model cannot be loaded (the CLI then exits 1)."""
    settings = settings or ServeSettings()
    scorers = list(scorers) if isinstance(scorers, Sequence) else [scorers]
    metrics = ServiceMetrics()
    models = ModelRepository([Service(scorer, settings, metrics, on_fatal) for scorer in scorers])

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for service in models.services:
            service.start()
        loaders = [asyncio.get_running_loop().create_task(s.load()) for s in models.services]
        try:
            yield
        finally:
            for loader in loaders:
                loader.cancel()
            await asyncio.gather(*loaders, return_exceptions=True)
            models.begin_drain()
            await asyncio.gather(*(service.stop() for service in models.services))

    app = _new_app(lifespan)
    app.state.models, app.state.metrics, app.state.settings = models, metrics, settings
    app.state.service = models.default  # the /v1 model (Ray Serve's health check reads its status)
    _install_error_handlers(app)
    secured = [Depends(_key_check(settings.api_key))] if settings.api_key else []
    routers = [ops_router(secured if settings.metrics_need_key else []), v1_router(secured), v2_router(secured)]
    for router in routers:
        app.include_router(router)

    # Fixed paths, for counting requests answered before routing (e.g. 413 on their Content-Length).
    routes = {route.path for router in routers for route in router.routes if "{" not in route.path}
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, timeout_s=settings.timeout_s,
                       budget=BodyBudget(settings.max_bodies_bytes), retry_after_s=settings.retry_after_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    app.add_middleware(RequestContext)
    return app
