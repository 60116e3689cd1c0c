"""lpips-serve's front door and body admission under the attacks of issue 25, loopback only and bounded:
each attack prints what the server did and whether the bound held.

    python benchmarks/serve_attacks.py [--quick] [--model PATH]

1. slow heads: N connections each sending part of a request head and one more byte every 2 s, while
   /healthz, /readyz and /v1/distance are timed (held: every probe 200 under 1 s, scoring 200);
2. endless header: one connection sending a header field without end at full speed, for at most 30 s
   (held: 431 and closed after a bounded number of bytes; server CPU seconds and /healthz latency meanwhile);
3. too many header fields (held: 431);
4. concurrent maximal JSON bodies (random base64): statuses, the server's peak RSS over its baseline
   against the documented bound (docs/serve.md, "Memory"), and its RSS once idle again;
5. a body of millions of empty pairs (held: 413 before parsing; peak RSS and time);
6. JSON nested 100,000 deep (held: 400, not 500).

The server runs with small limits so that the attacks stay small (see ``SERVER_ARGS``). Writes
benchmarks/results/serve-attacks-<date>.json. Full mode: about 2 minutes on 2 cores; --quick: under one.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_info, today  # noqa: E402

MiB = 1 << 20
MAX_BODY_MB, MAX_BODIES_MB = 16, 48
SERVER_ARGS = ["--max-queue", "8", "--max-connections", "64", "--header-timeout-s", "10",
               "--max-body-mb", str(MAX_BODY_MB), "--max-bodies-mb", str(MAX_BODIES_MB), "--max-pairs", "64",
               "--max-memory", "64M", "--max-pixels", "1M", "--workers", "2", "--max-queue-mpx", "1",
               "--timeout-s", "20", "--tile", "off", "--no-access-log"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, model: str, args: list[str]):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        script = Path(sys.executable).with_name("lpips-serve")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "lpips_runtime.serve.cli"]
        self.proc = subprocess.Popen([*command, "--model", model, "--no-heatmap", "--host", "127.0.0.1",
                                      "--port", str(self.port), *args], stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"lpips-serve exited: {self.log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("lpips-serve not ready after 120 s")

    def status(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def timed(server, method: str, path: str, **kwargs) -> tuple[int, float]:
    import httpx

    t0 = time.perf_counter()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            status = c.request(method, path, **kwargs).status_code
    except httpx.TransportError as exc:
        status = type(exc).__name__
    return status, (time.perf_counter() - t0) * 1000


def pair_files():
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3), np.uint8)
    b = cv2.GaussianBlur(a, (0, 0), 1.0)
    return {"img0": ("a.png", cv2.imencode(".png", a)[1].tobytes(), "image/png"),
            "img1": ("b.png", cv2.imencode(".png", b)[1].tobytes(), "image/png")}


def slow_heads(server, count: int, seconds: float) -> dict:
    socks, stop = [], threading.Event()
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            break

    def trickle():
        while not stop.wait(2):
            for s in socks:
                try:
                    s.send(b"a")
                except OSError:
                    pass

    threading.Thread(target=trickle, daemon=True).start()
    probes, scoring = [], []
    deadline = time.monotonic() + seconds
    files = pair_files()
    while time.monotonic() < deadline:
        probes += [timed(server, "GET", "/healthz"), timed(server, "GET", "/readyz")]
        scoring.append(timed(server, "POST", "/v1/distance", files=files))
        time.sleep(0.5)
    stop.set()
    closed = 0
    for s in socks:
        try:
            s.settimeout(0.05)
            closed += s.recv(1) == b""
        except socket.timeout:
            pass
        except OSError:
            closed += 1
        s.close()
    worst = max(ms for _, ms in probes)
    held = all(st == 200 for st, _ in probes + scoring) and worst < 1000
    return {"attack": f"{count} slow heads, {seconds:.0f} s", "opened": len(socks), "closed_by_server": closed,
            "probe_statuses": sorted({str(st) for st, _ in probes}), "probe_worst_ms": round(worst, 1),
            "scoring_statuses": sorted({str(st) for st, _ in scoring}), "held": held}


def endless_header(server, limit_bytes: int) -> dict:
    cpu0 = server.cpu_s()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.connect(("127.0.0.1", server.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: ")
    sent, chunk, t0, probe = 0, b"a" * 65536, time.perf_counter(), []
    answer = b""
    while sent < limit_bytes and time.perf_counter() - t0 < 30:
        if select.select([s], [], [], 0)[0]:
            break
        try:
            s.sendall(chunk)
        except OSError:
            break
        sent += len(chunk)
        if sent % (4 * MiB) == 0:
            probe.append(timed(server, "GET", "/healthz")[1])
    s.settimeout(3)
    try:
        answer = s.recv(200)
    except OSError:
        pass
    s.close()
    elapsed = time.perf_counter() - t0
    probe.append(timed(server, "GET", "/healthz")[1])
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "none"
    return {"attack": f"endless header (up to {limit_bytes // MiB} MiB)", "status": status, "bytes_sent": sent,
            "seconds": round(elapsed, 2), "server_cpu_s": round(server.cpu_s() - cpu0, 2),
            "healthz_worst_ms": round(max(probe), 1), "held": status == "431" and sent < 4 * MiB}


def many_fields(server) -> dict:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-F%d: 1\r\n" % i for i in range(1000)) + b"\r\n")
    answer = s.recv(200)
    s.close()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "none"
    return {"attack": "1000 header fields", "status": status, "held": status == "431"}


def post_json(server, body: bytes) -> int:
    import httpx

    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return c.post("/v1/distance/batch", content=body, headers={"content-type": "application/json"}).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def concurrent_bodies(server, count: int, bound: int) -> dict:
    raw = os.urandom((MAX_BODY_MB * MiB - 4096) * 3 // 8)
    part = base64.b64encode(raw).decode()
    body = json.dumps({"pairs": [{"img0": part, "img1": part}]}).encode()
    base = server.status("VmRSS")
    server.reset_peak()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(lambda _: post_json(server, body), range(count)))
    elapsed = time.perf_counter() - t0
    peak = server.status("VmHWM") - base
    time.sleep(2)
    idle = server.status("VmRSS") - base
    return {"attack": f"{count} concurrent {len(body) / MiB:.1f} MiB JSON bodies",
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses), key=str)},
            "seconds": round(elapsed, 2), "baseline_mb": round(base / MiB), "peak_over_baseline_mb": round(peak / MiB),
            "bound_mb": round(bound / MiB), "idle_after_over_baseline_mb": round(idle / MiB), "held": peak <= bound}


def empty_pairs(server, bound: int) -> dict:
    pair = b'{"img0":"","img1":""},'
    count = (MAX_BODY_MB * MiB - 64) // len(pair)
    body = b'{"pairs":[' + pair * (count - 1) + pair[:-1] + b"]}"
    base = server.status("VmRSS")
    server.reset_peak()
    t0 = time.perf_counter()
    status = post_json(server, body)
    elapsed = time.perf_counter() - t0
    peak = server.status("VmHWM") - base
    return {"attack": f"{count:,} empty pairs in {len(body) / MiB:.0f} MiB", "status": str(status),
            "seconds": round(elapsed, 2), "peak_over_baseline_mb": round(peak / MiB),
            "held": status == 413 and peak <= bound}


def nested(server) -> dict:
    status = post_json(server, b"[" * 100_000 + b"]" * 100_000)
    return {"attack": "JSON nested 100,000 deep", "status": str(status), "held": status == 400}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer connections and bodies, shorter")
    parser.add_argument("--model", default=str(Path(os.environ.get("LPIPS_RT_MODELS", "models")) /
                                               "lpips-alex-v0.1.onnx"))
    parser.add_argument("--label", default="", help="a name for this run in the results file (e.g. before)")
    parser.add_argument("--before", action="store_true", help="the server predates issue 25: leave out the "
                        "options it does not know (--max-connections, --header-timeout-s, --max-bodies-mb)")
    args = parser.parse_args()
    server_args = SERVER_ARGS
    if args.before:
        new = {"--max-connections", "--header-timeout-s", "--max-bodies-mb"}
        server_args = [a for i, a in enumerate(SERVER_ARGS) if a not in new and SERVER_ARGS[i - 1] not in new]
    # the documented bound past the baseline: --max-memory + workers x 24 B x --max-pixels + 24 B x
    # --max-queue-mpx + --max-bodies-mb
    bound = 64 * MiB + 2 * 24 * 1_000_000 + 24 * 1_000_000 + MAX_BODIES_MB * MiB
    server = Server(args.model, server_args)
    rows = []
    try:
        rows.append(slow_heads(server, 100 if args.quick else 200, 8 if args.quick else 20))
        rows.append(endless_header(server, (16 if args.quick else 64) * MiB))
        rows.append(many_fields(server))
        rows.append(concurrent_bodies(server, 8 if args.quick else 16, bound))
        rows.append(empty_pairs(server, bound))
        rows.append(nested(server))
    finally:
        server.stop()
    for row in rows:
        facts = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("attack", "held"))
        print(f"{'held ' if row['held'] else 'FAILED'} | {row['attack']} | {facts}")
    name = f"serve-attacks-{today()}{'-' + args.label if args.label else ''}{'-quick' if args.quick else ''}.json"
    (RESULTS / name).write_text(json.dumps({"machine": machine_info(), "server_args": server_args,
                                            "rows": rows}, indent=1) + "\n")
    print(f"wrote {RESULTS / name}", file=sys.stderr)
    return 0 if all(r["held"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
