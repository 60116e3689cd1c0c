"""The service's limits and switches, with their defaults (one place: the CLI's options and the README
table read them from here)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LpipsError
from .admission import JSON_COST

# lpips-serve's default of the Scorer's pixel limit (--max-pixels; the library's is 100 Mpx): an image
# header may declare at most about 50 megapixels (an 8192x6144 photograph), 1.2 GB of float32 for a pair.
SERVE_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class ServeSettings:
    """What one ``lpips-serve`` process accepts and how it batches.

    Batching: same-shape pairs that arrive within ``max_wait_ms`` of the first one waiting share one
    model call of at most ``max_batch`` pairs; a pair waits only while other requests are still being
    read or decoded (a lone request never waits for company that cannot come).

    Bounds: a request body over ``max_body_mb`` MiB, or a batch request of more than ``max_pairs`` pairs
    gets 413 (an image whose header declares more than the Scorer's ``max_pixels`` too); bodies whose
    memory (``admission.body_cost``: JSON 3x its size) would pass ``max_bodies_mb`` service-wide get 503
    before they are read; more than
    ``max_queue`` pairs admitted and not yet handed to the model (being read, decoded or waiting), or
    decoded pairs waiting with more than ``max_queue_mpx`` megapixels between them, get 503 with
    ``Retry-After``; a request still unanswered after ``timeout_s`` gets 504 (its upload included: the
    body-read timeout).

    Front door (``frontdoor.py``): at most ``max_connections`` connections (the one idle longest makes
    room for a new one); a request head not complete ``header_timeout_s`` after the connection opened
    (or after its first byte) gets 408, one over ``max_head_bytes`` or ``max_headers`` fields 431, both
    closing the connection; a kept-alive connection idle for ``keep_alive_s`` is closed.
    """

    max_batch: int = 16
    max_wait_ms: float = 2.0
    max_queue: int = 256
    max_queue_mpx: float = 64.0
    max_body_mb: float = 64.0
    max_bodies_mb: float = 512.0
    max_pairs: int = 64
    timeout_s: float = 30.0
    api_key: str | None = None
    metrics_need_key: bool = False
    heatmap: bool = True
    decode_workers: int | None = None  # default: the Scorer's workers
    warmup_size: tuple[int, int] = (256, 256)  # (height, width) of the warm-up pair
    retry_after_s: int = 1
    # the front door (serve/frontdoor.py): connections and request heads
    max_connections: int = 1024
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_head_bytes: int = 32 * 1024
    max_headers: int = 100

    def __post_init__(self):
        positive = {"max_batch": self.max_batch, "max_queue": self.max_queue, "max_queue_mpx": self.max_queue_mpx,
                    "max_body_mb": self.max_body_mb, "max_bodies_mb": self.max_bodies_mb, "max_pairs": self.max_pairs,
                    "timeout_s": self.timeout_s, "retry_after_s": self.retry_after_s,
                    "max_connections": self.max_connections, "header_timeout_s": self.header_timeout_s,
                    "keep_alive_s": self.keep_alive_s, "max_head_bytes": self.max_head_bytes,
                    "max_headers": self.max_headers}
        for name, value in positive.items():
            if not value > 0:
                raise LpipsError(f"{name} must be > 0, got {value}")
        if self.max_queue < 2:  # a heatmap request holds two pairs (distance and map)
            raise LpipsError(f"max_queue must be >= 2, got {self.max_queue}")
        if self.max_wait_ms < 0:
            raise LpipsError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_bodies_bytes < JSON_COST * self.max_body_bytes:
            raise LpipsError(f"max_bodies_mb ({self.max_bodies_mb:g}) must be at least {JSON_COST} x max_body_mb "
                             f"({JSON_COST * self.max_body_mb:g}): a JSON body costs {JSON_COST} times its size "
                             "while it is parsed (lpips-serve --max-bodies-mb, --max-body-mb)")
        if self.api_key is not None and not self.api_key.strip():
            raise LpipsError("the API key is empty: give a non-empty key or none")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_bodies_bytes(self) -> int:
        return int(self.max_bodies_mb * 1024 * 1024)

    @property
    def max_queue_pixels(self) -> int:
        return int(self.max_queue_mpx * 1_000_000)
