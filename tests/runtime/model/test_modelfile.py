"""Model files are checked before use: ours, untouched, exported from the pinned weights."""
from __future__ import annotations

import onnx
import pytest
from onnx import helper, numpy_helper

from lpips_runtime.errors import ModelFileError
from lpips_runtime.model.modelfile import ModelSpec, read_model


def _identity_model(path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_reads_our_export(exported):
    info = read_model(exported("alex"))
    assert info.spec == ModelSpec("alex") and info.net.min_side == 31 and info.kind == "distance"


def test_refuses_other_models_and_files(tmp_path):
    with pytest.raises(ModelFileError, match="not an LPIPS export of lpips-rt"):
        read_model(_identity_model(tmp_path / "identity.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        read_model(tmp_path / "junk.onnx")
    with pytest.raises(ModelFileError, match="model file not found"):
        read_model(tmp_path / "absent.onnx")


def test_refuses_modified_weights(exported, tmp_path):
    model = onnx.load(str(exported("squeeze")))
    init = model.graph.initializer[0]
    array = numpy_helper.to_array(init).copy()
    array.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(ModelFileError, match="modified since export"):
        read_model(tmp_path / "edited.onnx")


@pytest.mark.parametrize("key,value,message", [
    ("backbone_digest", "0" * 64, "unverified squeeze backbone"),
    ("linear_sha256", "0" * 64, "not the official v0.1"),
    ("net", "resnet", "unknown net 'resnet'"),
])
def test_refuses_unpinned_metadata(exported, tmp_path, key, value, message):
    model = onnx.load(str(exported("squeeze")))
    meta = {p.key: p.value for p in model.metadata_props}
    meta[key] = value
    helper.set_model_props(model, meta)
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelFileError, match=message):
        read_model(tmp_path / "m.onnx")


def test_spec_names_and_commands():
    spec = ModelSpec("vgg", "0.0", calibrated=False, spatial=True)
    assert spec.filename() == "lpips-vgg-v0.0-baseline-spatial.onnx"
    assert spec.export_command("out") == "lpips-export --net vgg --version 0.0 --baseline --spatial --out out"
    assert ModelSpec("alex").export_command() == "lpips-export --net alex"
