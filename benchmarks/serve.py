"""HTTP service benchmark: lpips-serve under load against direct Scorer calls in the same run
(LPIPS-alex, 256x256 PNG pairs, ONNX Runtime on the CPU, loopback only).

    python benchmarks/serve.py [--quick]

1. direct ``Scorer.score_pairs`` over 512 pairs in batches of 16 (throughput);
2. single-pair latency, in turns: one direct ``Scorer.distance`` on the encoded pair (decoding included,
   as in the server), then the same pair through the server (``lpips-serve`` in its own process,
   access log off) with a keep-alive httpx client, and so on: load changes on a shared machine then hit
   both alike. Both Scorers stop ONNX Runtime's spin-waiting when a call ends (``spin_between_runs=False``,
   as lpips-serve does): otherwise the direct Scorer's idle workers spin on the cores while the server
   computes (measured here: server p50 +30-50% in turns with a spinning direct Scorer, not alone);
3. the server at concurrency 8, 32, 64 with batching on (--max-batch 16, --max-wait-ms 2), and at 32
   with batching off (--max-batch 1): an httpx async load generator with one keep-alive connection per
   concurrent client, each level bounded in requests and seconds, every answer checked against the
   direct value;
4. the server's RSS over 20,000 requests (64x64 pairs, concurrency 8) after a warm-up of 2,000;
5. the direct throughput again (the two runs are pooled: load on a shared machine drifts);
6. the Open Inference Protocol (v2) beside /v1 on one server: the same pairs as /v1 multipart, as v2 with
   the binary tensor data extension (BYTES inputs, binary output) and as v2 JSON (base64 BYTES, JSON
   output), at concurrency 1 in turns with the direct Scorer and at concurrency 32 in alternating
   rounds (so drifting load hits every route alike); every answer checked against the direct float32;
7. an independent load generator: wrk (if installed; `apt-get install wrk`) posting the /v1 multipart
   pair and the v2 binary pair at 8 connections, bounded by a request count (its Lua script stops each
   thread) and by time, loopback only.

The client runs on the same machine and takes CPU from the server (reported as client CPU seconds):
on 2 cores that is a real share, so the server's numbers are lower bounds. Writes
benchmarks/results/serve-<date>.json and the serve-table section of benchmarks/README.md.
Full mode: about 8-10 minutes on 2 cores; --quick: under a minute.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import struct
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import README, RESULTS, add_models_dir, machine_info, publish, today  # noqa: E402

TARGET_P50_EXTRA_MS = 2.0
TARGET_THROUGHPUT_SHARE = 0.85
TARGET_RSS_GROWTH_MB = 50.0
TARGET_V2_P50_EXTRA_MS = 3.0  # v2 binary at concurrency 1 over the direct Scorer
TARGET_V2_SHARE = 0.95  # v2 binary throughput at concurrency 32 / /v1 multipart's


# -- inputs -------------------------------------------------------------------------------------


def encoded_pairs(n: int, size: int) -> list[tuple[bytes, bytes]]:
    """``n`` pairs of PNG-encoded crops of a photograph and a blurred copy, size x size."""
    import cv2
    import skimage.data

    photo = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])  # BGR for cv2.imencode
    pairs = []
    for i in range(n):
        y, x = (37 * i) % (photo.shape[0] - size), (53 * i) % (photo.shape[1] - size)
        crop = np.ascontiguousarray(photo[y:y + size, x:x + size])
        blurred = cv2.GaussianBlur(crop, (0, 0), 0.8 + 0.1 * (i % 8))
        pairs.append((cv2.imencode(".png", crop)[1].tobytes(), cv2.imencode(".png", blurred)[1].tobytes()))
    return pairs


def multipart(a: bytes, b: bytes, boundary: str = "lpips-bench") -> tuple[bytes, str]:
    body = b""
    for name, data in (("img0", a), ("img1", b)):
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                 "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Req:
    """One request of a load: its path, body and headers, and the float32 distance it must answer."""

    def __init__(self, kind: str, body: bytes, headers: dict, expected: float):
        self.kind, self.body, self.headers, self.expected = kind, body, headers, expected
        self.path = "/v1/distance" if kind == "v1" else "/v2/models/lpips-alex/infer"

    def value(self, r) -> float:
        """The distance of a 200 answer, as the float32 it carries."""
        if self.kind == "v1":
            return np.float32(r.json()["distance"])
        if self.kind == "v2-json":
            return np.float32(r.json()["outputs"][0]["data"][0])
        size = int(r.headers["inference-header-content-length"])
        return np.frombuffer(r.content[size:size + 4], "<f4")[0]

    def ok(self, r) -> bool:
        return r.status_code == 200 and self.value(r) == np.float32(self.expected)


def make_requests(kind: str, pairs, expected: list[float]) -> list[Req]:
    out = []
    for (a, b), value in zip(pairs, expected):
        if kind == "v1":
            body, content_type = multipart(a, b)
            out.append(Req(kind, body, {"content-type": content_type}, value))
        elif kind == "v2-binary":
            head = json.dumps({"inputs": [{"name": n, "datatype": "BYTES", "shape": [1],
                                           "parameters": {"binary_data_size": 4 + len(x)}}
                                          for n, x in (("img0", a), ("img1", b))],
                               "outputs": [{"name": "distance", "parameters": {"binary_data": True}}]}).encode()
            body = head + struct.pack("<I", len(a)) + a + struct.pack("<I", len(b)) + b
            out.append(Req(kind, body, {"content-type": "application/octet-stream",
                                        "inference-header-content-length": str(len(head))}, value))
        else:
            body = json.dumps({"inputs": [{"name": n, "datatype": "BYTES", "shape": [1],
                                           "data": [base64.b64encode(x).decode()]}
                                          for n, x in (("img0", a), ("img1", b))]}).encode()
            out.append(Req(kind, body, {"content-type": "application/json"}, value))
    return out


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)}


# -- direct --------------------------------------------------------------------------------------


def single_in_turns(scorer, server: "ServeProcess", pairs, requests: dict[str, list[Req]],
                    count: int) -> tuple[list[float], float, dict[str, dict]]:
    """Latencies of ``count`` direct calls and ``count`` server requests of each kind of the same pairs,
    in turns (direct, then each kind); the CPU seconds of the direct calls; one row per kind. Server CPU
    is not split by kind here (one process answers them all): it is reported for the whole turn."""
    import httpx

    direct, direct_cpu = [], 0.0
    served: dict[str, list[float]] = {kind: [] for kind in requests}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        cpu0 = server.cpu_s()
        for i in range(-5, count):  # five warm-up turns
            pair = pairs[i % len(pairs)]
            c0, t0 = time.process_time(), time.perf_counter()
            scorer.distance(*pair)
            t1 = time.perf_counter()
            c1 = time.process_time()
            times = {}
            for kind, reqs in requests.items():
                req = reqs[i % len(reqs)]
                t2 = time.perf_counter()
                r = client.post(req.path, content=req.body, headers=req.headers)
                times[kind] = time.perf_counter() - t2
                assert req.ok(r), r.text
            if i < 0:
                cpu0 = server.cpu_s()
                continue
            direct.append(t1 - t0)
            direct_cpu += c1 - c0
            for kind, seconds in times.items():
                served[kind].append(seconds)
        server_cpu = (server.cpu_s() - cpu0) / len(requests)
    rows = {kind: {"concurrency": 1, "requests": count, "seconds": sum(lat), "pairs_per_s": count / sum(lat),
                   "errors": 0, "mean_batch": 1.0, "server_cpu_s": server_cpu, "client_cpu_s": None,
                   "route": kind, **percentiles(lat)} for kind, lat in served.items()}
    print(f"  in turns: direct p50 {np.median(direct) * 1000:.1f} ms, "
          + ", ".join(f"{kind} p50 {row['p50_ms']:.1f} ms" for kind, row in rows.items()), flush=True)
    return direct, direct_cpu, rows


def direct_batched(scorer, pairs, count: int) -> tuple[float, float]:
    """Pairs per second of ``score_pairs`` (decoding in its thread pool, batches of 16), and CPU
    seconds per pair (every thread of this process)."""
    work = [pairs[i % len(pairs)] for i in range(count)]
    c0, t0 = time.process_time(), time.perf_counter()
    done = sum(1 for r in scorer.score_pairs(work, batch_size=16) if r.ok)
    assert done == count
    return count / (time.perf_counter() - t0), (time.process_time() - c0) / count


# -- the server ----------------------------------------------------------------------------------


class ServeProcess:
    def __init__(self, models_dir: Path, threads: int, *extra: str):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        script = Path(sys.executable).parent / "lpips-serve"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "lpips_runtime.serve.cli"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([*command, "--net", "alex", "--models-dir", str(models_dir), "--threads",
                                      str(threads), "--host", "127.0.0.1", "--port", str(self.port), "--no-heatmap",
                                      "--no-access-log", "--max-queue", "256", *extra],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError(f"lpips-serve did not start:\n{self.log.read().decode(errors='replace')}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def batch_counts(self) -> tuple[float, float]:
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        samples = Counter()  # summed over the models (labels model, version): this server has one
        for family in text_string_to_metric_families(httpx.get(self.url + "/metrics").text):
            for sample in family.samples:
                samples[sample.name] += sample.value
        return samples["lpips_batch_size_count"], samples["lpips_batch_size_sum"]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


async def _load(url: str, requests: list[Req], concurrency: int, max_requests: int,
                max_seconds: float) -> dict:
    """``concurrency`` clients, each with its own keep-alive connection, posting until ``max_requests``
    are sent or ``max_seconds`` pass; latencies of the answers, and errors (non-200 or a wrong value)."""
    import httpx

    latencies: list[float] = []
    statuses: Counter = Counter()
    wrong = 0
    sent = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def worker():
            nonlocal sent, wrong
            while sent < max_requests and time.monotonic() < deadline:
                req = requests[sent % len(requests)]
                sent += 1
                t0 = time.perf_counter()
                r = await client.post(req.path, content=req.body, headers=req.headers)
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] += 1
                if r.status_code == 200 and not req.ok(r):
                    wrong += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    errors = sum(n for status, n in statuses.items() if status != 200) + wrong
    return {"requests": len(latencies), "seconds": wall, "pairs_per_s": len(latencies) / wall,
            "errors": errors, "statuses": dict(statuses), "wrong_values": wrong, **percentiles(latencies)}


def load(server: ServeProcess, requests, concurrency: int, max_requests: int, max_seconds: float,
         warmup: int) -> dict:
    asyncio.run(_load(server.url, requests, concurrency, warmup, max_seconds))
    batches0, pairs0 = server.batch_counts()
    cpu0, client0 = server.cpu_s(), time.process_time()
    row = asyncio.run(_load(server.url, requests, concurrency, max_requests, max_seconds))
    batches1, pairs1 = server.batch_counts()
    row.update(concurrency=concurrency, server_cpu_s=server.cpu_s() - cpu0, client_cpu_s=time.process_time() - client0,
               mean_batch=(pairs1 - pairs0) / max(1.0, batches1 - batches0))
    print(f"  concurrency {concurrency:>2}: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
          f"{row['pairs_per_s']:.1f} pairs/s, mean batch {row['mean_batch']:.1f}, errors {row['errors']}", flush=True)
    return row


def load_in_turns(server: ServeProcess, requests: dict[str, list[Req]], concurrency: int, per_kind: int,
                  seconds: float, rounds: int) -> dict[str, dict]:
    """Each kind at ``concurrency`` in ``rounds`` alternating rounds of ``per_kind / rounds`` requests
    (a drift in the machine's load then hits every kind alike); rows pooled over the rounds."""
    for reqs in requests.values():  # warm-up
        asyncio.run(_load(server.url, reqs, concurrency, 2 * concurrency, seconds))
    parts: dict[str, list[dict]] = {kind: [] for kind in requests}
    for _ in range(rounds):
        for kind, reqs in requests.items():
            batches0, pairs0 = server.batch_counts()
            cpu0 = server.cpu_s()
            row = asyncio.run(_load(server.url, reqs, concurrency, max(concurrency, per_kind // rounds),
                                    seconds / rounds))
            batches1, pairs1 = server.batch_counts()
            row.update(server_cpu_s=server.cpu_s() - cpu0, batches=batches1 - batches0, pairs=pairs1 - pairs0)
            parts[kind].append(row)
    rows = {}
    for kind, runs in parts.items():
        n, wall = sum(r["requests"] for r in runs), sum(r["seconds"] for r in runs)
        rows[kind] = {"route": kind, "concurrency": concurrency, "requests": n, "seconds": wall,
                      "pairs_per_s": n / wall, "errors": sum(r["errors"] for r in runs),
                      "server_cpu_s": sum(r["server_cpu_s"] for r in runs), "client_cpu_s": None,
                      "mean_batch": sum(r["pairs"] for r in runs) / max(1.0, sum(r["batches"] for r in runs)),
                      # percentiles of the rounds' medians etc. would mislead: the median round's values
                      **{k: float(np.median([r[k] for r in runs])) for k in ("p50_ms", "p95_ms", "p99_ms")},
                      "rounds_pairs_per_s": [r["pairs_per_s"] for r in runs]}
        print(f"  {kind:>9} at {concurrency}: {rows[kind]['pairs_per_s']:.1f} pairs/s, p50 {rows[kind]['p50_ms']:.1f} ms, "
              f"mean batch {rows[kind]['mean_batch']:.1f}, errors {rows[kind]['errors']}", flush=True)
    return rows


WRK_SCRIPT = r"""
wrk.method = "POST"
local f = io.open(os.getenv("LPIPS_BENCH_BODY"), "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("LPIPS_BENCH_TYPE")
if os.getenv("LPIPS_BENCH_HEADER_LENGTH") ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = os.getenv("LPIPS_BENCH_HEADER_LENGTH")
end
local limit = tonumber(os.getenv("LPIPS_BENCH_PER_THREAD"))
local count = 0
function response(status, headers, body)
  count = count + 1
  if count >= limit then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('LPIPS_WRK {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_rows(server: ServeProcess, requests: dict[str, list[Req]], connections: int, max_requests: int,
             seconds: float) -> list[dict]:
    """wrk (an independent load generator) posting one fixed pair per kind: ``connections`` connections on
    2 threads, at most ``max_requests`` requests (its script stops each thread) and ``seconds``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        print("  wrk not installed (apt-get install wrk): no independent load-generator row", flush=True)
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        for kind, reqs in requests.items():
            req = reqs[0]
            body = Path(tmp) / f"{kind}.body"
            body.write_bytes(req.body)
            env = {**os.environ, "LPIPS_BENCH_BODY": str(body), "LPIPS_BENCH_TYPE": req.headers["content-type"],
                   "LPIPS_BENCH_HEADER_LENGTH": req.headers.get("inference-header-content-length", ""),
                   "LPIPS_BENCH_PER_THREAD": str(max(1, max_requests // 2))}
            cpu0 = server.cpu_s()
            done = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "30s",
                                   "-s", str(script), server.url + req.path], env=env, capture_output=True,
                                  text=True, timeout=seconds + 60)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("LPIPS_WRK ")), None)
            if line is None:
                raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
            out = json.loads(line.split(" ", 1)[1])
            wall = out["duration_us"] / 1e6
            # A thread that reached its share of the requests stops, but wrk reports the whole -d duration:
            # then the rate below is a lower bound (the row says so).
            capped = out["requests"] >= 2 * max(1, max_requests // 2)
            row = {"route": kind + (" (request cap hit: rate is a lower bound)" if capped else ""), "tool": "wrk", "concurrency": connections, "requests": out["requests"],
                   "seconds": wall, "pairs_per_s": out["requests"] / wall,
                   "errors": out["non2xx"] + out["socket_errors"], "p50_ms": out["p50_us"] / 1000,
                   "p99_ms": out["p99_us"] / 1000, "server_cpu_s": server.cpu_s() - cpu0}
            print(f"  wrk {kind:>9} at {connections}: {row['pairs_per_s']:.1f} pairs/s, p50 {row['p50_ms']:.1f} ms, "
                  f"errors {row['errors']}", flush=True)
            rows.append(row)
    return rows


def rss_growth(server: ServeProcess, requests, warmup: int, count: int, step: int) -> dict:
    asyncio.run(_load(server.url, requests, 8, warmup, 3600))
    samples = [server.rss_mb()]
    errors = 0
    for _ in range(0, count, step):
        errors += asyncio.run(_load(server.url, requests, 8, step, 3600))["errors"]
        samples.append(server.rss_mb())
    row = {"warmup_requests": warmup, "requests": count, "rss_mb": samples, "growth_mb": samples[-1] - samples[0],
           "errors": errors}
    print(f"  RSS over {count} requests: {samples[0]:.1f} -> {samples[-1]:.1f} MiB "
          f"(max {max(samples):.1f}), errors {errors}", flush=True)
    return row


# -- main ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few requests per level (smoke test, < 1 minute)")
    parser.add_argument("--threads", type=int, default=0, help="ORT threads, direct and server (default: cores)")
    parser.add_argument("--only-v2", action="store_true",
                        help="only the protocol comparison (sections 6 and 7: /v1 and v2 in turns, and wrk), "
                             "written to serve-v2-<date>.json and the serve-v2-table section")
    parser.add_argument("--readme", type=Path, default=README)
    add_models_dir(parser, "$LPIPS_RT_MODELS, ./models or the user data folder, as lpips-serve")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    from lpips_runtime.formatting import float32_json
    from lpips_runtime.model.locate import default_models_dir
    from lpips_runtime.core.scorer import Scorer
    from lpips_runtime.system import physical_cores

    q = args.quick
    threads = args.threads or physical_cores()
    levels = (8, 32) if q else (8, 32, 64)
    per_level, seconds = (24, 10.0) if q else (2000, 60.0)
    rss_warmup, rss_count, rss_step = (32, 128, 64) if q else (2000, 20000, 2000)
    single_n, batched_n = (8, 32) if q else (300, 512)
    models_dir = args.models_dir or default_models_dir()
    report = {"date": today(), "machine": machine_info(), "threads": threads, "net": "alex", "size": 256,
              "quick": q, "targets": {"p50_extra_ms": TARGET_P50_EXTRA_MS, "throughput_share": TARGET_THROUGHPUT_SHARE,
                                      "rss_growth_mb": TARGET_RSS_GROWTH_MB}}
    print(f"serve benchmark (alex 256x256), {threads} threads, {today()}", flush=True)

    pairs = encoded_pairs(16, 256)
    small = encoded_pairs(16, 64)
    warmup = (lambda c: min(2 * c, 8)) if q else (lambda c: 2 * c)
    with Scorer("alex", models_dir=models_dir, threads=threads) as scorer:
        # The server writes each distance as lpips-score --json does (float32_json): the same float32.
        expected = [float32_json(scorer.distance(a, b)) for a, b in pairs]
        requests = make_requests("v1", pairs, expected)
        small_requests = make_requests("v1", small, [float32_json(scorer.distance(a, b)) for a, b in small])
        batched = [] if args.only_v2 else [direct_batched(scorer, pairs, batched_n)]
    if args.only_v2:  # (the Scorer above is closed: its threads must not compete with the server's)
        return protocols(args, report, models_dir, threads, pairs, expected)
    print(f"  direct: batched {batched[0][0]:.1f} pairs/s", flush=True)
    server = ServeProcess(models_dir, threads)
    with Scorer("alex", models_dir=models_dir, threads=threads, spin_between_runs=False) as scorer:
        single, single_cpu, rows = single_in_turns(scorer, server, pairs, {"v1": requests}, single_n)
        single_row = rows["v1"]
    report["server"] = [single_row] + [load(server, requests, c, per_level, seconds, warmup(c)) for c in levels]
    report["rss"] = rss_growth(server, small_requests, rss_warmup, rss_count, rss_step)
    report["server_exit_code"] = server.stop()

    server = ServeProcess(models_dir, threads, "--max-batch", "1")
    report["server_unbatched"] = load(server, requests, 32, per_level, seconds, warmup(32))
    server.stop()

    with Scorer("alex", models_dir=models_dir, threads=threads) as scorer:
        batched.append(direct_batched(scorer, pairs, batched_n))
    report["direct"] = {"single": {"count": len(single), "cpu_s": single_cpu, **percentiles(single)},
                        "batched_pairs_per_s": [rate for rate, _ in batched],
                        "batched_pairs_per_s_median": float(np.median([rate for rate, _ in batched])),
                        "batched_cpu_s_per_pair": float(np.median([cpu for _, cpu in batched]))}
    report["verdict"] = verdict(report)
    publish("serve", "serve-table", report, render(report), readme=args.readme, results=args.results_dir)
    return 0


def protocols(args, report: dict, models_dir: Path, threads: int, pairs, expected) -> int:
    """Sections 6 and 7: /v1 multipart, v2 binary and v2 JSON on one server, in turns; then wrk."""
    from lpips_runtime.core.scorer import Scorer

    q = args.quick
    kinds = {kind: make_requests(kind, pairs, expected) for kind in ("v1", "v2-binary", "v2-json")}
    single_n, per_kind, seconds, rounds = (8, 48, 20.0, 2) if q else (60, 1500, 60.0, 3)
    server = ServeProcess(models_dir, threads)
    try:
        with Scorer("alex", models_dir=models_dir, threads=threads, spin_between_runs=False) as direct_scorer:
            direct, direct_cpu, single = single_in_turns(direct_scorer, server, pairs, kinds, single_n)
        report["direct_single"] = {"count": len(direct), "cpu_s": direct_cpu, **percentiles(direct)}
        report["single"] = single
        report["c32"] = load_in_turns(server, kinds, 32, per_kind, seconds, rounds)
        report["wrk"] = wrk_rows(server, {k: kinds[k] for k in ("v1", "v2-binary")}, 8, 200 if q else 1200,
                                 20 if q else 30)
    finally:
        report["server_exit_code"] = server.stop()
    d, s1, c32 = report["direct_single"], report["single"], report["c32"]
    report["verdict_v2"] = {
        "v2_binary_p50_extra_ms": s1["v2-binary"]["p50_ms"] - d["p50_ms"],
        "v2_binary_p50_ok": s1["v2-binary"]["p50_ms"] - d["p50_ms"] <= TARGET_V2_P50_EXTRA_MS,
        "v2_binary_share_c32": c32["v2-binary"]["pairs_per_s"] / c32["v1"]["pairs_per_s"],
        "v2_binary_share_ok": c32["v2-binary"]["pairs_per_s"] / c32["v1"]["pairs_per_s"] >= TARGET_V2_SHARE,
        "errors": sum(r["errors"] for r in [*c32.values(), *report["wrk"]]),
    }
    text = render_protocols(report)
    if q:
        print(text)
    else:
        publish("serve-v2", "serve-v2-table", report, text, readme=args.readme, results=args.results_dir)
    return 0


def render_protocols(report: dict) -> str:
    m, d, v = report["machine"], report["direct_single"], report["verdict_v2"]
    quick = " **--quick run: too few requests for these numbers to mean much.**" if report["quick"] else ""
    lines = [f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores, load average at start "
             f"{m['load_average_at_start'][0]:.1f}), LPIPS-alex 256x256 PNG pairs, ONNX Runtime CPU, "
             f"{report['threads']} threads, one lpips-serve process answering all three routes; clients on the "
             "same cores. v1: multipart; v2 binary: BYTES inputs and the distance in the binary tensor data "
             "extension; v2 JSON: base64 BYTES, JSON output. Concurrency 1: in turns with the direct "
             "`Scorer.distance` (decoding included); 32: alternating rounds, pooled (p-values: the median "
             "round's)." + quick, "",
             "| route | client | concurrency | requests | p50 ms | p99 ms | pairs/s | mean batch | errors "
             "| server CPU ms per pair |", "|---|---|---|---|---|---|---|---|---|---|",
             f"| direct `Scorer.distance` | in process | 1 | {d['count']} | {d['p50_ms']:.1f} | {d['p99_ms']:.1f} | "
             f"{1000 / d['p50_ms']:.1f} | 1 | 0 | {1000 * d['cpu_s'] / d['count']:.1f} (this process) |"]
    for rows, client in ((report["single"], "httpx"), (report["c32"], "httpx async")):
        for kind, r in rows.items():
            lines.append(f"| {kind} | {client} | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {r['pairs_per_s']:.1f} | {r['mean_batch']:.1f} | {r['errors']} | "
                         f"{1000 * r['server_cpu_s'] / r['requests']:.1f} |")
    for r in report["wrk"]:
        lines.append(f"| {r['route']} | wrk | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['pairs_per_s']:.1f} | | {r['errors']} | "
                     f"{1000 * r['server_cpu_s'] / max(1, r['requests']):.1f} |")

    def mark(ok):
        return "met" if ok else "**missed**"

    lines += ["", "| target | measured | |", "|---|---|---|",
              f"| v2 binary p50 at concurrency 1 <= direct + {TARGET_V2_P50_EXTRA_MS:g} ms | direct + "
              f"{v['v2_binary_p50_extra_ms']:.2f} ms | {mark(v['v2_binary_p50_ok'])} |",
              f"| v2 binary throughput at concurrency 32 >= {TARGET_V2_SHARE:.0%} of /v1 multipart | "
              f"{v['v2_binary_share_c32']:.1%} | {mark(v['v2_binary_share_ok'])} |",
              f"| errors | {v['errors']} | {mark(v['errors'] == 0)} |"]
    return "\n".join(lines)


def verdict(report: dict) -> dict:
    by_c = {row["concurrency"]: row for row in report["server"]}
    direct = report["direct"]
    extra = by_c[1]["p50_ms"] - direct["single"]["p50_ms"]
    share = by_c[32]["pairs_per_s"] / direct["batched_pairs_per_s_median"]
    errors = sum(row["errors"] for row in report["server"]) + report["server_unbatched"]["errors"] \
        + report["rss"]["errors"]
    return {"p50_extra_ms": extra, "p50_ok": extra <= TARGET_P50_EXTRA_MS,
            "throughput_share_c32": share, "throughput_ok": share >= TARGET_THROUGHPUT_SHARE,
            "batching_gain_c32": by_c[32]["pairs_per_s"] / report["server_unbatched"]["pairs_per_s"],
            "errors": errors, "errors_ok": errors == 0,
            "rss_growth_mb": report["rss"]["growth_mb"], "rss_ok": report["rss"]["growth_mb"] <= TARGET_RSS_GROWTH_MB}


def render(report: dict) -> str:
    m, d, v = report["machine"], report["direct"], report["verdict"]
    quick = " **--quick run: too few requests for these numbers to mean much.**" if report["quick"] else ""
    single = d["single"]
    lines = [f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores, load average at start "
             f"{m['load_average_at_start'][0]:.1f}), LPIPS-alex 256x256 PNG pairs, ONNX Runtime CPU, "
             f"{report['threads']} threads; the httpx load generator runs on the same cores (client CPU seconds "
             "per level are in the JSON; CPU ms per pair: the server process's, or the direct Scorer's). CPU time "
             "per pair is the figure least moved by other load on a shared machine." + quick, "",
             "| path | concurrency | requests | p50 ms | p95 ms | p99 ms | pairs/s | mean batch | errors "
             "| CPU ms per pair |", "|---|---|---|---|---|---|---|---|---|---|",
             f"| direct `Scorer.distance` (in turns with the server) | 1 | {single['count']} | "
             f"{single['p50_ms']:.1f} | {single['p95_ms']:.1f} | {single['p99_ms']:.1f} | "
             f"{1000 / single['p50_ms']:.1f} | 1 | 0 | {1000 * single['cpu_s'] / single['count']:.1f} |",
             f"| direct `Scorer.score_pairs` (batches of 16) | | | | | | {d['batched_pairs_per_s_median']:.1f} | 16 "
             f"| 0 | {1000 * d['batched_cpu_s_per_pair']:.1f} |"]
    rows = [("lpips-serve, in turns with direct" if r["concurrency"] == 1 else "lpips-serve, batching on", r)
            for r in report["server"]]
    rows.append(("lpips-serve, batching off (--max-batch 1)", report["server_unbatched"]))
    for name, r in rows:
        lines.append(f"| {name} | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['pairs_per_s']:.1f} | {r['mean_batch']:.1f} | {r['errors']} | "
                     f"{1000 * r['server_cpu_s'] / r['requests']:.1f} |")
    rss = report["rss"]

    def mark(ok):
        return "met" if ok else "**missed**"

    lines += ["", "| target | measured | |", "|---|---|---|",
              f"| single-pair p50 <= direct + {TARGET_P50_EXTRA_MS:g} ms | direct + {v['p50_extra_ms']:.2f} ms | "
              f"{mark(v['p50_ok'])} |",
              f"| concurrency-32 throughput >= {TARGET_THROUGHPUT_SHARE:.0%} of direct batched | "
              f"{v['throughput_share_c32']:.0%} | {mark(v['throughput_ok'])} |",
              f"| 0 errors below the queue limit (256) | {v['errors']} | {mark(v['errors_ok'])} |",
              f"| RSS growth <= {TARGET_RSS_GROWTH_MB:g} MB over {rss['requests']:,} requests after "
              f"{rss['warmup_requests']:,} (64x64) | {rss['growth_mb']:+.1f} MiB ({rss['rss_mb'][0]:.0f} -> "
              f"{rss['rss_mb'][-1]:.0f}) | {mark(v['rss_ok'])} |",
              f"| batching gain at concurrency 32 (on / off) | {v['batching_gain_c32']:.2f}x | |"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
