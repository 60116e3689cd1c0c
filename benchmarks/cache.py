"""Feature-cache benchmark: embed once, compare many, against the fused graph pair by pair (LPIPS-alex, ORT).

    python benchmarks/cache.py [--quick]

1. one reference against 64 candidates at 256x256: ``Scorer.one_to_many`` vs 64 fused pair runs
   (both batched 16 at a time), timed in turns;
2. all pairs of 100 images at 64x64: ``Scorer.distance_matrix`` vs all 4,950 fused pair runs;
3. all pairs of 100 images at 256x256: ``distance_matrix`` vs fused pair runs timed on a sample of pairs
   and scaled to 4,950 (each fused pair costs the same; the whole set would take minutes).
Inputs are float32 NCHW arrays in [-1,1], preprocessed before timing. Also checks that both paths agree
(max abs difference). Writes benchmarks/results/cache-<date>.json and the cache-table section of
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (README, RESULTS, add_models_dir, interleaved_runs, machine_info, median,  # noqa: E402
                     replace_section, today)


def _images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, h, w)).astype(np.float32)


def fused_pairs(scorer, x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Fused-graph distances of the given (i, j) index pairs, batched as the scorer batches."""
    size = scorer.batch_size
    return np.concatenate([scorer.distance(x[pairs[k:k + size, 0]], x[pairs[k:k + size, 1]])
                           for k in range(0, len(pairs), size)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and counts, one repeat (smoke test)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    add_models_dir(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    from lpips_runtime.core.scorer import Scorer
    from lpips_runtime.system import physical_cores

    threads = args.threads or physical_cores()
    q = args.quick
    n_cand, n_all, big, sample = (8, 12, 64, 16) if q else (64, 100, 256, 320)
    repeats = 1 if q else 5
    report = {"date": today(), "machine": machine_info(), "threads": threads, "net": "alex", "batch": 16}
    print(f"feature-cache benchmark (alex), {threads} threads, {today()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lpips-cache-bench-") as tmp:
        scorer = Scorer("alex", models_dir=args.models_dir or tmp, threads=threads, batch_size=16)
        scorer.embed(_images(1, 64, 64, 0))  # finds or exports (fused, encoder, head) and opens the sessions
        scorer.distance(_images(1, 64, 64, 0), _images(1, 64, 64, 1))

        # 1. one reference vs many
        ref, cands = _images(1, big, big, 1), _images(n_cand, big, big, 2)
        refs = np.repeat(ref, n_cand, axis=0)
        times = interleaved_runs({"fused": lambda: scorer.distance(refs, cands),
                                  "cache": lambda: scorer.one_to_many(ref, cands)}, repeats)
        diff = float(np.abs(scorer.distance(refs, cands) - scorer.one_to_many(ref, cands)).max())
        one = {"size": big, "candidates": n_cand, "fused_s": median(times["fused"]), "cache_s": median(times["cache"]),
               "times": times, "max_abs_diff": diff}
        one["speedup"] = one["fused_s"] / one["cache_s"]
        report["one_to_many"] = one
        print(f"  1 vs {n_cand} at {big}x{big}: fused {one['fused_s']:.2f} s, cache {one['cache_s']:.2f} s, "
              f"{one['speedup']:.2f}x (max |diff| {diff:.1e})", flush=True)

        # 2. and 3. all pairs
        report["all_pairs"] = []
        for size, full in ((64, True), (big, q)):
            x = _images(n_all, size, size, 3 + size)
            pairs = np.array([(i, j) for i in range(n_all) for j in range(i + 1, n_all)])
            scorer.distance_matrix(x)  # warm-up with the same call: ORT plans each new input shape once
            fused_pairs(scorer, x, pairs[:16])
            cache_t = []
            for _ in range(max(1, repeats - 2)):
                t0 = time.perf_counter()
                matrix = scorer.distance_matrix(x)
                cache_t.append(time.perf_counter() - t0)
            measured = pairs if full else pairs[np.random.default_rng(0).choice(len(pairs), sample, replace=False)]
            t0 = time.perf_counter()
            fused = fused_pairs(scorer, x, measured)
            fused_t = (time.perf_counter() - t0) * len(pairs) / len(measured)
            diff = float(np.abs(matrix[measured[:, 0], measured[:, 1]] - fused).max())
            row = {"size": size, "images": n_all, "pairs": len(pairs), "fused_pairs_timed": len(measured),
                   "fused_s": fused_t, "cache_s": median(cache_t), "cache_times": cache_t, "max_abs_diff": diff}
            row["speedup"] = row["fused_s"] / row["cache_s"]
            report["all_pairs"].append(row)
            how = "all" if full else f"{len(measured)} timed, scaled"
            print(f"  all pairs of {n_all} at {size}x{size}: fused {fused_t:.1f} s ({how}), cache "
                  f"{row['cache_s']:.2f} s, {row['speedup']:.1f}x (max |diff| {diff:.1e})", flush=True)
        scorer.close()
    text = render(report)
    print("\n" + text)
    if not q or args.readme != README:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        suffix = "" if threads == physical_cores() else f"-threads-{threads}"
        path = args.results_dir / f"cache-{today()}{suffix}.json"
        path.write_text(json.dumps(report, indent=1) + "\n")
        replace_section(f"cache-table{suffix}", text, args.readme)
        print(f"wrote {path} and the cache-table{suffix} section of {args.readme}")
    return 0


def render(report: dict) -> str:
    m = report["machine"]
    one = report["one_to_many"]
    lines = [f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores), {report['threads']} threads, "
             f"LPIPS-alex on ONNX Runtime, batches of {report['batch']}, float32 arrays preprocessed before timing "
             "(medians; fused and cached paths timed in turns or back to back in one run).", "",
             "| workload | fused graph | feature cache | speedup | max abs diff |", "|---|---|---|---|---|",
             f"| 1 reference vs {one['candidates']} candidates, {one['size']}x{one['size']} | {one['fused_s']:.2f} s "
             f"| {one['cache_s']:.2f} s | **{one['speedup']:.2f}x** | {one['max_abs_diff']:.1e} |"]
    for r in report["all_pairs"]:
        note = "" if r["fused_pairs_timed"] == r["pairs"] else f" ({r['fused_pairs_timed']} pairs timed, scaled)"
        lines.append(f"| all {r['pairs']} pairs of {r['images']} images, {r['size']}x{r['size']} | "
                     f"{r['fused_s']:.1f} s{note} | {r['cache_s']:.2f} s | **{r['speedup']:.1f}x** | "
                     f"{r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
