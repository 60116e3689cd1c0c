"""Body admission: the memory a request body will cost is reserved against a service-wide budget
before a byte of it is read, so that concurrent uploads cannot add up past ``--max-bodies-mb``.

A body costs more than its size while it is parsed. Measured on CPython 3.11 with Starlette's parsers:

* JSON (``application/json``): the body (its chunks joined: twice, briefly), the parsed base64 strings
  and the decoded bytes: about ``JSON_COST`` times its size at the peak;
* multipart: parts past 1 MiB are spooled to temporary files; each image part is then read into memory
  once: about its size (``MULTIPART_COST``).

JSON whose values are many small containers or numbers (an Open Inference Protocol tensor as nested JSON
lists) costs more than 3x: Python objects of 24-80 bytes per token. Routes that parse such JSON call
``charge_parse`` on the body before parsing it: the charge grows to ``parse_cost`` (a byte count at
memory speed), or the request is refused (503 when the budget is busy, 413 when it could never fit).

A request without ``Content-Length`` (chunked) is charged for the largest body (``--max-body-mb``). A
request whose charge does not fit the budget now is answered 503 with ``Retry-After`` and the
connection closed (its body unread); the settings refuse a budget smaller than one largest JSON body.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading

log = logging.getLogger("lpips_runtime.serve")

JSON_COST = 3
MULTIPART_COST = 1
_TRIM_AFTER = 16 << 20  # bytes released at once after which freed heap is handed back to the system


def body_cost(headers: dict[bytes, bytes], max_body_bytes: int) -> int:
    """The bytes of memory a request's body is charged (0: no body). ``headers``: lower-case names."""
    declared = headers.get(b"content-length")
    if declared is not None:
        size = int(declared)
    elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        size = max_body_bytes
    else:
        return 0
    kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    return size * (MULTIPART_COST if kind == b"multipart/form-data" else JSON_COST)


CHARGE_KEY = "lpips.body_charge"  # ASGI scope key of the request's ``Charge``


def parse_cost(text: bytes) -> int:
    """An upper bound of the memory ``json.loads(text)`` and the lists built from it take: the text and
    its strings (2 bytes per byte), 80 bytes per list or object, and 40 per comma (a list slot and a
    number object: float 24 bytes, int 28)."""
    return 2 * len(text) + 80 * (text.count(b"[") + text.count(b"{")) + 40 * text.count(b",")


class Charge:
    """The bytes reserved for one request's body; ``raise_to`` grows them (False: the budget is busy)."""

    def __init__(self, budget: "BodyBudget", cost: int):
        self.budget, self.cost = budget, cost

    def raise_to(self, cost: int) -> bool:
        extra = cost - self.cost
        if extra <= 0:
            return True
        if not self.budget.reserve(extra):
            return False
        self.cost = cost
        return True

    def release(self) -> None:
        cost, self.cost = self.cost, 0
        self.budget.release(cost)


def charge_parse(scope, text: bytes, retry_after_s: int = 1) -> None:
    """Before parsing ``text`` (JSON read from this request): its ``parse_cost`` reserved, or
    ``ServiceError`` 413 (more than the whole budget: send binary data) or 503 (busy: retry)."""
    from .http_errors import ServiceError

    charge: Charge | None = scope.get(CHARGE_KEY)
    if charge is None:  # the app runs without the guard (tests of routes alone)
        return
    cost = parse_cost(text)
    if cost > charge.budget.limit:
        raise ServiceError(413, "body_too_large", f"parsing this JSON would take about {cost / 2**20:,.0f} MiB, "
                           f"over the service's --max-bodies-mb of {charge.budget.limit / 2**20:g} MiB: send fewer "
                           "values, or tensors as binary data (Inference-Header-Content-Length)")
    if not charge.raise_to(cost):
        raise ServiceError(503, "overloaded", "the service is parsing as many request bodies as its memory "
                           "allows: retry later (lpips-serve --max-bodies-mb)", {"Retry-After": str(retry_after_s)})


class BodyBudget:
    """Bytes of request bodies admitted and not yet finished, service-wide. Thread-safe; ``reserve``
    never waits: it admits or refuses at once."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.reserved = 0
        self._lock = threading.Lock()
        self._released_since_trim = 0

    def reserve(self, cost: int) -> bool:
        with self._lock:
            if cost and self.reserved + cost > self.limit:
                return False
            self.reserved += cost
            return True

    def release(self, cost: int) -> None:
        with self._lock:
            self.reserved -= cost
            self._released_since_trim += cost
            trim = self.reserved == 0 and self._released_since_trim >= _TRIM_AFTER
            if trim:
                self._released_since_trim = 0
        if trim:
            _trim_heap()


def _trim_heap() -> None:
    """Hand freed heap back to the system (glibc keeps it otherwise: an idle server would hold the
    peak of its last burst of large bodies)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim", None)
    except OSError:  # no C library by that name: nothing to trim
        return None
