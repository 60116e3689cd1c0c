"""GPU benchmark: every LPIPS variant on the same photographs, one run, one table.

For alex / squeeze / vgg at 1x256x256, 64x256x256, 8x1024x1024 and 1x1080x1920 (NxHxW pairs):

* ``ort-cuda fp32|fp16 float32|uint8``: our exports on ONNX Runtime's CUDA provider through
  ``OrtCudaBackend`` (pinned staging, IOBinding, our streams). uint8 = the NHWC BGR frame graph;
* ``torch fp32|fp16``: our ``LPIPSModule`` in PyTorch (the torch fallback), frames in the graph;
* ``official fp32``: the ``lpips`` 0.1.4 package with the same backbone tensors;
* ``wholesale fp16`` (accuracy only): the module converted to float16 head included.

Columns: ``e2e`` = uint8 frames (float32 [-1,1] tensors for the float32-input graphs, whose CPU
preprocessing is timed apart in ``prep``) in pinned host memory -> distances on the host, median of
synchronised wall-clock timings; ``pairs/s`` = N / e2e; ``compute`` = inputs already on the device;
``pipelined pairs/s`` = batches submitted from pageable arrays two in flight, as ``Scorer.score_pairs``
drives the backend; ``max rel err`` = against ``ort-cuda fp32 float32`` (TF32 off) on the same pairs.

Run on the GPU machine from a plain checkout (no pip install; see benchmarks/README.md and
benchmarks/gpu_session.sh); ``--device cpu --quick`` runs what a CPU can (tests/benchmarks use it).
Writes benchmarks/results/gpu-<date>.json (``--out``) after every net, so a cut-off run keeps its rows.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tests/conftest.py maps export/, runtime/ and models/ (as lpips_rt_models) when the project is not
# installed, and holds the photo helpers and the official-lpips loader this benchmark shares.
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("LPIPS_RT_OFFLINE", "1")

import warnings  # noqa: E402

import numpy as np  # noqa: E402

# raised inside the official lpips package (its torchvision calls), not by our code
warnings.filterwarnings("ignore", "The parameter 'pretrained' is deprecated")
warnings.filterwarnings("ignore", "Arguments other than a weight enum")

import conftest  # noqa: E402,F401 - maps the source tree
from conftest import distort, official_lpips, scene  # noqa: E402
from lpips_runtime.io.images import rgb_to_unit_nchw  # noqa: E402
from lpips_runtime.model.modelfile import ModelSpec  # noqa: E402

SHAPES = [(1, 256, 256), (64, 256, 256), (8, 1024, 1024), (1, 1080, 1920)]
QUICK_SHAPES = [(1, 64, 64), (2, 96, 128)]
TARGETS = [  # (net, shape, measure, bound, text) from issue 4, end to end on the H100
    ("alex", (64, 256, 256), "pairs_per_s", 40000, ">= 40,000 pairs/s"),
    ("alex", (1, 256, 256), "e2e_ms", 0.4, "<= 0.4 ms"),
    ("alex", (1, 1080, 1920), "e2e_ms", 1.0, "<= 1.0 ms"),
    ("vgg", (64, 256, 256), "pairs_per_s", 3500, ">= 3,500 pairs/s"),
]
REFERENCE = "ort fp32 float32"


# -- inputs -----------------------------------------------------------------------------------


def make_pairs(n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of real photographs (uint8 RGB [n,H,W,3]): 4 scenes, each against blur/JPEG/noise."""
    kinds = ("blur", "jpeg", "noise", "colour")
    refs = [scene(h, w, i) for i in range(min(n, 4))]
    dists = [distort(r, kinds[i], 0.5, seed=i) for i, r in enumerate(refs)]
    pick = [i % len(refs) for i in range(n)]
    return np.stack([refs[i] for i in pick]), np.stack([dists[i] for i in pick])


def unit_nchw(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb_to_unit_nchw(x) for x in rgb])


def bgr_frames(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def timed(fn, iters: int, warmup: int) -> list[float]:
    """Wall-clock ms of ``fn`` (each call ends synchronised: results are on the host)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


# -- variants ---------------------------------------------------------------------------------


class OrtVariant:
    """An export on ONNX Runtime: OrtCudaBackend on a GPU, OrtBackend on the CPU."""

    def __init__(self, spec: ModelSpec, path: Path, device: str):
        from lpips_runtime.backends import open_backend

        self.name = f"ort {spec.precision} {'uint8' if spec.frames else 'float32'}"
        self.frames = spec.frames is not None
        self.backend = open_backend("ort", spec, path, device)
        self.cuda = device != "cpu"

    def setup(self, rgb0, rgb1):
        convert = bgr_frames if self.frames else unit_nchw
        self.inputs = (convert(rgb0), convert(rgb1))
        self.n, self.sample = len(rgb0), self.inputs[0].shape[1:]
        self.prep_ms = None if self.frames else statistics.median(timed(lambda: (unit_nchw(rgb0), unit_nchw(rgb1)), 3, 0))

    def _staged(self):
        """A slot holding this batch in its pinned inputs (written once per slot: frames already pinned)."""
        slot = self.backend.reserve(self.sample, self.n)
        tag = (id(self), self.n, self.sample)
        if getattr(slot, "bench_tag", None) != tag:
            for dst, src in zip(slot.inputs(self.n), self.inputs):
                dst[...] = src
            slot.bench_tag = tag
        return slot

    def e2e(self):
        if not self.cuda:
            return self.backend.run(*self.inputs)
        return self.backend.launch(self._staged(), self.n).result()[self.backend.outputs[0]]

    def compute(self):
        if not self.cuda:
            return self.backend.run(*self.inputs)
        # The last e2e run left this batch on the device and its IOBinding bound: run the graph alone.
        slot = self._staged()
        self.backend.pool.release(slot)
        self.backend.session.run_with_iobinding(slot.state)

    def pipelined(self, batches: int) -> float:
        """pairs/s with ``submit`` from pageable arrays, two batches in flight (as Scorer.score_pairs)."""
        start, in_flight = time.perf_counter(), []
        for _ in range(batches):
            in_flight.append(self.backend.submit([self.inputs[0]], [self.inputs[1]]))
            if len(in_flight) >= self.backend.pipeline_depth:
                in_flight.pop(0).result()
        for pending in in_flight:
            pending.result()
        return batches * self.n / (time.perf_counter() - start)

    def close(self):
        self.backend.close()


class TorchVariant:
    """Our LPIPSModule in PyTorch with frames in the graph (the torch fallback), or the official package."""

    def __init__(self, net: str, precision: str, device: str, official: bool = False, wholesale: bool = False):
        import torch

        from lpips_export.build import build_lpips
        from lpips_export.module import FrameFormat
        from lpips_export.precision import wholesale_fp16

        self.torch, self.device = torch, torch.device(device)
        self.official, self.wholesale = official, wholesale
        if official:
            self.name = "official fp32"
            ours, _ = build_lpips(net)
            self.module = official_lpips(net, "0.1", True, False, ours.features_state_for_official())
        elif wholesale:
            self.name = "wholesale fp16"
            self.module = wholesale_fp16(build_lpips(net)[0])
        else:
            self.name = f"torch {precision}"
            trunk = torch.float16 if precision == "fp16" else torch.float32
            self.module = build_lpips(net, trunk_dtype=trunk, frame_format=FrameFormat("nhwc", "bgr"))[0]
        self.module = self.module.to(self.device).eval()
        self.prep_ms = None

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _from_frames(self, frames):
        """uint8 NHWC BGR on the device -> what this module takes (our module: the frames as they are)."""
        if not (self.official or self.wholesale):
            return frames
        x = frames.permute(0, 3, 1, 2).flip(1).float() / 127.5 - 1.0
        return x.half() if self.wholesale else x

    def setup(self, rgb0, rgb1):
        torch = self.torch
        self.n = len(rgb0)
        pinned = [torch.from_numpy(bgr_frames(x)) for x in (rgb0, rgb1)]
        self.host = [p.pin_memory() if self.device.type == "cuda" else p for p in pinned]
        with torch.inference_mode():
            self.on_device = [self._from_frames(p.to(self.device)) for p in self.host]
        self._sync()

    def e2e(self):
        torch = self.torch
        with torch.inference_mode():
            frames = [p.to(self.device, non_blocking=True) for p in self.host]
            out = self.module(*(self._from_frames(f) for f in frames))
            return out.float().reshape(-1).cpu().numpy()

    def compute(self):
        with self.torch.inference_mode():
            self.module(*self.on_device)
        self._sync()

    def close(self):
        self.module = self.on_device = self.host = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


# -- the run ----------------------------------------------------------------------------------


def export_variants(net: str, workdir: Path, check: bool) -> dict[ModelSpec, Path]:
    from lpips_export.onnx_export import export_model

    specs = [ModelSpec(net, precision=p, frames=f) for p in ("fp32", "fp16") for f in (None, "nhwc-bgr")]
    return {spec: export_model(spec, workdir, check=check)[0] for spec in specs}


def variant_factories(net: str, paths: dict, device: str, with_official: bool) -> list:
    """Constructors of every variant, the reference (ORT fp32 float32) first. The run opens one at a
    time and closes it before the next, so their GPU memory (ORT arenas, torch caches) never adds up."""
    factories = [lambda spec=spec, path=path: OrtVariant(spec, path, device) for spec, path in paths.items()]
    factories.append(lambda: TorchVariant(net, "fp32", device))
    if device != "cpu":  # torch's CPU float16 convolutions are orders of magnitude slower: not a fallback there
        factories.append(lambda: TorchVariant(net, "fp16", device))
    if with_official:
        factories.append(lambda: TorchVariant(net, "fp32", device, official=True))
    factories.append(lambda: TorchVariant(net, "fp16", device, wholesale=True))
    return factories


def measure(variant, rgb0, rgb1, reference, iters: int, pipeline_batches: int) -> tuple[dict, np.ndarray]:
    """One variant on one batch: (its row, its distances)."""
    from lpips_export.precision import relative_error

    variant.setup(rgb0, rgb1)
    out = variant.e2e()
    row = {"max_rel_err": None if reference is None else relative_error(out, reference),
           "finite": bool(np.all(np.isfinite(out)))}
    if isinstance(variant, TorchVariant) and variant.wholesale:
        return row, out  # accuracy only
    e2e = timed(variant.e2e, iters, warmup=2)
    compute = timed(variant.compute, iters, warmup=1)
    n = len(rgb0)
    row.update(e2e_ms=statistics.median(e2e), pairs_per_s=n / statistics.median(e2e) * 1e3,
               compute_ms=statistics.median(compute), prep_ms=variant.prep_ms)
    if isinstance(variant, OrtVariant) and variant.cuda and pipeline_batches:
        row["pipelined_pairs_per_s"] = variant.pipelined(pipeline_batches)
    return row, out


def run(args) -> dict:
    import onnxruntime as ort
    import torch

    if args.device != "cpu":
        torch.backends.cudnn.allow_tf32 = False  # float32 means float32 (as the ORT sessions: use_tf32=0)
        torch.backends.cuda.matmul.allow_tf32 = False
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(d) for d in s.lower().split("x")) for s in args.shapes.split(",")]
    try:
        import lpips  # noqa: F401

        with_official = True
    except ImportError:
        with_official = False
    meta = {"date": dt.date.today().isoformat(), "device": args.device, "host": platform.node(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(), "official_lpips": with_official, "quick": args.quick}
    if args.device != "cpu":
        props = torch.cuda.get_device_properties(0)
        meta.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    report = {"meta": meta, "rows": [], "skipped": []}
    started = time.perf_counter()
    out_path = args.out / f"gpu-{meta['date']}{'-' + args.device if args.device == 'cpu' else ''}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lpips-gpu-bench-") as tmp:
        for net in args.nets.split(","):
            if time.perf_counter() - started > args.budget_s:
                report["skipped"].append(f"{net}: time budget ({args.budget_s} s) spent")
                continue
            try:
                paths = export_variants(net, Path(tmp), check=args.check_exports)
                factories = variant_factories(net, paths, args.device, with_official)
            except Exception as exc:  # e.g. missing weights for this net: go on with the others
                report["skipped"].append(f"{net}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                print(f"{net}: skipped ({report['skipped'][-1]})", flush=True)
                continue
            batches = {shape: make_pairs(*shape) for shape in shapes}
            references: dict = {}
            for factory in factories:
                if time.perf_counter() - started > args.budget_s:
                    report["skipped"].append(f"{net}: remaining variants (time budget spent)")
                    break
                try:
                    variant = factory()
                except Exception as exc:
                    report["skipped"].append(f"{net}: a variant failed to open: {type(exc).__name__}: {exc}")
                    print(report["skipped"][-1], flush=True)
                    continue
                for (n, h, w), (rgb0, rgb1) in batches.items():
                    if time.perf_counter() - started > args.budget_s:
                        report["skipped"].append(f"{net} {variant.name} {n}x{h}x{w}: time budget spent")
                        continue
                    iters = args.iters if n * h * w <= 1 << 22 else max(3, args.iters // 3)
                    try:
                        row, out = measure(variant, rgb0, rgb1, references.get((n, h, w)), iters,
                                           args.pipeline_batches)
                        if variant.name == REFERENCE:
                            references[(n, h, w)], row["max_rel_err"] = out, 0.0
                    except Exception as exc:  # one failing measurement must not lose the run
                        row = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                        if args.verbose:
                            traceback.print_exc()
                    row.update(net=net, n=n, h=h, w=w, variant=variant.name)
                    report["rows"].append(row)
                    print(format_row(row), flush=True)
                variant.close()
                gc.collect()
            out_path.write_text(json.dumps(report, indent=1) + "\n")
    report["targets"] = check_targets(report["rows"]) if args.device != "cpu" else []
    report["seconds"] = round(time.perf_counter() - started, 1)
    out_path.write_text(json.dumps(report, indent=1) + "\n")
    report["path"] = str(out_path)
    return report


def _fmt(value, spec):
    return "" if value is None else format(value, spec)


def format_row(r: dict) -> str:
    head = f"| {r['net']} | {r['n']}x{r['h']}x{r['w']} | {r['variant']} |"
    if "error" in r:
        return f"{head} error: {r['error']} | | | | | |"
    return (f"{head} {_fmt(r.get('e2e_ms'), '.3f')} | {_fmt(r.get('pairs_per_s'), ',.0f')} | "
            f"{_fmt(r.get('compute_ms'), '.3f')} | {_fmt(r.get('prep_ms'), '.2f')} | "
            f"{_fmt(r.get('pipelined_pairs_per_s'), ',.0f')} | {_fmt(r.get('max_rel_err'), '.1e')}"
            f"{'' if r.get('finite', True) else ' NaN/inf'} |")


def table(report: dict) -> str:
    meta = report["meta"]
    lines = [f"{meta.get('gpu', 'CPU')} ({meta['device']}), {meta['date']}; torch {meta['torch']}, "
             f"onnxruntime {meta['onnxruntime']}", "",
             "| net | NxHxW | variant | e2e ms | pairs/s | compute ms | prep ms | pipelined pairs/s | max rel err |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    # Measured variant by variant; shown net by net and shape by shape, variants in run order.
    first: dict = {}
    for r in report["rows"]:
        for key in (("net", r["net"]), ("shape", (r["n"], r["h"], r["w"])), ("variant", r["variant"])):
            first.setdefault(key, len(first))
    rows = sorted(report["rows"], key=lambda r: (first[("net", r["net"])], first[("shape", (r["n"], r["h"], r["w"]))],
                                                 first[("variant", r["variant"])]))
    lines += [format_row(r) for r in rows]
    if report.get("targets"):
        lines += ["", "| target | best variant | measured | met |", "| --- | --- | --- | --- |"]
        lines += [f"| {t['target']} | {t['variant']} | {t['measured']} | {'yes' if t['met'] else 'no'} |"
                  for t in report["targets"]]
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[dict]:
    out = []
    for net, shape, measure_name, bound, text in TARGETS:
        candidates = [r for r in rows if (r["net"], (r["n"], r["h"], r["w"])) == (net, shape) and measure_name in r
                      and r.get("max_rel_err") is not None and r["max_rel_err"] <= 1e-3]
        if not candidates:
            out.append({"target": f"{net} {'x'.join(map(str, shape))} {text}", "variant": "-", "measured": "-",
                        "met": False})
            continue
        best = (max if measure_name == "pairs_per_s" else min)(candidates, key=lambda r: r[measure_name])
        value = best[measure_name]
        met = value >= bound if measure_name == "pairs_per_s" else value <= bound
        shown = f"{value:,.0f} pairs/s" if measure_name == "pairs_per_s" else f"{value:.3f} ms"
        out.append({"target": f"{net} {'x'.join(map(str, shape))} {text}", "variant": best["variant"],
                    "measured": shown, "met": met})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--nets", default="alex,squeeze,vgg")
    parser.add_argument("--shapes", help="comma-separated NxHxW list instead of the standard four")
    parser.add_argument("--quick", action="store_true", help="tiny shapes only (a smoke run)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--pipeline-batches", type=int, default=20, help="batches for the pipelined column (0: skip)")
    parser.add_argument("--budget-s", type=float, default=420, help="stop starting new work after this long")
    parser.add_argument("--check-exports", action="store_true", help="run each export's CPU self-check too")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    report = run(args)
    print()
    print(table(report))
    print(f"\nwrote {report['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
