"""uint8 frame graphs (--input uint8): the graph's cast, layout, channel order and scaling equal the
runtime's CPU preprocessing exactly, so their distances equal the float32 graph's (<= 1e-6, fp32)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import crop, distort, photo, scene
from lpips_export.check_images import frame_batch
from lpips_export.module import FrameFormat, frames_to_unit_range
from lpips_runtime.images import _UNIT_LUT_U8, rgb_to_unit_nchw
from lpips_runtime.modelfile import ModelSpec, read_model

EXACT = 1e-6


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _photo_pairs():
    """(first, second) lists of real RGB images per size: batch 2 at 64x64, batch 1 at 255x257 and 720p."""
    small = [crop(photo(n), 64, 64) for n in ("astronaut", "chelsea")]
    odd, big = crop(photo("coffee"), 255, 257), scene(720, 1280)
    return [(small, [distort(x, "jpeg", 0.5, seed=i) for i, x in enumerate(small)]),
            ([odd], [distort(odd, "blur", 0.6)]), ([big], [distort(big, "noise", 0.4)])]


def test_in_graph_scaling_is_the_runtime_lookup_table():
    values = torch.arange(256, dtype=torch.uint8)
    frames = values.repeat_interleave(3).reshape(1, 1, 256, 3)
    unit = frames_to_unit_range(frames, FrameFormat("nhwc", "bgr"))
    assert unit.shape == (1, 3, 1, 256)
    assert np.array_equal(unit[0, 0, 0].numpy(), _UNIT_LUT_U8)  # bit for bit, all 256 values


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("channels", ["rgb", "bgr"])
def test_frame_graph_equals_float_graph(layout, channels, exported, exported_spec):
    spec = ModelSpec("alex", frames=f"{layout}-{channels}")
    info = read_model(exported_spec(spec))  # export_model ran its own <= 1e-6 check too
    assert (info.input_dtype, info.input_layout, info.input_channels) == ("uint8", layout, channels)
    assert info.path.name == f"lpips-alex-v0.1-u8{layout}{channels}.onnx"
    frames, floats = _session(info.path), _session(exported("alex"))
    for first, second in _photo_pairs():
        got = frames.run(None, {"img0": frame_batch(first, layout, channels),
                                "img1": frame_batch(second, layout, channels)})[0]
        expected = floats.run(None, {"img0": np.concatenate([rgb_to_unit_nchw(x) for x in first]),
                                     "img1": np.concatenate([rgb_to_unit_nchw(x) for x in second])})[0]
        assert np.max(np.abs(got - expected)) <= EXACT


def test_fp16_frame_graph_equals_fp16_float_graph(exported_spec):
    frames = _session(exported_spec(ModelSpec("squeeze", precision="fp16", frames="nhwc-bgr")))
    floats = _session(exported_spec(ModelSpec("squeeze", precision="fp16")))
    for first, second in _photo_pairs()[:2]:
        got = frames.run(None, {"img0": frame_batch(first, "nhwc", "bgr"), "img1": frame_batch(second, "nhwc", "bgr")})[0]
        expected = floats.run(None, {"img0": np.concatenate([rgb_to_unit_nchw(x) for x in first]),
                                     "img1": np.concatenate([rgb_to_unit_nchw(x) for x in second])})[0]
        assert np.max(np.abs(got - expected)) <= EXACT
