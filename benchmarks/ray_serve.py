"""Ray Serve benchmark: lpips-serve's app as a Ray Serve deployment, with its own batcher or with
Ray Serve's ``@serve.batch``, against plain ``lpips-serve`` (uvicorn, no Ray) in the same run.

    python benchmarks/ray_serve.py [--quick]

Runs itself inside a private network namespace (loopback only: Ray 2.60 otherwise opens connections
through the machine's interface address) with a local cluster of 4 logical CPUs. LPIPS-alex, fp32,
ONNX Runtime on the CPU, 128x128 PNG pairs (benchmarks/serve.py's), one replica of 2 CPUs. Variants:

* ``service batcher``: the product (``lpips_runtime.cluster.serve``): the app's DynamicBatcher
  (same-shape buckets, max 16 pairs, 2 ms wait) inside the replica;
* ``@serve.batch``: the same app with its batcher set to single pairs, each model call handed to a
  ``@serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)`` method that groups same-shape pairs
  and runs them in one call (how Ray Serve's documentation batches);
* ``no batching``: the app with --max-batch 1;
* ``lpips-serve``: the same app under uvicorn in its own process (no Ray), batcher on, threads 2.

Each is loaded by benchmarks/serve.py's generator (keep-alive httpx clients, every answer checked
against the direct Scorer value) at concurrency 16: pairs/s and latency percentiles. The client shares
the 2 cores. Full mode: about 6 minutes here; --quick: about 2 minutes (mostly cluster and replica
start-up). Writes benchmarks/results/ray-serve-<date>.json and the ray-serve-table section of
benchmarks/README.md.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", _HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



_common = _load("_common")
if not (_HERE / "serve.py").exists() or importlib.util.find_spec("lpips_runtime.serve") is None:
    sys.exit("benchmarks/ray_serve.py needs lpips-serve (lpips_runtime.serve and benchmarks/serve.py, issue 12)")
_serve_bench = _load("serve")  # its inputs, load generator and lpips-serve process

CONCURRENCY = 16
SIZE = 128


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _SingleToRayBatch:
    """Stands in for the Scorer inside the app: each model call (one pair, the app's batcher being set
    to single pairs) goes through the replica's ``@serve.batch`` method; everything else is the Scorer's."""

    pipeline_depth = 64  # let the app hand over many single pairs at once, for @serve.batch to group

    def __init__(self, scorer, submit):
        self._scorer, self._submit = scorer, submit

    def __getattr__(self, name):
        return getattr(self._scorer, name)

    def run_prepared(self, parts0, parts1, *, spatial=False):
        """One pair -> the Scorer's answer for a batch of one (float32 [1], or [1,1,H,W] maps)."""
        return self._submit(parts0[0], parts1[0], spatial)[None]


def _ray_batch_replica():
    """The @serve.batch variant of ``cluster.serve.LpipsReplica`` (defined here: measurement only)."""
    from ray import serve

    from lpips_runtime.cluster.serve import LpipsReplica

    class RayBatchReplica(LpipsReplica):
        def __init__(self, model, serve_settings, cpus=1.0):
            super().__init__(model, replace(serve_settings, max_batch=1, max_wait_ms=0.0), cpus)
            self._loop = None  # the event loop requests run on (where @serve.batch must be called)

        def __serve_build_asgi_app__(self):
            from lpips_runtime.serve.app import create_app

            app = create_app(_SingleToRayBatch(self.scorer, self._from_thread), self.serve_settings)
            self.service = app.state.service

            async def noting_the_loop(scope, receive, send):
                if scope["type"] == "http":  # not the lifespan's loop: @serve.batch binds to its first loop
                    self._loop = asyncio.get_running_loop()
                await app(scope, receive, send)

            return noting_the_loop

        def _from_thread(self, a, b, spatial):
            if self._loop is None:  # the warm-up, before any request
                return self.scorer.run_prepared([a], [b], spatial=spatial)
            return asyncio.run_coroutine_threadsafe(self.batched(a, b, spatial), self._loop).result()

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
        async def batched(self, parts0, parts1, spatial):
            import numpy as np

            out = [None] * len(parts0)
            groups = {}
            for i, (a, s) in enumerate(zip(parts0, spatial)):
                groups.setdefault((a.shape, a.dtype.str, s), []).append(i)
            loop = asyncio.get_running_loop()
            for (_, _, s), rows in groups.items():
                values = await loop.run_in_executor(None, lambda: self.scorer.run_prepared(
                    [parts0[i] for i in rows], [parts1[i] for i in rows], spatial=s))
                for i, v in zip(rows, values):
                    out[i] = np.asarray(v)
            return out

    return RayBatchReplica


def deploy_variant(name: str, models: str, port: int) -> str:
    """Deploy one Ray Serve variant (replacing the previous one) and wait until /readyz answers 200."""
    import httpx

    from lpips_runtime.cluster import ScorerSettings
    from lpips_runtime.cluster.serve import build_application, deploy
    from lpips_runtime.serve.settings import ServeSettings

    settings = ServeSettings(heatmap=False, max_batch=1 if name == "no batching" else 16, warmup_size=(SIZE, SIZE))
    app = build_application(ScorerSettings(models_dir=models, threads=2), settings, cpus_per_replica=2,
                            replica=_ray_batch_replica() if name == "@serve.batch" else None)
    deploy(app, host="127.0.0.1", port=port)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name}: not ready after 300 s")


def measure(url: str, requests, count: int) -> dict:
    """benchmarks/serve.py's load at ``CONCURRENCY``: a warm-up, then ``count`` requests."""
    asyncio.run(_serve_bench._load(url, requests, CONCURRENCY, 2 * CONCURRENCY, 120))
    return asyncio.run(_serve_bench._load(url, requests, CONCURRENCY, count, 600))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _common.cluster_parser(__doc__.split("\n\n")[0], "fewer requests (smoke test, about 2 minutes)").parse_args(argv)
    if not _common.only_loopback():
        return _common.rerun_in_private_network(__file__, argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    from lpips_runtime import Scorer
    from lpips_runtime.cluster import ray_session
    from lpips_runtime.formatting import float32_json

    count = 96 if args.quick else 800
    with Scorer("alex", models_dir=args.models_dir) as scorer:
        scorer.model_info()
        models = str(scorer.models_dir.resolve())
        pairs = _serve_bench.encoded_pairs(32, SIZE)
        # Answers carry each distance as lpips-score --json writes it (float32_json): the same float32.
        requests = [(*_serve_bench.multipart(a, b), float32_json(scorer.distance(a, b))) for a, b in pairs]
    report = {"date": _common.today(), "machine": _common.machine_info(), "net": "alex", "size": SIZE,
              "concurrency": CONCURRENCY, "requests": count, "rows": []}
    print(f"Ray Serve benchmark (alex, {SIZE}x{SIZE}, concurrency {CONCURRENCY}), {report['date']}", flush=True)

    def record(name: str, row: dict) -> None:
        row["variant"] = name
        report["rows"].append(row)
        print(f"  {name}: {row['pairs_per_s']:.1f} pairs/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
              f"errors {row['errors']}", flush=True)

    server = _serve_bench.ServeProcess(Path(models), 2, "--max-batch", "16")
    try:
        record("lpips-serve (uvicorn, no Ray)", measure(server.url, requests, count))
    finally:
        server.stop()
    port = _free_port()
    ray_tmp = _common.private_ray_temp_dir()  # never the machine-wide /tmp/ray
    try:
        with ray_session(num_cpus=4, object_store_memory=256 << 20, temp_dir=ray_tmp):
            for name in ("service batcher", "@serve.batch", "no batching"):
                record(f"Ray Serve, {name}", measure(deploy_variant(name, models, port), requests, count))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = render(report)
    print("\n" + text)
    if not args.quick or args.readme != _common.README:
        _common.publish("ray-serve", "ray-serve-table", report, text, readme=args.readme,
                        results_dir=args.results_dir)
    return 0


def render(r: dict) -> str:
    m = r["machine"]
    base = r["rows"][0]["pairs_per_s"]
    lines = [f"Run {r['date']} on {m['cpu']} ({m['physical_cores']} cores, shared: load average "
             f"{m['load_average_at_start'][0]:.1f} at the start), LPIPS-alex fp32 on ONNX Runtime (CPU, 2 threads), "
             f"{r['size']}x{r['size']} PNG pairs, {r['requests']} requests at concurrency {r['concurrency']} "
             "(benchmarks/serve.py's load generator, on the same 2 cores), one replica of 2 CPUs.", "",
             "| variant | pairs/s | vs lpips-serve | p50 ms | p95 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['variant']} | {row['pairs_per_s']:.1f} | {row['pairs_per_s'] / base:.2f}x | "
                     f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
