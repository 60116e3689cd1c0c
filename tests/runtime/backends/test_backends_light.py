"""The torch fallback (natural graph form) agrees with the exported graph; the runtime and its feature
cache import no torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from lpips_runtime.core.scorer import Scorer


def test_torch_backend_matches_the_onnx_graph(split_models, photo_set):
    models = split_models("squeeze")
    with Scorer("squeeze", models_dir=models, auto_export=False) as ort_scorer, \
            Scorer("squeeze", backend="torch", models_dir=models) as torch_scorer:
        a, b = photo_set[:4], photo_set[4:8]
        assert np.abs(torch_scorer.distance(a, b) - ort_scorer.distance(a, b)).max() <= 1e-5


def test_runtime_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            "import lpips_runtime.core.scorer, lpips_runtime.core.embedding, lpips_runtime.core.features, lpips_runtime.commands.score\n"
            "import lpips_runtime.backends.ort_backend\n"
            "assert 'onnxruntime' not in sys.modules  # loaded only when a session opens\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
