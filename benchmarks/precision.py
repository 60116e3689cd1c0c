"""Lower precision on the CPU: int8 (ONNX Runtime static quantisation) and bf16, judged against fp32.

    python benchmarks/precision.py [--nets alex,squeeze]

int8: the backbone convolutions of the fused graph are quantised (QDQ, per-channel int8 weights, uint8
activations: the u8s8 kernels that use AVX-512 VNNI), calibrated on real photographs (scikit-image's
bundled ones, crops and distortions disjoint from the evaluation set); the normalisation and the head
stay float32. bf16: ONNX Runtime's CPU provider is probed for a bfloat16 Conv kernel; torch's oneDNN
bf16 autocast is measured as a point of comparison (not a runtime path: the runtime has no torch).

Accuracy: >= 200 real (reference, distorted) pairs: 8 photographs x {blur, noise, JPEG, colour} x 4
strengths x 2 seeds at 128x128: max abs error, max relative error (distances >= 0.01), and the share of
2AFC orderings kept (for a reference and two of its distortions: is the same one closer, as in fp32?).
Speed: pairs/s at 256x256 batch 16, timed in turns with fp32. Ship rule (issue 5): >= 1.8x fp32 speed,
>= 99.5% orderings kept and max abs error <= 0.005.
Writes benchmarks/results/precision-<date>.json and the precision-table section of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_runs, machine_info, median, publish, today  # noqa: E402

EVAL_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
               "camera", "retina")
CALIB_PHOTOS = ("coins", "page", "moon", "text", "brick", "grass", "gravel", "clock", "colorwheel", "cell")
KINDS = ("blur", "noise", "jpeg", "colour")
STRENGTHS = (0.25, 0.5, 0.75, 1.0)
SHIP = {"speedup": 1.8, "orderings": 0.995, "max_abs": 0.005}


def photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.dtype != np.uint8:
        img = (255 * (img - img.min()) / max(np.ptp(img), 1e-9)).astype(np.uint8)
    return np.ascontiguousarray(img[..., :3])


def crop(img: np.ndarray, size: int, where: float = 0.5) -> np.ndarray:
    if min(img.shape[:2]) < size:
        img = cv2.resize(img, (max(size, img.shape[1]), max(size, img.shape[0])), interpolation=cv2.INTER_AREA)
    y, x = int((img.shape[0] - size) * where), int((img.shape[1] - size) * where)
    return np.ascontiguousarray(img[y:y + size, x:x + size])


def distort(img: np.ndarray, kind: str, strength: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), sigmaX=0.3 + 2.5 * strength)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(max(5, 95 - 85 * strength))])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    if kind == "noise":
        return np.clip(img + rng.normal(0, 2 + 25 * strength, img.shape), 0, 255).round().astype(np.uint8)
    gains = 1 + strength * rng.uniform(-0.2, 0.2, 3)
    return np.clip(img.astype(np.float32) * gains + strength * rng.uniform(-15, 15, 3), 0, 255).round().astype(np.uint8)


def unit(img: np.ndarray) -> np.ndarray:
    return (img / 127.5 - 1.0).astype(np.float32).transpose(2, 0, 1)[None]


def evaluation_set(size: int = 128):
    """[(reference index, ref NCHW, distorted NCHW)], >= 200 pairs from EVAL_PHOTOS."""
    pairs = []
    for r, name in enumerate(EVAL_PHOTOS):
        ref = crop(photo(name), size)
        for kind in KINDS:
            for strength in STRENGTHS:
                for seed in (0, 1):
                    pairs.append((r, unit(ref), unit(distort(ref, kind, strength, 100 * r + seed))))
    return pairs


def calibration_feeds(n: int = 48, size: int = 128):
    feeds = []
    for i in range(n):
        img = crop(photo(CALIB_PHOTOS[i % len(CALIB_PHOTOS)]), size, where=(i * 0.37) % 1)
        kind, strength = KINDS[i % 4], STRENGTHS[(i // 4) % 4]
        feeds.append({"img0": unit(img), "img1": unit(distort(img, kind, strength, 7 + i))})
    return feeds


def quantize_int8(fp32_path: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32_path))
    inits = {i.name for i in model.graph.initializer}
    # Only the backbone's convolutions (weights named features.*): the unit-weight channel sums, the
    # v0.1 shift and the linear head stay float32, where 1e-10 and sums of squares need the range.
    backbone = [n.name for n in model.graph.node if n.op_type == "Conv"
                and any(i in inits and "features" in i for i in n.input[1:2])]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(calibration_feeds())

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(fp32_path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "MaxPool", "Relu"], nodes_to_quantize=backbone or None)
    return out


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    from lpips_runtime.backends.ort_backend import session_options

    return ort.InferenceSession(str(path), session_options(ort, threads), providers=["CPUExecutionProvider"])


def ort_bf16_probe() -> str:
    """Does ONNX Runtime's CPU provider run a bfloat16 Conv? (ONNX allows bfloat16 Conv from opset 22;
    before that the model itself is invalid.) Returns what ORT said."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    bits = (np.ones(4 * 3 * 3 * 3, np.float32).view(np.uint32) >> 16).astype(np.uint16)  # 1.0 in bfloat16
    w = helper.make_tensor("w", TensorProto.BFLOAT16, [4, 3, 3, 3], vals=bits.tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return "loaded"
    except Exception as exc:
        return str(exc).splitlines()[0][:300]


def score(run, pairs, batch: int = 16) -> np.ndarray:
    out = []
    for k in range(0, len(pairs), batch):
        part = pairs[k:k + batch]
        out.append(run(np.concatenate([p[1] for p in part]), np.concatenate([p[2] for p in part])))
    return np.concatenate(out).reshape(-1)


def judge(ref_idx, base: np.ndarray, other: np.ndarray) -> dict:
    err = np.abs(other - base)
    big = base >= 0.01
    kept = total = 0
    for r in sorted(set(ref_idx)):
        idx = [i for i, x in enumerate(ref_idx) if x == r]
        for a, b in combinations(idx, 2):
            if base[a] == base[b]:
                continue
            total += 1
            kept += (base[a] < base[b]) == (other[a] < other[b])
    return {"pairs": len(base), "max_abs": float(err.max()), "mean_abs": float(err.mean()),
            "max_rel": float((err[big] / base[big]).max()), "orderings": kept / total, "orderings_n": total}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="alex,squeeze")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    import torch

    from lpips_export.build import build_lpips
    from lpips_export.onnx_export import export_model
    from lpips_runtime.model.modelfile import ModelSpec
    from lpips_runtime.system import physical_cores

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    pairs = evaluation_set()
    ref_idx = [p[0] for p in pairs]
    rng = np.random.default_rng(0)
    bench = [rng.uniform(-1, 1, (16, 3, 256, 256)).astype(np.float32) for _ in range(2)]
    report = {"date": today(), "machine": machine_info(), "threads": threads, "pairs": len(pairs),
              "ort_bf16_conv": ort_bf16_probe(), "nets": {}}
    print("ORT CPU bf16 Conv:", report["ort_bf16_conv"], flush=True)
    with tempfile.TemporaryDirectory(prefix="lpips-precision-") as tmp:
        for net in args.nets.split(","):
            fp32_path, _ = export_model(ModelSpec(net), tmp)
            int8_path = quantize_int8(fp32_path, Path(tmp) / f"{net}-int8.onnx")
            fp32, int8 = ort_session(fp32_path, threads), ort_session(int8_path, threads)
            module, _ = build_lpips(net)

            def run_bf16(a, b):
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return module(torch.from_numpy(a), torch.from_numpy(b)).float().numpy()

            runs = {"fp32": lambda a, b: fp32.run(None, {"img0": a, "img1": b})[0],
                    "int8 (ORT QDQ)": lambda a, b: int8.run(None, {"img0": a, "img1": b})[0],
                    "bf16 (torch autocast)": run_bf16}
            values = {name: score(run, pairs) for name, run in runs.items()}
            times = interleaved_runs({name: (lambda r=run: r(*bench)) for name, run in runs.items()}, args.repeats)
            entry = {}
            for name in runs:
                entry[name] = {"pairs_per_s": 16 / median(times[name]), "times_s": times[name]}
                if name != "fp32":
                    entry[name].update(judge(ref_idx, values["fp32"], values[name]))
                    entry[name]["speedup"] = entry[name]["pairs_per_s"] / entry["fp32"]["pairs_per_s"]
                    entry[name]["ships"] = (entry[name]["speedup"] >= SHIP["speedup"]
                                            and entry[name]["orderings"] >= SHIP["orderings"]
                                            and entry[name]["max_abs"] <= SHIP["max_abs"])
            report["nets"][net] = entry
            print(net, json.dumps({k: {x: (round(y, 4) if isinstance(y, float) else y) for x, y in v.items()
                                       if x != "times_s"} for k, v in entry.items()}), flush=True)
    publish("precision", "precision-table", report, render(report))
    return 0


def render(report: dict) -> str:
    m = report["machine"]
    lines = [f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores, {', '.join(m['isa'])}), "
             f"{report['threads']} threads. Accuracy on {report['pairs']} real distorted pairs (128x128); speed at "
             "256x256 batch 16, timed in turns with fp32 in the same run. Ship rule: >= 1.8x fp32, >= 99.5% "
             "orderings kept, max abs error <= 0.005.", "",
             f"ONNX Runtime CPU provider and a bfloat16 Conv: `{report['ort_bf16_conv']}`", "",
             "| net | precision | pairs/s | vs fp32 | max abs err | mean abs err | max rel err (d >= 0.01) | "
             "2AFC orderings kept | ships? |", "|---|---|---|---|---|---|---|---|---|"]
    for net, entry in report["nets"].items():
        for name, e in entry.items():
            if name == "fp32":
                lines.append(f"| {net} | fp32 | {e['pairs_per_s']:.2f} | 1.00x | - | - | - | - | reference |")
            else:
                lines.append(f"| {net} | {name} | {e['pairs_per_s']:.2f} | {e['speedup']:.2f}x | {e['max_abs']:.4f} | "
                             f"{e['mean_abs']:.4f} | {e['max_rel']:.3f} | {100 * e['orderings']:.2f}% "
                             f"({e['orderings_n']}) | {'yes' if e['ships'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
