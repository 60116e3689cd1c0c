"""bf16 accuracy: LPIPS distances computed in bfloat16 on OpenVINO against fp32, per net, on natural images
and on the worst case.

    python benchmarks/bf16_accuracy.py            # every net, every set (about 10 minutes on 2 cores)
    python benchmarks/bf16_accuracy.py --quick    # alex, a few images (< 1 minute; README untouched)

fp32 reference: ONNX Runtime on the fp32 export (equal to the official lpips 0.1.4 to 1e-5, tests). Variants:
"bf16" is what `precision="bf16"` runs (OpenVINO; stem = input scaling, first convolution and ReLU in fp32,
everything after it in bf16); "bf16, bf16 stem" computes the stem in bf16 too (OpenVINO's plain bf16 hint,
for comparison); "OpenVINO fp32" checks the backend's fp32 path. Sets:

- photographs, native size: scikit-image's astronaut, chelsea, coffee, rocket, immunohistochemistry (300x451 to
  427x640), each against blur, noise, JPEG and colour distortions at two strengths;
- photographs, 256x256: centre crops of the same, same distortions;
- the example pair (examples/ref.png, examples/distorted.png);
- distortion ladders: one 256x256 photograph against 10 steps each of Gaussian noise, blur, JPEG quality and
  colour quantisation (40 images);
- random noise (worst case): pairs of independent uniform-noise 256x256 images, no structure at all;
- outside-style photographs (outside_pairs.py, issue 26): six photographs at four sizes (192x256 to 512x768,
  cropped or resampled) under noise, blur, JPEG and resampling at three strengths (288 pairs; --outside quick: 24).

Per set: max and mean absolute error, max relative error over distances >= 0.01, and the share of pairwise
orderings kept (for two distorted images of the same reference: is the same one closer in bf16 as in fp32? The
ladders compare all 40 of their images with one another, the random set all its pairs). Acceptance (issue 14),
natural sets: max abs <= 1e-3 and >= 99.5% of orderings kept. Numerics only: no timing.
Writes benchmarks/results/bf16-accuracy-<date>.json and the bf16-accuracy section of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, finish, machine_info, today  # noqa: E402
from outside_pairs import outside_set  # noqa: E402
from precision import crop, distort, photo, unit  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
KINDS = ("blur", "noise", "jpeg", "colour")
STRENGTHS = (0.25, 0.75)
NATURAL = ("photos-native", "photos-256", "example", "ladders", "outside")
ACCEPT = {"max_abs": 1e-3, "orderings": 0.995}
VARIANT_OPTIONS = {"bf16": {"precision": "bf16"}, "bf16, bf16 stem": {"precision": "bf16", "fp32_stem": False},
                   "OpenVINO fp32": {"precision": "fp32"}}
VARIANTS = tuple(VARIANT_OPTIONS)
MAX_BATCH = {"alex": 8, "squeeze": 8, "vgg": 2}  # pairs per run (vgg at 640x427 keeps RSS near 3 GB)


def ladder(img: np.ndarray, kind: str, steps: int) -> list[np.ndarray]:
    """``steps`` increasingly strong distortions of ``img`` (RGB uint8) of one kind."""
    out = []
    for s in np.linspace(0, 1, steps):
        if kind == "noise":
            rng = np.random.default_rng(int(100 * s))
            out.append(np.clip(img + rng.normal(0, 1 + 39 * s, img.shape), 0, 255).round().astype(np.uint8))
        elif kind == "blur":
            out.append(cv2.GaussianBlur(img, (0, 0), sigmaX=0.3 + 3.7 * s))
        elif kind == "jpeg":
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(95 - 90 * s))])
            out.append(np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]))
        else:  # quantisation: 128 down to 4 levels per channel
            levels = int(round(2 ** (7 - 5 * s)))
            step = 256 / levels
            out.append(np.clip((np.floor(img / step) + 0.5) * step, 0, 255).astype(np.uint8))
    return out


def build_sets(quick: bool) -> dict[str, dict]:
    """name -> {"pairs": [(ref NCHW, other NCHW)], "groups": [pair indices whose orderings count]}."""
    photos = PHOTOS[:2] if quick else PHOTOS
    strengths = STRENGTHS[:1] if quick else STRENGTHS
    sets = {}
    for name, size in (("photos-native", None), ("photos-256", 256)):
        pairs, groups = [], []
        for r, p in enumerate(photos):
            ref = photo(p) if size is None else crop(photo(p), size)
            group = []
            for kind in KINDS:
                for k, strength in enumerate(strengths):
                    group.append(len(pairs))
                    pairs.append((unit(ref), unit(distort(ref, kind, strength, 10 * r + k))))
            groups.append(group)
        sets[name] = {"pairs": pairs, "groups": groups}
    example = [cv2.imread(str(REPO / "examples" / f))[..., ::-1] for f in ("ref.png", "distorted.png")]
    sets["example"] = {"pairs": [(unit(example[0]), unit(example[1]))], "groups": []}
    base = crop(photo("astronaut"), 256)
    steps = 4 if quick else 10
    others = [img for kind in KINDS for img in ladder(base, kind, steps)]
    sets["ladders"] = {"pairs": [(unit(base), unit(o)) for o in others], "groups": [list(range(len(others)))]}
    rng = np.random.default_rng(0)
    n = 4 if quick else 16
    noise = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2 * n)]
    sets["random-noise"] = {"pairs": [(unit(noise[2 * i]), unit(noise[2 * i + 1])) for i in range(n)],
                            "groups": [list(range(n))]}
    return sets


def distances(run, pairs, batch: int) -> np.ndarray:
    """Distances of ``pairs`` through ``run(a, b)``, batching consecutive same-shape pairs."""
    out, k = [], 0
    while k < len(pairs):
        shape = pairs[k][0].shape
        j = k
        while j < len(pairs) and j - k < batch and pairs[j][0].shape == shape:
            j += 1
        out.append(run(np.concatenate([p[0] for p in pairs[k:j]]), np.concatenate([p[1] for p in pairs[k:j]])))
        k = j
    return np.concatenate(out).reshape(-1)


def judge(base: np.ndarray, other: np.ndarray, groups: list[list[int]]) -> dict:
    err = np.abs(other - base)
    big = base >= 0.01
    kept = total = 0
    for group in groups:
        for a, b in combinations(group, 2):
            if base[a] == base[b]:
                continue
            total += 1
            kept += bool((base[a] < base[b]) == (other[a] < other[b]))
    return {"max_abs": float(err.max()), "mean_abs": float(err.mean()),
            "max_rel": float((err[big] / base[big]).max()) if big.any() else None,
            "orderings_kept": kept, "orderings": total}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="alex, two photographs, short ladders (smoke test)")
    parser.add_argument("--nets", default="alex,squeeze,vgg")
    parser.add_argument("--threads", type=int, default=0, help="default: physical cores")
    parser.add_argument("--models-dir", type=Path, help="where the fp32 exports are (default: exported to a temp dir)")
    parser.add_argument("--outside", choices=("quick", "full"), default="full",
                        help="outside_pairs.py's set: full (288 pairs up to 512x768) or quick (24 pairs, small sizes)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    import tempfile

    from lpips_runtime import Scorer
    from lpips_runtime.backends.openvino_backend import OpenVinoGraph
    from lpips_runtime.system import physical_cores

    import openvino as ov

    from lpips_runtime.backends.openvino_backend import cpu_capabilities

    if "BF16" not in cpu_capabilities(ov.Core()):
        print("this CPU has no native bfloat16 (OpenVINO lists no BF16): nothing to measure", file=sys.stderr)
        return 1
    threads = args.threads or physical_cores()
    nets = ["alex"] if args.quick else args.nets.split(",")
    start = time.monotonic()
    sets = build_sets(args.quick)
    sets["outside"] = outside_set(args.quick or args.outside == "quick")
    report = {"date": today(), "machine": machine_info(), "threads": threads, "quick": args.quick,
              "reference": "ONNX Runtime fp32 (= official lpips 0.1.4 to 1e-5)", "accept": ACCEPT, "nets": {}}
    with tempfile.TemporaryDirectory(prefix="lpips-bf16-") as tmp:
        models = args.models_dir or Path(tmp)
        for net in nets:
            # One implementation alive at a time: each keeps buffers for the largest shape it has run (vgg at
            # 640x427 holds gigabytes), and four at once did not fit beside other jobs on a 24 GB machine.
            with Scorer(net, models_dir=models, threads=threads) as fp32:
                path = fp32.model_info().path
                base = {name: distances(fp32.distance, data["pairs"], MAX_BATCH[net]) for name, data in sets.items()}
            rows = {name: {"pairs": len(b), "fp32_min": float(b.min()), "fp32_max": float(b.max())}
                    for name, b in base.items()}
            for variant, options in VARIANT_OPTIONS.items():
                graph = OpenVinoGraph(path, threads=threads, **options)
                for name, data in sets.items():
                    got = distances(lambda a, b, g=graph: g.run({"img0": a, "img1": b})[0], data["pairs"],
                                    MAX_BATCH[net])
                    rows[name][variant] = judge(base[name], got, data["groups"])
                graph.close()
            report["nets"][net] = rows
            for name, row in rows.items():
                print(f"  {net:7s} {name:13s} " + "; ".join(
                    f"{v}: max abs {row[v]['max_abs']:.2e} kept {row[v]['orderings_kept']}/{row[v]['orderings']}"
                    for v in VARIANTS), flush=True)
    finish("bf16-accuracy", "bf16-accuracy", report, render(report), args.quick, start)
    return 0


def _verdict(rows: dict, variant: str) -> str:
    natural = [rows[s][variant] for s in NATURAL if s in rows]
    worst = max(r["max_abs"] for r in natural)
    kept = sum(r["orderings_kept"] for r in natural) / max(1, sum(r["orderings"] for r in natural))
    ok = worst <= ACCEPT["max_abs"] and kept >= ACCEPT["orderings"]
    return f"max abs {worst:.2e}, orderings kept {100 * kept:.2f}%: {'meets' if ok else 'FAILS'} the acceptance"


def render(report: dict) -> str:
    m = report["machine"]
    lines = [f"Run {report['date']} on {m['cpu']} ({', '.join(m['isa'])}), {report['threads']} threads, OpenVINO "
             f"{m['versions']['openvino']}, onnxruntime {m['versions']['onnxruntime']}. Reference: "
             f"{report['reference']}. \"bf16\" is what `precision=\"bf16\"` computes (fp32 stem); \"bf16 stem\" is "
             "OpenVINO's plain bf16 hint, for comparison. Max rel over distances >= 0.01; orderings: pairs of "
             "images of one reference (or of one ladder / the random set) whose order bf16 keeps.", "",
             "| net | set | pairs | fp32 distances | variant | max abs | mean abs | max rel | orderings kept |",
             "|---|---|---|---|---|---|---|---|---|"]
    for net, rows in report["nets"].items():
        for name, row in rows.items():
            for variant in VARIANTS:
                r = row[variant]
                rel = f"{r['max_rel']:.2e}" if r["max_rel"] is not None else "-"
                kept = (f"{100 * r['orderings_kept'] / r['orderings']:.2f}% ({r['orderings_kept']}/{r['orderings']})"
                        if r["orderings"] else "-")
                lines.append(f"| {net} | {name} | {row['pairs']} | {row['fp32_min']:.3f}-{row['fp32_max']:.3f} | "
                             f"{variant} | {r['max_abs']:.2e} | {r['mean_abs']:.2e} | {rel} | {kept} |")
    lines += ["", "Natural images (photographs at both sizes, the example pair, the ladders, the outside-style set), acceptance max abs <= "
                  f"{ACCEPT['max_abs']:g} and >= {100 * ACCEPT['orderings']:g}% orderings kept:", ""]
    for net, rows in report["nets"].items():
        lines.append(f"- {net}: bf16 {_verdict(rows, 'bf16')}; with a bf16 stem {_verdict(rows, 'bf16, bf16 stem')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
