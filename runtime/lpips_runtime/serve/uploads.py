"""Request bodies -> named encoded images: multipart parts ``img0``/``img1`` (repeated for a batch) or
a JSON batch of base64 strings. Decoding and every check of the pictures themselves stay in the
Scorer; this module only finds the bytes and names them for messages."""
from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import AsyncIterator

from ..optional import require

# Without the [serve] extra: one MissingExtraError naming it, not a bare ModuleNotFoundError.
require("starlette", "serve", "lpips-serve")

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from ..io.images import EncodedImage
from .http_errors import ServiceError, bad_request, echo, load_json

MULTIPART = "multipart/form-data"
JSON = "application/json"
FIELDS = ("img0", "img1")
_CURL_HINT = "curl -F img0=@a.png -F img1=@b.png"

# A pair as sent: two named images, or the error that keeps it from being scored.
Pair = tuple[EncodedImage, EncodedImage] | ServiceError


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_media_type(request: Request, allowed: tuple[str, ...]) -> str:
    """The request's media type, if it is one of ``allowed``; else 415."""
    kind = media_type(request)
    if kind not in allowed:
        raise ServiceError(415, "unsupported_media_type",
                           f"unsupported media type '{echo(kind) or 'none'}': send {' or '.join(allowed)} ({_CURL_HINT})")
    return kind


@contextlib.asynccontextmanager
async def uploaded_form(request: Request, max_files: int) -> AsyncIterator[FormData]:
    """The parsed multipart body; its file parts (spooled to temporary files past 1 MiB) are closed on
    leaving. The body limit is enforced while it is read (``guard.RequestGuard``)."""
    form = await request.form(max_files=max_files, max_fields=max_files + 8)
    try:
        yield form
    finally:
        await form.close()


def _part_type_ok(upload: UploadFile) -> bool:
    kind = (upload.content_type or "").split(";", 1)[0].strip().lower()
    return kind in ("", "application/octet-stream") or kind.startswith("image/")


async def _named_image(upload, field: str) -> EncodedImage:
    if not isinstance(upload, UploadFile):
        raise bad_request(f"part '{field}' is a text field: send it as a file ({_CURL_HINT})")
    name = f"{field} ({echo(upload.filename)})" if upload.filename else field
    if not _part_type_ok(upload):
        raise ServiceError(415, "unsupported_media_type",
                           f"{name}: unsupported media type '{echo(upload.content_type)}': send an image file")
    return EncodedImage(await upload.read(), name)


async def form_pair(form: FormData) -> tuple[EncodedImage, EncodedImage]:
    """The two images of a single-pair request (exactly one ``img0`` and one ``img1`` part)."""
    images = []
    for field in FIELDS:
        parts = form.getlist(field)
        if len(parts) != 1:
            what = "missing image part" if not parts else f"{len(parts)} parts named"
            raise bad_request(f"{what} '{field}': send one file img0 and one file img1 ({_CURL_HINT})")
        images.append(await _named_image(parts[0], field))
    return images[0], images[1]


async def form_pairs(form: FormData) -> list[Pair]:
    """The pairs of a multipart batch: the i-th ``img0`` part with the i-th ``img1`` part."""
    first, second = form.getlist("img0"), form.getlist("img1")
    if len(first) != len(second):
        raise bad_request(f"{len(first)} img0 parts but {len(second)} img1 parts: send one img1 per img0, in order")
    pairs: list[Pair] = []
    for i, (u0, u1) in enumerate(zip(first, second)):
        try:
            pairs.append((await _named_image(u0, f"img0[{i}]"), await _named_image(u1, f"img1[{i}]")))
        except ServiceError as exc:
            pairs.append(exc)
    return pairs


def json_pairs(body: bytes, max_pairs: int) -> list[Pair]:
    """The pairs of a JSON batch ``{"pairs": [{"img0": base64, "img1": base64}, ...]}``. A pair with
    bad base64 gets its own error; a body of the wrong shape fails the request (400); more than
    ``max_pairs`` pairs, 413 (before parsing: see ``_prescan``)."""
    _prescan(body, max_pairs)
    doc = load_json(body, "body")
    if not isinstance(doc, dict) or not isinstance(doc.get("pairs"), list):
        raise bad_request('JSON body must be {"pairs": [{"img0": "<base64>", "img1": "<base64>"}, ...]}')
    if len(doc["pairs"]) > max_pairs:
        raise too_many_pairs(len(doc["pairs"]), max_pairs)
    pairs: list[Pair] = []
    for i, item in enumerate(doc["pairs"]):
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in FIELDS):
            raise bad_request(f'pairs[{i}] must be {{"img0": "<base64>", "img1": "<base64>"}}')
        try:
            pairs.append(tuple(EncodedImage(base64.b64decode(item[f], validate=True), f"{f}[{i}]") for f in FIELDS))
        except (binascii.Error, ValueError):
            pairs.append(bad_request(f"pairs[{i}]: img0/img1 must be base64 strings of encoded image files"))
    return pairs


def _prescan(body: bytes, max_pairs: int) -> None:
    """Refuse, before parsing, a body that cannot be a batch of at most ``max_pairs`` pairs: each pair
    is one JSON object and the batch has one array (base64 has neither brace nor bracket), so a body
    with more than ``max_pairs + 1`` objects has too many pairs (413) and one with more than a few
    arrays is not a batch (400; this also bounds nesting). Counting bytes runs at memory speed, where
    parsing millions of small objects would cost seconds and gigabytes."""
    objects, arrays = body.count(b"{"), body.count(b"[")
    if objects > max_pairs + 1:
        raise too_many_pairs(f"over {objects - 1}", max_pairs)
    if arrays > max_pairs + 2:
        raise bad_request("body is not a batch: JSON nested too deeply or full of arrays")


def too_many_pairs(count, max_pairs: int) -> ServiceError:
    return ServiceError(413, "too_many_pairs", f"{count} pairs in one request, over the limit of {max_pairs} "
                        "(lpips-serve --max-pairs): split the batch")
