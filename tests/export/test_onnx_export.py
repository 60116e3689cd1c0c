"""The exported file: self-contained, dynamic N/H/W, stamped with checkable metadata, verified on write."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lpips_export.onnx_export import ExportCheckError, export_model, verify_export
from lpips_runtime.model.modelfile import FORMAT, ModelSpec, read_model, scan_model_bytes
from lpips_runtime.model.nets import get_net


def test_one_file_serves_many_shapes(exported, build_module):
    path = exported("squeeze")
    module, _ = build_module("squeeze")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(3)
    for n, h, w in [(1, 17, 17), (5, 33, 200), (2, 18, 19), (1, 300, 64), (4, 64, 64)]:
        a, b = (torch.rand(n, 3, h, w, generator=g) * 2 - 1 for _ in range(2))
        got = session.run(None, {"img0": a.numpy(), "img1": b.numpy()})[0]
        with torch.no_grad():
            assert np.abs(got - module(a, b).numpy()).max() <= 1e-5
        assert got.shape == (n,)


def test_graph_has_dynamic_axes_and_no_external_data(exported):
    path = exported("alex")
    assert [p.name for p in path.parent.iterdir() if p.name.startswith("lpips-alex-v0.1.onnx")] == [path.name]
    model = onnx.load(str(path))
    for inp in model.graph.input:
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert dims == ["N", 3, "H", "W"] and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    out = model.graph.output[0]
    assert out.name == "distance" and [d.dim_param for d in out.type.tensor_type.shape.dim] == ["N"]
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    # No operator whose meaning changed across opsets or that OpenCV 4.6 rejects (see module docstring).
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"ReduceSum", "ReduceMean", "Shape"}, ops


def test_metadata_contract(exported):
    path = exported("vgg", "0.0", False)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["format"] == FORMAT and meta["kind"] == "distance"
    assert (meta["net"], meta["version"], meta["calibrated"]) == ("vgg", "0.0", "false")
    assert meta["min_side"] == "16" and meta["backbone_digest"] == get_net("vgg").backbone_digest
    assert meta["linear_sha256"] == ""  # a baseline has no linear layers
    assert meta["input"] == "img0, img1: float32 [N,3,H,W] RGB in [-1,1]"
    assert meta["torch_version"] == torch.__version__ and meta["exporter"].startswith("lpips-rt")
    assert meta["graph_sha256"] == scan_model_bytes(path.read_bytes())[1]
    assert read_model(path).spec == ModelSpec("vgg", "0.0", calibrated=False)


def test_spatial_output_contract(exported):
    model = onnx.load(str(exported("alex", spatial=True)))
    out = model.graph.output[0]
    assert out.name == "distance_map"
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 1, "H", "W"]


def test_failed_check_leaves_no_file(tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise ExportCheckError("simulated mismatch")

    monkeypatch.setattr("lpips_export.onnx_export.verify_export", failing)
    with pytest.raises(ExportCheckError):
        export_model(ModelSpec("squeeze"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_verify_catches_a_wrong_graph(exported, build_module):
    other, _ = build_module("alex", "0.0")  # the v0.1 file is not this module
    with pytest.raises(ExportCheckError, match=r"max \|ORT - torch\| is .* \(> 1e-05\)"):
        verify_export(exported("alex"), other)
