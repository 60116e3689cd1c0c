"""Response bodies and the request bodies FastAPI cannot infer (the multipart and JSON uploads are
parsed by hand, so their OpenAPI description is written here), with examples for /docs."""
from __future__ import annotations

from ..optional import require

# Without the [serve] extra: one MissingExtraError naming it, not a bare ModuleNotFoundError.
require("pydantic", "serve", "lpips-serve")

from pydantic import BaseModel, ConfigDict, Field

_MODEL = Field(description="The served model.", examples=["LPIPS-alex v0.1"])
_PRECISION = Field(description="fp32, or fp16 (the mixed-precision export).", examples=["fp32"])
_ELAPSED = Field(description="Time in the server from the request's start to its answer, ms.", examples=[7.9])


class ErrorBody(BaseModel):
    """Every error response: the one-line message the CLI prints for the same problem, and a code."""

    error: str = Field(description="One line saying what is wrong and, where there is one, the fix.",
                       examples=["img1 (b.png): corrupt or truncated image"])
    code: str = Field(description="Machine-readable kind: bad_request, bad_image, image_too_large, "
                      "body_too_large, too_many_pairs, unsupported_media_type, not_acceptable, unauthorized, "
                      "not_found, method_not_allowed, overloaded, not_ready, timeout, scoring_failed, internal_error.",
                      examples=["bad_image"])


class DistanceResult(BaseModel):
    """The distance, and each metric the server computes (``lpips-serve --metrics psnr,ssim``: ``psnr``,
    ``ssim`` as float32 values; PSNR of identical images is null, JSON having no infinity)."""

    model_config = ConfigDict(extra="allow")
    distance: float = Field(description="LPIPS distance (0: identical): the float32 that Scorer.distance gives on "
                            "the same files, written as the shortest decimal that reads back as that float32 "
                            "(as lpips-score --json).", examples=[0.14583078])
    model: str = _MODEL
    precision: str = _PRECISION
    elapsed_ms: float = _ELAPSED


class PairOutcome(BaseModel):
    """One pair of a batch: ``distance`` is null exactly when ``error`` says why (and ``code`` its kind);
    a server with ``--metrics`` adds them as in ``DistanceResult``."""

    model_config = ConfigDict(extra="allow")

    index: int = Field(description="Position of the pair in the request, from 0.", examples=[0])
    distance: float | None = Field(default=None, examples=[0.14583078])
    error: str | None = Field(default=None, examples=[None])
    code: str | None = Field(default=None, examples=[None])


class BatchResult(BaseModel):
    results: list[PairOutcome]
    failures: int = Field(description="Pairs that have an error instead of a distance.", examples=[0])
    model: str = _MODEL
    precision: str = _PRECISION
    elapsed_ms: float = _ELAPSED


class Health(BaseModel):
    status: str = Field(description="Always alive while the process answers.", examples=["alive"])


class Readiness(BaseModel):
    status: str = Field(description="ready; or loading, draining, failed (with status code 503).",
                        examples=["ready"])
    model: str = _MODEL
    backend: str = Field(examples=["ort"])
    device: str = Field(examples=["cpu"])
    models: dict[str, str] = Field(default_factory=dict, description="Each served model (name/version) and its "
                                   "status.", examples=[{"lpips-alex/0.1": "ready"}])


def error_responses(*statuses: int) -> dict:
    """OpenAPI ``responses`` entries for error statuses, all with ``ErrorBody``."""
    meaning = {
        400: "Malformed request (missing part, bad JSON or multipart).",
        401: "Missing or wrong `Authorization: Bearer <key>` (only when the server has an API key).",
        404: "No such model or version (GET /v2/repository/index lists them).",
        406: "The `Accept` header asks for nothing this endpoint gives.",
        413: "Body over --max-body-mb, an image header over --max-pixels, or more than --max-pairs pairs.",
        415: "Body or image part of a media type this endpoint does not take.",
        422: "An image that cannot be scored: undecodable, too small for the net, sizes differ; "
             "or a bad query parameter.",
        503: "Queue full (--max-queue) or model not ready yet: retry after `Retry-After` seconds.",
        504: "No answer within --timeout-s.",
    }
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in statuses}


IMAGE_PAIR_FORM = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["img0", "img1"],
        "properties": {
            "img0": {"type": "string", "format": "binary",
                     "description": "Reference image (any format the CLI reads)."},
            "img1": {"type": "string", "format": "binary", "description": "Image compared with img0, same size."},
        }}}},
}

BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["img0", "img1"],
            "properties": {
                "img0": {"type": "array", "items": {"type": "string", "format": "binary"},
                         "description": "First image of each pair, in order (repeat the part)."},
                "img1": {"type": "array", "items": {"type": "string", "format": "binary"},
                         "description": "Second image of each pair, as many as img0."},
            }}},
        "application/json": {
            "schema": {"type": "object", "required": ["pairs"], "properties": {"pairs": {
                "type": "array",
                "items": {"type": "object", "required": ["img0", "img1"], "properties": {
                    "img0": {"type": "string", "format": "byte", "description": "Base64 of the encoded image file."},
                    "img1": {"type": "string", "format": "byte"}}}}}},
            "example": {"pairs": [{"img0": "iVBORw0KGgo...", "img1": "iVBORw0KGgo..."}]},
        },
    },
}

HEATMAP_RESPONSES = {
    200: {
        "description": "The spatial distance map. `X-LPIPS-Distance` carries the distance, `X-LPIPS-Height` and "
                       "`X-LPIPS-Width` the map's size.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"},
                          "example": "(PNG bytes: the lpips-score --heatmap picture)"},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                         "example": "(H*W little-endian float32, row-major)"},
        },
    },
}
