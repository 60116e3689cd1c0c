"""How large spatial LPIPS values are on real distortions: the measurement behind the fixed default scale
of ``lpips-score --heatmap`` (``lpips_runtime.io.heatmap.DEFAULT_SCALE``).

    python benchmarks/heatmap_scale.py           # alex, vgg, squeeze; 6 photographs x 4 distortions x 3 strengths
    python benchmarks/heatmap_scale.py --quick   # alex only, 2 photographs (< 1 minute with the export)

For every net, the per-pixel values of the distance map (``Scorer.distance_map``, the official spatial
LPIPS) are pooled by distortion strength, and their percentiles printed next to the image-level distances.
A fixed scale should put the worst regions of a strong distortion at the top of the colour bar without
hiding a mild one: the 99th percentile of the pooled pixels of moderate distortions (strength 0.5) is
that value (the worst 1% of a moderate distortion at the top colour); see the README section this writes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from _common import machine_info, publish, today  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
KINDS = ("blur", "jpeg", "noise", "colour")
STRENGTHS = (0.25, 0.5, 1.0)
SIZE = 256
PERCENTILES = (50, 90, 99, 99.9)


def photo(name: str) -> np.ndarray:
    import skimage.data

    img = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
    h, w = img.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return cv2.resize(img[y:y + side, x:x + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def distort(img: np.ndarray, kind: str, strength: float, seed: int) -> np.ndarray:
    """The distortions of the test suite: Gaussian blur, JPEG, Gaussian noise, per-channel gain."""
    rng = np.random.default_rng(seed)
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), sigmaX=0.5 + 2.0 * strength)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(max(5, 90 - 80 * strength))])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    if kind == "noise":
        return np.clip(img + rng.normal(0, 4 + 20 * strength, img.shape), 0, 255).round().astype(np.uint8)
    gains = 1 + strength * rng.uniform(-0.15, 0.15, 3)
    return np.clip(img.astype(np.float32) * gains, 0, 255).round().astype(np.uint8)


def measure(net: str, photos: tuple[str, ...], models_dir: Path) -> dict:
    from lpips_runtime import Scorer

    pixels: dict[float, list[np.ndarray]] = {s: [] for s in STRENGTHS}
    distances: dict[float, list[float]] = {s: [] for s in STRENGTHS}
    with Scorer(net, models_dir=models_dir) as scorer:
        for i, name in enumerate(photos):
            ref = photo(name)
            for kind in KINDS:
                for strength in STRENGTHS:
                    dist = distort(ref, kind, strength, seed=i)
                    dmap = scorer.distance_map(ref, dist)
                    pixels[strength].append(dmap.ravel())
                    distances[strength].append(float(dmap.mean()))
    rows = {}
    for strength in STRENGTHS:
        values = np.concatenate(pixels[strength])
        rows[str(strength)] = {
            "images": len(distances[strength]),
            "distance_median": float(np.median(distances[strength])),
            "distance_max": float(np.max(distances[strength])),
            **{f"p{p:g}": float(np.percentile(values, p)) for p in PERCENTILES},
            "max": float(values.max()),
        }
    return rows


def render(report: dict) -> str:
    lines = [f"### Heatmap scale: spatial LPIPS values on real distortions ({report['date']})", "",
             f"{len(report['photos'])} photographs ({', '.join(report['photos'])}) at {SIZE}x{SIZE}, each with "
             f"{', '.join(KINDS)} at strengths {', '.join(map(str, STRENGTHS))} (the test suite's distortions). "
             "Per-pixel values of the distance map, pooled per strength, next to the image distances "
             "(the map's mean). `python benchmarks/heatmap_scale.py`.", "",
             "| net | strength | images | distance median | distance max | pixel p50 | p90 | p99 | p99.9 | max |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for net, rows in report["nets"].items():
        for strength, r in rows.items():
            lines.append(f"| {net} | {strength} | {r['images']} | {r['distance_median']:.3f} | {r['distance_max']:.3f} "
                         f"| {r['p50']:.3f} | {r['p90']:.3f} | {r['p99']:.3f} | {r['p99.9']:.3f} | {r['max']:.3f} |")
    lines += ["", "Default heatmap scale (`lpips_runtime.io.heatmap.DEFAULT_SCALE`): p99 of the moderate distortions "
              "(strength 0.5), rounded to 0.1: " +
              ", ".join(f"{net} {rows['0.5']['p99']:.3f} -> {round(rows['0.5']['p99'], 1):.1f}"
                        for net, rows in report["nets"].items()) +
              ". The strong distortions' p99 (" +
              ", ".join(f"{net} {rows[str(STRENGTHS[-1])]['p99']:.3f}" for net, rows in report["nets"].items()) +
              ") left mild differences too faint to see in the pictures."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="alex only, two photographs")
    args = parser.parse_args()
    nets = ("alex",) if args.quick else ("alex", "vgg", "squeeze")
    photos = PHOTOS[:2] if args.quick else PHOTOS
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        report = {"date": today(), "quick": args.quick, "photos": list(photos), "size": SIZE,
                  "machine": machine_info(), "nets": {net: measure(net, photos, Path(tmp)) for net in nets}}
    report["elapsed_s"] = round(time.monotonic() - start, 1)
    text = render(report)
    if args.quick:
        print(text)
    else:
        publish("heatmap-scale", "heatmap-scale", report, text)
    print(f"elapsed {report['elapsed_s']} s")


if __name__ == "__main__":
    main()
