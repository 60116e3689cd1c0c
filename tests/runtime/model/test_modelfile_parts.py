"""ModelSpec parts and the metadata of split exports (encoder, head, spatial head) as read_model checks it."""
from __future__ import annotations

import pytest

from lpips_runtime.errors import LpipsError, ModelFileError
from lpips_runtime.model.modelfile import PARTS, ModelSpec, read_model, scan_model_bytes
from lpips_runtime.model.nets import get_net


def test_parts_normalise_fields_they_do_not_depend_on():
    enc = ModelSpec("alex", calibrated=True, spatial=True, part="encoder")
    assert (enc.calibrated, enc.spatial) == (False, False)
    assert enc == ModelSpec("alex", calibrated=False, part="encoder")
    head = ModelSpec("alex", precision="fp16", frames="nhwc-bgr", part="head")
    assert (head.precision, head.frames) == ("fp32", None)
    with pytest.raises(LpipsError, match="unknown model part"):
        ModelSpec("alex", part="trunk")


def test_filenames_are_unambiguous():
    specs = {ModelSpec(net, version, calibrated, spatial, part=part)
             for net in ("alex", "squeeze") for version in ("0.1", "0.0") for calibrated in (True, False)
             for spatial in (False, True) for part in PARTS}
    names = {s.filename(): s for s in specs}
    assert len(names) == len(specs)  # one file name per distinct graph
    assert ModelSpec("alex", part="encoder").filename() == "lpips-alex-v0.1-encoder.onnx"
    assert ModelSpec("alex", spatial=True, part="head").filename() == "lpips-alex-v0.1-spatial-head.onnx"
    assert ModelSpec("alex", calibrated=False, part="head").filename() == "lpips-alex-v0.1-baseline-head.onnx"
    assert "--part head" in ModelSpec("alex", part="head").export_command()


@pytest.mark.parametrize("part,spatial,kind", [("encoder", False, "encoder"), ("head", False, "head"),
                                               ("head", True, "spatial-head"), ("fused", False, "distance")])
def test_split_export_metadata(split_models, part, spatial, kind):
    spec = ModelSpec("squeeze", spatial=spatial, part=part)
    info = read_model(split_models("squeeze") / spec.filename())
    meta = info.metadata
    assert info.kind == kind and info.part == part and info.spec == spec
    net = get_net("squeeze")
    assert meta["backbone_digest"] == net.backbone_digest
    if part != "fused":
        assert meta["channels"] == ",".join(map(str, net.channels))
    if part == "encoder":
        assert meta["calibrated"] == "false" and meta["linear_sha256"] == ""
        assert meta["input"].startswith("img: float32 [N,3,H,W]")
        assert meta["output"].startswith("feat0..feat6: float32")
    if part == "head":
        assert meta["calibrated"] == "true" and meta["linear_sha256"] == net.linear_sha256["0.1"]
        assert "feat<l>_0" in meta["input"] and ("image_size" in meta["input"]) == spatial


def test_unknown_kind_is_refused(split_models, tmp_path):
    import onnx

    model = onnx.load(str(split_models("squeeze") / ModelSpec("squeeze", part="head").filename()))
    meta = {p.key: p.value for p in model.metadata_props}
    meta["kind"] = "trunk"
    onnx.helper.set_model_props(model, meta)
    _, meta["graph_sha256"] = scan_model_bytes(model.SerializeToString())
    onnx.helper.set_model_props(model, meta)
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match="unknown kind 'trunk'"):
        read_model(path)


def test_scorer_refuses_a_part_as_its_model(split_models):
    from lpips_runtime.core.scorer import Scorer

    with pytest.raises(ModelFileError, match="give the fused model"):
        Scorer(split_models("squeeze") / ModelSpec("squeeze", part="encoder").filename())
