"""The lpips-serve command: help, one-line start-up errors with exit code 1, and a SIGTERM that lets
every request in flight finish before the process exits 0."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner

from conftest import distort, scene
from lpips_runtime import Scorer
from lpips_runtime.formatting import float32_json
from lpips_runtime.serve.cli import main
from serve_helpers import (Server, StalledUpload, metric_samples, multipart, pair_files, png,  # noqa: F401
                           serve_command, serve_model, start_server)


def test_help_lists_the_limits_with_their_defaults():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--host", "--api-key", "LPIPS_SERVE_API_KEY", "--max-batch", "--max-wait-ms", "--max-queue",
                   "--max-body-mb", "--max-pixels", "--timeout-s", "--net", "--backend", "--precision"):
        assert option in result.output
    assert "default: 127.0.0.1" in result.output
    assert "50M]" in result.output  # --max-pixels: a server's default, below the library's 100M


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*serve_command(), *args], capture_output=True, text=True, timeout=120)


def test_missing_model_is_one_line_and_exit_1(tmp_path):
    done = _run("--model", str(tmp_path / "nope.onnx"), "--port", "1")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ") and "nope.onnx" in done.stderr


def test_never_exports_on_demand_and_names_the_one_command(tmp_path):
    """Issue 21: no model files and no --no-export: the server still exports nothing (minutes and ~1 GB inside a
    service) and says, in one line, the one command that writes every graph it needs."""
    done = _run("--models-dir", str(tmp_path), "--port", "1")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"run `lpips-export --net alex --out {tmp_path}` (on-demand export is off)" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_missing_spatial_model_names_no_heatmap(serve_model, tmp_path):
    """Only the distance export at hand (what a user copies first): the error says how to serve it anyway."""
    alone = tmp_path / serve_model.name
    alone.symlink_to(serve_model)
    done = _run("--model", str(alone), "--no-export", "--port", "1")  # not exported on demand here
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "-spatial.onnx" in done.stderr and done.stderr.strip().endswith("--no-heatmap to serve distances only)")
    done = _run("--model", str(alone), "--no-export", "--no-heatmap", "--port", "1")  # nor the split graphs
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "-encoder.onnx" in done.stderr and done.stderr.strip().endswith("--tile off to score every pair in one piece)")


def test_missing_serve_extra_names_it(serve_model):
    block = "import sys; sys.modules['uvicorn'] = None\nfrom lpips_runtime.serve.cli import main\nmain()"
    done = subprocess.run([sys.executable, "-c", block, "--model", str(serve_model)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: lpips-serve needs the 'uvicorn' module: pip install 'lpips-rt[serve]'"


def test_serves_without_torch(serve_model):
    """The [serve] extra has no torch: a real server with torch (and the export side) blocked from import
    starts, scores, and has no torch library mapped."""
    block = ("import sys\nfor m in ('torch', 'torchvision', 'tensorrt', 'lpips', 'lpips_export', 'onnx'):\n"
             "    sys.modules[m] = None\nfrom lpips_runtime.serve.cli import main\nmain()")
    server = Server(["--model", str(serve_model), "--no-heatmap", "--no-access-log"],
                    command=[sys.executable, "-c", block])
    try:
        server.wait_ready()
        ref = scene(64, 64)
        with server.client() as client:
            r = client.post("/v1/distance", files=pair_files(png(ref), png(distort(ref, "blur", 0.5))))
        assert r.status_code == 200, r.text
        with open(f"/proc/{server.proc.pid}/maps") as maps:
            assert "torch" not in maps.read()
    finally:
        assert server.stop() == 0


def test_model_that_cannot_run_stops_the_server_with_exit_1(serve_model):
    # The file is fine (checked before binding); the device is not: found while warming up, after start.
    server = Server(["--model", str(serve_model), "--device", "cuda"])
    try:
        assert server.proc.wait(90) == 1
        assert "lpips-serve: the model cannot run:" in server.stderr()
    finally:
        server.stop()


def test_address_in_use_is_exit_1(serve_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = _run("--model", str(serve_model), "--port", str(busy.getsockname()[1]), "--no-heatmap")
    assert done.returncode == 1 and "address already in use" in done.stderr


def _arrived(samples: dict) -> float:
    answered = sum(v for (name, labels), v in samples.items()
                   if name == "lpips_requests_total" and ("route", "/v1/distance") in labels)
    return samples[("lpips_requests_in_flight", ())] - 1 + answered


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_stop_signal_drains_requests_in_flight(start_server, serve_model, sig, code):
    server = start_server("--max-batch", "1")
    pairs = [(png(scene(160, 160, i)), png(distort(scene(160, 160, i), "noise", 0.5, seed=i))) for i in range(6)]
    with Scorer(serve_model) as scorer:
        expected = [float32_json(scorer.distance(a, b)) for a, b in pairs]
    # Two requests are still uploading when the signal comes (deterministically in flight), four are complete.
    stalled = []
    for a, b in pairs[:2]:
        body, content_type = multipart({"img0": ("a.png", a), "img1": ("b.png", b)})
        stalled.append(StalledUpload(server, "/v1/distance", body, content_type, part=len(body) // 2))

    def post(pair):
        with server.client() as c:
            r = c.post("/v1/distance", files=pair_files(*pair))
            return r.status_code, r.json().get("distance")

    try:
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(post, pair) for pair in pairs[2:]]
            deadline = time.monotonic() + 30
            with server.client() as c:  # every request arrived: in flight (as this scrape) or answered
                while _arrived(metric_samples(c.get("/metrics").text)) < len(pairs):
                    assert time.monotonic() < deadline
            server.proc.send_signal(sig)
            time.sleep(0.5)
            with pytest.raises(httpx.ConnectError):  # no longer accepting
                httpx.get(server.url + "/healthz")
            for upload in stalled:
                upload.send_rest()
            results = [upload.response() for upload in stalled] + [a.result() for a in answers]
    finally:
        for upload in stalled:
            upload.close()
    assert [(status, json.loads(body)["distance"]) for status, body in results[:2]] + results[2:] == \
        [(200, value) for value in expected]
    assert server.proc.wait(60) == code
    assert "Shutting down" in server.stderr()


def test_missing_model_is_one_line_naming_lpips_export_and_never_imports_torch(tmp_path):
    """The server never exports inside itself unless --export-missing: a missing variant (here the one
    with metrics) stops the start with the command to run, and torch is never imported."""
    script = ("import sys\nfrom lpips_runtime.serve.cli import main\ntry:\n    main()\nexcept SystemExit as exc:\n"
              "    print('torch' in sys.modules, exc.code, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script, "--models-dir", str(tmp_path), "--metrics", "psnr,ssim",
                           "--port", "0"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LPIPS_SERVE_HEATMAP": "false"})
    assert done.stdout.split() == ["False", "1"], done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "run `lpips-export --net alex" in lines[0]
    assert "lpips-alex-v0.1-psnr-ssim.onnx" in lines[0] and "on-demand export is off" in lines[0]
