"""Helpers of the lpips-serve tests: real ``lpips-serve`` processes on free 127.0.0.1 ports, real httpx
clients, raw-socket requests that stall mid-body, and /metrics read with prometheus-client's parser.
Test modules import the fixtures from here (a conftest.py here would shadow tests/conftest.py)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    """The installed console script when there is one (users run that), else the module."""
    script = Path(sys.executable).parent / "lpips-serve"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lpips_runtime.serve.cli"]


class Server:
    """One ``lpips-serve`` process; its stderr goes to a file shown when something fails."""

    def __init__(self, args: list[str], env: dict | None = None, command: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="lpips-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([*(command or serve_command()), "--host", "127.0.0.1", "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=self.log, env={**os.environ, **(env or {})})

    def stderr(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"lpips-serve exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"lpips-serve not ready after {timeout} s:\n{self.stderr()}")

    def client(self, **kwargs) -> "httpx.Client":
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 60), **kwargs)

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)
        return self.proc.returncode


def png(img: np.ndarray) -> bytes:
    """RGB uint8 -> PNG bytes."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    assert ok
    return data.tobytes()


def pair_files(a: bytes, b: bytes, names=("a.png", "b.png")) -> dict:
    return {"img0": (names[0], a, "image/png"), "img1": (names[1], b, "image/png")}


def metric_samples(text: str) -> dict:
    """{(sample name, sorted label items): value} from a /metrics page, read with prometheus-client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class StalledUpload:
    """A raw-socket request whose body is sent only in part, so that the server holds it (admitted,
    reading) for as long as the test wants; ``finish`` sends the rest and returns (status, body)."""

    def __init__(self, server: Server, path: str, body: bytes, content_type: str, part: int):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.body, self.part = body, part
        self.sock.sendall(head + body[:part])

    def send_rest(self) -> None:
        self.sock.sendall(self.body[self.part:])

    def finish(self) -> tuple[int, bytes]:
        self.send_rest()
        return self.response()

    def response(self) -> tuple[int, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head else 0
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest

    def close(self) -> None:
        self.sock.close()


def multipart(fields: dict[str, tuple[str, bytes]], boundary: str = "lpips-test-boundary") -> tuple[bytes, str]:
    """An encoded multipart/form-data body of file parts, and its Content-Type."""
    out = b""
    for name, (filename, data) in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def serve_model(alex_models) -> Path:
    """The alex export, with its spatial sibling and its split encoder and head in the same folder (what
    the heatmap route and tiles need: lpips-serve looks for them before it binds)."""
    from lpips_runtime import Scorer

    model = alex_models / "lpips-alex-v0.1.onnx"
    with Scorer(model) as scorer:  # exports the split parts here once, not in each server's start-up
        scorer.model_info(part="encoder")
        scorer.model_info(part="head")
    return model


@pytest.fixture(scope="module")
def start_server(serve_model):
    """Factory: start ``lpips-serve --model <alex> *args`` and wait until ready (stopped after the module)."""
    servers: list[Server] = []

    def start(*args: str, env: dict | None = None, ready: bool = True, model: bool = True) -> Server:
        """``model=False``: without ``--model <alex>`` (the arguments name the models)."""
        server = Server([*(["--model", str(serve_model)] if model else []), "--no-access-log", *args], env)
        servers.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in servers:
        server.stop()
