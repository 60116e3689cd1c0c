"""The GPU modules import nothing heavy: with torch, tensorrt, cuda-python and onnxruntime blocked,
they import, and a Scorer for a CUDA device can be constructed (its backend opens only on first use)."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_gpu_modules_import_without_heavy_dependencies():
    code = textwrap.dedent("""
        import sys
        for name in ("torch", "torchvision", "tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime",
                     "onnxruntime", "onnx"):
            sys.modules[name] = None
        import lpips_runtime.backends.cuda_mem, lpips_runtime.model.engine_meta, lpips_runtime.model.trt_logger
        import lpips_runtime.backends.staging, lpips_runtime.backends.cuda_staged
        import lpips_runtime.backends.ort_cuda_backend, lpips_runtime.backends.trt_backend
        from lpips_runtime.core.scorer import Scorer
        Scorer("alex", device="cuda", auto_export=False)
        Scorer("alex", backend="trt", device="cuda", auto_export=False)
        from lpips_runtime.backends import cuda_mem
        try:
            cuda_mem.runtime()
        except ImportError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install 'lpips-rt[gpu]'" in done.stdout
