"""FP16 accuracy of the mixed-precision graph on the CPU: prints a table and writes
benchmarks/results/fp16-accuracy-<date>.json.

For every net and size, real photographs (scikit-image's bundled ones; 1920x1080 frames are 2x2
mosaics of them) against blurred and JPEG versions of themselves, and all-black / all-white images
against a photograph and each other. Three measures, each the max relative error against the
float32 graph (|d - d32| / max(d32, 1e-3)):

* ``ort_fp16``: the exported fp16 graph on ONNX Runtime's CPU EP. That EP has no float16 Conv on
  x86: it casts the float16 nodes to float32 and drops the Cast pairs on the data path, so this
  measures the float16 rounding of the weights only (see docs/gpu.md);
* ``emulated``: float16 storage emulated in torch (weights, input and every backbone layer's output
  rounded to float16, float32 arithmetic, float32 head): what GPU fp16 kernels with float32
  accumulation compute, up to summation order;
* ``wholesale`` (small sizes only: torch's CPU half kernels are slow): the whole module in float16,
  head included, as a blanket conversion gives.

Run: ``.venv/bin/python benchmarks/fp16_accuracy.py [--quick] [--update-readme]`` (the full run
takes about 20 minutes on 2 cores: vgg at 1920x1080 dominates).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("LPIPS_RT_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from conftest import accuracy_pairs, to_unit_nchw  # noqa: E402
from lpips_export.build import build_lpips  # noqa: E402
from lpips_export.onnx_export import export_onnx, model_filename  # noqa: E402
from lpips_export.precision import emulate_fp16_storage, relative_error, wholesale_fp16  # noqa: E402

SIZES = [(64, 64), (256, 256), (512, 512), (720, 1280), (1080, 1920)]
WHOLESALE_SIZES = {"alex": [(64, 64), (256, 256)], "squeeze": [(64, 64), (256, 256)], "vgg": [(64, 64)]}
README = ROOT / "benchmarks" / "README.md"
BEGIN, END = "<!-- fp16-accuracy:begin -->", "<!-- fp16-accuracy:end -->"


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _distances(session, module, pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: (ORT distance on this session, torch distance of ``module``) for float NCHW pairs."""
    a = np.concatenate([to_unit_nchw(x) for _, x, _ in pairs])
    b = np.concatenate([to_unit_nchw(y) for _, _, y in pairs])
    ort_out = session.run(None, {"img0": a, "img1": b})[0] if session is not None else None
    with torch.no_grad():
        torch_out = module(torch.from_numpy(a), torch.from_numpy(b)).numpy() if module is not None else None
    return a, ort_out, torch_out


def measure_net(net: str, sizes, workdir: Path) -> list[dict]:
    rows = []
    m32, prov32 = build_lpips(net)
    m16, prov16 = build_lpips(net, trunk_dtype=torch.float16)
    s32 = ort.InferenceSession(str(export_onnx(m32, prov32, workdir / model_filename(m32))),
                               providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(str(export_onnx(m16, prov16, workdir / model_filename(m16))),
                               providers=["CPUExecutionProvider"])
    emulated = emulate_fp16_storage(m32)
    for h, w in sizes:
        started = time.perf_counter()
        pairs = accuracy_pairs(h, w)
        chunks = [pairs] if h * w <= 512 * 512 else [[p] for p in pairs]  # one pair a run at large sizes
        d32, d16, dem = [], [], []
        for chunk in chunks:
            _, ref, _ = _distances(s32, None, chunk)
            _, got16, emu = _distances(s16, emulated, chunk)
            d32.append(ref), d16.append(got16), dem.append(emu)
        d32, d16, dem = np.concatenate(d32), np.concatenate(d16), np.concatenate(dem)
        row = {"net": net, "h": h, "w": w, "pairs": [label for label, _, _ in pairs],
               "distance_fp32": [round(float(x), 6) for x in d32],
               "ort_fp16": relative_error(d16, d32), "emulated": relative_error(dem, d32),
               "finite": bool(np.all(np.isfinite(d16)) and np.all(np.isfinite(dem))),
               "seconds": round(time.perf_counter() - started, 1)}
        rows.append(row)
        print(f"  {net} {w}x{h}: ort_fp16 {row['ort_fp16']:.2e}  emulated {row['emulated']:.2e}  "
              f"({row['seconds']} s)", flush=True)
    return rows


def measure_wholesale(net: str, sizes) -> list[dict]:
    rows = []
    m32, _ = build_lpips(net)
    half = wholesale_fp16(m32)
    for h, w in sizes:
        pairs = accuracy_pairs(h, w)
        a = torch.from_numpy(np.concatenate([to_unit_nchw(x) for _, x, _ in pairs]))
        b = torch.from_numpy(np.concatenate([to_unit_nchw(y) for _, _, y in pairs]))
        with torch.no_grad():
            ref = m32(a, b).numpy()
            got = half(a.half(), b.half()).float().numpy()
        rows.append({"net": net, "h": h, "w": w, "wholesale": relative_error(got, ref),
                     "finite": bool(np.all(np.isfinite(got)))})
        print(f"  {net} {w}x{h}: wholesale {rows[-1]['wholesale']:.2e}", flush=True)
    return rows


def table(rows: list[dict], wholesale: list[dict], meta: dict) -> str:
    lines = [f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), onnxruntime {meta['onnxruntime']}, "
             f"torch {meta['torch']}; `benchmarks/fp16_accuracy.py`. Max relative error against the float32 graph "
             "over the pairs of each size (photo vs blur, photo vs JPEG, black vs photo, white vs photo, black vs "
             "white):", "",
             "| net | size (WxH) | ORT CPU fp16 graph | fp16 storage, emulated | NaN/inf |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['w']}x{r['h']} | {r['ort_fp16']:.1e} | {r['emulated']:.1e} | "
                     f"{'none' if r['finite'] else 'YES'} |")
    lines += ["", "A wholesale float16 conversion (head included), torch CPU half kernels, same pairs:", "",
              "| net | size (WxH) | wholesale fp16 | NaN/inf |", "| --- | --- | --- | --- |"]
    for r in wholesale:
        lines.append(f"| {r['net']} | {r['w']}x{r['h']} | {r['wholesale']:.1e} | "
                     f"{'none' if r['finite'] else 'YES'} |")
    return "\n".join(lines)


def update_readme(text: str) -> None:
    content = README.read_text()
    if BEGIN not in content or END not in content:
        raise SystemExit(f"{README} has no {BEGIN} ... {END} block to replace")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="alex,squeeze,vgg")
    parser.add_argument("--quick", action="store_true", help="sizes up to 256x256 only")
    parser.add_argument("--sizes", help="comma-separated HxW list instead of the standard sizes")
    parser.add_argument("--update-readme", action="store_true", help="replace the table in benchmarks/README.md")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    sizes = [s for s in SIZES if not args.quick or s[0] * s[1] <= 256 * 256]
    if args.sizes:
        sizes = [tuple(int(d) for d in s.lower().split("x")) for s in args.sizes.split(",")]
    nets = args.nets.split(",")
    meta = {"date": dt.date.today().isoformat(), "cpu": _cpu_name(), "cores": os.cpu_count(),
            "onnxruntime": ort.__version__, "torch": torch.__version__, "numpy": np.__version__}
    rows, wholesale = [], []
    with tempfile.TemporaryDirectory(prefix="lpips-fp16-") as tmp:
        for net in nets:
            rows += measure_net(net, sizes, Path(tmp))
    for net in nets:
        wholesale += measure_wholesale(net, WHOLESALE_SIZES[net][:1] if args.quick or args.sizes else WHOLESALE_SIZES[net])
    text = table(rows, wholesale, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"fp16-accuracy-{meta['date']}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows, "wholesale": wholesale}, indent=1) + "\n")
    print(f"wrote {out}")
    if args.update_readme:
        update_readme(text)
        print(f"updated {README}")


if __name__ == "__main__":
    main()
