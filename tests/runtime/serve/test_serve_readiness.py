"""Readiness: until the model is loaded and warmed, /readyz and the scoring routes answer 503 while
/healthz answers 200. In process (the warm-up is held on a gate, which a real process cannot offer),
with httpx's ASGI transport and the app's own lifespan."""
from __future__ import annotations

import asyncio
import threading

import pytest

from conftest import distort, scene
from lpips_runtime import Scorer
from lpips_runtime.formatting import float32_json
from serve_helpers import pair_files, png, serve_model  # noqa: F401

httpx = pytest.importorskip("httpx")


class GatedScorer(Scorer):
    """A Scorer whose model calls wait for ``gate`` (the service's warm-up is one)."""

    gate = threading.Event()

    def run_prepared(self, parts0, parts1, **options):
        self.gate.wait(60)
        return super().run_prepared(parts0, parts1, **options)


def test_not_ready_until_warm(serve_model):
    from lpips_runtime.serve.app import create_app
    from lpips_runtime.serve.settings import ServeSettings

    ref = scene(64, 64)
    files = pair_files(png(ref), png(distort(ref, "blur", 0.5)))
    scorer = GatedScorer(serve_model)
    expected = float32_json(Scorer(serve_model).distance(ref, distort(ref, "blur", 0.5)))
    app = create_app(scorer, ServeSettings(heatmap=False))

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lpips") as client:
                r = await client.get("/readyz")
                assert (r.status_code, r.json()["status"]) == (503, "loading")
                r = await client.post("/v1/distance", files=files)
                assert (r.status_code, r.json()["code"], r.headers["retry-after"]) == (503, "not_ready", "1")
                assert (await client.get("/healthz")).status_code == 200
                GatedScorer.gate.set()
                for _ in range(600):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                r = await client.post("/v1/distance", files=files)
                assert r.status_code == 200 and r.json()["distance"] == expected

    asyncio.run(main())
