"""lpips-serve on Ray Serve (``lpips_runtime.cluster.serve``): the application a ``serve run`` config
builds (with ``metrics: psnr,ssim``), deployed on the session's shared local Ray cluster inside a private
network namespace, reached by a real HTTP client through Ray Serve's proxy on 127.0.0.1: distances,
PSNR and SSIM equal the single-process Scorer's bit for bit, concurrent requests share model calls, bad
input gets a 4xx JSON error, and nothing outlives the cluster."""
from __future__ import annotations

import base64
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from conftest import crop, distort, photo
from ray_netns import (METRICS, models, models_for_namespace, ray_cluster,  # noqa: F401
                       test_ray_tests_in_private_network_namespace)

httpx = pytest.importorskip("httpx")
# The app itself is lpips-serve's (issue 12): until that lands here, there is nothing to deploy.
pytest.importorskip("lpips_runtime.serve.app", reason="needs lpips_runtime.serve (the lpips-serve app)")

pytestmark = pytest.mark.ray
H, W = 64, 80
MAX_BATCH = 8
MAX_PIXELS = 6_000  # the replicas' Scorer limit: the test pairs (80x64, 80x72) are under it
READY_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return data.tobytes()


def _files(a: bytes, b: bytes) -> dict:
    return {"img0": ("a.png", a, "image/png"), "img1": ("b.png", b, "image/png")}


def _metric(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name)


@pytest.fixture(scope="module")
def service(ray_cluster, models):
    """One replica of the application a config file would build (``application(args)``, answering PSNR
    and SSIM too), behind Ray Serve's proxy on a free 127.0.0.1 port of the shared cluster; yields the
    base URL once /readyz says the model is warm. Serve stops after the module (the cluster does not)."""
    from ray import serve

    from lpips_runtime.cluster.serve import application, deploy

    port = _free_port()
    app = application({"model": "alex", "models_dir": str(models), "auto_export": False, "metrics": ",".join(METRICS),
                       "max_batch": MAX_BATCH, "max_wait_ms": 50, "max_pairs": 4, "max_pixels": MAX_PIXELS,
                       "cpus_per_replica": 1})
    deploy(app, host="127.0.0.1", port=port)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline, last = time.monotonic() + READY_TIMEOUT_S, None
        while time.monotonic() < deadline:
            try:
                last = httpx.get(url + "/readyz", timeout=5)
                if last.status_code == 200:
                    break
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.5)
        else:
            pytest.fail(f"the Serve deployment was not ready after {READY_TIMEOUT_S} s: {last!r}")
        yield url
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def pairs():
    """Same-size distortions of a photograph, as PNG bytes."""
    base = crop(photo("chelsea"), H, W)
    kinds = ("blur", "noise", "jpeg", "colour")
    return [(_png(base), _png(distort(base, kinds[i % 4], 0.2 + i / 20, seed=i))) for i in range(16)]


@pytest.fixture(scope="module")
def scorer(models):
    from lpips_runtime import Scorer

    with Scorer("alex", models_dir=models, auto_export=False, metrics=METRICS) as s:  # the replicas' graph
        yield s


def test_readiness_names_the_model(service):
    body = httpx.get(service + "/readyz", timeout=10).json()
    # The model's label names the metrics its graph computes, as lpips-serve's does.
    assert body["status"] == "ready" and body["model"] == "LPIPS-alex v0.1 (+psnr+ssim)" and body["backend"] == "ort"


def test_concurrent_requests_are_batched_and_equal_the_scorer(service, pairs, scorer):
    expected = [np.float32(scorer.distance(a, b)) for a, b in pairs]
    with httpx.Client(base_url=service, timeout=60) as client:
        before = client.get("/metrics").text

        def post(pair):
            with httpx.Client(base_url=service, timeout=60) as c:
                r = c.post("/v1/distance", files=_files(*pair))
                assert r.status_code == 200, r.text
                return np.float32(r.json()["distance"])

        with ThreadPoolExecutor(len(pairs)) as pool:
            got = list(pool.map(post, pairs))
        after = client.get("/metrics").text
    assert got == expected  # float32 of the model, bit for bit
    # One replica answers /metrics too, so these are the model calls that served the requests above.
    calls = _metric(after, "lpips_batch_size_count") - _metric(before, "lpips_batch_size_count")
    pairs_run = _metric(after, "lpips_batch_size_sum") - _metric(before, "lpips_batch_size_sum")
    assert pairs_run == len(pairs) and calls < len(pairs), (calls, pairs_run)


def test_batch_route_scores_good_pairs_and_names_the_bad_one(service, pairs, scorer):
    (a, b), (c, d) = pairs[:2]
    files = [("img0", ("a.png", a)), ("img1", ("b.png", b)), ("img0", ("c.png", c)), ("img1", ("bad.png", b"nope"))]
    r = httpx.post(service + "/v1/distance/batch", files=files, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert np.float32(results[0]["distance"]) == np.float32(scorer.distance(a, b))
    assert results[1]["distance"] is None and results[1]["code"] == "bad_image" and "bad.png" in results[1]["error"]


def test_metrics_equal_the_scorer(service, pairs, scorer):
    """``metrics: psnr,ssim`` in the config (lpips-serve's --metrics): a pair's answer and each answer of
    a batch carry the distance, PSNR and SSIM of the single-process Scorer over the same graph, as
    float32 bit for bit."""
    expected = [{k: np.float32(v) for k, v in scorer.scores(a, b).items()} for a, b in pairs[:3]]
    assert set(expected[0]) == {"distance", *METRICS}
    with httpx.Client(base_url=service, timeout=60) as client:
        one = client.post("/v1/distance", files=_files(*pairs[0]))
        files = [(side, (f"{side}-{i}.png", data)) for i, pair in enumerate(pairs[:3])
                 for side, data in zip(("img0", "img1"), pair)]
        batch = client.post("/v1/distance/batch", files=files)
    assert one.status_code == 200 and batch.status_code == 200, (one.text, batch.text)
    answers = [one.json(), *batch.json()["results"]]
    for got, want in zip(answers, expected[:1] + expected):
        assert {name: np.float32(got[name]) for name in want} == want, got


@pytest.mark.parametrize("kind, status, code, words", [
    ("corrupt", 422, "bad_image", "img1 (b.png): corrupt or truncated image"),
    ("sizes", 422, "bad_image", f"size mismatch: img0 (a.png) is {W}x{H}, img1 (b.png) is {W}x{H + 8}"),
    ("media_type", 415, "unsupported_media_type", "unsupported media type 'text/plain'"),
    ("too_many_pairs", 413, "too_many_pairs", "5 pairs in one request, over the limit of 4"),
    ("too_many_pixels", 413, "image_too_large", f"img1 (b.png): {W}x{H + 32} is 7,680 pixels, above the limit of 6,000"),
])
def test_bad_input_gets_a_4xx_json_error(service, pairs, kind, status, code, words):
    a, b = pairs[0]
    with httpx.Client(base_url=service, timeout=60) as client:
        if kind == "corrupt":
            r = client.post("/v1/distance", files=_files(a, b[:100]))
        elif kind == "sizes":
            r = client.post("/v1/distance", files=_files(a, _png(crop(photo("coffee"), H + 8, W))))
        elif kind == "too_many_pixels":
            r = client.post("/v1/distance", files=_files(a, _png(crop(photo("coffee"), H + 32, W))))
        elif kind == "media_type":
            r = client.post("/v1/distance", content=b"img0=a", headers={"content-type": "text/plain"})
        else:  # max_pairs is 4 in this deployment
            pair = {"img0": base64.b64encode(a).decode(), "img1": base64.b64encode(b).decode()}
            r = client.post("/v1/distance/batch", json={"pairs": [pair] * 5})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "code"} and body["code"] == code
    assert words in body["error"] and "\n" not in body["error"], body["error"]


def test_config_arguments_are_checked():
    from lpips_runtime.cluster.serve import application
    from lpips_runtime.errors import LpipsError

    with pytest.raises(LpipsError, match="unknown lpips application argument.*: max_batchsize"):
        application({"model": "alex", "max_batchsize": 4})
    with pytest.raises(LpipsError, match="give the API key through the environment: api_key_env"):
        application({"model": "alex", "api_key": "written-in-a-file"})
    with pytest.raises(LpipsError, match="unknown metric 'psnr-y': choose from psnr, ssim"):  # before any Ray work
        application({"model": "alex", "metrics": ["psnr", "psnr-y"]})
