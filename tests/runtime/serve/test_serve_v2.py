"""The Open Inference Protocol (v2) of lpips-serve, spoken by the unmodified ``tritonclient[http]``
against a real process: health, metadata, the repository index, inference with BYTES and UINT8
inputs in JSON and in the binary tensor data extension (values bit for bit equal to the Scorer), and
errors as the protocol's JSON body with /v1's limits."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from conftest import distort, scene
from lpips_runtime import Scorer
from serve_helpers import metric_samples, png, serve_model, start_server  # noqa: F401 (fixtures)

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MAX_PAIRS = 8
MAX_QUEUE = 6


@pytest.fixture(scope="module")
def server(start_server):
    return start_server("--max-body-mb", "1", "--max-pairs", str(MAX_PAIRS), "--max-queue", str(MAX_QUEUE),
                        "--max-batch", "8")


@pytest.fixture(scope="module")
def triton(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}", network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def scorer(serve_model):
    with Scorer(serve_model) as s:
        yield s


def _frames(n: int, h: int = 64, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    kinds = ("blur", "jpeg", "noise", "colour")
    a = np.stack([scene(h, w, i) for i in range(n)])
    b = np.stack([distort(scene(h, w, i), kinds[i % 4], 0.7, seed=i) for i in range(n)])
    return a, b


def _bytes_input(name: str, files: list[bytes], binary: bool = True):
    tensor = httpclient.InferInput(name, [len(files)], "BYTES")
    data = np.array(files if binary else [base64.b64encode(f) for f in files], dtype=object)
    return tensor.set_data_from_numpy(data, binary_data=binary)


def _uint8_input(name: str, frames: np.ndarray, binary: bool = True):
    return httpclient.InferInput(name, list(frames.shape), "UINT8").set_data_from_numpy(frames, binary_data=binary)


def _expected(scorer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray([scorer.distance(x, y) for x, y in zip(a, b)], dtype=np.float32)


def test_health_metadata_and_repository_index(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("lpips-alex") and triton.is_model_ready("lpips-alex", "0.1")
    meta = triton.get_server_metadata()
    assert meta["name"] == "lpips-serve" and "binary_tensor_data" in meta["extensions"]
    model = triton.get_model_metadata("lpips-alex", "0.1")
    assert model["name"] == "lpips-alex" and model["versions"] == ["0.1"]
    assert [t["name"] for t in model["inputs"]] == ["img0", "img1"]
    assert model["outputs"] == [{"name": "distance", "datatype": "FP32", "shape": [-1]}]
    assert triton.get_model_repository_index() == [{"name": "lpips-alex", "version": "0.1", "state": "READY",
                                                     "reason": ""}]


@pytest.mark.parametrize("binary_out", [True, False])
def test_bytes_inputs_binary_extension_equal_scorer_bit_for_bit(triton, scorer, binary_out):
    a, b = _frames(3)
    files0, files1 = [png(x) for x in a], [png(y) for y in b]
    result = triton.infer("lpips-alex", [_bytes_input("img0", files0), _bytes_input("img1", files1)],
                          outputs=[httpclient.InferRequestedOutput("distance", binary_data=binary_out)],
                          request_id="req-7")
    got = result.as_numpy("distance")
    assert got.dtype == np.float32 and got.shape == (3,)
    assert np.array_equal(got, _expected(scorer, a, b))  # the float32 of the model, bit for bit
    response = result.get_response()
    assert response["model_name"] == "lpips-alex" and response["model_version"] == "0.1"
    assert response["id"] == "req-7"


@pytest.mark.parametrize("binary_in", [True, False])
def test_uint8_frames_equal_scorer_bit_for_bit(triton, scorer, binary_in):
    a, b = _frames(2, 48, 80)
    result = triton.infer("lpips-alex", [_uint8_input("img0", a, binary_in), _uint8_input("img1", b, binary_in)],
                          model_version="0.1")
    assert np.array_equal(result.as_numpy("distance"), _expected(scorer, a, b))


def test_bytes_as_base64_json(server, scorer):
    a, b = _frames(2)
    body = {"id": "j", "inputs": [
        {"name": n, "datatype": "BYTES", "shape": [2], "data": [base64.b64encode(png(x)).decode() for x in side]}
        for n, side in (("img0", a), ("img1", b))]}
    with server.client() as client:
        r = client.post("/v2/models/lpips-alex/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["name"] == "distance" and out["shape"] == [2] and out["datatype"] == "FP32"
    assert np.array_equal(np.asarray(out["data"], dtype=np.float32), _expected(scorer, a, b))


def test_v2_and_v1_share_the_batcher_and_metrics_name_the_model(server, triton):
    with server.client() as client:
        before = metric_samples(client.get("/metrics").text)
        a, b = _frames(4)
        triton.infer("lpips-alex", [_uint8_input("img0", a), _uint8_input("img1", b)])
        after = metric_samples(client.get("/metrics").text)
    labels = (("model", "lpips-alex"), ("version", "0.1"))

    def delta(name, *extra):
        key = (name, tuple(sorted(labels + extra)))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("lpips_pairs_total", ("outcome", "scored")) == 4
    assert delta("lpips_batch_size_sum") == 4 and delta("lpips_queue_wait_seconds_count") == 4
    assert delta("lpips_decode_seconds_count") == 4
    route = (("route", "/v2/models/{name}/infer"), ("status", "200"))
    assert after[("lpips_requests_total", route)] - before.get(("lpips_requests_total", route), 0) == 1
    assert any(name == "process_resident_memory_bytes" for name, _ in after)


def _error(excinfo) -> tuple[str, str]:
    return excinfo.value.status(), excinfo.value.message()


def test_errors_are_the_protocol_json_body_with_v1_limits(server, triton):
    a, b = _frames(1)
    with pytest.raises(InferenceServerException) as e:
        triton.infer("lpips-nope", [_uint8_input("img0", a), _uint8_input("img1", b)])
    assert _error(e)[0] == "404" and "lpips-alex" in _error(e)[1]
    with pytest.raises(InferenceServerException) as e:
        triton.infer("lpips-alex", [_uint8_input("img0", a), _uint8_input("img1", b)], model_version="0.0")
    assert _error(e)[0] == "404"
    with pytest.raises(InferenceServerException) as e:  # an undecodable file: /v1's 422, naming the element
        triton.infer("lpips-alex", [_bytes_input("img0", [b"not an image"]), _bytes_input("img1", [png(b[0])])])
    assert _error(e)[0] == "422" and "img0[0]" in _error(e)[1]
    with pytest.raises(InferenceServerException) as e:  # frames of different sizes
        triton.infer("lpips-alex", [_uint8_input("img0", a), _uint8_input("img1", b[:, :32])])
    assert _error(e)[0] == "422"
    with pytest.raises(InferenceServerException) as e:  # over --max-body-mb 1
        big = np.zeros((1, 600, 600, 3), np.uint8)
        triton.infer("lpips-alex", [_uint8_input("img0", big), _uint8_input("img1", big)])
    assert _error(e)[0] == "413" and "--max-body-mb" in _error(e)[1]
    many_a, many_b = _frames(MAX_PAIRS + 1, 32, 32)
    with pytest.raises(InferenceServerException) as e:  # over --max-pairs
        triton.infer("lpips-alex", [_uint8_input("img0", many_a), _uint8_input("img1", many_b)])
    assert _error(e)[0] == "413" and "--max-pairs" in _error(e)[1]
    with server.client() as client:
        r = client.post("/v2/models/lpips-alex/infer", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "not JSON" in r.json()["error"]
        r = client.post("/v2/models/lpips-alex/infer", content=b"x", headers={"Content-Type": "text/html"})
        assert r.status_code == 415 and r.headers["content-type"] == "application/json"
        r = client.post("/v2/models/lpips-alex/infer", json={"inputs": [
            {"name": "img0", "datatype": "FP64", "shape": [1], "data": [1.0]}]})
        assert r.status_code == 400 and "BYTES" in r.json()["error"]
        r = client.post("/v2/models/lpips-alex/infer", json={"inputs": [], "outputs": [{"name": "psnr"}]})
        assert r.status_code == 400
        # The binary header must fit the body; binary data must be claimed by the inputs.
        r = client.post("/v2/models/lpips-alex/infer", content=b"{}", headers={"Inference-Header-Content-Length": "9"})
        assert r.status_code == 400
        head = json.dumps({"inputs": [{"name": "img0", "datatype": "UINT8", "shape": [1, 2, 2, 3],
                                       "parameters": {"binary_data_size": 12}}]}).encode()
        r = client.post("/v2/models/lpips-alex/infer", content=head + bytes(13),
                        headers={"Inference-Header-Content-Length": str(len(head))})
        assert r.status_code == 400 and "no input claims" in r.json()["error"]
        # More pairs than the queue holds: 503 with Retry-After, as /v1.
        n = MAX_QUEUE + 1
        frames = np.zeros((n, 32, 32, 3), np.uint8).tolist()
        r = client.post("/v2/models/lpips-alex/infer", json={"inputs": [
            {"name": name, "datatype": "UINT8", "shape": [n, 32, 32, 3], "data": frames} for name in ("img0", "img1")]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "queue" in r.json()["error"]


def test_request_id_is_kept_or_made(server):
    with server.client() as client:
        assert client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        made = client.get("/v2/health/live", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
        assert made != "bad id\twith spaces" and len(made) == 32


@pytest.fixture(scope="module")
def metrics_models(exported) -> object:
    """A folder with alex and squeeze v0.1 exports that compute PSNR and SSIM (with the alex exports)."""
    exported("squeeze", metrics=("psnr", "ssim"))
    return exported("alex", metrics=("psnr", "ssim")).parent


def test_several_models_with_metrics_in_one_process(start_server, metrics_models):
    server = start_server("--models-dir", str(metrics_models), "--nets", "alex,squeeze", "--metrics", "psnr,ssim",
                          "--no-heatmap", env={"LPIPS_SERVE_MAX_BATCH": "4"}, model=False)
    a, b = _frames(8)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        index = client.get_model_repository_index()
        assert sorted((m["name"], m["state"]) for m in index) == [("lpips-alex", "READY"), ("lpips-squeeze", "READY")]
        for net in ("alex", "squeeze"):
            result = client.infer(f"lpips-{net}", [_uint8_input("img0", a), _uint8_input("img1", b)])
            with Scorer(net, models_dir=metrics_models, metrics="psnr,ssim", auto_export=False) as direct:
                expected = [direct.scores(x, y) for x, y in zip(a, b)]
            for name in ("distance", "psnr", "ssim"):
                assert np.array_equal(result.as_numpy(name), np.asarray([e[name] for e in expected], np.float32))
    finally:
        client.close()
    with server.client() as http:
        r = http.post("/v1/distance", files={"img0": ("a.png", png(a[0])), "img1": ("b.png", png(b[0]))})
        assert r.status_code == 200 and set(r.json()) >= {"distance", "psnr", "ssim"}
        samples = metric_samples(http.get("/metrics").text)
    squeeze = (("model", "lpips-squeeze"), ("version", "0.1"))
    assert samples[("lpips_ready", squeeze)] == 1
    # LPIPS_SERVE_MAX_BATCH=4 was read: the 8 pairs of one request ran in batches of at most 4.
    assert samples[("lpips_batch_size_bucket", tuple(sorted(squeeze + (("le", "4.0"),))))] \
        == samples[("lpips_batch_size_count", squeeze)] > 0
