"""The hand-written one-node ONNX graph behind the feature cache's block products."""
from __future__ import annotations

import numpy as np
import onnx

from lpips_runtime.core.gram import GramProduct, gemm_model_bytes


def test_graph_is_valid_onnx():
    model = onnx.load_from_string(gemm_model_bytes())
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Gemm"]


def test_product_equals_numpy():
    rng = np.random.default_rng(0)
    gram = GramProduct(threads=1)
    for r, s, k in [(1, 1, 1), (5, 3, 7), (64, 17, 1000)]:
        a, b = rng.standard_normal((r, k)), rng.standard_normal((s, k))
        got = gram(a, b)
        assert got.dtype == np.float64 and got.shape == (r, s)
        assert np.allclose(got, a @ b.T, rtol=1e-12, atol=1e-12)
