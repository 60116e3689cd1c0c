"""Tracing and request ids: a caller's W3C ``traceparent`` becomes the parent of lpips-serve's server span,
with decode and infer spans inside it (read with the OpenTelemetry SDK's in-memory exporter, in process:
a real process's spans cannot be read back), and JSON log lines carry the request and trace ids."""
from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest

from conftest import distort, scene
from lpips_runtime import Scorer
from serve_helpers import png, serve_model  # noqa: F401

httpx = pytest.importorskip("httpx")
pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def exporter():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)  # once per process; the API's proxy tracers follow it
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another test set the process's tracer provider first")
    return memory


def test_traceparent_is_the_parent_of_server_decode_and_infer_spans(serve_model, exporter):
    from lpips_runtime.serve.app import create_app
    from lpips_runtime.serve.settings import ServeSettings

    ref = scene(64, 64)
    body = {"inputs": [{"name": "img0", "datatype": "BYTES", "shape": [1], "data": [_b64(png(ref))]},
                       {"name": "img1", "datatype": "BYTES", "shape": [1],
                        "data": [_b64(png(distort(ref, "blur", 0.5)))]}]}
    app = create_app(Scorer(serve_model), ServeSettings(heatmap=False))

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lpips") as client:
                for _ in range(600):
                    if (await client.get("/v2/health/ready")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                exporter.clear()
                return await client.post("/v2/models/lpips-alex/infer", json=body, headers={
                    "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "X-Request-ID": "trace-test-1"})

    r = asyncio.run(main())
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "trace-test-1"
    finished = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    server = next(s for s in finished if s.kind == trace.SpanKind.SERVER)
    assert f"{server.context.trace_id:032x}" == TRACE_ID and f"{server.parent.span_id:016x}" == PARENT_ID
    assert [s.name for s in finished if s.kind == trace.SpanKind.SERVER] == [server.name]  # one server span

    def ancestors(span):
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            yield span

    for stage in ("lpips.decode", "lpips.infer", "lpips.encode"):
        inner = next(s for s in finished if s.name == stage)
        assert inner.context.trace_id == server.context.trace_id and server in ancestors(inner)
        assert inner.attributes["lpips.model"] == "lpips-alex"
    assert any(s.attributes.get("lpips.request_id") == "trace-test-1" for s in [server, *finished])


def test_json_log_lines_carry_request_and_trace_ids(exporter):
    from lpips_runtime.serve.tracing import JsonFormatter, request_id

    record = logging.LogRecord("lpips_runtime.serve", logging.WARNING, __file__, 1, "queue %s", ("full",), None)
    token = request_id.set("rid-9")
    try:
        with trace.get_tracer("test").start_as_current_span("outer") as span:
            doc = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert doc["message"] == "queue full" and doc["level"] == "warning" and doc["request_id"] == "rid-9"
    assert doc["trace_id"] == f"{span.get_span_context().trace_id:032x}" and doc["time"].endswith("Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()



@pytest.mark.parametrize("json_logs", [False, True])
def test_access_log_lines_carry_the_request_id(capsys, json_logs):
    """lpips-serve's uvicorn logging set-up (the one the CLI passes to uvicorn), text and JSON."""
    import logging.config

    from lpips_runtime.serve.cli import _uvicorn_logging
    from lpips_runtime.serve.tracing import request_id

    logging.config.dictConfig(_uvicorn_logging("info", json_logs))
    token = request_id.set("rid-3")
    try:
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/x", "1.1", 200)
    finally:
        request_id.reset(token)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    if json_logs:
        doc = json.loads(line)
        assert doc["request_id"] == "rid-3" and doc["logger"] == "uvicorn.access" and '"GET /x' in doc["message"]
    else:
        assert line.endswith("request_id=rid-3") and '"GET /x HTTP/1.1" 200' in line


def test_request_context_makes_the_server_span_where_no_framework_does(exporter):
    """Installs whose FastAPI has no telemetry of its own: ``RequestContext`` starts the server span from the
    caller's traceparent (here around a bare ASGI app) and names it by the matched route when there is one."""
    from lpips_runtime.serve.tracing import RequestContext

    async def bare(scope, receive, send):
        with trace.get_tracer("test").start_as_current_span("inner"):
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def main():
        transport = httpx.ASGITransport(app=RequestContext(bare))
        async with httpx.AsyncClient(transport=transport, base_url="http://lpips") as client:
            return await client.get("/v2/health/live", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})

    exporter.clear()
    r = asyncio.run(main())
    assert r.status_code == 204 and len(r.headers["x-request-id"]) == 32
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server, inner = spans["GET /v2/health/live"], spans["inner"]
    assert server.kind == trace.SpanKind.SERVER and f"{server.parent.span_id:016x}" == PARENT_ID
    assert f"{server.context.trace_id:032x}" == TRACE_ID and inner.parent.span_id == server.context.span_id
    assert server.attributes["http.response.status_code"] == 204
