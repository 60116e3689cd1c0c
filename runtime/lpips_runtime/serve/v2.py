"""The Open Inference Protocol (v2, as KServe and Triton's HTTP endpoint speak it) beside /v1:

* ``GET /v2`` server metadata; ``GET /v2/health/live``, ``GET /v2/health/ready`` (every model ready);
* ``POST /v2/repository/index``: every model, version and state (READY, LOADING, UNAVAILABLE + reason);
* ``GET /v2/models/{name}[/versions/{version}]`` model metadata, ``.../ready``, ``POST .../infer``.

Models are named ``lpips-<net>`` (``-baseline`` uncalibrated); versions are LPIPS versions (``0.1``).
Inputs ``img0``/``img1``: BYTES [N] (encoded image files) or UINT8 [N,H,W,3] (RGB frames); outputs
``distance`` FP32 [N] and each metric the model computes (``psnr``, ``ssim``, ...). The binary tensor
data extension is served (see ``v2_tensors``). Pairs go through the model's batcher, as /v1 pairs do,
and meet the same limits; errors are ``{"error": "..."}`` (with this server's ``code`` beside it).
"""
from __future__ import annotations

import asyncio

import numpy as np

from ..optional import require

require("fastapi", "serve", "lpips-serve")

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .admission import charge_parse
from .http_errors import ServiceError
from .schemas import error_responses
from .service import ModelRepository, Service, server_version
from .tracing import span
from .uploads import JSON
from .v2_tensors import HEADER_LENGTH, encode_response, json_part, pair_images, parse_infer

EXTENSIONS = ["binary_tensor_data", "model_repository"]
_MEDIA_TYPES = (JSON, "application/octet-stream", "")  # tritonclient sends no Content-Type


def _repository(request: Request) -> ModelRepository:
    return request.app.state.models


def _metadata(service: Service) -> dict:
    tensor = {"datatype": "BYTES", "shape": [-1]}
    return {
        "name": service.name, "versions": [service.version], "platform": f"lpips-rt_{service.scorer.backend_name}",
        "inputs": [{"name": "img0", **tensor}, {"name": "img1", **tensor}],
        "outputs": [{"name": name, "datatype": "FP32", "shape": [-1]} for name in service.outputs],
        # Not part of the protocol's metadata: what else the inputs may be, and what the model is.
        "parameters": {"description": service.model, "precision": service.scorer.precision,
                       "inputs_also": "img0/img1 as UINT8 [N,H,W,3] RGB frames, same shape"},
    }


def v2_router(secured: list) -> APIRouter:
    """The /v2 routes; ``secured`` (the API-key dependency, if any) guards inference and metadata."""
    router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])

    @router.get("", summary="Server metadata")
    async def server_metadata(request: Request):
        return {"name": "lpips-serve", "version": server_version(), "extensions": EXTENSIONS}

    @router.get("/health/live", summary="Liveness: the process answers")
    async def live():
        return {"live": True}

    @router.get("/health/ready", summary="Readiness: every model is loaded and warmed",
                responses={503: {"description": "a model is loading, draining or failed"}})
    async def ready(request: Request):
        ok = _repository(request).ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @router.post("/repository/index", summary="Every model, version and load state", dependencies=secured)
    async def repository_index(request: Request):
        states = {"ready": "READY", "loading": "LOADING", "draining": "UNAVAILABLE", "failed": "UNAVAILABLE"}
        return [{"name": s.name, "version": s.version, "state": states[s.status],
                 "reason": s.reason or ("draining" if s.status == "draining" else "")}
                for s in _repository(request).services]

    async def metadata(request: Request, name: str, version: str | None = None):
        return _metadata(_repository(request).find(name, version))

    async def model_ready(request: Request, name: str, version: str | None = None):
        ok = _repository(request).find(name, version).ready
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request, name: str, version: str | None = None):
        """BYTES [N] or UINT8 [N,H,W,3] inputs img0, img1 -> FP32 [N] distance (and metrics)."""
        service = _repository(request).find(name, version)
        service.check_ready()
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind not in _MEDIA_TYPES:
            raise ServiceError(415, "unsupported_media_type", f"unsupported media type '{kind}': send "
                               "application/json, or application/octet-stream with Inference-Header-Content-Length")
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            raise ServiceError(415, "unsupported_media_type", "compressed request bodies (Content-Encoding) "
                               "are not accepted: send the body uncompressed")
        body = await request.body()  # bounded by --max-body-mb while read (guard.RequestGuard)
        charge_parse(request.scope, json_part(body, request.headers.get(HEADER_LENGTH)))  # memory, before parsing
        parsed = await service.in_pool(parse_infer, body, request.headers.get(HEADER_LENGTH))
        del body
        pairs = pair_images(parsed, service.scorer.max_pixels)
        wanted = parsed.outputs if parsed.outputs is not None else list(service.outputs)
        for output in wanted:
            if output not in service.outputs:
                raise ServiceError(400, "bad_request", f"unknown output '{output}': {service.name} gives "
                                   f"{', '.join(service.outputs)} (start lpips-serve with --metrics for PSNR/SSIM)")
        with service.reserve(len(pairs)) as reservation:
            results = await asyncio.gather(*(service.score(reservation, pair) for pair in pairs),
                                           return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            service.count("failed", len(pairs))
            if isinstance(failed, ServiceError) and len(pairs) > 1:
                index = results.index(failed)
                raise ServiceError(failed.status, failed.code, f"pair {index}: {failed.message}", failed.headers)
            raise failed
        service.count("scored", len(pairs))
        with span("lpips.encode", model=service.name):
            doc = {"model_name": service.name, "model_version": service.version,
                   **({"id": parsed.id} if parsed.id is not None else {})}
            body, headers = encode_response(doc, [
                (output, np.asarray([r[output] for r in results], dtype=np.float32),
                 parsed.binary.get(output, parsed.binary_default)) for output in wanted])
        media = "application/octet-stream" if headers else JSON
        return Response(body, media_type=media, headers=headers)

    errors = error_responses(400, 401, 404, 413, 415, 422, 503, 504)
    for prefix in ("/models/{name}", "/models/{name}/versions/{version}"):
        router.add_api_route(prefix, metadata, methods=["GET"], summary="Model metadata", dependencies=secured)
        router.add_api_route(prefix + "/ready", model_ready, methods=["GET"], summary="Model readiness")
        router.add_api_route(prefix + "/infer", infer, methods=["POST"], summary="Inference: LPIPS distances",
                             dependencies=secured, responses=errors)
    return router
