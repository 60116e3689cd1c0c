"""lpips-serve's bounds as a real process: a full queue answers 503 with Retry-After while admitted
requests still succeed, a request over --timeout-s gets 504, a client that disconnects costs no model
call, the API key guards the scoring routes (and /metrics when asked), and the Scorer's own pixel limit
and tiles hold behind the routes."""
from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import distort, scene
from lpips_runtime import Scorer
from lpips_runtime.formatting import float32_json
from serve_helpers import (StalledUpload, metric_samples, multipart, pair_files, png, serve_model,  # noqa: F401
                           start_server)

MAX_QUEUE = 3
TIMEOUT_S = 3

ALEX = (("model", "lpips-alex"), ("version", "0.1"))  # the labels of the served model's metrics


@pytest.fixture(scope="module")
def tight(start_server):
    """A small queue, and a long wait for company: a pair waits while another request is still uploading."""
    return start_server("--max-queue", str(MAX_QUEUE), "--max-batch", "4", "--max-wait-ms", "2000",
                        "--timeout-s", str(TIMEOUT_S))


@pytest.fixture(scope="module")
def scorer(serve_model):
    with Scorer(serve_model) as s:
        yield s


def _pair(i: int = 0) -> tuple[bytes, bytes]:
    ref = scene(96, 128, i)
    return png(ref), png(distort(ref, "blur", 0.6, seed=i))


def _stalled(server, i: int = 0) -> StalledUpload:
    body, content_type = multipart(dict(zip(("img0", "img1"), ((f"a{i}.png", p) for p in _pair(i)))))
    return StalledUpload(server, "/v1/distance", body, content_type, part=len(body) // 2)


def _samples(server) -> dict:
    with server.client() as c:
        return metric_samples(c.get("/metrics").text)


def _wait_for_depth(server, depth: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _samples(server)[("lpips_queue_depth", ALEX)] != depth:
        assert time.monotonic() < deadline, f"queue depth never reached {depth}"
        time.sleep(0.05)


def test_full_queue_answers_503_and_admitted_requests_still_succeed(tight, scorer):
    stalled = [_stalled(tight, i) for i in range(MAX_QUEUE)]  # admitted, their bodies half sent
    try:
        _wait_for_depth(tight, MAX_QUEUE)
        with tight.client() as c:
            r = c.post("/v1/distance", files=pair_files(*_pair(9)))
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json() == {"error": f"the queue is full ({MAX_QUEUE} of {MAX_QUEUE} pairs): retry later",
                            "code": "overloaded"}
        for upload in stalled:
            upload.send_rest()
        for i, upload in enumerate(stalled):
            status, body = upload.response()
            assert status == 200 and json.loads(body)["distance"] == float32_json(scorer.distance(*_pair(i)))
    finally:
        for upload in stalled:
            upload.close()


def test_overload_sheds_with_503_while_accepted_requests_are_right(tight, scorer):
    pairs = [_pair(i % 4) for i in range(24)]
    expected = [float32_json(scorer.distance(*p)) for p in pairs]

    def post(pair):
        with tight.client() as c:
            r = c.post("/v1/distance", files=pair_files(*pair))
            return r.status_code, r.headers.get("retry-after"), r.json()

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(post, pairs))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {200, 503}, statuses
    for (status, retry_after, body), value in zip(answers, expected):
        if status == 200:
            assert body["distance"] == value
        else:
            assert retry_after == "1" and body["code"] == "overloaded"


def test_request_over_the_time_limit_gets_504(tight):
    upload = _stalled(tight)  # never finished
    try:
        started = time.monotonic()
        status, body = upload.response()
        assert status == 504 and b'"code": "timeout"' in body
        assert TIMEOUT_S - 0.5 <= time.monotonic() - started <= TIMEOUT_S + 5
    finally:
        upload.close()
    _wait_for_depth(tight, 0)  # its reserved room is given back


def test_client_that_disconnects_costs_no_model_call(tight, scorer):
    before = _samples(tight)
    first = _stalled(tight, 1)  # still uploading: the next pair waits for its company
    gone = _stalled(tight, 2)
    try:
        gone.send_rest()  # complete: decoded, then waiting in the queue for company
        time.sleep(0.5)
        gone.close()  # the client leaves before its answer
        time.sleep(0.3)
        status, body = first.finish()
        assert status == 200
    finally:
        first.close()
    after = _samples(tight)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("lpips_batch_size_sum", **dict(ALEX)) == 1  # only the pair whose client stayed was run
    assert delta("lpips_requests_total", route="/v1/distance", status="499") == 1
    assert delta("lpips_requests_total", route="/v1/distance", status="200") == 1


@pytest.fixture(scope="module")
def keyed(start_server):
    return start_server("--protect-metrics", env={"LPIPS_SERVE_API_KEY": "s3cret-key"})


@pytest.mark.parametrize("header, status", [(None, 401), ("Bearer wrong-key", 401), ("Basic s3cret-key", 401),
                                            ("Bearer s3cret-key", 200), ("bearer s3cret-key", 200)])
def test_api_key(keyed, header, status):
    headers = {"Authorization": header} if header else {}
    with keyed.client(headers=headers) as c:
        r = c.post("/v1/distance", files=pair_files(*_pair()))
        assert r.status_code == status
        if status == 401:
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json() == {"error": "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                                "code": "unauthorized"}
        assert c.get("/metrics").status_code == status  # --protect-metrics
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # probes stay open


def test_api_key_is_in_the_openapi_description(keyed):
    with keyed.client() as c:
        spec = c.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/distance"]["post"]["security"] == [{"HTTPBearer": []}]


def test_pixel_limit_and_tiles_are_the_scorers(start_server, serve_model):
    """--max-pixels, --tile and --max-memory are the Scorer's own: a real image over the pixel limit gets
    413, and pairs that call for tiles (tile side 32 here) are scored in tiles, alone and batched, with
    the Scorer's values (distances as float32, maps bit for bit)."""
    with Scorer(serve_model, tile=32) as tiled:
        assert tiled.tile_plan(64, 80).count == 6
        refs = [scene(64, 80, i) for i in range(3)]
        pairs = [(r, distort(r, "blur", 0.6, seed=i)) for i, r in enumerate(refs)]
        expected = [float32_json(np.float32(tiled.distance(a, b))) for a, b in pairs]
        expected_map = tiled.distance_map(*pairs[0])
        # the tiled map differs from the one-piece map in its last bits: the answer shows which was served
        assert not np.array_equal(expected_map, Scorer(serve_model, tile="off").distance_map(*pairs[0]))
    server = start_server("--tile", "32", "--max-pixels", "10000", "--max-batch", "4")
    with server.client() as c:
        r = c.post("/v1/distance", files=pair_files(png(pairs[0][0]), png(pairs[0][1])))
        assert r.status_code == 200 and r.json()["distance"] == expected[0]
        doc = {"pairs": [{"img0": base64.b64encode(png(a)).decode(), "img1": base64.b64encode(png(b)).decode()}
                         for a, b in pairs]}
        r = c.post("/v1/distance/batch", json=doc)
        assert [row["distance"] for row in r.json()["results"]] == expected
        r = c.post("/v1/heatmap", files=pair_files(png(pairs[0][0]), png(pairs[0][1])),
                   headers={"accept": "application/octet-stream"})
        assert np.array_equal(np.frombuffer(r.content, "<f4").reshape(64, 80), expected_map)
        big = png(scene(96, 128))  # 12,288 pixels, over the 10,000 of this server
        r = c.post("/v1/distance", files=pair_files(big, big, names=("a.png", "big.png")))
        assert (r.status_code, r.json()) == (413, {"code": "image_too_large", "error": (
            "img0 (a.png): 128x96 is 12,288 pixels, above the limit of 10,000 "
            "(raise it with --max-pixels / max_pixels=, or shrink the image)")})
