"""Split exports (encoder + head) compute the fused graph; the natural graph form equals the portable one."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import crop, distort, photo, to_unit_nchw
from lpips_export.onnx_export import export_onnx, model_filename

TOL = 1e-6


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _pairs(h, w):
    out = []
    for i, (name, kind) in enumerate([("astronaut", "blur"), ("coffee", "jpeg"), ("chelsea", "noise")]):
        ref = crop(photo(name), h, w)
        out.append((to_unit_nchw(ref), to_unit_nchw(distort(ref, kind, 0.6, seed=i))))
    return np.concatenate([p[0] for p in out]), np.concatenate([p[1] for p in out])


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_encoder_and_head_equal_the_fused_graph(net, build_module, exported, tmp_path):
    module, provenance = build_module(net, "0.1", True, False)
    encoder = _session(export_onnx(module, provenance, tmp_path / model_filename(module, "encoder"), part="encoder"))
    head = _session(export_onnx(module, provenance, tmp_path / model_filename(module, "head"), part="head"))
    fused = _session(exported(net, "0.1", True, False))
    a, b = _pairs(67, 91)  # odd, non-square
    expected = fused.run(None, {"img0": a, "img1": b})[0]
    fa, fb = encoder.run(None, {"img": a}), encoder.run(None, {"img": b})
    assert [f.shape[1] for f in fa] == list(module.net.channels)
    feeds = {f"feat{i}_0": x for i, x in enumerate(fa)} | {f"feat{i}_1": x for i, x in enumerate(fb)}
    got = head.run(None, feeds)[0]
    assert got.shape == expected.shape == (3,)
    assert np.abs(got - expected).max() <= TOL
    # one reference against the batch: the head broadcasts a batch of 1
    feeds = {f"feat{i}_0": x[:1] for i, x in enumerate(fa)} | {f"feat{i}_1": x for i, x in enumerate(fb)}
    one = fused.run(None, {"img0": np.repeat(a[:1], 3, axis=0), "img1": b})[0]
    assert np.abs(head.run(None, feeds)[0] - one).max() <= TOL


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_natural_form_equals_the_portable_one(net, exported, tmp_path):
    from lpips_export.build import build_lpips

    natural, provenance = build_lpips(net, portable=False)
    path = export_onnx(natural, provenance, tmp_path / model_filename(natural))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"ReduceSum", "ReduceMean", "Sub"} <= ops and "GlobalAveragePool" not in ops
    portable_ops = {n.op_type for n in onnx.load(str(exported(net, "0.1", True, False))).graph.node}
    assert "ReduceSum" not in portable_ops and "ReduceMean" not in portable_ops
    a, b = _pairs(64, 80)
    expected = _session(exported(net, "0.1", True, False)).run(None, {"img0": a, "img1": b})[0]
    assert np.abs(_session(path).run(None, {"img0": a, "img1": b})[0] - expected).max() <= TOL
