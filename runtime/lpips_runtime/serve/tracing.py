"""Request ids and tracing: an ``X-Request-ID`` for every request (the client's when it sends a sane one,
else a new one) in the response and in every log line written while it is handled; W3C ``traceparent``
honoured and OpenTelemetry spans (one server span per request, ``lpips.decode``, ``lpips.infer`` and
``lpips.encode`` inside it) when the ``otel`` extra (``opentelemetry-api``) is installed. The server span
is FastAPI's own where FastAPI makes one (its built-in telemetry, 0.130 and later), else this module's.
Without OpenTelemetry the spans cost nothing. Exporting spans is the deployer's choice: set a tracer provider (e.g. with
``opentelemetry-instrument`` or ``OTEL_*`` variables and the SDK); without one the API records nothing.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import time
import uuid

try:  # the otel extra
    from opentelemetry import trace as _trace
    from opentelemetry.propagate import extract as _extract
except ImportError:  # pragma: no cover - exercised by installs without the extra
    _trace = _extract = None

REQUEST_ID_HEADER = "x-request-id"
# A client's id is kept when it is short and plain (it reaches logs and headers): else a new one.
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("lpips_request_id", default="-")


def tracing_available() -> bool:
    return _trace is not None


def _tracer():
    return _trace.get_tracer("lpips_runtime.serve") if _trace is not None else None


@contextlib.contextmanager
def span(name: str, **attributes):
    """A child span of the current one (``lpips.<stage>``, attributes prefixed ``lpips.``); nothing
    without OpenTelemetry."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes={f"lpips.{k}": v for k, v in attributes.items()}) as s:
        yield s


class RequestContext:
    """ASGI middleware (outermost): sets the request id, answers with it in ``X-Request-ID``, and runs the
    request inside a server span whose parent is the caller's ``traceparent`` (when tracing is on)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                   (b"x-request-id", rid.encode("latin-1"))]}
            await send(message)

        try:
            tracer = _tracer()
            if tracer is None:
                await self.app(scope, receive, send_with_id)
                return
            current = _trace.get_current_span()
            if current.get_span_context().is_valid:  # FastAPI's own telemetry (0.130+) or an ASGI
                # instrumentation already runs this request in a server span parented by traceparent
                current.set_attribute("lpips.request_id", rid)
                await self.app(scope, receive, send_with_id)
                return
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            with tracer.start_as_current_span(f"{scope['method']} {scope['path']}", context=_extract(carrier),
                                              kind=_trace.SpanKind.SERVER,
                                              attributes={"http.request.method": scope["method"],
                                                          "url.path": scope["path"], "lpips.request_id": rid}) as s:
                status = None

                async def send_noted(message):
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send_with_id(message)

                await self.app(scope, receive, send_noted)
                route = getattr(scope.get("route"), "path", None)
                if route:  # the low-cardinality name, as OpenTelemetry's HTTP conventions ask
                    s.update_name(f"{scope['method']} {route}")
                if status is not None:
                    s.set_attribute("http.response.status_code", status)
        finally:
            request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request) to every record it sees."""

    def filter(self, record):
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, and the
    trace and span ids when a span is current."""

    def format(self, record):
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
               "request_id": getattr(record, "request_id", request_id.get())}
        if _trace is not None:
            context = _trace.get_current_span().get_span_context()
            if context.is_valid:
                doc["trace_id"], doc["span_id"] = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)
