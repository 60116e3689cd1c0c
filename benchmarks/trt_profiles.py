"""TensorRT-RTX engines without a GPU: build time, engine size and the device memory each profile needs
(the builder's "Total Activation Memory"), for every net x precision x input x output, at a maximum
of N x 1080x1920 frames for N in --batches, and at each net's default profile (``--batches default``).
The numbers behind ``engine_meta.DEFAULT_MAX_BATCH`` and the table in docs/gpu.md.

    python benchmarks/trt_profiles.py [--nets alex,vgg,squeeze] [--batches 1,4,default]

Prints a table (stdout) and writes benchmarks/results/trt-profiles-<date>.json. Needs lpips-rt[export,trt-rtx].
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from _common import RESULTS

os.environ.setdefault("LPIPS_RT_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="alex,vgg,squeeze")
    parser.add_argument("--batches", default="1,4")
    args = parser.parse_args()

    from lpips_export.onnx_export import export_model
    from lpips_export.trt_build import build_engine
    from lpips_runtime.model.engine_meta import Profile
    from lpips_runtime.model.modelfile import ModelSpec
    from lpips_runtime.model.nets import get_net

    batches = [b if b == "default" else int(b) for b in args.batches.split(",")]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="trt-profiles-"))
    try:
        for net in args.nets.split(","):
            m = get_net(net).min_side
            for precision in ("fp32", "fp16"):
                for frames in (None, "nhwc-bgr"):
                    for spatial in (False, True):
                        spec = ModelSpec(net, spatial=spatial, precision=precision, frames=frames)
                        onnx_path, _ = export_model(spec, tmp, check=False)
                        for n in batches:
                            profile = (Profile.default(get_net(net)) if n == "default"
                                       else Profile((1, m, m), (1, 256, 256), (n, 1080, 1920)))
                            n = profile.max[0]
                            t0 = time.perf_counter()
                            engine, sidecar = build_engine(onnx_path, profile, flavour="rtx")
                            seconds = time.perf_counter() - t0
                            row = {"model": spec.filename(), "net": net, "precision": precision,
                                   "input": "uint8" if frames else "float32", "spatial": spatial, "max_batch": n,
                                   "profile": profile.describe(),
                                   "build_s": round(seconds, 2), "engine_mb": round(engine.stat().st_size / 1e6, 1),
                                   "activation_gib": round(sidecar.activation_bytes / (1 << 30), 3),
                                   "weights_mb": round(sidecar.weights_bytes / 1e6, 1)}
                            rows.append(row)
                            print(f"{row['model']:<40} max {n:>2}x1080x1920  build {seconds:5.1f} s  engine "
                                  f"{row['engine_mb']:5.1f} MB  activations {row['activation_gib']:6.3f} GiB",
                                  flush=True)
                        onnx_path.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    import tensorrt_rtx

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"trt-profiles-{datetime.date.today().isoformat()}-{args.batches.replace(',', '-')}.json"
    out.write_text(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cores, no GPU",
                               "tensorrt_rtx": tensorrt_rtx.__version__, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
