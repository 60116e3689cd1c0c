"""The /v1 routes: distances of uploaded pairs (one, or a batch) and heatmaps, answered by the default
model (the first one ``lpips-serve`` was given). Their bodies are described in ``schemas``."""
from __future__ import annotations

import asyncio
import logging
import math
import time

import numpy as np

from ..optional import require

require("fastapi", "serve", "lpips-serve")

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..errors import LpipsError
from ..formatting import float32_json, float32_text
from ..io.heatmap import COLORMAPS, DEFAULT_ALPHA, pair_heatmap
from .http_errors import ServiceError, bad_request, echo
from .schemas import BATCH_BODY, HEATMAP_RESPONSES, IMAGE_PAIR_FORM, BatchResult, DistanceResult, error_responses
from .service import Service
from .uploads import JSON, MULTIPART, form_pair, form_pairs, json_pairs, require_media_type, uploaded_form

log = logging.getLogger("lpips_runtime.serve")
MAP_TYPES = ("image/png", "application/octet-stream")


def _service(request: Request) -> Service:
    return request.app.state.models.default


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def v1_router(secured: list) -> APIRouter:
    """The /v1 routes; ``secured`` (the API-key dependency, if any) guards each."""
    router = APIRouter(prefix="/v1", tags=["scoring"], dependencies=secured)

    @router.post("/distance", response_model=DistanceResult, summary="LPIPS distance of two images",
                 openapi_extra={"requestBody": IMAGE_PAIR_FORM},
                 responses=error_responses(400, 401, 413, 415, 422, 503, 504))
    async def distance(request: Request):
        """Two image files as multipart parts `img0` and `img1` (any format `lpips-score` reads, same size).
        A server started with `--metrics psnr,ssim` adds those values next to the distance."""
        started = time.perf_counter()
        service = _service(request)
        service.check_ready()
        require_media_type(request, (MULTIPART,))
        with service.reserve(1) as reservation:
            async with uploaded_form(request, 2) as form:
                pair = await form_pair(form)
            try:
                value = await service.score(reservation, pair)
            except ServiceError:
                service.count("failed")
                raise
        service.count("scored")
        return DistanceResult(distance=float32_json(value["distance"]), model=service.model,
                              precision=service.scorer.precision, elapsed_ms=_elapsed_ms(started),
                              **{m: float32_json(value[m]) for m in service.outputs[1:]})

    @router.post("/distance/batch", response_model=BatchResult, summary="LPIPS distances of many pairs",
                 openapi_extra={"requestBody": BATCH_BODY}, responses=error_responses(400, 401, 413, 415, 503, 504))
    async def distance_batch(request: Request):
        """Many pairs: multipart with `img0` and `img1` parts repeated (the i-th of each form pair i), or
        JSON `{"pairs": [{"img0": base64, "img1": base64}, ...]}`. One result per pair, in order: a pair
        that cannot be scored gets its `error` and `code`, the others their distances (status 200)."""
        started = time.perf_counter()
        service = _service(request)
        service.check_ready()
        kind = require_media_type(request, (MULTIPART, JSON))
        if kind == MULTIPART:
            async with uploaded_form(request, 2 * service.settings.max_pairs) as form:
                pairs = await form_pairs(form)
        else:
            pairs = await service.in_pool(json_pairs, await request.body(), service.settings.max_pairs)
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
                           model=service.model, precision=service.scorer.precision, elapsed_ms=_elapsed_ms(started))

    @router.post("/heatmap", summary="Spatial distance map of two images", response_class=Response,
                 openapi_extra={"requestBody": IMAGE_PAIR_FORM},
                 responses={**HEATMAP_RESPONSES, **error_responses(400, 401, 406, 413, 415, 422, 503, 504)})
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
        service = _service(request)
        service.check_ready()
        kind = _negotiate(request.headers.get("accept", ""))
        require_media_type(request, (MULTIPART,))
        if not service.settings.heatmap:
            raise ServiceError(404, "not_found", "this server runs without heatmaps (lpips-serve --no-heatmap)")
        with service.reserve(2) as reservation:  # the distance and the map: two model runs
            async with uploaded_form(request, 2) as form:
                pair = await form_pair(form)
            a, b, reference = await service.in_pool(service.prepare_heatmap, *pair)
            scores, dmap = await asyncio.gather(service.run(reservation, a, b), service.run(reservation, a, b, True))
        value = scores["distance"]
        headers = {"X-LPIPS-Distance": float32_text(value), "X-LPIPS-Height": str(dmap.shape[0]),
                   "X-LPIPS-Width": str(dmap.shape[1])}
        if kind == "application/octet-stream":
            return Response(dmap.astype("<f4").tobytes(), media_type=kind, headers=headers)
        top = vmax if vmax in (None, "auto") else float(vmax)
        if top == 0 or not math.isfinite(top if isinstance(top, float) else 1.0):
            raise ServiceError(422, "bad_request", "query.vmax: the heatmap scale must be a positive finite number")
        picture = await service.in_pool(_heatmap_png, service.scorer.spec.net, service.model, value, dmap,
                                        reference, alpha, colormap, top)
        return Response(picture, media_type="image/png", headers=headers)

    return router


def _negotiate(accept: str) -> str:
    """The map's media type for an ``Accept`` header (PNG unless raw float32 is asked for first)."""
    wanted = [part.split(";", 1)[0].strip().lower() for part in accept.split(",") if part.strip()]
    for kind in wanted or ["image/png"]:
        if kind in MAP_TYPES:
            return kind
        if kind in ("*/*", "image/*"):
            return "image/png"
    raise ServiceError(406, "not_acceptable", f"cannot answer with '{echo(accept)}': accept {' or '.join(MAP_TYPES)}")


def _heatmap_png(net: str, model: str, value: float, dmap: np.ndarray, reference: np.ndarray, alpha: float,
                 colormap: str, vmax: float | str | None) -> bytes:
    """The ``lpips-score --heatmap`` picture (the same ``heatmap.pair_heatmap``), as PNG bytes."""
    import cv2

    ok, data = cv2.imencode(".png", pair_heatmap(net, model, value, dmap, reference, alpha, colormap, vmax))
    if not ok:
        raise LpipsError("OpenCV cannot encode the heatmap as PNG")
    return data.tobytes()
