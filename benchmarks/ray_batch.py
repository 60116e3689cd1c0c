"""Ray benchmark: dataset-scale pair scoring and all-pairs search on a local Ray cluster vs one process.

    python benchmarks/ray_batch.py [--quick]

Runs itself inside a private network namespace (``unshare --net --pid --fork --mount-proc``, loopback
only: Ray 2.60 otherwise opens connections through the machine's interface address). LPIPS-alex,
fp32, ONNX Runtime on the CPU, real photographs (scikit-image's, cropped and distorted) as PNG files.

1. Pairs: N pairs of 256x256 PNGs (decoded per pair), scored by ``Scorer.score_pairs`` in one process
   (threads = physical cores, and 1) and by ``write_pair_scores`` (the ``lpips-score --ray`` path:
   read, decode, score, Parquet parts) with 1 and 2 actors, decoding in separate tasks (the default)
   or fused into the actors (``fuse_decode``; the full mode only). Also one core's decode-only rate (the CPUs
   a GPU actor needs for decoding) and Ray's fixed costs: the cluster's start, and a run's fixed part
   and per-pair overhead from runs of two sizes (t = fixed + per_pair * N).
2. All pairs: near-duplicate search over M 128x128 images (planted near duplicates among them) with
   ``all_pairs`` (threshold + top-k), its stages' times, the peak RSS of each embedding actor and tile
   worker (VmHWM sampled from /proc), the disk used (Ray's spilled objects at their peak, plus
   outputs), and ``Scorer.distance_matrix`` in one process on the same images for the ratio.

Full mode takes about 10 minutes on the 2-core machine; --quick under 2 minutes (a smoke test).
Writes benchmarks/results/ray-<date>.json and the ray-table section of benchmarks/README.md.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent


def _load_common():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_common", _HERE / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_common = _load_common()
README, machine_info, replace_section, today = (_common.README, _common.machine_info, _common.replace_section,
                                                _common.today)
only_loopback, rerun_in_private_network = _common.only_loopback, _common.rerun_in_private_network

PAIR_SIZE, ALL_PAIRS_SIZE = 256, 128
NEAR = 0.02  # near-duplicate threshold of the all-pairs search (planted twins differ by +-2 levels of noise)


# -- inputs -------------------------------------------------------------------------------------


def _photos(count: int, size: int, seed: int) -> list[np.ndarray]:
    """``count`` distinct size x size RGB crops of scikit-image's photographs, lightly distorted."""
    import cv2
    import skimage.data

    sources = [np.ascontiguousarray(getattr(skimage.data, n)()[..., :3]) for n in
               ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")]
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        img = sources[k % len(sources)]
        side = int(min(img.shape[:2]) * rng.uniform(0.25, 1.0))  # crops of varied scale and place,
        y, x = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        crop = cv2.resize(img[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        crop = np.rot90(crop, rng.integers(4))[:, ::rng.choice([-1, 1])]  # turned and mirrored,
        gains = rng.uniform(0.7, 1.3, 3)  # with other colours and noise
        noisy = crop.astype(np.float32) * gains + rng.normal(0, rng.uniform(1, 6), crop.shape)
        out.append(np.ascontiguousarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return out


def _write_pngs(images: list[np.ndarray], folder: Path, prefix: str) -> list[str]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, img in enumerate(images):
        paths.append(str(folder / f"{prefix}{k:05d}.png"))
        cv2.imwrite(paths[-1], img[..., ::-1])
    return paths


# -- sampling of worker memory and spilled bytes ------------------------------------------------------


def _private_mb(pid: str) -> float:
    """Memory only this process holds (Private_Clean + Private_Dirty), MiB: RSS also counts the pages of
    Ray's shared object store a worker has read, which every worker on the node shares."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


class Sampler(threading.Thread):
    """Polls /proc every 0.2 s for Ray workers' peak RSS (VmHWM) and peak private memory, by process
    title, and for the size of the spilled objects under a folder."""

    def __init__(self, spill_root: Path):
        super().__init__(daemon=True)
        self.spill_root, self.stop_flag = spill_root, threading.Event()
        self.peaks: dict[int, tuple[str, float, float]] = {}
        self.spill_peak = 0

    def run(self):
        while not self.stop_flag.wait(0.2):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                    if not title.startswith("ray::"):
                        continue
                    hwm = next(int(line.split()[1]) for line in (entry / "status").read_text().splitlines()
                               if line.startswith("VmHWM:"))
                    private = _private_mb(entry.name)
                except (OSError, StopIteration, ValueError):
                    continue
                old = self.peaks.get(int(entry.name), ("", 0.0, 0.0))
                self.peaks[int(entry.name)] = (title if title != "ray::IDLE" else old[0] or title,
                                               max(old[1], hwm / 1024), max(old[2], private))
            size = 0
            for path in self.spill_root.rglob("*"):
                if "spill" in str(path) and path.is_file():
                    try:
                        size += path.stat().st_size
                    except OSError:
                        pass
            self.spill_peak = max(self.spill_peak, size)

    def peak(self, marker: str, private: bool = False) -> float:
        """Largest peak RSS (or private memory), MiB, among workers whose title contained ``marker``."""
        return max((p[2] if private else p[1] for p in self.peaks.values() if marker in p[0]), default=0.0)

    def finish(self):
        self.stop_flag.set()
        self.join()


# -- measurements -------------------------------------------------------------------------------------


def bench_single(models: str, pairs: list[tuple[str, str]], threads: int) -> float:
    from lpips_runtime import Scorer

    with Scorer("alex", models_dir=models, threads=threads, auto_export=False) as scorer:
        list(scorer.score_pairs(pairs[:8]))  # sessions open, shapes planned
        t0 = time.perf_counter()
        for r in scorer.score_pairs(pairs):
            assert r.ok, r.error
        return time.perf_counter() - t0


def bench_decode(pairs: list[tuple[str, str]]) -> float:
    """Seconds to decode and validate the pairs on one core (``Scorer.load_pair``, no inference)."""
    from lpips_runtime import Scorer

    scorer = Scorer("alex", auto_export=False)
    t0 = time.perf_counter()
    for a, b in pairs:
        scorer.load_pair(a, b)
    return time.perf_counter() - t0


def bench_ray_pairs(models: str, pairs, out: Path, actors: int, decode_tasks: bool) -> float:
    from lpips_runtime.cluster import ScorerSettings, write_pair_scores

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    report = write_pair_scores(pairs, out, ScorerSettings(models_dir=models), actors=actors,
                               fuse_decode=not decode_tasks)
    elapsed = time.perf_counter() - t0
    assert report.scored == len(pairs) and report.summary.stats.failures == 0
    return elapsed


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _common.cluster_parser(__doc__.split("\n\n")[0], "small counts (smoke test, < 2 minutes)").parse_args(argv)
    if not only_loopback():
        return rerun_in_private_network(__file__, argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    from lpips_runtime import Scorer
    from lpips_runtime.cluster import ScorerSettings, all_pairs, ray_session
    from lpips_runtime.system import physical_cores

    q = args.quick
    n_pairs, n_small, n_distinct = (24, 8, 12) if q else (256, 32, 64)
    n_all, store_mb = (120, 128) if q else (2000, 512)
    threads = physical_cores()
    report = {"date": today(), "machine": machine_info(), "net": "alex", "threads_single": threads,
              "pair_size": PAIR_SIZE, "all_pairs_size": ALL_PAIRS_SIZE, "quick": q}
    print(f"Ray benchmark (alex, fp32, CPU), {today()}{' (quick)' if q else ''}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lpips-ray-bench-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        with Scorer("alex", models_dir=args.models_dir) as scorer:  # locate or export fused, encoder and head
            scorer.model_info()
            scorer.embed(np.zeros((1, 3, 32, 32), np.float32))
            models = str(scorer.models_dir.resolve())
        rng = np.random.default_rng(0)
        files = _write_pngs(_photos(n_distinct, PAIR_SIZE, 1), tmp / "pairs", "p")
        pairs = [(files[i], files[j]) for i, j in rng.integers(0, n_distinct, (n_pairs, 2))]

        single = bench_single(models, pairs, threads)
        single_1 = bench_single(models, pairs, 1)
        decode = bench_decode(pairs[:max(8, n_pairs // 8)])
        report["single"] = {"pairs": n_pairs, "s": single, "pairs_per_s": n_pairs / single,
                            "s_1_thread": single_1, "pairs_per_s_1_thread": n_pairs / single_1}
        report["decode_one_core_pairs_per_s"] = max(8, n_pairs // 8) / decode
        print(f"  single process: {n_pairs / single:.1f} pairs/s; decode only, one core: "
              f"{report['decode_one_core_pairs_per_s']:.0f} pairs/s", flush=True)

        t0 = time.perf_counter()
        # 4 logical CPUs on 2 cores: room for 2 actors and decode tasks beside them.
        with ray_session(num_cpus=4, object_store_memory=store_mb << 20, temp_dir=str(tmp / "ray")):
            report["cluster_start_s"] = time.perf_counter() - t0
            rows = []
            for actors, decode_tasks in ((1, True), (2, True)) if q else ((1, False), (1, True), (2, False),
                                                                           (2, True)):
                s = bench_ray_pairs(models, pairs, tmp / "out", actors, decode_tasks)
                rows.append({"actors": actors, "decode": "tasks" if decode_tasks else "fused in actors",
                             "s": s, "pairs_per_s": n_pairs / s})
                print(f"  ray, {actors} actor(s), decode {rows[-1]['decode']}: {n_pairs / s:.1f} pairs/s "
                      f"({s:.1f} s)", flush=True)
            report["ray"] = rows
            small = statistics.median(bench_ray_pairs(models, pairs[:n_small], tmp / "out", 1, True)
                                      for _ in range(1 if q else 3))
            large = next(r["s"] for r in rows if r["actors"] == 1 and r["decode"] == "tasks")
            per_pair = (large - small) / (n_pairs - n_small)
            report["overhead"] = {"small_pairs": n_small, "small_s": small, "fixed_s": small - per_pair * n_small,
                                  "per_pair_ms": per_pair * 1e3, "single_per_pair_ms": single_1 / n_pairs * 1e3}
            print(f"  fixed cost of a run {report['overhead']['fixed_s']:.1f} s, {per_pair * 1e3:.1f} ms per pair "
                  f"(one process, 1 thread: {single_1 / n_pairs * 1e3:.1f} ms)", flush=True)

            # 2. all-pairs near-duplicate search
            base = _photos(n_all - n_all // 40, ALL_PAIRS_SIZE, 2)
            twins = [np.clip(img.astype(np.int16) + np.random.default_rng(k).integers(-2, 3, img.shape), 0, 255)
                     .astype(np.uint8) for k, img in enumerate(base[:n_all // 40])]  # planted near duplicates
            images = _write_pngs(base + twins, tmp / "all", "a")
            sampler = Sampler(tmp / "ray")
            sampler.start()
            stages = {}

            def on_progress(stage, done, total):
                stages.setdefault(stage, [time.perf_counter(), 0.0])[1] = time.perf_counter()

            t0 = time.perf_counter()
            ap = all_pairs(images, tmp / "ap", ScorerSettings(models_dir=models), threshold=NEAR, top_k=5, actors=2,
                           on_progress=on_progress)
            elapsed = time.perf_counter() - t0
            sampler.finish()
            out_bytes = sum(p.stat().st_size for p in (tmp / "ap").rglob("*") if p.is_file())
            report["all_pairs"] = {
                "images": n_all, "pairs": ap.summary.stats.n, "planted": len(twins), "near_duplicates": ap.near_duplicates,
                "s": elapsed, "embed_s": stages["embed"][1] - t0, "tiles_s": elapsed - (stages["embed"][1] - t0),
                "peak_rss_embed_actor_mb": sampler.peak("Embedder"),
                "peak_rss_tile_worker_mb": sampler.peak("distance_tile"),
                "peak_private_embed_actor_mb": sampler.peak("Embedder", private=True),
                "peak_private_tile_worker_mb": sampler.peak("distance_tile", private=True),
                "spilled_peak_mb": sampler.spill_peak / 2**20, "output_mb": out_bytes / 2**20,
                "object_store_mb": store_mb, "mean": ap.summary.stats.mean}
            print(f"  all pairs of {n_all} at {ALL_PAIRS_SIZE}x{ALL_PAIRS_SIZE}: {elapsed:.1f} s, "
                  f"{ap.near_duplicates} near duplicates ({len(twins)} planted)", flush=True)
        # the single-process reference on the same images, after the cluster is gone
        with Scorer("alex", models_dir=models, threads=threads, auto_export=False) as scorer:
            t0 = time.perf_counter()
            matrix = scorer.distance_matrix(images, spill_dir=tmp)
            report["all_pairs"]["single_s"] = time.perf_counter() - t0
            iu = np.triu_indices(n_all, 1)
            report["all_pairs"]["single_near_duplicates"] = int((matrix[iu] < NEAR).sum())
            report["all_pairs"]["mean_abs_diff"] = abs(float(matrix[iu].astype(np.float64).mean())
                                                       - report["all_pairs"]["mean"])
    text = render(report)
    print("\n" + text)
    if not q or args.readme != README:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        path = args.results_dir / f"ray-{today()}.json"
        path.write_text(json.dumps(report, indent=1) + "\n")
        replace_section("ray-table", text, args.readme)
        print(f"wrote {path} and the ray-table section of {args.readme}")
    return 0


def render(r: dict) -> str:
    m, s, o, a = r["machine"], r["single"], r["overhead"], r["all_pairs"]
    lines = [f"Run {r['date']} on {m['cpu']} ({m['physical_cores']} cores, shared: load average "
             f"{m['load_average_at_start'][0]:.1f} at the start), LPIPS-alex fp32 on ONNX Runtime (CPU), "
             f"{s['pairs']} pairs of {r['pair_size']}x{r['pair_size']} PNGs decoded per pair; local Ray cluster "
             "of 4 logical CPUs in a private network namespace, one run each (timings are noisy here).", "",
             "| pair scoring | pairs/s | vs one process |", "|---|---|---|",
             f"| one process, `Scorer.score_pairs`, {r['threads_single']} threads | {s['pairs_per_s']:.1f} | 1.00x |",
             f"| one process, `Scorer.score_pairs`, 1 thread | {s['pairs_per_s_1_thread']:.1f} | "
             f"{s['pairs_per_s_1_thread'] / s['pairs_per_s']:.2f}x |"]
    for row in r["ray"]:
        lines.append(f"| Ray, {row['actors']} actor(s) of 1 CPU, decoding {row['decode']} | {row['pairs_per_s']:.1f} "
                     f"| {row['pairs_per_s'] / s['pairs_per_s']:.2f}x |")
    lines += ["", f"Ray's fixed costs: starting the local cluster {r['cluster_start_s']:.1f} s; each run "
              f"{o['fixed_s']:.1f} s (actor start, model shipping, reading the table) plus "
              f"{o['per_pair_ms']:.1f} ms per pair with 1 actor (1 thread) against {o['single_per_pair_ms']:.1f} ms per "
              f"pair in one process with 1 thread (from runs of {o['small_pairs']} and {s['pairs']} pairs). Decoding and validating a "
              f"256x256 pair takes one core {1e3 / r['decode_one_core_pairs_per_s']:.1f} ms "
              f"({r['decode_one_core_pairs_per_s']:.0f} pairs/s).", "",
              "Projection for a GPU cluster: no GPU figures exist yet (the GPU section above is not measured), so "
              "no pairs/s per GPU can be quoted. Once `benchmarks/gpu.py` has run, a cluster scores about "
              "G x (pairs/s per GPU at batch 16) as long as it has (pairs/s per GPU) / "
              f"{r['decode_one_core_pairs_per_s']:.0f} CPU cores per GPU for decoding 256x256 PNGs, less "
              "Ray's per-pair overhead measured above, which is paid on the decode CPUs and the object store.", "",
              f"| all-pairs search, {a['images']} images {r['all_pairs_size']}x{r['all_pairs_size']} "
              f"({a['pairs']:,} pairs) | value |", "|---|---|",
              f"| Ray, 2 embedding actors, tiles as tasks: total | {a['s']:.1f} s (embedding {a['embed_s']:.1f} s, "
              f"tiles {a['tiles_s']:.1f} s) |",
              f"| one process, `Scorer.distance_matrix`, {r['threads_single']} threads | {a['single_s']:.1f} s "
              f"({a['single_s'] / a['s']:.2f}x the Ray time) |",
              f"| near duplicates under {NEAR} (planted: {a['planted']}) | {a['near_duplicates']} "
              f"(one process: {a['single_near_duplicates']}) |",
              f"| peak memory per embedding actor / per tile worker: RSS (with the object store's shared pages "
              f"it read) | {a['peak_rss_embed_actor_mb']:.0f} / {a['peak_rss_tile_worker_mb']:.0f} MiB |",
              f"| the same, private memory only (Private_Clean + Private_Dirty) | "
              f"{a['peak_private_embed_actor_mb']:.0f} / {a['peak_private_tile_worker_mb']:.0f} MiB |",
              f"| disk: spilled features at peak (object store {a['object_store_mb']} MiB) / outputs | "
              f"{a['spilled_peak_mb']:.0f} / {a['output_mb']:.1f} MiB |",
              f"| mean pairwise distance, Ray vs one process | {a['mean']:.6f} (difference {a['mean_abs_diff']:.1e}) |"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
