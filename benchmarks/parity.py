"""Parity report: max |ours - official lpips 0.1.4| per net x version x calibrated/baseline, for the torch
module and the exported ONNX on ONNX Runtime (CPU), on random tensors and real distorted photographs.

    python benchmarks/parity.py            # prints a table, writes benchmarks/results/parity-<date>.json

The same comparisons are asserted (<= 1e-5) by tests/export/test_parity_official.py; this script reports
the numbers.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LPIPS_RT_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from lpips_export.build import build_lpips  # noqa: E402
from lpips_export.onnx_export import export_onnx, model_filename  # noqa: E402
from lpips_export.reference import official_lpips  # noqa: E402
from lpips_runtime.model.nets import all_nets  # noqa: E402


def photo_inputs(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    import skimage.data

    out = []
    for i, name in enumerate(["astronaut", "coffee", "chelsea", "rocket"]):
        img = skimage.data.__getattribute__(name)()[..., :3]
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 20 + 10 * i])
        dist = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        unit = [(x / 127.5 - 1.0).transpose(2, 0, 1)[None].astype(np.float32) for x in (img, dist)]
        out.append((unit[0], unit[1]))
    return out


def main() -> int:
    rows = []
    tmp = Path(tempfile.mkdtemp())
    sizes = {"alex": [(31, 31), (97, 64), (256, 256), (384, 512)], "vgg": [(16, 16), (97, 64), (256, 256)],
             "squeeze": [(17, 17), (97, 64), (256, 256), (384, 512)]}
    for net in all_nets():
        for version in ("0.1", "0.0"):
            for calibrated in (True, False):
                module, provenance = build_lpips(net, version, calibrated)
                official = official_lpips(net, version, calibrated, False, module.features_state_for_official())
                path = export_onnx(module, provenance, tmp / model_filename(module))
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                worst_torch = worst_ort = 0.0
                g = torch.Generator().manual_seed(0)
                for h, w in sizes[net]:
                    pairs = [(torch.rand(2, 3, h, w, generator=g) * 2 - 1).numpy() for _ in range(2)]
                    for a, b in [tuple(pairs)] + photo_inputs(h, w):
                        with torch.no_grad():
                            ref = official(torch.from_numpy(a), torch.from_numpy(b)).reshape(-1).numpy()
                            mine = module(torch.from_numpy(a), torch.from_numpy(b)).numpy()
                        got = session.run(None, {"img0": a, "img1": b})[0]
                        worst_torch = max(worst_torch, float(np.abs(mine - ref).max()))
                        worst_ort = max(worst_ort, float(np.abs(got - ref).max()))
                rows.append({"net": net, "version": version, "calibrated": calibrated,
                             "max_abs_torch_vs_official": worst_torch, "max_abs_onnx_vs_official": worst_ort,
                             "sizes": [f"{h}x{w}" for h, w in sizes[net]]})
                print(f"{net:8s} v{version} {'lpips   ' if calibrated else 'baseline'}  torch {worst_torch:.2e}"
                      f"  onnx(ORT) {worst_ort:.2e}", flush=True)
    out = Path(__file__).parent / "results" / f"parity-{datetime.date.today()}.json"
    out.write_text(json.dumps({"date": str(datetime.date.today()), "machine": platform.processor() or
                               platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                               "onnxruntime": ort.__version__, "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
