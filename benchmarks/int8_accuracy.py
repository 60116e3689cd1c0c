"""int8 accuracy: LPIPS distances from OpenVINO int8 models (NNCF post-training quantisation) against fp32.

    python benchmarks/int8_accuracy.py                       # alex and squeeze, every set, the skip ladder
    python benchmarks/int8_accuracy.py --nets vgg --skips 1  # one variant of vgg
    python benchmarks/int8_accuracy.py --quick               # alex, skip 1, a few pairs (README untouched)

Quantisation (``quantize``): NNCF 3.x ``nncf.quantize`` on the fp32 export read by OpenVINO, calibrated on
crops and distortions of scikit-image photographs that no evaluation set uses (benchmarks/precision.py's
CALIB_PHOTOS; ours to ship: bundled with the package, nothing downloaded). Only the backbone's convolutions
are quantised (int8 weights per output channel, uint8 activations per tensor: the u8s8 kernels, AVX-512 VNNI
where the CPU has it): every other operation (the input scaling, channel normalisation, differences, the
linear head, the spatial mean) is in NNCF's ignored scope, and any quantiser NNCF still puts on a tapped
ReLU output is rewired so that only the next backbone layer reads the quantised value: the taps themselves
stay float. "skip k" keeps the first k backbone convolutions in float too (k >= 1: the stem, as bf16 keeps
it); the ladder of k is the mixed-precision search (NNCF's accuracy-aware quantisation reverts layers by
the same criterion, one at a time: the ladder measures every step of it instead).

Reference: ONNX Runtime fp32 on the same export (equal to the official lpips 0.1.4 to 1e-5, tests).
Sets: bf16_accuracy.py's (photographs native and 256x256, the example pair, the distortion ladders, random
noise) and outside_pairs.py's outside-style photographs (several sizes; noise, blur, JPEG, resampling).
Acceptance (issue 26, as bf16's): on the natural sets max abs <= 1e-3 and >= 99.5% of orderings kept.
Writes benchmarks/results/int8-accuracy-<date>.json and the int8-accuracy section of benchmarks/README.md.
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
from _common import RESULTS, finish, machine_info, today  # noqa: E402
from bf16_accuracy import build_sets, distances, judge  # noqa: E402
from outside_pairs import outside_set  # noqa: E402
from precision import CALIB_PHOTOS, KINDS, STRENGTHS, crop, distort, photo, unit  # noqa: E402

ACCEPT = {"max_abs": 1e-3, "orderings": 0.995}
NATURAL = ("photos-native", "photos-256", "example", "ladders", "outside")
MAX_BATCH = {"alex": 8, "squeeze": 8, "vgg": 2}
DEFAULT_SKIPS = {"alex": (1, 2, 3, 4), "squeeze": (1, 3, 6), "vgg": (1, 6)}
KEEP_TYPES = {"Convolution", "MaxPool", "Relu", "Concat", "Parameter", "Constant", "Result"}


def calibration(n: int = 60, size: int = 224) -> list[dict]:
    """Calibration feeds: crops of CALIB_PHOTOS (textures, text, coins...: disjoint from every evaluation set)
    against a distortion of themselves, as LPIPS sees them (img0/img1, float32 NCHW in [-1,1])."""
    feeds = []
    for i in range(n):
        img = crop(photo(CALIB_PHOTOS[i % len(CALIB_PHOTOS)]), size, where=(i * 0.37) % 1)
        feeds.append({"img0": unit(img), "img1": unit(distort(img, KINDS[i % 4], STRENGTHS[(i // 4) % 4], 7 + i))})
    return feeds


def backbone_convs(model) -> list[str]:
    """Friendly names of the backbone's convolutions (ONNX names features.*), in graph order."""
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "Convolution" and "features" in op.get_friendly_name()]


def quantize(onnx_path: Path, skip: int, feeds: list[dict]):
    """The fp32 export -> an OpenVINO int8 model (backbone convolutions after the first ``skip`` quantised)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    backbone = backbone_convs(model)
    convs = {op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"}
    ignored_types = sorted({op.get_type_name() for op in model.get_ordered_ops()} - KEEP_TYPES)
    scope = nncf.IgnoredScope(names=sorted(convs - set(backbone[skip:])), types=ignored_types)
    q = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), target_device=nncf.TargetDevice.CPU,
                      ignored_scope=scope)
    readers = set(backbone[skip:]) | {op.get_friendly_name() for op in q.get_ordered_ops()
                                      if op.get_type_name() == "MaxPool"}
    for op in q.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize" or op.input_value(0).get_node().get_type_name() == "Constant":
            continue
        for target in list(op.output(0).get_target_inputs()):  # a tap, the normalisation: float input again
            if target.get_node().get_friendly_name() not in readers:
                target.replace_source_output(op.input_value(0))
    return q, len(backbone)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nets", default="alex,squeeze")
    parser.add_argument("--skips", help="comma-separated k values (default: per net, DEFAULT_SKIPS)")
    parser.add_argument("--sets", help="comma-separated set names (default: all)")
    parser.add_argument("--outside", choices=("quick", "full"), default="full",
                        help="outside_pairs.py's set: full (288 pairs up to 512x768) or quick (24 pairs, small sizes)")
    parser.add_argument("--calibration", type=int, default=60, help="calibration pairs (224x224 crops)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    import openvino as ov

    from lpips_runtime import Scorer
    from lpips_runtime.system import physical_cores

    threads = args.threads or physical_cores()
    nets = ["alex"] if args.quick else args.nets.split(",")
    start = time.monotonic()
    sets = build_sets(args.quick)
    sets["outside"] = outside_set(args.quick or args.outside == "quick")
    report_outside = "quick" if args.quick or args.outside == "quick" else "full"
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
    feeds = calibration(12 if args.quick else args.calibration)
    core = ov.Core()
    report = {"date": today(), "machine": machine_info(), "threads": threads, "quick": args.quick,
              "openvino_caps": [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")],
              "reference": "ONNX Runtime fp32 (= official lpips 0.1.4 to 1e-5)", "accept": ACCEPT, "nets": {},
              "outside": report_outside, "load_average_at_end": None}
    with tempfile.TemporaryDirectory(prefix="lpips-int8-") as tmp:
        models = args.models_dir or Path(tmp)
        for net in nets:
            with Scorer(net, models_dir=models, threads=threads) as fp32:
                path = fp32.model_info().path
                base = {name: distances(fp32.distance, data["pairs"], MAX_BATCH[net]) for name, data in sets.items()}
            rows = {name: {"pairs": len(b), "fp32_min": float(b.min()), "fp32_max": float(b.max())}
                    for name, b in base.items()}
            skips = [1] if args.quick else ([int(k) for k in args.skips.split(",")] if args.skips
                                            else DEFAULT_SKIPS[net])
            variants = {}
            for skip in skips:
                q, n_convs = quantize(path, skip, feeds)
                variant = f"int8, {n_convs - skip} of {n_convs} convs"
                variants[variant] = {"skip": skip, "calibration_pairs": len(feeds), "sets": sorted(sets)}
                compiled = core.compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                         "INFERENCE_PRECISION_HINT": "f32"})
                for name, data in sets.items():
                    got = distances(lambda a, b: compiled({"img0": a, "img1": b})[0], data["pairs"], MAX_BATCH[net])
                    rows[name][variant] = judge(base[name], got, data["groups"])
                    r = rows[name][variant]
                    print(f"  {net:7s} {variant:22s} {name:13s} max abs {r['max_abs']:.2e} mean {r['mean_abs']:.2e} "
                          f"kept {r['orderings_kept']}/{r['orderings']}", flush=True)
                del compiled, q
            report["nets"][net] = {"variants": variants, "rows": rows}
    report["load_average_at_end"] = os.getloadavg()
    if not args.quick:  # nets measured earlier the same day stay in the table (one run per net fits a busy machine)
        earlier = RESULTS / f"int8-accuracy-{today()}.json"
        if earlier.exists():
            report["nets"] = {**json.loads(earlier.read_text())["nets"], **report["nets"]}
    finish("int8-accuracy", "int8-accuracy", report, render(report), args.quick, start)
    return 0


def verdict(rows: dict, variant: str) -> tuple[bool, float, float]:
    natural = [rows[s][variant] for s in NATURAL if s in rows and variant in rows[s]]
    worst = max(r["max_abs"] for r in natural)
    kept = sum(r["orderings_kept"] for r in natural) / max(1, sum(r["orderings"] for r in natural))
    return worst <= ACCEPT["max_abs"] and kept >= ACCEPT["orderings"], worst, kept


def render(report: dict) -> str:
    m = report["machine"]
    lines = [f"Run {report['date']} on {m['cpu']} ({', '.join(m['isa'])}; OpenVINO capabilities "
             f"{', '.join(report['openvino_caps'])}), {report['threads']} threads, OpenVINO {m['versions']['openvino']}."
             f" Reference: {report['reference']}. NNCF post-training quantisation of the backbone convolutions, "
             "the first k kept in fp32; everything else fp32. Max rel over distances >= 0.01. Outside-style set: "
             f"{report['outside']} (outside_pairs.py). Load average at start/end {m['load_average_at_start'][0]:.1f}/"
             f"{(report.get('load_average_at_end') or [0])[0]:.1f} (accuracy does not depend on it).", "",
             "| net | set | pairs | fp32 distances | variant | max abs | mean abs | max rel | orderings kept |",
             "|---|---|---|---|---|---|---|---|---|"]
    for net, data in report["nets"].items():
        for name, row in data["rows"].items():
            for variant in data["variants"]:
                r = row[variant]
                rel = f"{r['max_rel']:.2e}" if r["max_rel"] is not None else "-"
                kept = (f"{100 * r['orderings_kept'] / r['orderings']:.2f}% ({r['orderings_kept']}/{r['orderings']})"
                        if r["orderings"] else "-")
                lines.append(f"| {net} | {name} | {row['pairs']} | {row['fp32_min']:.3f}-{row['fp32_max']:.3f} | "
                             f"{variant} | {r['max_abs']:.2e} | {r['mean_abs']:.2e} | {rel} | {kept} |")
    lines += ["", f"Natural sets ({', '.join(NATURAL)}), acceptance max abs <= {ACCEPT['max_abs']:g} and >= "
                  f"{100 * ACCEPT['orderings']:g}% orderings kept:", ""]
    for net, data in report["nets"].items():
        for variant in data["variants"]:
            ok, worst, kept = verdict(data["rows"], variant)
            lines.append(f"- {net}, {variant}: max abs {worst:.2e}, orderings kept {100 * kept:.2f}%: "
                         f"{'meets' if ok else 'FAILS'} the acceptance")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
