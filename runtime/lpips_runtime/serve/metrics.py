"""Prometheus metrics of one service instance, in its own registry (two apps in one process, as in
tests, never share counters), and the ASGI middleware that counts requests.

Request metrics are labelled by route template (``/v2/models/{name}/infer``, never the raw path, so
label values stay bounded); model metrics by ``model`` and ``version`` (the protocol's names, e.g.
``lpips-alex`` / ``0.1``). The process collector adds ``process_*`` (CPU seconds, resident memory, open
file descriptors, start time) on Linux, and the platform collector ``python_info``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..optional import require

# Without the [serve] extra: one MissingExtraError naming it, not a bare ModuleNotFoundError.
require("prometheus_client", "serve", "lpips-serve")

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info,
                               PlatformCollector, ProcessCollector, generate_latest)

# Status recorded for a request whose client went away before it was answered (nginx's convention).
CLIENT_CLOSED = 499
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# Queue waits and decodes are often well under a model call: finer at the bottom.
STAGE_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
MODEL_LABELS = ("model", "version")


@dataclass
class ModelMetrics:
    """The metrics of one served model: children of the service's families with its labels set."""

    queue_depth: object
    queue_wait: object
    decode: object
    batch_size: object
    batch_latency: object
    ready: object
    pairs: object  # .labels(outcome=...) -> counter

    def record_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_latency.observe(seconds)


class _PairsOfModel:
    def __init__(self, family, labels: dict):
        self.family, self.labels_of_model = family, labels

    def labels(self, outcome: str):
        return self.family.labels(outcome=outcome, **self.labels_of_model)


class ServiceMetrics:
    """The service's metrics (names all start with ``lpips_``, plus ``process_*`` and ``python_info``)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, process: bool = True):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.requests = Counter("lpips_requests", "HTTP requests answered, by route and status code.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("lpips_request_duration_seconds", "Time from request start to its answer, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("lpips_requests_in_flight", "HTTP requests being handled now.", registry=r)
        m = list(MODEL_LABELS)
        self.queue_depth = Gauge("lpips_queue_depth", "Pairs admitted and not yet handed to the model "
                                 "(being read, decoded or waiting for a batch).", m, registry=r)
        self.queue_wait = Histogram("lpips_queue_wait_seconds", "Time a decoded pair waited for its model call.",
                                    m, buckets=STAGE_BUCKETS, registry=r)
        self.decode = Histogram("lpips_decode_seconds", "Time to decode and check one pair (in the decode pool, "
                                "queueing for a thread included).", m, buckets=STAGE_BUCKETS, registry=r)
        self.batch_size = Histogram("lpips_batch_size", "Pairs per model call.", m, buckets=BATCH_BUCKETS, registry=r)
        self.batch_latency = Histogram("lpips_batch_duration_seconds", "Time of one model call.", m,
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.pairs = Counter("lpips_pairs", "Pairs answered, by outcome (scored or failed).", [*m, "outcome"],
                             registry=r)
        self.ready = Gauge("lpips_ready", "1 once the model is loaded and warmed, 0 before and while draining.",
                           m, registry=r)
        self.model = Info("lpips_model", "What each served model is.", m, registry=r)

    def for_model(self, name: str, version: str, info: dict[str, str]) -> ModelMetrics:
        labels = {"model": name, "version": version}
        self.model.labels(**labels).info(info)
        return ModelMetrics(
            queue_depth=self.queue_depth.labels(**labels), queue_wait=self.queue_wait.labels(**labels),
            decode=self.decode.labels(**labels), batch_size=self.batch_size.labels(**labels),
            batch_latency=self.batch_latency.labels(**labels), ready=self.ready.labels(**labels),
            pairs=_PairsOfModel(self.pairs, labels))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every request by route (the template of the route it matched, else "other", to bound the
    label's values; a request answered before routing, e.g. 413 on its Content-Length, counts under its
    path when that is one of the fixed ``routes``) and final status, with its latency and the in-flight gauge."""

    def __init__(self, app, metrics: ServiceMetrics, routes: set[str] = frozenset()):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            matched = scope.get("route")  # set by the router on the shared scope once a route matched
            route = getattr(matched, "path", None) or (scope["path"] if scope["path"] in self.routes else "other")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
