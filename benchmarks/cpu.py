"""CPU benchmark: our ONNX Runtime scorer, our torch fallback, the official ``lpips`` package and our OpenVINO
backend in fp32 and bf16 (when ``openvino`` is installed), side by side in one run, against the machine's best
fp32 GEMM rate measured in the same run.

    python benchmarks/cpu.py            # the full table (< 10 minutes on a 2-core machine)
    python benchmarks/cpu.py --quick    # smoke run: alex 64x64 batch 1, one repeat

Every implementation runs in its own subprocess (its own peak RSS, no shared thread pools) on the same
inputs: float32 NCHW RGB arrays in [-1,1], already preprocessed (decoding is not timed). The three are
timed cell by cell in turns (ORT, torch, lpips, ORT, ...), so that load from other users of a shared
machine hits all three alike. Threads: the machine's physical cores for ORT's intra-op pool, torch and
the GEMM. Times are medians of up to --repeats rounds (fewer when a cell's --budget is spent) after one
warm-up run per cell. FLOPs are those of the backbone convolutions (2 per multiply-add, both images of a pair),
computed from torchvision's layer definitions up to the last tap; the head adds well under 1%.
Writes benchmarks/results/cpu-<date>.json and the tables between the cpu-* markers of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (README, RESULTS, Worker, add_models_dir, find_or_export, interleaved_runs,  # noqa: E402
                     machine_info, median, peak_rss_mb, replace_section, reset_peak_rss, run_worker, serve,
                     timed_runs, today)

IMPLS = ("ort", "torch", "official", "openvino-fp32", "openvino-bf16", "openvino-int8")
LABELS = {"ort": "ORT (ours)", "torch": "torch (ours)", "official": "lpips 0.1.4", "openvino-fp32": "OpenVINO fp32 (ours)",
          "openvino-bf16": "OpenVINO bf16 (ours)", "openvino-int8": "OpenVINO int8 (not offered)"}
# int8: the model benchmarks/int8_accuracy.py builds (NNCF; every backbone convolution but the stem quantised).
# It fails the accuracy acceptance for every net (lpips_runtime.model.int8), so it is timed to show what int8 would
# buy, not as a runtime path.
INT8_SKIP = 1


def available_impls() -> tuple[str, ...]:
    """IMPLS, less OpenVINO's where it is not installed, bf16 where the CPU has no native bfloat16, and int8
    where NNCF is not installed."""
    try:
        import openvino
    except ImportError:
        print("  openvino not installed: no OpenVINO rows (pip install 'lpips-rt[openvino]')", flush=True)
        return IMPLS[:3]
    from lpips_runtime.backends.openvino_backend import cpu_capabilities

    impls = list(IMPLS)
    if "BF16" not in cpu_capabilities(openvino.Core()):
        print("  this CPU has no native bfloat16: no OpenVINO bf16 row", flush=True)
        impls.remove("openvino-bf16")
    try:
        import nncf  # noqa: F401
    except ImportError:
        print("  nncf not installed: no int8 row (pip install nncf)", flush=True)
        impls.remove("openvino-int8")
    return tuple(impls)
SIZES = ((64, 64), (256, 256), (384, 512), (1024, 1024))  # (H, W): 512x384 is 512 wide
BATCHES = (1, 16)
# Cells left out of the default run, with the reason printed in the table (--full runs them).
# Batch 16 at 1024x1024 (alex 0.9, squeeze 0.5 TFLOP per run) adds no information over batch 1 at that
# size (one image already fills both cores) but costs minutes, and three processes holding its buffers
# (up to 9 GB for ORT's squeeze) would not fit a 24 GB machine together.
SKIPS = {
    ("alex", (1024, 1024), 16): "batch 16 at 1024x1024: 0.9 TFLOP per run; batch 1 already fills the cores",
    ("squeeze", (1024, 1024), 16): "batch 16 at 1024x1024: 0.5 TFLOP per run; batch 1 already fills the cores",
    ("vgg", (384, 512), 16): "vgg 512x384 batch 16: 3.9 TFLOP per run (minutes per implementation)",
    ("vgg", (1024, 1024), 1): "vgg 1024x1024: 1.3 TFLOP per pair (over 10 s per run and implementation)",
    ("vgg", (1024, 1024), 16): "vgg 1024x1024 batch 16: 20 TFLOP per run",
}


# -- model facts ------------------------------------------------------------------------------------


def layer_facts(net: str, h: int, w: int) -> dict:
    """Backbone conv FLOPs of ONE image and the tapped feature shapes, from torchvision's layer
    definitions run on a shape-only ("meta") tensor: nothing is computed."""
    import torch
    import torchvision

    from lpips_runtime.model.nets import get_net

    spec = get_net(net)
    features = getattr(torchvision.models, spec.torchvision_builder)(weights=None).features[: spec.taps[-1]]
    features = features.to("meta")
    flops = 0

    def count(module, _inputs, output):
        nonlocal flops
        kh, kw = module.kernel_size
        flops += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in features.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.empty(1, 3, h, w, device="meta")
    taps = []
    with torch.no_grad():
        for i, layer in enumerate(features):
            x = layer(x)
            if i + 1 in spec.taps:
                taps.append(list(x.shape[1:]))
    for hook in hooks:
        hook.remove()
    return {"flops_per_image": flops, "taps": taps,
            "feature_bytes": sum(4 * c * fh * fw for c, fh, fw in taps)}


def export_models(nets, out: Path, models_dir: Path | None = None, natural: bool = True) -> dict[str, dict[str, str]]:
    """Fused exports of each net in the portable (default) form, taken from ``models_dir`` where there,
    and (``natural``) the natural form, checked as usual."""
    from lpips_export.onnx_export import export_model
    from lpips_runtime.model.modelfile import ModelSpec

    paths = {}
    for net in nets:
        spec = ModelSpec(net)
        paths[net] = {"portable": str(find_or_export(spec, models_dir or out / "portable"))}
        if natural:
            paths[net]["natural"] = str(export_model(spec, out / "natural", portable=False)[0])
    return paths


# -- workers (each runs in its own process) ---------------------------------------------------------


def _inputs(n: int, h: int, w: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, (n, 3, h, w)).astype(np.float32) for _ in range(2))


def _runner(impl: str, net: str, model: str | None, threads: int):
    """A function (a, b) -> distances for one implementation, built once per worker."""
    if impl == "openvino-int8":
        import openvino as ov
        from int8_accuracy import calibration, quantize

        quantized, _ = quantize(Path(model), INT8_SKIP, calibration())
        compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": "f32",
                                                              "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        return lambda a, b: request.infer({"img0": a, "img1": b})[0].copy()
    if impl == "ort" or impl.startswith("openvino-"):
        from lpips_runtime.core.scorer import Scorer

        backend, _, precision = impl.partition("-")
        scorer = Scorer(model, backend=backend, precision=precision or "fp32", threads=threads,
                        batch_size=max(BATCHES))
        return scorer.distance
    import torch

    torch.set_num_threads(threads)
    if impl == "torch":
        from lpips_runtime.core.scorer import Scorer

        scorer = Scorer(net, backend="torch", threads=threads, batch_size=max(BATCHES))
        return scorer.distance
    from lpips_export.build import build_lpips
    from lpips_export.reference import official_lpips

    ours, _ = build_lpips(net)
    model_ = official_lpips(net, "0.1", True, False, ours.features_state_for_official())
    del ours

    def run(a, b):
        with torch.no_grad():  # as the official scripts run it
            return model_(torch.from_numpy(a), torch.from_numpy(b))

    return run


def worker_impl(args) -> None:
    """Serve one implementation of one net: "prepare" a cell (inputs, one warm-up run, peak-RSS reset),
    "time" one run, "finish" the cell (its peak RSS), "exit" (the process's peak)."""
    run = _runner(args.impl, args.net, args.model, args.threads)
    state = {"peak": peak_rss_mb() or 0.0}  # set-up (imports, weights) before the per-cell resets

    def prepare(h, w, batch):
        state["inputs"] = _inputs(batch, h, w, seed=h + w + batch)
        t0 = time.perf_counter()
        run(*state["inputs"])
        warm = time.perf_counter() - t0
        reset_peak_rss()
        return {"warm_s": warm}

    def time_one():
        # Let the previous worker's threads go idle first (OpenMP and ORT pools spin briefly after a run).
        time.sleep(0.02)
        t0 = time.perf_counter()
        run(*state["inputs"])
        return {"t": time.perf_counter() - t0}

    def finish():
        rss = peak_rss_mb()
        state["peak"] = max(state["peak"], rss or 0.0)
        state.pop("inputs", None)
        return {"peak_rss_mb": rss}

    def leave():
        return {"process_peak_rss_mb": state["peak"], "torch_imported": "torch" in sys.modules}

    serve({"prepare": prepare, "time": time_one, "finish": finish, "exit": leave})


def measure_net(me: list[str], net: str, model: str, cells: list[dict], threads: int, env: dict,
                impls: tuple[str, ...] = IMPLS) -> dict:
    """Time the implementations of ``net`` cell by cell, in turns (ORT, torch, lpips, OpenVINO fp32, bf16,
    ORT, ...), so that load changes on a shared machine hit all alike. Returns {impl: worker summary}."""
    workers = {impl: Worker(me + ["--worker", "impl", "--impl", impl, "--net", net, "--model", model,
                                  "--threads", str(threads)], env) for impl in impls}
    out = {impl: {"cells": []} for impl in impls}
    try:
        for cell in cells:
            h, w, n = cell["h"], cell["w"], cell["batch"]
            warm = {impl: wk.call(cmd="prepare", h=h, w=w, batch=n)["warm_s"] for impl, wk in workers.items()}
            times = {impl: [] for impl in impls}
            spent = 0.0
            while len(times["ort"]) < cell["repeats"]:
                for impl, wk in workers.items():
                    t = wk.call(cmd="time")["t"]
                    times[impl].append(t)
                    spent += t
                # at least one timed round; more while the next round fits the cell's budget
                if spent + spent / len(times["ort"]) > cell["budget_s"] * len(impls):
                    break
            for impl, wk in workers.items():
                t = median(times[impl])
                rss = wk.call(cmd="finish")["peak_rss_mb"]
                out[impl]["cells"].append({**cell, "warm_s": warm[impl], "times_s": times[impl], "median_s": t,
                                           "pairs_per_s": n / t, "ms_per_pair": 1000 * t / n, "peak_rss_mb": rss})
            print(f"  {net:7s} {w}x{h} batch {n:2d}: " + ", ".join(
                f"{impl} {out[impl]['cells'][-1]['pairs_per_s']:.2f}" for impl in impls)
                + f" pairs/s ({len(times['ort'])} rounds)", flush=True)
    finally:
        for impl, wk in workers.items():
            out[impl].update(wk.close())
    return out


def worker_gemm(args) -> dict:
    """The best fp32 GEMM rate of numpy (its BLAS) and of ONNX Runtime (MLAS) on n x n matrices."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = args.gemm_n
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    flops = 2.0 * n ** 3
    result = {"n": n}
    t = timed_runs(lambda: a @ b, args.repeats, 30)
    result["numpy"] = {"times_s": t, "gflops": flops / median(t) / 1e9}
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "AB"],
                              [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    t = timed_runs(lambda: session.run(None, {"A": a, "B": b}), args.repeats, 30)
    result["onnxruntime"] = {"times_s": t, "gflops": flops / median(t) / 1e9}
    del onnx
    result["openvino"] = openvino_gemm(a, b, args.threads, args.repeats)
    return result


def openvino_gemm(a, b, threads: int, repeats: int) -> dict:
    """OpenVINO's n x n GEMM rate (GFLOP/s, 2 per multiply-add) in fp32, bf16 (where the CPU has it natively)
    and int8 (u8 activations x per-row i8 weights, FakeQuantize lowered to the integer kernels: VNNI where the
    CPU has it), each read back from the runtime graph so that a rate is labelled by what actually ran."""
    try:
        import openvino as ov
        from openvino import opset13 as ops
    except ImportError:
        return {}
    import numpy as np

    from lpips_runtime.backends.openvino_backend import cpu_capabilities

    n = a.shape[0]
    core = ov.Core()
    caps = cpu_capabilities(core)
    lo, hi = np.float32(0), np.float32(np.abs(a).max())
    lim = np.abs(b).max(axis=1, keepdims=True).astype(np.float32)

    def model(int8: bool):
        x = param = ops.parameter([n, n], ov.Type.f32, name="A")
        w = ops.constant(b)
        if int8:
            x = ops.fake_quantize(x, ops.constant(lo), ops.constant(hi), ops.constant(lo), ops.constant(hi), 256)
            w = ops.fake_quantize(w, ops.constant(-lim), ops.constant(lim), ops.constant(-lim), ops.constant(lim), 255)
        return ov.Model([ops.matmul(x, w, False, True)], [param], "gemm")

    out = {}
    feed = {"A": np.abs(a)}
    for name, int8, hint in (("fp32", False, "f32"), ("bf16", False, "bf16"), ("int8", True, "f32")):
        if name == "bf16" and "BF16" not in caps:
            out[name] = {"gflops": None, "note": "no native bfloat16 on this CPU"}
            continue
        compiled = core.compile_model(model(int8), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "INFERENCE_PRECISION_HINT": hint,
                                                          "PERFORMANCE_HINT": "LATENCY"})
        ran = sorted({op.get_rt_info()["runtimePrecision"].astype(str)
                      for op in compiled.get_runtime_model().get_ordered_ops()
                      if op.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul")})
        request = compiled.create_infer_request()
        t = timed_runs(lambda: request.infer(feed), repeats, 30)
        out[name] = {"times_s": t, "gflops": 2.0 * n ** 3 / median(t) / 1e9, "ran_in": ran}
    return out


def worker_forms(args) -> dict:
    """ORT speed of the portable and the natural graph form, timed in turns on the same inputs."""
    from lpips_runtime.core.scorer import Scorer

    paths = json.loads(args.model)
    out = []
    for cell in json.loads(args.cells):
        h, w, n = cell["h"], cell["w"], cell["batch"]
        a, b = _inputs(n, h, w, seed=7)
        scorers = {form: Scorer(path, threads=args.threads, batch_size=n) for form, path in paths.items()}
        times = interleaved_runs({form: (lambda s=s: s.distance(a, b)) for form, s in scorers.items()},
                                 cell["repeats"])
        row = {**cell, **{form: {"times_s": t, "pairs_per_s": n / median(t)} for form, t in times.items()}}
        out.append(row)
        print(f"  forms    {args.net:7s} {w}x{h} batch {n:2d}: portable {row['portable']['pairs_per_s']:.2f}, "
              f"natural {row['natural']['pairs_per_s']:.2f} pairs/s", flush=True)
    return {"cells": out}


# -- parent ---------------------------------------------------------------------------------------


def plan(nets, quick: bool, full: bool, repeats: int, budget_s: float, only_sizes: str = "",
         only_batches: str = "") -> tuple[dict, list[dict]]:
    """Cells per net, and the skipped ones with their reasons."""
    sizes = SIZES[:1] if quick else SIZES
    batches = BATCHES[:1] if quick else BATCHES
    if only_sizes:
        sizes = [(int(s.split("x")[1]), int(s.split("x")[0])) for s in only_sizes.split(",")]
    if only_batches:
        batches = [int(b) for b in only_batches.split(",")]
    cells, skipped = {}, []
    for net in nets:
        cells[net] = []
        for h, w in sizes:
            for n in batches:
                reason = SKIPS.get((net, (h, w), n))
                if reason and not full:
                    skipped.append({"net": net, "h": h, "w": w, "batch": n, "reason": reason})
                    continue
                cells[net].append({"h": h, "w": w, "batch": n, "repeats": repeats, "budget_s": budget_s})
    return cells, skipped


def _env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("LPIPS_RT_OFFLINE", "1")
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="alex 64x64 batch 1, one repeat (smoke test)")
    parser.add_argument("--full", action="store_true", help="also the cells skipped by default (long)")
    parser.add_argument("--nets", default="alex,squeeze,vgg")
    parser.add_argument("--sizes", default="", help="only these sizes, e.g. 256x256 (WxH, comma-separated)")
    parser.add_argument("--batches", default="", help="only these batch sizes, e.g. 16")
    parser.add_argument("--threads", type=int, default=0, help="default: physical cores")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed runs per cell (>= 1 run)")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    add_models_dir(parser)
    # worker mode (internal)
    parser.add_argument("--worker", choices=("impl", "gemm", "forms"))
    parser.add_argument("--impl", choices=IMPLS)
    parser.add_argument("--net")
    parser.add_argument("--model")
    parser.add_argument("--cells")
    parser.add_argument("--gemm-n", type=int, default=4096, help="GEMM size for the ceiling rates (n x n)")
    parser.add_argument("--result", type=Path)
    args = parser.parse_args(argv)
    if args.worker == "impl":
        worker_impl(args)
        return 0
    if args.worker:
        result = {"gemm": worker_gemm, "forms": worker_forms}[args.worker](args)
        args.result.write_text(json.dumps(result))
        return 0
    return run_all(args)


def run_all(args) -> int:
    from lpips_runtime.system import physical_cores

    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")  # verified offline weights; never wait on a download
    start = time.monotonic()
    threads = args.threads or physical_cores()
    nets = ["alex"] if args.quick else [n.strip() for n in args.nets.split(",")]
    repeats = 1 if args.quick else args.repeats
    env = _env(threads)
    me = [str(Path(__file__).resolve())]
    report = {"date": today(), "machine": machine_info(), "threads": threads, "quick": args.quick,
              "inputs": "float32 NCHW RGB in [-1,1], preprocessed before timing; same arrays for all"}
    print(f"CPU benchmark, {report['machine']['cpu']}, {threads} threads, {today()}", flush=True)

    gemm, _ = run_worker(me + ["--worker", "gemm", "--threads", str(threads), "--repeats", str(max(repeats, 3)),
                               "--gemm-n", "1024" if args.quick else str(args.gemm_n)], env)
    gemm["best_gflops"] = max(gemm["numpy"]["gflops"], gemm["onnxruntime"]["gflops"])
    report["gemm"] = gemm
    print(f"  fp32 GEMM {gemm['n']}^2: numpy {gemm['numpy']['gflops']:.0f} GFLOP/s, "
          f"ONNX Runtime {gemm['onnxruntime']['gflops']:.0f} GFLOP/s; OpenVINO " + ", ".join(
              f"{k} {v['gflops']:.0f}" if v.get("gflops") else f"{k} -" for k, v in gemm.get("openvino", {}).items())
          + " GFLOP/s", flush=True)

    with tempfile.TemporaryDirectory(prefix="lpips-bench-") as tmp:
        t0 = time.monotonic()
        forms_wanted = not (args.quick or args.sizes or args.batches)  # the natural form serves only these
        models = export_models(nets, Path(tmp), args.models_dir, natural=forms_wanted)
        print(f"  exports of {len(nets)} nets ready in {time.monotonic() - t0:.0f} s", flush=True)
        cells, skipped = plan(nets, args.quick, args.full, repeats, args.budget, args.sizes, args.batches)
        facts = {net: {f"{w}x{h}": layer_facts(net, h, w)
                       for h, w in set(SIZES) | {(c["h"], c["w"]) for c in cells[net]}} for net in nets}
        results = {}
        impls = available_impls()
        for net in nets:
            for impl, data in measure_net(me, net, models[net]["portable"], cells[net], threads, env, impls).items():
                results[(impl, net)] = data
        forms = {}
        if forms_wanted:
            for net in nets:
                form_cells = [{"h": 256, "w": 256, "batch": 1 if net == "vgg" else 16, "repeats": 5}]
                forms[net], _ = run_worker(me + ["--worker", "forms", "--net", net, "--threads", str(threads),
                                                 "--model", json.dumps(models[net]),
                                                 "--cells", json.dumps(form_cells)], env)
    report.update(facts=facts, skipped=skipped, forms=forms,
                  results=[{"impl": impl, "net": net, **data} for (impl, net), data in results.items()])
    report["elapsed_s"] = time.monotonic() - start
    report["load_average_at_end"] = os.getloadavg()
    tables = render(report)
    print("\n" + tables, flush=True)
    if not args.quick or args.readme != README:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        suffix = "" if section_name(threads) == "cpu-table" else f"-threads-{threads}"
        path = args.results_dir / f"cpu-{today()}{suffix}.json"
        path.write_text(json.dumps(report, indent=1) + "\n")
        replace_section(section_name(threads), tables, args.readme)
        print(f"wrote {path} and the {section_name(threads)} section of {args.readme} ({report['elapsed_s']:.0f} s)")
    return 0


def section_name(threads: int) -> str:
    """README section of a run: ``cpu-table`` at the default thread count, else ``cpu-table-threads-<n>``."""
    from lpips_runtime.system import physical_cores

    return "cpu-table" if threads == physical_cores() else f"cpu-table-threads-{threads}"


def ceiling_table(report: dict, by: dict, nets: list[str]) -> str:
    """Per net and cell: GFLOP per pair, the GFLOP/s each precision reached (its fastest implementation) and the
    GEMM rate of the same precision measured in the same run, so that every speed sits beside its limit."""
    g = report["gemm"]
    ov = g.get("openvino", {})
    gemm = {"fp32": max([g["numpy"]["gflops"], g["onnxruntime"]["gflops"]] +
                        ([ov["fp32"]["gflops"]] if ov.get("fp32", {}).get("gflops") else [])),
            "bf16": ov.get("bf16", {}).get("gflops"), "int8": ov.get("int8", {}).get("gflops")}
    impls = {"fp32": ("ort", "openvino-fp32"), "bf16": ("openvino-bf16",), "int8": ("openvino-int8",)}

    def fmt(x):
        return f"{x:.0f}" if x else "-"

    head = (f"Ceiling: GEMM rates of this CPU in this run ({g['n']}x{g['n']}, GFLOP/s): fp32 {fmt(gemm['fp32'])} "
            f"(best of numpy, ONNX Runtime, OpenVINO), bf16 {fmt(gemm['bf16'])}"
            + (f" ({ov['bf16']['note']})" if ov.get("bf16", {}).get("note") else "")
            + f", int8 {fmt(gemm['int8'])} (OpenVINO u8 x i8"
            + (f", ran in {'/'.join(ov['int8']['ran_in'])}" if ov.get("int8", {}).get("ran_in") else "") + "). "
            "Achieved = backbone conv GFLOP per pair x pairs/s of the fastest implementation of that precision "
            "(int8: not offered, see \"int8 accuracy\").")
    lines = [head, "", "| net | size | batch | GFLOP/pair | fp32 GFLOP/s (% fp32 GEMM) | bf16 GFLOP/s (% bf16 GEMM) | "
                       "int8 GFLOP/s (% int8 GEMM) |", "|---|---|---|---|---|---|---|"]
    for net in nets:
        for key in by[("ort", net)]:
            h, w, n = key
            gflop = 2 * report["facts"][net][f"{w}x{h}"]["flops_per_image"] / 1e9
            cols = []
            for precision, names in impls.items():
                pps = [by.get((i, net), {}).get(key, {}).get("pairs_per_s") for i in names]
                pps = [p for p in pps if p]
                rate = max(pps) * gflop if pps else None
                pct = f" ({100 * rate / gemm[precision]:.0f}%)" if rate and gemm[precision] else ""
                cols.append(f"{rate:.1f}{pct}" if rate else "-")
            lines.append(f"| {net} | {w}x{h} | {n} | {gflop:.2f} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def render(report: dict) -> str:
    """The markdown tables of one run."""
    m, g = report["machine"], report["gemm"]
    best = g["best_gflops"]
    lines = [
        f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores, {', '.join(m['isa'])}), "
        f"{report['threads']} threads, onnxruntime {m['versions']['onnxruntime']}, torch {m['versions']['torch']}, "
        f"lpips {m['versions']['lpips']}, openvino {m['versions'].get('openvino')}; load average at start {m['load_average_at_start'][0]:.2f}, at end {report.get('load_average_at_end', [0])[0]:.2f} "
        "(a shared machine: compare numbers within this table only). Inputs: float32 NCHW arrays in [-1,1], "
        "preprocessed before timing. Medians of up to 5 timed runs after a warm-up.",
        "",
        f"Best fp32 GEMM ({g['n']}x{g['n']}) in this run: numpy {g['numpy']['gflops']:.0f} GFLOP/s, "
        f"ONNX Runtime {g['onnxruntime']['gflops']:.0f} GFLOP/s -> **{best:.0f} GFLOP/s** is the reference "
        "for the \"% GEMM\" columns (backbone conv FLOPs per pair / time).",
        "",
        "| net | size | batch | GFLOP/pair | ORT pairs/s | ORT ms/pair | torch pairs/s | lpips pairs/s | "
        "ORT / lpips | ORT GFLOP/s (% GEMM) | torch GFLOP/s (%) | lpips GFLOP/s (%) | peak RSS MiB ORT / torch / lpips |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["impl"], r["net"]): {(c["h"], c["w"], c["batch"]): c for c in r["cells"]} for r in report["results"]}
    nets = sorted({r["net"] for r in report["results"]}, key=["alex", "squeeze", "vgg"].index)
    for net in nets:
        for key in by[("ort", net)]:
            h, w, n = key
            gflop = 2 * report["facts"][net][f"{w}x{h}"]["flops_per_image"] / 1e9
            cells = {impl: by[(impl, net)].get(key) for impl in IMPLS[:3]}
            pps = {impl: c["pairs_per_s"] if c else None for impl, c in cells.items()}
            rate = {impl: (p * gflop if p else None) for impl, p in pps.items()}

            def fmt_rate(impl):
                return f"{rate[impl]:.0f} ({100 * rate[impl] / best:.0f}%)" if rate[impl] else "-"

            ratio = f"{pps['ort'] / pps['official']:.2f}x" if pps["ort"] and pps["official"] else "-"
            rss = " / ".join(f"{c['peak_rss_mb']:.0f}" if c and c.get("peak_rss_mb") else "-" for c in cells.values())
            lines.append(f"| {net} | {w}x{h} | {n} | {gflop:.2f} | {pps['ort']:.2f} | {1000 / pps['ort']:.1f} | "
                         f"{pps['torch']:.2f} | {pps['official']:.2f} | {ratio} | {fmt_rate('ort')} | "
                         f"{fmt_rate('torch')} | {fmt_rate('official')} | {rss} |")
    for s in report["skipped"]:
        lines.append(f"| {s['net']} | {s['w']}x{s['h']} | {s['batch']} | skipped: {s['reason']} (run with --full) "
                     "| | | | | | | | | |")
    procs = ", ".join(f"{LABELS[r['impl']]} {r['net']} {r['process_peak_rss_mb']:.0f}" for r in report["results"])
    lines += ["", f"Peak RSS is per cell (the process's high-water mark reset before the cell); whole worker "
                  f"processes peaked at (MiB): {procs}. The ORT and OpenVINO workers import no torch: "
                  f"{not any(r['torch_imported'] for r in report['results'] if r['impl'] in ('ort', *IMPLS[3:5]))} "
                  "(the int8 worker quantises with NNCF, which imports torch)."]
    if any(r["impl"].startswith("openvino") for r in report["results"]):
        lines += ["", "OpenVINO (our backend, same run, timed in turns with the columns above; bf16 = the fp32 export "
                      "computed in bfloat16 after an fp32 stem, see \"bf16 accuracy\"):", "",
                  "| net | size | batch | ORT fp32 pairs/s | OpenVINO fp32 | OpenVINO bf16 | OV fp32 / ORT | "
                  "bf16 / ORT | bf16 / lpips | int8 (not offered) | int8 / bf16 | int8 / lpips | "
                  "peak RSS MiB OV fp32 / bf16 / int8 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for net in nets:
            for key, ort_cell in by[("ort", net)].items():
                h, w, n = key
                got = {impl: by.get((impl, net), {}).get(key) for impl in IMPLS}
                pps = {impl: c["pairs_per_s"] if c else None for impl, c in got.items()}

                def ratio(a, b):
                    return f"{pps[a] / pps[b]:.2f}x" if pps.get(a) and pps.get(b) else "-"

                fmt = {impl: f"{p:.2f}" if p else "-" for impl, p in pps.items()}
                rss = " / ".join(f"{got[i]['peak_rss_mb']:.0f}" if got[i] and got[i].get("peak_rss_mb") else "-"
                                 for i in IMPLS[3:])
                lines.append(f"| {net} | {w}x{h} | {n} | {fmt['ort']} | {fmt['openvino-fp32']} | "
                             f"{fmt['openvino-bf16']} | {ratio('openvino-fp32', 'ort')} | "
                             f"{ratio('openvino-bf16', 'ort')} | {ratio('openvino-bf16', 'official')} | "
                             f"{fmt['openvino-int8']} | {ratio('openvino-int8', 'openvino-bf16')} | "
                             f"{ratio('openvino-int8', 'official')} | {rss} |")
    lines += ["", ceiling_table(report, by, nets)]
    if report["forms"]:
        lines += ["", "Graph form on ONNX Runtime (same run, timed in turns): portable = channel sums as 1x1 "
                      "convolutions, GlobalAveragePool, shift as a depthwise conv bias (loads in OpenCV 4.6); "
                      "natural = ReduceSum, ReduceMean, Sub.", "",
                  "| net | size | batch | portable pairs/s | natural pairs/s | natural / portable |", "|---|---|---|---|---|---|"]
        for net, data in report["forms"].items():
            for c in data["cells"]:
                p, q = c["portable"]["pairs_per_s"], c["natural"]["pairs_per_s"]
                lines.append(f"| {net} | {c['w']}x{c['h']} | {c['batch']} | {p:.2f} | {q:.2f} | {q / p:.3f} |")
    lines += ["", "Feature memory (one image's cached features, float32, all taps; `Scorer.embed`):", "",
              "| net | " + " | ".join(f"{w}x{h}" for h, w in SIZES) + " |", "|---|" + "---|" * len(SIZES)]
    for net in nets:
        lines.append(f"| {net} | " + " | ".join(
            f"{report['facts'][net][f'{w}x{h}']['feature_bytes'] / 2**20:.2f} MiB" for h, w in SIZES) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
