"""Operations routes: /healthz (liveness), /readyz (readiness of every model), /metrics (Prometheus)."""
from __future__ import annotations

from ..optional import require

require("fastapi", "serve", "lpips-serve")

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .schemas import Health, Readiness


def ops_router(metrics_dependencies: list) -> APIRouter:
    """``metrics_dependencies``: the API-key check when /metrics is protected (--protect-metrics)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz():
        return Health(status="alive")

    @router.get("/readyz", response_model=Readiness, summary="Readiness: every model is loaded and warmed",
                responses={503: {"model": Readiness, "description": "loading, draining or failed"}})
    async def readyz(request: Request):
        models = request.app.state.models
        first = models.default
        # The worst state of any model: one still loading keeps the whole server not ready.
        status = next((s.status for s in models.services if not s.ready), first.status)
        body = Readiness(status=status, model=first.model, backend=first.scorer.backend_name,
                         device=first.scorer.device,
                         models={f"{s.name}/{s.version}": s.status for s in models.services})
        return JSONResponse(body.model_dump(), status_code=200 if models.ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", dependencies=metrics_dependencies,
                responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}})
    async def metrics_route(request: Request):
        metrics = request.app.state.metrics
        return Response(metrics.exposition(), media_type=metrics.content_type)

    return router
