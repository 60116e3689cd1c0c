"""One recorded try of loading a TensorRT-RTX engine natively on the GPU at hand (benchmarks/gpu_session.sh).

    python benchmarks/trt_rtx_try.py ENGINE [--out DIR]

ENGINE is an lpips-rt engine built here by TensorRT-RTX (no GPU needed), with its .onnx and .engine.json
beside it. The GPU machines we borrow are H100/H200 (compute capability 9.0), which TensorRT-RTX does not
target, so the expected outcome there is a refusal: this script records what the library says
(``get_engine_validity`` and its diagnostics, ``deserialize_cuda_engine`` and the logger's messages),
bypassing lpips-rt's own sidecar check (which refuses 9.0 before trying). Should the engine load, it
compares the engine against ONNX Runtime's CPU provider on the fp32 graph (max relative error, limit 1e-3)
and prints a latency table (median of timed runs, CUDA events; torch provides device memory).

Writes trt-rtx-try.json to --out. Exit status 0 whatever the outcome: the outcome is the record.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", type=Path)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    record: dict = {"engine": args.engine.name, "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        _try(args.engine, record)
    except Exception as exc:  # noqa: BLE001 - every outcome is recorded, none is fatal
        record["error"] = f"{type(exc).__name__}: {exc}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trt-rtx-try.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(json.dumps(record, indent=1, default=str))


def _try(engine_path: Path, record: dict) -> None:
    import tensorrt_rtx as trt

    messages: list[str] = []

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, level, msg):
            messages.append(f"{level.name}: {msg}")

    record["tensorrt_rtx"] = trt.__version__
    try:
        import torch

        record["gpu"] = torch.cuda.get_device_name(0)
        record["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    except Exception as exc:  # noqa: BLE001
        record["gpu"] = f"unknown ({exc})"
    sidecar = json.loads(engine_path.with_name(engine_path.name + ".json").read_text())
    record["sidecar"] = {k: sidecar[k] for k in ("tensorrt_flavour", "tensorrt_version", "targets", "profile")}
    data = engine_path.read_bytes()
    runtime = trt.Runtime(Logger())
    validity, diagnostics = runtime.get_engine_validity(data)
    record["validity"] = str(validity)
    record["diagnostics"] = [f.name for f in trt.EngineInvalidityDiagnostics.__members__.values()
                             if int(diagnostics) & int(f)]
    t0 = time.perf_counter()
    engine = runtime.deserialize_cuda_engine(data)
    record["deserialize_s"] = round(time.perf_counter() - t0, 3)
    record["loaded"] = engine is not None
    record["messages"] = messages[-12:]
    if engine is None:
        return
    config = engine.create_runtime_config()
    context = engine.create_execution_context(config)
    record["context"] = context is not None
    if context is not None:
        record.update(_compare_and_time(trt, engine, context, engine_path.with_suffix(".onnx"), sidecar))
    record["messages"] = messages[-12:]


def _compare_and_time(trt, engine, context, onnx_path: Path, sidecar: dict) -> dict:
    """Engine vs ORT CPU (the same ONNX file, fp32 compute) on random frames, then latencies per shape."""
    import numpy as np
    import onnxruntime as ort
    import torch

    layout, dtype = sidecar["input_layout"], sidecar["input_dtype"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out_name = [n for n, t in sidecar["io"].items() if t["mode"] == "output"][0]
    stream = torch.cuda.current_stream()
    rng = np.random.default_rng(0)

    def inputs(n, h, w):
        shape = (n, h, w, 3) if layout == "nhwc" else (n, 3, h, w)
        if dtype == "uint8":
            return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2)]
        return [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(2)]

    def run(a, b):
        dev = [torch.from_numpy(x).cuda() for x in (a, b)]
        for name, t in zip(("img0", "img1"), dev):
            context.set_input_shape(name, tuple(t.shape))
            context.set_tensor_address(name, t.data_ptr())
        out = torch.empty(tuple(context.get_tensor_shape(out_name)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(out_name, out.data_ptr())
        context.execute_async_v3(stream.cuda_stream)
        return out

    a, b = inputs(2, 256, 256)
    got = run(a, b).cpu().numpy()
    expected = session.run([out_name], {"img0": a, "img1": b})[0]
    rel = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-12)))
    table = []
    for n, h, w in [(1, 256, 256), (8, 256, 256), (1, 1080, 1920)]:
        if not all(lo <= d <= hi for lo, d, hi in zip(sidecar["profile"]["min"], (n, h, w), sidecar["profile"]["max"])):
            continue
        a, b = inputs(n, h, w)
        run(a, b)
        times = []
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(a, b)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        table.append({"shape": f"{n}x{h}x{w}", "median_ms": round(statistics.median(times), 3)})
        print(f"{n}x{h}x{w}: {statistics.median(times):.3f} ms (median of 10, uploads included)", file=sys.stderr)
    return {"max_relative_error_vs_ort_cpu": rel, "within_1e-3": rel <= 1e-3, "latency": table}


if __name__ == "__main__":
    main()
