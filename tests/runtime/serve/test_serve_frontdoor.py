"""lpips-serve's front door as a real process under bounded, loopback-only attacks (issue 25, defects 1
and 2): connections that send half a request head must not keep the probes or the scoring routes out,
a head that never ends is refused (431, closed) after a bounded number of bytes, too many header fields
get 431, and a head not complete in --header-timeout-s gets 408 and a closed connection."""
from __future__ import annotations

import select
import socket
import time

import pytest

from conftest import distort, scene
from serve_helpers import pair_files, png, serve_model, start_server  # noqa: F401

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
CAP = 16
HEADER_TIMEOUT_S = 1.5


def _half_heads(server, count: int) -> list[socket.socket]:
    """``count`` connections that each sent the start of a request head and nothing more."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(HEAD)
        socks.append(sock)
    return socks


def _close(socks) -> None:
    for sock in socks:
        sock.close()


def _probe_ms(server, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    with server.client(timeout=5) as c:
        status = c.get(path).status_code
    return status, (time.perf_counter() - started) * 1000


def _status(sock: socket.socket, timeout: float) -> int | None:
    """The status of the answer on ``sock`` (None: closed without one, or none within ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def _pair_bytes():
    ref = scene(64, 64, 0)
    return png(ref), png(distort(ref, "blur", 0.6, seed=0))


@pytest.fixture(scope="module")
def plain(start_server):
    """Default front door, a small queue (before: uvicorn's cap was --max-queue + 64 = 66 connections)."""
    return start_server("--max-queue", "2")


@pytest.fixture(scope="module")
def door(start_server):
    """A small connection cap and a short head timeout, so that the attacks stay small and quick."""
    return start_server("--max-queue", "2", "--max-connections", str(CAP),
                        "--header-timeout-s", str(HEADER_TIMEOUT_S))


def test_half_sent_heads_do_not_starve_probes_or_scoring(plain):
    socks = _half_heads(plain, 80)  # more than the old cap of 66
    try:
        time.sleep(0.3)
        for path in ("/healthz", "/readyz"):
            status, ms = _probe_ms(plain, path)
            assert status == 200 and ms < 2000, (path, status, ms)
        with plain.client(timeout=10) as c:
            assert c.post("/v1/distance", files=pair_files(*_pair_bytes())).status_code == 200
    finally:
        _close(socks)


def test_idle_connections_past_the_cap_make_room_for_probes(door):
    socks = _half_heads(door, 3 * CAP)
    try:
        for _ in range(5):
            for path in ("/healthz", "/readyz"):
                status, ms = _probe_ms(door, path)
                assert status == 200 and ms < 2000, (path, status, ms)
        with door.client(timeout=10) as c:
            assert c.post("/v1/distance", files=pair_files(*_pair_bytes())).status_code == 200
        closed = sum(_status(sock, 0.01) is None and _is_closed(sock) for sock in socks)
        assert closed >= 2 * CAP  # the oldest idle ones were closed to make room
    finally:
        _close(socks)


def _is_closed(sock: socket.socket) -> bool:
    try:
        sock.settimeout(0.2)
        return sock.recv(1) == b""
    except (socket.timeout, BlockingIOError):
        return False
    except OSError:
        return True


def test_slow_head_gets_408_and_is_closed_after_the_head_timeout(door):
    sock = socket.create_connection(("127.0.0.1", door.port), timeout=5)
    try:
        started = time.monotonic()
        sock.sendall(HEAD)
        while time.monotonic() - started < HEADER_TIMEOUT_S + 3:  # one byte every 0.2 s, never the end
            if select.select([sock], [], [], 0.2)[0]:
                break
            sock.sendall(b"a")
        assert _status(sock, 1) == 408
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 1.5
        assert _is_closed(sock)
    finally:
        sock.close()


def test_endless_header_is_refused_with_431_after_a_bounded_number_of_bytes(plain):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # what was sent is what the server could read
    sock.connect(("127.0.0.1", plain.port))
    sent = 0
    try:
        sock.sendall(HEAD)
        chunk = b"a" * 4096
        while sent < 4 << 20 and not select.select([sock], [], [], 0.005)[0]:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        assert _status(sock, 3) == 431
        assert sent <= 512 << 10, sent  # refused long before the 4 MiB the client was ready to send
        status, ms = _probe_ms(plain, "/healthz")
        assert status == 200 and ms < 1000
    finally:
        sock.close()


def test_too_many_header_fields_get_431(plain):
    sock = socket.create_connection(("127.0.0.1", plain.port), timeout=5)
    try:
        fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(500))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n")
        assert _status(sock, 3) == 431
    finally:
        sock.close()


def test_ordinary_keep_alive_requests_still_work(door):
    with door.client() as c:
        for _ in range(3):
            assert c.get("/healthz").status_code == 200
        assert c.post("/v1/distance", files=pair_files(*_pair_bytes())).status_code == 200


def test_connection_cap_fits_the_open_file_limit():
    """A cap the process cannot open would never be reached (accept() fails first): the limit is raised
    to fit where the hard limit allows, else the cap is lowered and the server says so (in a subprocess:
    limits are per process)."""
    import subprocess
    import sys

    code = ("import resource, logging; logging.basicConfig(format='%(message)s'); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 400)); "
            "from lpips_runtime.serve.cli import _room_for_connections as room; "
            "print(room(100), room(250), resource.getrlimit(resource.RLIMIT_NOFILE)[0], room(1024))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["100", "250", "378", "272"], done.stdout + done.stderr
    assert "--max-connections 1024 lowered to 272: the open-file limit is 400" in done.stderr
