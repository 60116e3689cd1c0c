"""Prometheus metrics of one service instance, in its own registry (two apps in one process, as in
tests, never share counters), and the ASGI middleware that counts requests."""
from __future__ import annotations

import time

from ..optional import require

# Without the [serve] extra: one MissingExtraError naming it, not a bare ModuleNotFoundError.
require("prometheus_client", "serve", "lpips-serve")

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

# Status recorded for a request whose client went away before it was answered (nginx's convention).
CLIENT_CLOSED = 499
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """The service's metrics (names all start with ``lpips_``)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model_labels: dict[str, str]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("lpips_requests", "HTTP requests answered, by route and status code.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("lpips_request_duration_seconds", "Time from request start to its answer, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("lpips_requests_in_flight", "HTTP requests being handled now.", registry=r)
        self.queue_depth = Gauge("lpips_queue_depth", "Pairs admitted and not yet handed to the model "
                                 "(being read, decoded or waiting for a batch).", registry=r)
        self.batch_size = Histogram("lpips_batch_size", "Pairs per model call.", buckets=BATCH_BUCKETS, registry=r)
        self.batch_latency = Histogram("lpips_batch_duration_seconds", "Time of one model call.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.pairs = Counter("lpips_pairs", "Pairs answered, by outcome (scored or failed).", ["outcome"], registry=r)
        self.ready = Gauge("lpips_ready", "1 once the model is loaded and warmed, 0 before and while draining.",
                           registry=r)
        self.model = Info("lpips_model", "The model this instance serves.", registry=r)
        self.model.info(model_labels)

    def record_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_latency.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every request by route (its path when it is one of ``routes``, else "other", to bound the
    label's values) and final status, with its latency and the in-flight gauge."""

    def __init__(self, app, metrics: ServiceMetrics, routes: set[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = None

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.in_flight.dec()
            if status is None:
                status = CLIENT_CLOSED if scope.get("lpips.client_gone") else 500
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
