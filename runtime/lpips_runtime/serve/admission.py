"""Body admission: the memory a request body will cost is reserved against a service-wide budget
before a byte of it is read, so that concurrent uploads cannot add up past ``--max-bodies-mb``.

A body costs more than its size while it is parsed. Measured on CPython 3.11 with Starlette's parsers:

* JSON (``application/json``): the body (its chunks joined: twice, briefly), the parsed base64 strings
  and the decoded bytes: about ``JSON_COST`` times its size at the peak;
* multipart: parts past 1 MiB are spooled to temporary files; each image part is then read into memory
  once: about its size (``MULTIPART_COST``).

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
