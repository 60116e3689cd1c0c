"""Cost of PSNR and SSIM inside the LPIPS graph (LPIPS-alex, ONNX Runtime, CPU).

    python benchmarks/metrics.py [--quick] [--threads N]

For 256x256 pairs (batches of 16) and 1920x1080 pairs (batches of 1), timed in turns in one run, on
images already decoded (what differs between the variants is the compute, not the decoding):

* ``lpips``: the plain distance graph;
* ``lpips+psnr+ssim (graph)``: the graph exported with ``--metrics psnr,ssim`` (``Scorer.scores``);
* ``lpips + scikit-image``: the plain graph, then ``peak_signal_noise_ratio`` and ``structural_similarity``
  (the definitions' reference) on the host, pair by pair;
* ``lpips + OpenCV``: the plain graph, then ``cv2.PSNR`` and the usual OpenCV SSIM recipe (GaussianBlur
  11x11, sigma 1.5, float32, the map averaged over the same interior as scikit-image) on the host.

Also reports each variant's largest difference to scikit-image's values. Full mode (about 3-6 minutes
on 2 cores) writes benchmarks/results/metrics-<date>.json and the metrics-table section of
benchmarks/README.md; ``--quick`` (smaller batches, one repeat, exports unchecked) only prints.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_models_dir, find_or_export, interleaved_runs, machine_info, median, publish, today  # noqa: E402

METRICS = ("psnr", "ssim")
SSIM_ARGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)


def _pairs(n: int, h: int, w: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n photo-like pairs (reference, mild blur + noise) of HxWx3 uint8 RGB."""
    from lpips_export.check_images import distorted, photo_like

    refs = [photo_like(h, w, seed + i) for i in range(n)]
    return refs, [distorted(r, seed + 100 + i) for i, r in enumerate(refs)]


def skimage_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    return {"psnr": peak_signal_noise_ratio(a, b, data_range=255), "ssim": structural_similarity(a, b, **SSIM_ARGS)}


def opencv_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """PSNR with cv2.PSNR; SSIM as OpenCV's tutorial computes it (GaussianBlur of x, y, x^2, y^2, xy in
    float32), the map averaged over the pixels whose 11x11 window lies inside the image, as scikit-image."""
    import cv2

    x, y = a.astype(np.float32), b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img):
        return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    ssim_map = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return {"psnr": cv2.PSNR(a, b), "ssim": float(ssim_map[5:-5, 5:-5].mean(dtype=np.float64))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches, one repeat, no README (smoke test)")
    parser.add_argument("--threads", type=int, default=0, help="threads for ORT and OpenCV (default: physical cores)")
    add_models_dir(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    import cv2

    from lpips_runtime.io.images import rgb_to_unit_nchw
    from lpips_runtime.model.modelfile import ModelSpec
    from lpips_runtime.core.scorer import Scorer
    from lpips_runtime.system import physical_cores

    threads = args.threads or physical_cores()
    cv2.setNumThreads(threads)
    q = args.quick
    workloads = [(2, 128, 128), (1, 270, 480)] if q else [(16, 256, 256), (1, 1080, 1920)]
    repeats = 1 if q else 5
    report = {"date": today(), "machine": machine_info(), "threads": threads, "net": "alex", "rows": []}
    print(f"metrics benchmark (alex, ORT CPU, {threads} threads), {today()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lpips-metrics-bench-") as tmp:
        tmp = args.models_dir or tmp
        for spec in (ModelSpec("alex"), ModelSpec("alex", metrics=METRICS)):
            find_or_export(spec, tmp, check=not q)
        plain = Scorer("alex", models_dir=tmp, threads=threads, batch_size=16, auto_export=False)
        with_metrics = Scorer("alex", models_dir=tmp, threads=threads, batch_size=16, metrics=METRICS,
                              auto_export=False)
        for n, h, w in workloads:
            refs, dists = _pairs(n, h, w, seed=h)
            a = np.concatenate([rgb_to_unit_nchw(x) for x in refs])
            b = np.concatenate([rgb_to_unit_nchw(x) for x in dists])

            def host(metric_fn):
                def run():
                    plain.distance(a, b)
                    return [metric_fn(x, y) for x, y in zip(refs, dists)]
                return run

            variants = {"lpips": lambda: plain.distance(a, b),
                        "lpips+psnr+ssim (graph)": lambda: with_metrics.scores(a, b),
                        "lpips + scikit-image": host(skimage_metrics),
                        "lpips + OpenCV": host(opencv_metrics)}
            times = interleaved_runs(variants, repeats)
            reference = [skimage_metrics(x, y) for x, y in zip(refs, dists)]
            graph = with_metrics.scores(a, b)
            errors = {"lpips+psnr+ssim (graph)": {m: float(max(abs(graph[m][i] - r[m])
                                                                 for i, r in enumerate(reference)))
                                                  for m in METRICS},
                      "lpips + OpenCV": {m: float(max(abs(opencv_metrics(x, y)[m] - r[m])
                                                      for x, y, r in zip(refs, dists, reference))) for m in METRICS}}
            base = median(times["lpips"]) / n
            for name, values in times.items():
                per_pair = median(values) / n
                row = {"size": f"{w}x{h}", "batch": n, "variant": name, "ms_per_pair": 1e3 * per_pair,
                       "extra_ms_per_pair": 1e3 * (per_pair - base), "extra_pct": 100 * (per_pair / base - 1),
                       "times_s": values, "max_abs_diff_vs_skimage": errors.get(name)}
                report["rows"].append(row)
                print(f"  {w}x{h} x{n}: {name:26s} {row['ms_per_pair']:9.1f} ms/pair  (+{row['extra_pct']:.0f}%)",
                      flush=True)
        plain.close()
        with_metrics.close()
    text = render(report)
    if q:
        print("\n" + text)
    else:
        publish("metrics", "metrics-table", report, text)
    return 0


def render(report: dict) -> str:
    m = report["machine"]
    lines = [f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores, load average at start "
             f"{m['load_average_at_start'][0]:.1f}), {report['threads']} threads for ONNX Runtime and OpenCV, "
             "LPIPS-alex, images decoded before timing, medians of runs timed in turns. Extra: time per pair "
             "beyond LPIPS alone.", "",
             "| size (batch) | variant | ms per pair | extra | max abs diff to scikit-image (PSNR dB, SSIM) |",
             "|---|---|---|---|---|"]
    for r in report["rows"]:
        diff = r["max_abs_diff_vs_skimage"]
        diff_text = ("(the reference)" if "scikit" in r["variant"] else "-" if diff is None
                     else f"{diff['psnr']:.1e}, {diff['ssim']:.1e}")
        extra = "-" if r["variant"] == "lpips" else f"+{r['extra_ms_per_pair']:.1f} ms (+{r['extra_pct']:.0f}%)"
        lines.append(f"| {r['size']} ({r['batch']}) | {r['variant']} | {r['ms_per_pair']:.1f} | {extra} "
                     f"| {diff_text} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
