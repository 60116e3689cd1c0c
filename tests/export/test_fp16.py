"""The mixed-precision (fp16) graph against the float32 graph on ONNX Runtime's CPU provider, on real
photographs from 64x64 to 1920x1080 for every net, all-black and all-white images included; and
that a wholesale float16 conversion is far worse.

ORT's CPU provider computes float16 nodes in float32 (it has no float16 Conv on x86), so these
runs measure the float16 rounding of the weights; ``emulate_fp16_storage`` adds float16 activations
where a test needs what a GPU computes. See benchmarks/README.md for the full table.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import accuracy_pairs, to_unit_nchw
from lpips_export.onnx_export import ExportCheckError, export_onnx, model_filename, verify_export
from lpips_export.precision import emulate_fp16_storage, mixed_precision_problems, relative_error, wholesale_fp16
from lpips_runtime.model.modelfile import ModelSpec

TOLERANCE = 1e-3
# Per net, sizes (H, W) that keep this file within about two minutes on two cores; vgg at
# 1920x1080 (about a minute and a half by itself) is in the slow test below.
SIZES = {
    "alex": [(64, 64), (255, 257), (512, 384), (1080, 1920)],
    "squeeze": [(64, 64), (255, 257), (512, 384), (1080, 1920)],
    "vgg": [(64, 64), (255, 321)],  # odd, non-square, ~82k pixels (was 255x257 and 240x320: the same coverage twice)
}
LARGE = 720 * 1280  # from here on: fewer pairs (a photo, and black and white against it), one per run


@pytest.fixture(scope="module")
def sessions(exported, exported_spec):
    cache = {}

    def get(net):
        if net not in cache:
            paths = exported(net), exported_spec(ModelSpec(net, precision="fp16"))
            cache[net] = tuple(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in paths)
        return cache[net]

    return get


def _distances(session, pairs) -> np.ndarray:
    a = np.concatenate([to_unit_nchw(x) for _, x, _ in pairs])
    b = np.concatenate([to_unit_nchw(y) for _, _, y in pairs])
    return session.run(None, {"img0": a, "img1": b})[0]


def _check_sizes(net, sizes, sessions):
    s32, s16 = sessions(net)
    for h, w in sizes:
        pairs = accuracy_pairs(h, w)
        runs = [pairs]
        if h * w >= LARGE:
            runs = [[p] for p in pairs if p[0] in ("blur", "black", "white")]
        d32 = np.concatenate([_distances(s32, run) for run in runs])
        d16 = np.concatenate([_distances(s16, run) for run in runs])
        assert np.all(np.isfinite(d16)), (net, h, w, d16)
        assert d32[0] > 1e-3  # a real distortion: the relative error is taken on a real distance
        rel = relative_error(d16, d32)
        assert rel <= TOLERANCE, (net, h, w, rel)


@pytest.mark.parametrize("net", list(SIZES))
def test_fp16_graph_matches_fp32_on_photographs(net, sessions):
    _check_sizes(net, SIZES[net], sessions)


@pytest.mark.slow
def test_vgg_at_1080p(sessions):
    _check_sizes("vgg", [(720, 1280), (1080, 1920)], sessions)


def test_graph_is_the_mixed_one(exported, exported_spec, build_module, tmp_path):
    fp16 = onnx.load(str(exported_spec(ModelSpec("squeeze", precision="fp16"))))
    assert mixed_precision_problems(fp16) == []
    assert mixed_precision_problems(onnx.load(str(exported("squeeze")))) == \
        ["no float16 convolution: the backbone is not in float16"]
    # A wholesale conversion exported as is: float16 head and output, which the check names.
    module, provenance = build_module("squeeze")
    half = wholesale_fp16(module)
    path = export_onnx(half, provenance, tmp_path / model_filename(half))
    problems = mixed_precision_problems(onnx.load(str(path)))
    assert "output distance is not float32" in problems
    assert any(p.startswith("Sqrt node") and "head must stay float32" in p for p in problems)
    with pytest.raises(ExportCheckError, match="is not the mixed-precision graph"):
        verify_export(path, half, reference=module)


def test_wholesale_conversion_is_much_worse(build_module, sessions):
    """squeeze's sum_c x^2 passes 65504 in float16: a wholesale conversion zeroes features and is off
    by tens of percent, while the mixed graph (with float16 activations emulated, too) stays < 1e-3."""
    module, _ = build_module("squeeze")
    pairs = accuracy_pairs(64, 64)
    a = torch.from_numpy(np.concatenate([to_unit_nchw(x) for _, x, _ in pairs]))
    b = torch.from_numpy(np.concatenate([to_unit_nchw(y) for _, _, y in pairs]))
    with torch.no_grad():
        reference = module(a, b).numpy()
        wholesale = wholesale_fp16(module)(a.half(), b.half()).float().numpy()
        emulated = emulate_fp16_storage(module)(a, b).numpy()
    mixed = _distances(sessions("squeeze")[1], pairs)
    assert relative_error(wholesale, reference) > 0.1
    assert relative_error(mixed, reference) <= TOLERANCE
    assert relative_error(emulated, reference) <= TOLERANCE


def test_float16_head_breaks_where_the_notes_say(build_module):
    """The two failures of a float16 head: eps (1e-10) is 0 in float16, so an all-zero feature vector
    gives 0/0 = NaN; and sum_c x^2 > 65504 is inf, which silently zeroes the feature vector."""
    module, _ = build_module("squeeze")
    x = torch.zeros(1, 64, 1, 2)
    x[..., 1] = 40.0  # sum_c x^2 = 102400
    with torch.no_grad():
        good = module._normalise(x, 0)
        bad = wholesale_fp16(module)._normalise(x.half(), 0).float()
    assert torch.all(good[..., 0] == 0) and torch.allclose(good[..., 1].norm(), torch.tensor(1.0))
    assert torch.all(torch.isnan(bad[..., 0])) and torch.all(bad[..., 1] == 0)


def test_spatial_fp16_export_checks_maps(exported_spec):
    from lpips_runtime.model.modelfile import read_model

    info = read_model(exported_spec(ModelSpec("squeeze", spatial=True, precision="fp16")))
    assert (info.kind, info.precision, info.input_dtype) == ("spatial", "fp16", "float32")
    assert info.metadata["precision_detail"].startswith("float16: backbone features[2:13]; float32: input scaling")
