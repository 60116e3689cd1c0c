"""OpenVINO start-up and shapes: first-call latency of a new process with an empty and a filled model cache,
dynamic shapes vs static reshapes per (N,H,W), and the cost of bf16's fp32 stem.

    python benchmarks/openvino_startup.py           # alex, squeeze, vgg (about 8 minutes on 2 cores)
    python benchmarks/openvino_startup.py --quick   # alex, bf16 start-up, one repeat (about 1 minute; README untouched)

1. First call: a fresh process imports lpips_runtime, opens a Scorer and scores one 256x256 pair; "cold" with an
   empty OpenVINO model cache (``CACHE_DIR``, under ``$LPIPS_RT_CACHE``), "warm" with the cache the cold run
   filled; ONNX Runtime (fp32) in the same way for comparison. Each process is timed from its start.
2. Shapes: the same graph compiled once with dynamic N/H/W, or reshaped and compiled per input shape (what
   ``SHAPE_MODE = "static"`` does, keeping the last ``MAX_COMPILED_SHAPES``): steady-state pairs/s timed in turns
   at 256x256 batch 16 (vgg batch 4), and the summed first-call latency of 6 new image sizes in a row (a folder of
   photographs of different sizes).
3. The fp32 stem: bf16 as shipped (stem in fp32) against bf16 everywhere and against fp32, timed in turns.
Writes benchmarks/results/openvino-startup-<date>.json and the openvino-startup section of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()  # the worker's start, before its imports

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, interleaved_runs, machine_info, median, run_worker, today  # noqa: E402

NEW_SIZES = ((200, 300), (256, 384), (333, 250), (300, 400), (240, 320), (384, 512))  # (H, W)


def worker_first_call(args) -> dict:
    """One process: open a Scorer and score one 256x256 pair; seconds since the process started."""
    from lpips_runtime import Scorer

    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32) for _ in range(2))
    t_import = time.perf_counter() - T0
    scorer = Scorer(args.model, backend=args.backend, precision=args.precision, threads=args.threads)
    scorer.distance(a, b)
    t_first = time.perf_counter() - T0
    t1 = time.perf_counter()
    scorer.distance(a, b)
    return {"import_s": t_import, "first_call_s": t_first, "second_call_s": time.perf_counter() - t1}


def first_calls(me, model: str, threads: int, cache: Path, quick: bool) -> dict:
    out = {}
    for backend, precision in (("openvino", "bf16"),) if quick else (("ort", "fp32"), ("openvino", "fp32"),
                                                                     ("openvino", "bf16")):
        runs = {}
        for state in ("cold", "warm"):
            env = {**os.environ, "LPIPS_RT_CACHE": str(cache / f"{backend}-{precision}"), "LPIPS_RT_OFFLINE": "1"}
            runs[state], _ = run_worker(me + ["--worker", "first-call", "--model", model, "--backend", backend,
                                              "--precision", precision, "--threads", str(threads)], env)
        blobs = list((cache / f"{backend}-{precision}" / "openvino").glob("*.blob"))
        runs["cache_mb"] = sum(p.stat().st_size for p in blobs) / 2 ** 20
        out[f"{backend} {precision}"] = runs
    return out


def shape_modes(path: Path, net: str, threads: int, repeats: int, cache: Path, sizes=NEW_SIZES) -> dict:
    from lpips_runtime.backends.openvino_backend import OpenVinoGraph

    n = 4 if net == "vgg" else 16
    rng = np.random.default_rng(1)
    a, b = (rng.uniform(-1, 1, (n, 3, 256, 256)).astype(np.float32) for _ in range(2))
    out = {}
    for precision in ("fp32", "bf16"):
        graphs = {mode: OpenVinoGraph(path, threads=threads, precision=precision, shape_mode=mode, cache_dir=cache)
                  for mode in ("dynamic", "static")}
        times = interleaved_runs({m: (lambda g=g: g.run({"img0": a, "img1": b})) for m, g in graphs.items()}, repeats)
        row = {m: {"times_s": t, "pairs_per_s": n / median(t)} for m, t in times.items()}
        for mode, graph in graphs.items():  # a new process's view: nothing compiled, nothing cached
            fresh = OpenVinoGraph(path, threads=threads, precision=precision, shape_mode=mode,
                                  cache_dir=cache / f"new-sizes-{precision}-{mode}")
            t0 = time.perf_counter()
            for h, w in sizes:
                x = rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
                fresh.run({"img0": x, "img1": x})
            row[mode]["new_sizes_s"] = time.perf_counter() - t0
            fresh.close()
            graph.close()
        out[precision] = row
        print(f"  {net:7s} {precision}: dynamic {row['dynamic']['pairs_per_s']:.2f}, static "
              f"{row['static']['pairs_per_s']:.2f} pairs/s; {len(sizes)} new sizes: dynamic "
              f"{row['dynamic']['new_sizes_s']:.2f} s, static {row['static']['new_sizes_s']:.2f} s", flush=True)
    return out


def stem_cost(path: Path, net: str, threads: int, repeats: int, cache: Path) -> dict:
    from lpips_runtime.backends.openvino_backend import OpenVinoGraph

    n = 4 if net == "vgg" else 16
    rng = np.random.default_rng(2)
    a, b = (rng.uniform(-1, 1, (n, 3, 256, 256)).astype(np.float32) for _ in range(2))
    graphs = {"fp32": OpenVinoGraph(path, threads=threads, precision="fp32", cache_dir=cache),
              "bf16": OpenVinoGraph(path, threads=threads, precision="bf16", cache_dir=cache),
              "bf16, bf16 stem": OpenVinoGraph(path, threads=threads, precision="bf16", fp32_stem=False,
                                               cache_dir=cache)}
    times = interleaved_runs({k: (lambda g=g: g.run({"img0": a, "img1": b})) for k, g in graphs.items()}, repeats)
    for g in graphs.values():
        g.close()
    row = {k: {"times_s": t, "pairs_per_s": n / median(t)} for k, t in times.items()}
    print(f"  {net:7s} stem: " + ", ".join(f"{k} {v['pairs_per_s']:.2f}" for k, v in row.items()) + " pairs/s",
          flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nets", default="alex,squeeze,vgg")
    parser.add_argument("--threads", type=int, default=1, help="OpenVINO/ORT threads (default 1: a shared machine)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models-dir", type=Path, help="where the fp32 exports are (default: exported to a temp dir)")
    parser.add_argument("--worker", choices=("first-call",))
    parser.add_argument("--model")
    parser.add_argument("--backend")
    parser.add_argument("--precision")
    parser.add_argument("--result", type=Path)
    args = parser.parse_args(argv)
    if args.worker:
        args.result.write_text(json.dumps(worker_first_call(args)))
        return 0
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    from lpips_runtime import Scorer

    nets = ["alex"] if args.quick else args.nets.split(",")
    repeats = 1 if args.quick else args.repeats
    start = time.monotonic()
    report = {"date": today(), "machine": machine_info(), "threads": args.threads, "quick": args.quick, "nets": {}}
    me = [str(Path(__file__).resolve())]
    with tempfile.TemporaryDirectory(prefix="lpips-ov-start-") as tmp:
        models = args.models_dir or Path(tmp) / "models"
        for net in nets:
            with Scorer(net, models_dir=models) as s:
                path = s.model_info().path
            cache = Path(tmp) / f"cache-{net}"
            entry = {"first_call": first_calls(me, str(path), args.threads, cache, args.quick)}
            print(f"  {net:7s} first call: " + "; ".join(
                f"{k} cold {v['cold']['first_call_s']:.2f} s, warm {v['warm']['first_call_s']:.2f} s"
                for k, v in entry["first_call"].items()), flush=True)
            entry["shapes"] = shape_modes(path, net, args.threads, repeats, cache / "modes",
                                          NEW_SIZES[:2] if args.quick else NEW_SIZES)
            entry["stem"] = stem_cost(path, net, args.threads, repeats, cache / "stem")
            report["nets"][net] = entry
    finish("openvino-startup", "openvino-startup", report, render(report), args.quick, start)
    return 0


def render(report: dict) -> str:
    m = report["machine"]
    lines = [f"Run {report['date']} on {m['cpu']} ({', '.join(m['isa'])}), {report['threads']} thread(s), OpenVINO "
             f"{m['versions']['openvino']}, onnxruntime {m['versions']['onnxruntime']}; load average at start "
             f"{m['load_average_at_start'][0]:.2f} (a shared machine: compare within this table only).", "",
             "First call of a new process (seconds from its start: imports, model checks, compilation or cache "
             "import, one 256x256 pair), with an empty (cold) and a filled (warm) OpenVINO model cache:", "",
             "| net | backend, precision | imports | first call cold | first call warm | second call | cache size |",
             "|---|---|---|---|---|---|---|"]
    for net, e in report["nets"].items():
        for k, v in e["first_call"].items():
            cache = f"{v['cache_mb']:.0f} MiB" if k.startswith("openvino") else "-"
            lines.append(f"| {net} | {k} | {v['warm']['import_s']:.2f} | {v['cold']['first_call_s']:.2f} | "
                         f"{v['warm']['first_call_s']:.2f} | {v['warm']['second_call_s']:.3f} | {cache} |")
    lines += ["", f"Dynamic shapes (one compiled model) vs static reshapes (one per (N,H,W)): steady state at 256x256 "
                  f"(batch 16, vgg 4), timed in turns, and the first calls of {len(NEW_SIZES)} new image sizes in a "
                  "row (batch 1; each a new compilation for static shapes):", "",
              "| net | precision | dynamic pairs/s | static pairs/s | static / dynamic | new sizes dynamic | "
              "new sizes static |", "|---|---|---|---|---|---|---|"]
    for net, e in report["nets"].items():
        for precision, row in e["shapes"].items():
            d, s = row["dynamic"], row["static"]
            lines.append(f"| {net} | {precision} | {d['pairs_per_s']:.2f} | {s['pairs_per_s']:.2f} | "
                         f"{s['pairs_per_s'] / d['pairs_per_s']:.3f} | {d['new_sizes_s']:.2f} s | "
                         f"{s['new_sizes_s']:.2f} s |")
    lines += ["", "bf16's fp32 stem (input scaling, first convolution, ReLU in fp32) against bf16 everywhere and fp32, "
                  "256x256, timed in turns:", "",
              "| net | fp32 pairs/s | bf16 (fp32 stem) | bf16 everywhere | stem's cost |", "|---|---|---|---|---|"]
    for net, e in report["nets"].items():
        r = e["stem"]
        f, s, a = (r[k]["pairs_per_s"] for k in ("fp32", "bf16", "bf16, bf16 stem"))
        lines.append(f"| {net} | {f:.2f} | {s:.2f} ({s / f:.2f}x fp32) | {a:.2f} ({a / f:.2f}x) | "
                     f"{100 * (1 - s / a):.0f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
