"""Model integrity means what docs/limits.md says: the weights are recomputed from the file's own tensors and
compared to the pins, and a graph that does not behave as a distance is refused. Reproduces issue 11's
forged model first: real metadata on a different graph, graph_sha256 recomputed, accepted, negative output."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import crop, photo
from lpips_runtime.errors import ModelFileError
from lpips_runtime.model.modelfile import read_model, scan_model_bytes
from lpips_runtime.core.scorer import Scorer


def _forge(model: onnx.ModelProto, path, metadata: dict | None = None):
    """Save ``model`` with ``metadata`` (default: its own) and the graph digest recomputed, as a forger would."""
    meta = dict(metadata or {p.key: p.value for p in model.metadata_props})
    helper.set_model_props(model, meta)
    _, meta["graph_sha256"] = scan_model_bytes(model.SerializeToString())
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


def _pair():
    ref = crop(photo("astronaut"), 64, 64)
    return ref, np.ascontiguousarray(ref[::-1])


def test_issue_forgery_negated_linear_layers_is_refused(exported, tmp_path):
    """The issue's forgery: alex's graph with its linear layers negated gives negative distances; metadata
    and graph digest are consistent, so only the tensors themselves give it away."""
    model = onnx.load(str(exported("alex")))
    for init in model.graph.initializer:
        if init.name.startswith("lins."):
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    path = _forge(model, tmp_path / "lpips-alex-v0.1.onnx")
    with pytest.raises(ModelFileError, match="linear layers are not the official v0.1 ones"):
        read_model(path)
    with pytest.raises(ModelFileError, match="does not hold the weights its metadata names"):
        Scorer(path).distance(*_pair())


def test_real_metadata_on_another_nets_graph_is_refused(exported, tmp_path):
    alex_meta = {p.key: p.value for p in onnx.load(str(exported("alex"))).metadata_props}
    path = _forge(onnx.load(str(exported("squeeze"))), tmp_path / "lpips-alex-v0.1.onnx", alex_meta)
    with pytest.raises(ModelFileError, match="backbone tensors are not the pinned alex weights"):
        read_model(path)


def test_other_version_or_extra_tensors_are_refused(exported, tmp_path):
    v00 = {p.key: p.value for p in onnx.load(str(exported("alex", "0.0"))).metadata_props}
    path = _forge(onnx.load(str(exported("alex"))), tmp_path / "a.onnx", v00)  # v0.1 graph claiming v0.0
    with pytest.raises(ModelFileError, match="holds tensors an lpips-rt fused export does not|linear layers"):
        read_model(path)
    model = onnx.load(str(exported("alex")))
    model.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float32), "bias_of_mine"))
    with pytest.raises(ModelFileError, match="does not: bias_of_mine"):
        read_model(_forge(model, tmp_path / "b.onnx"))


def test_rebuilt_graph_with_real_weights_is_caught_by_the_probe(exported, tmp_path):
    """Same tensors, one more node negating the output: the weight digests pass (they cannot see wiring), the
    Scorer's probe pair refuses the graph before it scores anything."""
    model = onnx.load(str(exported("alex")))
    out = model.graph.output[0].name
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == out:
                node.output[i] = "positive"
    model.graph.node.append(helper.make_node("Neg", ["positive"], [out]))
    path = _forge(model, tmp_path / "lpips-alex-v0.1.onnx")
    assert read_model(path).spec.net == "alex"  # what the digests can prove, they do
    with pytest.raises(ModelFileError, match="does not compute an LPIPS distance.*never negative"):
        Scorer(path).distance(*_pair())


def test_every_kind_of_export_passes(split_models, exported, exported_spec):
    from lpips_runtime.model.modelfile import ModelSpec

    for name in sorted(os.listdir(split_models("squeeze"))):  # fused, spatial, encoder, heads
        read_model(split_models("squeeze") / name)
    read_model(exported("vgg", "0.0", False))  # baseline: no linear layers
    read_model(exported_spec(ModelSpec("alex", precision="fp16")))  # fp16 trunk: its own pin
    read_model(exported_spec(ModelSpec("alex", frames="nhwc-bgr")))  # uint8 frames


def test_the_natural_graph_form_is_accepted_and_scores_like_the_portable_one(exported, tmp_path):
    """``export_model(portable=False)`` (the form benchmarks/cpu.py compares) stores the v0.1 shift as a
    [1,3,1,1] tensor instead of a depthwise bias: still the pinned scaling, so it opens and agrees."""
    from lpips_export.onnx_export import export_model
    from lpips_runtime.model.modelfile import ModelSpec

    natural, _ = export_model(ModelSpec("alex"), tmp_path, portable=False, check=False)
    a, b = _pair()
    with Scorer(str(natural)) as s_natural, Scorer(exported("alex")) as s_portable:
        assert abs(s_natural.distance(a, b) - s_portable.distance(a, b)) <= 1e-6
