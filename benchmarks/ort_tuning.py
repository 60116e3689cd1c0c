"""ONNX Runtime CPU tuning experiments for the fused LPIPS graph: profile first, then compare settings.

    python benchmarks/ort_tuning.py [--nets alex,squeeze] [--size 256] [--batch 16]

1. Profile (ORT's profiler) one session at ENABLE_ALL: time per operator type, share of the run.
2. Layout: save the ENABLE_ALL-optimised graph and count the NCHWc nodes ORT put in (its blocked
   layout for AVX-512 convolutions) and the reorders around them.
3. Settings, timed in turns on the same inputs: optimisation level ALL / EXTENDED / BASIC, intra-op
   spinning off, one thread instead of all cores, no CPU memory arena, and an offline-optimised model
   file (EXTENDED, the portable level) loaded without further optimisation and with ALL on top.
Writes benchmarks/results/ort-tuning-<date>.json and the ort-tuning section of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_runs, machine_info, median, publish, today  # noqa: E402


def options(ort, level, threads, spinning=True, optimized_path=None, profile_prefix=None, arena=True):
    from lpips_runtime.backends.ort_backend import session_options

    opts = session_options(ort, threads)  # the runtime's settings, then the one change under test
    opts.graph_optimization_level = level
    if not arena:
        opts.enable_cpu_mem_arena = False
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path:
        opts.optimized_model_filepath = str(optimized_path)
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    return opts


def profile(ort, path, feeds, threads, tmp: Path) -> dict:
    sess = ort.InferenceSession(str(path), options(ort, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, threads,
                                                   profile_prefix=tmp / "prof"), providers=["CPUExecutionProvider"])
    for _ in range(4):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op, runs = defaultdict(float), []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
        if e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    total = sum(per_op.values())
    top = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {"op_share": {k: v / total for k, v in top}, "kernel_us_per_run": total / len(runs),
            "run_us": runs}


def layout(ort, path, threads, tmp: Path) -> dict:
    import onnx

    out = tmp / "optimized-all.onnx"
    ort.InferenceSession(str(path), options(ort, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, threads,
                                            optimized_path=out), providers=["CPUExecutionProvider"])
    nodes = onnx.load(str(out)).graph.node
    counts = Counter(f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in nodes)
    return {"nodes": dict(counts), "nchwc_nodes": sum(v for k, v in counts.items() if "nchwc" in k)}


def compare(ort, path, feeds, threads, tmp: Path, repeats: int) -> dict:
    level = ort.GraphOptimizationLevel
    offline = tmp / "offline-extended.onnx"
    ort.InferenceSession(str(path), options(ort, level.ORT_ENABLE_EXTENDED, threads, optimized_path=offline),
                         providers=["CPUExecutionProvider"])
    configs = {
        "ALL (runtime default)": (path, options(ort, level.ORT_ENABLE_ALL, threads)),
        "EXTENDED": (path, options(ort, level.ORT_ENABLE_EXTENDED, threads)),
        "BASIC": (path, options(ort, level.ORT_ENABLE_BASIC, threads)),
        "ALL, spinning off": (path, options(ort, level.ORT_ENABLE_ALL, threads, spinning=False)),
        "ALL, 1 thread": (path, options(ort, level.ORT_ENABLE_ALL, 1)),
        "ALL, no CPU memory arena": (path, options(ort, level.ORT_ENABLE_ALL, threads, arena=False)),
        "offline EXTENDED file, no further opt.": (offline, options(ort, level.ORT_DISABLE_ALL, threads)),
        "offline EXTENDED file + ALL": (offline, options(ort, level.ORT_ENABLE_ALL, threads)),
    }
    sessions = {name: ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])
                for name, (p, o) in configs.items()}
    times = interleaved_runs({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}, repeats)
    return {name: {"times_s": t, "median_s": median(t)} for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="alex,squeeze")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    import onnxruntime as ort

    from lpips_export.onnx_export import export_model
    from lpips_runtime.model.modelfile import ModelSpec
    from lpips_runtime.system import physical_cores

    threads = args.threads or physical_cores()
    report = {"date": today(), "machine": machine_info(), "threads": threads, "size": args.size,
              "batch": args.batch, "nets": {}}
    rng = np.random.default_rng(0)
    feeds = {k: rng.uniform(-1, 1, (args.batch, 3, args.size, args.size)).astype(np.float32)
             for k in ("img0", "img1")}
    with tempfile.TemporaryDirectory(prefix="lpips-ort-tuning-") as tmp:
        for net in args.nets.split(","):
            path, _ = export_model(ModelSpec(net), tmp)
            work = Path(tmp) / net
            work.mkdir()
            entry = {"profile": profile(ort, path, feeds, threads, work), "layout": layout(ort, path, threads, work),
                     "settings": compare(ort, path, feeds, threads, work, args.repeats)}
            report["nets"][net] = entry
            print(net, json.dumps({k: round(v["median_s"], 3) for k, v in entry["settings"].items()}), flush=True)
    publish("ort-tuning", "ort-tuning", report, render(report))
    return 0


def render(report: dict) -> str:
    m = report["machine"]
    lines = [f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores), {report['threads']} threads, "
             f"fused graph, {report['size']}x{report['size']} batch {report['batch']}, settings timed in turns "
             "(median s per batch; lower is better).", ""]
    nets = list(report["nets"])
    lines += ["| setting | " + " | ".join(nets) + " |", "|---|" + "---|" * len(nets)]
    for name in report["nets"][nets[0]]["settings"]:
        base = {n: report["nets"][n]["settings"]["ALL (runtime default)"]["median_s"] for n in nets}
        cells = [f"{report['nets'][n]['settings'][name]['median_s']:.3f} "
                 f"({base[n] / report['nets'][n]['settings'][name]['median_s']:.2f}x)" for n in nets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Profile at ENABLE_ALL (share of kernel time by operator; top 6):", ""]
    for n in nets:
        shares = list(report["nets"][n]["profile"]["op_share"].items())[:6]
        lines.append(f"- {n}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in shares))
    lines += ["", "NCHWc layout at ENABLE_ALL (nodes in the optimised graph):", ""]
    for n in nets:
        nodes = report["nets"][n]["layout"]["nodes"]
        lines.append(f"- {n}: {report['nets'][n]['layout']['nchwc_nodes']} NCHWc nodes; "
                     + ", ".join(f"{k} {v}" for k, v in sorted(nodes.items())))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
