"""lpips-serve as a real process with a real client: values bit for bit equal to the Scorer (alone and
batched across concurrent requests), the batch and heatmap routes, every bad-input class, metrics,
and the OpenAPI description."""
from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import distort, scene
from lpips_runtime import Scorer
from lpips_runtime.formatting import float32_json
from serve_helpers import metric_samples, pair_files, png, serve_model, start_server  # noqa: F401 (fixtures)

MAX_BODY_MB = 1
ALEX = (("model", "lpips-alex"), ("version", "0.1"))  # the labels of the served model's metrics
MAX_PAIRS = 8


@pytest.fixture(scope="module")
def server(start_server):
    return start_server("--max-body-mb", str(MAX_BODY_MB), "--max-pairs", str(MAX_PAIRS), "--max-batch", "8")


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def scorer(serve_model):
    with Scorer(serve_model) as s:
        yield s


def _same_size_pairs(n: int, h: int = 96, w: int = 128) -> list[tuple[bytes, bytes]]:
    kinds = ("blur", "jpeg", "noise", "colour")
    return [(png(scene(h, w, i)), png(distort(scene(h, w, i), kinds[i % 4], 0.7, seed=i))) for i in range(n)]


def test_distance_equals_scorer_bit_for_bit_on_files(client, scorer, photo_pair_files):
    for p0, p1 in photo_pair_files:  # PNG, BMP and JPEG files of odd sizes
        r = client.post("/v1/distance", files={"img0": (p0.name, p0.read_bytes()), "img1": (p1.name, p1.read_bytes())})
        assert r.status_code == 200, r.text
        body = r.json()
        direct = scorer.distance(p0, p1)
        # The float32 of the model, bit for bit, written as lpips-score --json writes it.
        assert np.float32(body["distance"]) == np.float32(direct) and body["distance"] == float32_json(direct)
        assert body["model"] == "LPIPS-alex v0.1" and body["precision"] == "fp32" and body["elapsed_ms"] > 0


def test_concurrent_requests_are_batched_and_stay_bit_for_bit(server, client, scorer):
    pairs = _same_size_pairs(16)
    expected = [float32_json(scorer.distance(a, b)) for a, b in pairs]
    before = metric_samples(client.get("/metrics").text)

    def post(pair):
        with server.client() as c:
            return c.post("/v1/distance", files=pair_files(*pair)).json()["distance"]

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(post, pairs))
    assert got == expected
    after = metric_samples(client.get("/metrics").text)
    batches = after[("lpips_batch_size_count", ALEX)] - before[("lpips_batch_size_count", ALEX)]
    pairs_run = after[("lpips_batch_size_sum", ALEX)] - before[("lpips_batch_size_sum", ALEX)]
    assert pairs_run == 16 and batches < 16  # some calls carried several requests' pairs


def test_batch_route_multipart_and_json(client, scorer):
    pairs = _same_size_pairs(3)
    expected = [float32_json(scorer.distance(a, b)) for a, b in pairs]
    files = [(field, (f"{field}-{i}.png", data))
             for i, pair in enumerate(pairs) for field, data in zip(("img0", "img1"), pair)]
    files[3] = ("img1", ("broken.png", b"not an image"))  # pair 1 fails, the others are scored
    body = client.post("/v1/distance/batch", files=files).json()
    assert [r["distance"] for r in body["results"]] == [expected[0], None, expected[2]]
    assert body["results"][1] == {"index": 1, "distance": None, "code": "bad_image",
                                  "error": "img1[1] (broken.png): not an image format OpenCV can read"}
    assert body["failures"] == 1

    doc = {"pairs": [{"img0": base64.b64encode(a).decode(), "img1": base64.b64encode(b).decode()} for a, b in pairs]}
    doc["pairs"].append({"img0": "not base64!", "img1": "AAAA"})
    body = client.post("/v1/distance/batch", json=doc).json()
    assert [r["distance"] for r in body["results"]] == [*expected, None]
    assert body["results"][3]["code"] == "bad_request" and body["failures"] == 1


@pytest.mark.parametrize("request_kind, status, code, message", [
    ("missing_part", 400, "bad_request", "missing image part 'img1': send one file img0 and one file img1 "
                                         "(curl -F img0=@a.png -F img1=@b.png)"),
    ("text_field", 400, "bad_request", "part 'img1' is a text field: send it as a file "
                                       "(curl -F img0=@a.png -F img1=@b.png)"),
    ("undecodable", 422, "bad_image", "img1 (b.png): not an image format OpenCV can read"),
    ("truncated", 422, "bad_image", "img1 (b.png): corrupt or truncated image"),
    ("empty", 422, "bad_image", "img1 (b.png): empty file"),
    ("size_mismatch", 422, "bad_image", "size mismatch: img0 (a.png) is 128x96, img1 (b.png) is 120x96 "
                                        "(LPIPS compares same-size images; see --resize)"),
    ("too_small", 422, "bad_image", "image is 20x20 but LPIPS-alex needs at least 31x31 "
                                    "(use --resize or a larger crop)"),
    ("json_body", 415, "unsupported_media_type", "unsupported media type 'application/json': send "
                                                 "multipart/form-data (curl -F img0=@a.png -F img1=@b.png)"),
    ("text_part", 415, "unsupported_media_type", "img1 (b.txt): unsupported media type 'text/plain': "
                                                 "send an image file"),
    ("body_too_large", 413, "body_too_large", f"request body over the limit of {MAX_BODY_MB} MiB "
                                              "(lpips-serve --max-body-mb)"),
])
def test_bad_input_gets_one_json_error(client, request_kind, status, code, message):
    ref = png(scene(96, 128))
    kwargs = {
        "missing_part": {"files": {"img0": ("a.png", ref)}},
        "text_field": {"files": {"img0": ("a.png", ref)}, "data": {"img1": "hello"}},
        "undecodable": {"files": pair_files(ref, b"GIF? no, plain text")},
        "truncated": {"files": pair_files(ref, ref[: len(ref) // 2])},
        "empty": {"files": pair_files(ref, b"")},
        "size_mismatch": {"files": pair_files(ref, png(scene(96, 120)))},
        "too_small": {"files": pair_files(png(scene(20, 20)), png(scene(20, 20)))},
        "json_body": {"json": {"img0": "x", "img1": "y"}},
        "text_part": {"files": {"img0": ("a.png", ref, "image/png"), "img1": ("b.txt", ref, "text/plain")}},
        "body_too_large": {"files": pair_files(ref, np.random.default_rng(0).bytes(MAX_BODY_MB * 2**20))},
    }[request_kind]
    r = client.post("/v1/distance", **kwargs)
    assert (r.status_code, r.json()) == (status, {"error": message, "code": code})


def _png_declaring(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header declares width x height (8-bit RGB) over a few bytes of pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (20_000, 20_000)])
def test_decompression_bomb_is_refused_from_its_header(client, width, height):
    """413 before decoding: 100000x100000 is past OpenCV's own limit too, 20000x20000 is not (OpenCV would
    allocate 1.2 GB for it)."""
    bomb = _png_declaring(width, height)
    assert len(bomb) < 100
    r = client.post("/v1/distance", files=pair_files(png(scene(96, 128)), bomb, names=("a.png", "bomb.png")))
    # The runtime's own check (Scorer.load_pair -> ImageTooLargeError), at lpips-serve's default limit
    assert (r.status_code, r.json()) == (413, {"code": "image_too_large", "error": (
        f"img1 (bomb.png): {width}x{height} is {width * height:,} pixels, above the limit of 50,000,000 "
        "(raise it with --max-pixels / max_pixels=, or shrink the image)")})


def test_body_limit_holds_while_reading_a_chunked_body(client):
    """No Content-Length: the limit is enforced on the bytes read so far, not after buffering them all."""
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="img0"; filename="a.png"\r\n\r\n'
        for _ in range(8 * MAX_BODY_MB):  # 8x the limit, if the server read it all
            yield bytes(256 * 1024)

    r = client.post("/v1/distance", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


def test_too_many_pairs_and_malformed_batches(client):
    pair = _same_size_pairs(1)[0]
    doc = {"pairs": [{"img0": base64.b64encode(pair[0]).decode(), "img1": base64.b64encode(pair[1]).decode()}]}
    r = client.post("/v1/distance/batch", json={"pairs": doc["pairs"] * (MAX_PAIRS + 1)})
    assert r.status_code == 413 and r.json()["code"] == "too_many_pairs"
    r = client.post("/v1/distance/batch", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"].startswith("body is not JSON")
    r = client.post("/v1/distance/batch", json={"pairs": []})
    assert (r.status_code, r.json()["error"]) == (400, "no pairs in the request")
    r = client.post("/v1/distance/batch", files=[("img0", ("a.png", pair[0]))])
    assert r.status_code == 400 and r.json()["error"].startswith("1 img0 parts but 0 img1 parts")
    r = client.post("/v1/distance/batch", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415


def test_heatmap_is_the_cli_picture_and_the_raw_map_is_the_scorer_map(client, scorer, serve_model, tmp_path):
    from lpips_runtime.commands.score import main as score_cli

    ref, dist = scene(96, 128, 1), distort(scene(96, 128, 1), "jpeg", 0.7)
    files = pair_files(png(ref), png(dist))
    (tmp_path / "a.png").write_bytes(png(ref))
    (tmp_path / "b.png").write_bytes(png(dist))
    cli = CliRunner().invoke(score_cli, [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(serve_model),
                                         "--heatmap", str(tmp_path / "cli.png"), "--colormap", "turbo"])
    assert cli.exit_code == 0, cli.output

    r = client.post("/v1/heatmap?colormap=turbo", files=files)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    served = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(served, cv2.imread(str(tmp_path / "cli.png")))
    assert float(r.headers["x-lpips-distance"]) == float32_json(scorer.distance(ref, dist))

    r = client.post("/v1/heatmap", files=files, headers={"accept": "application/octet-stream"})
    h, w = int(r.headers["x-lpips-height"]), int(r.headers["x-lpips-width"])
    served_map = np.frombuffer(r.content, "<f4").reshape(h, w)
    assert np.array_equal(served_map, scorer.distance_map(ref, dist))

    r = client.post("/v1/heatmap", files=files, headers={"accept": "text/html"})
    assert r.status_code == 406 and r.json()["code"] == "not_acceptable"
    r = client.post("/v1/heatmap?alpha=2", files=files)
    assert r.status_code == 422 and r.json()["error"].startswith("query.alpha:")


def test_framework_errors_use_the_error_schema(client):
    r = client.get("/nope")
    assert (r.status_code, r.json()) == (404, {"error": "Not Found", "code": "not_found"})
    r = client.get("/v1/distance")
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")


def test_health_readiness_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json() == {"status": "ready", "model": "LPIPS-alex v0.1", "backend": "ort",
                                            "device": "cpu", "models": {"lpips-alex/0.1": "ready"}}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text  # Swagger UI from local files: works offline
    script = next(part.split('"')[0] for part in docs.text.split('src="')[1:] if "swagger-ui-bundle" in part)
    assert client.get(script).status_code == 200
    spec = client.get("/openapi.json").json()
    distance = spec["paths"]["/v1/distance"]["post"]
    assert distance["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["img0", "img1"]
    assert distance["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DistanceResult")
    for status in ("400", "413", "415", "422", "503", "504"):
        assert distance["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    batch = spec["paths"]["/v1/distance/batch"]["post"]["requestBody"]["content"]
    assert set(batch) == {"multipart/form-data", "application/json"}
    heatmap = spec["paths"]["/v1/heatmap"]["post"]["responses"]["200"]["content"]
    assert set(heatmap) == {"image/png", "application/octet-stream"}
    assert "security" not in distance  # no API key on this server


def test_metrics_parse_and_count_what_was_sent(client):
    before = metric_samples(client.get("/metrics").text)
    good, bad = pair_files(*_same_size_pairs(1)[0]), pair_files(png(scene(96, 128)), b"junk")
    for _ in range(3):
        assert client.post("/v1/distance", files=good).status_code == 200
    for _ in range(2):
        assert client.post("/v1/distance", files=bad).status_code == 422
    assert client.get("/nope").status_code == 404
    after = metric_samples(client.get("/metrics").text)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("lpips_requests_total", route="/v1/distance", status="200") == 3
    assert delta("lpips_requests_total", route="/v1/distance", status="422") == 2
    assert delta("lpips_requests_total", route="other", status="404") == 1
    assert delta("lpips_request_duration_seconds_count", route="/v1/distance") == 5
    model = dict(ALEX)  # model metrics are labelled with the protocol's model name and version
    assert delta("lpips_batch_size_sum", **model) == 3  # the failed pairs never reached the model
    assert delta("lpips_pairs_total", outcome="scored", **model) == 3
    assert delta("lpips_pairs_total", outcome="failed", **model) == 2
    assert after[("lpips_requests_in_flight", ())] == 1  # this scrape
    assert after[("lpips_queue_depth", ALEX)] == 0 and after[("lpips_ready", ALEX)] == 1
    info = {labels: v for (name, labels), v in after.items() if name == "lpips_model_info"}
    assert list(info.values()) == [1.0] and dict(next(iter(info)))["net"] == "alex"
