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
from lpips_runtime.io.images import _UNIT_LUT_U8, rgb_to_unit_nchw
from lpips_runtime.model.modelfile import ModelSpec, read_model

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


class _ConcatFirst(torch.nn.Module):
    """The frame graph as exported before issue 20: the two uint8 frames joined by one Concat, then cast
    (the form TensorRT refuses). Kept here only as the reference the current graph must equal."""

    def __init__(self, module):
        super().__init__()
        self.m = module

    def forward(self, img0, img1):
        from lpips_export.module import frames_to_rgb, split_pair

        m = self.m
        both = torch.cat([img0, img1], dim=0)
        rgb = frames_to_rgb(both, m.frame_format)
        pairs = [split_pair(f) for f in m.encode(m.prepare(both, rgb))]
        out_hw = both.shape[2:] if m.spatial else None
        lpips = m.head([p[0] for p in pairs], [p[1] for p in pairs], out_hw)
        return (lpips, *m.pixel_metrics(*split_pair(rgb))) if m.metrics else lpips


def _uint8_concats(path) -> list[str]:
    """Names of the Concat nodes of an ONNX file that take a uint8 input (after shape inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    return [n.name for n in graph.node
            if n.op_type == "Concat" and any(types.get(i) == onnx.TensorProto.UINT8 for i in n.input)]


@pytest.mark.parametrize("spatial,fmt,metrics", [(False, ("nhwc", "bgr"), ("psnr", "ssim")),
                                                 (True, ("nchw", "rgb"), ())])
def test_frame_graph_casts_each_frame_before_concat_and_equals_the_concat_first_graph(
        spatial, fmt, metrics, tmp_path, exported_spec):
    """Issue 20, defect 1: no Concat of uint8 (TensorRT parses the graph), and the outputs equal the graph
    exported before the fix (concatenate, then cast) on ORT to <= 1e-6; the IO contract is unchanged."""
    import onnx

    from lpips_export.build import build_lpips
    from lpips_export.onnx_export import _dynamic_axes, _output_name

    spec = ModelSpec("alex", spatial=spatial, frames="-".join(fmt), metrics=metrics)
    path = exported_spec(spec)
    assert _uint8_concats(path) == []
    module, _ = build_lpips("alex", spatial=spatial, frame_format=FrameFormat(*fmt), metrics=metrics)
    old = tmp_path / "concat-first.onnx"
    shape = (1, 64, 64, 3) if fmt[0] == "nhwc" else (1, 3, 64, 64)
    example = (torch.zeros(shape, dtype=torch.uint8), torch.zeros(shape, dtype=torch.uint8))
    outputs = [_output_name(module), *metrics]
    torch.onnx.export(_ConcatFirst(module), example, str(old), dynamo=False, opset_version=17,
                      input_names=["img0", "img1"], output_names=outputs, dynamic_axes=_dynamic_axes(module))
    assert _uint8_concats(old), "the reference graph should hold the uint8 Concat the fix removed"
    new_model, old_model = onnx.load(str(path)), onnx.load(str(old))
    io = lambda m: [(v.name, v.type.tensor_type.elem_type) for v in [*m.graph.input, *m.graph.output]]  # noqa: E731
    assert io(new_model) == io(old_model)
    new, ref = _session(path), _session(old)
    for first, second in _photo_pairs()[:2]:
        feed = {"img0": frame_batch(first, *fmt), "img1": frame_batch(second, *fmt)}
        for got, expected, name in zip(new.run(None, feed), ref.run(None, feed), outputs):
            assert got.shape == expected.shape
            same = got == expected  # +inf PSNR of identical images compares equal
            assert np.all(same | (np.abs(got - expected) <= EXACT)), name
