"""PSNR and SSIM inside the exported graph against scikit-image, the reference named by the definitions
(lpips_runtime.model.pixel_metrics): real photographs and their distortions, odd sizes, a 1920x1080 frame,
flat, black/white and identical images, 16-bit inputs; on ONNX Runtime (float, uint8-frame and fp16
graphs) and in the torch module the torch backend runs."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import PHOTOS, crop, distort, photo, scene
from conftest import assert_metrics_match as assert_matches
from conftest import skimage_metrics as reference
from lpips_runtime import Scorer
from lpips_runtime.model.modelfile import ModelSpec
from lpips_runtime.model.pixel_metrics import METRICS

ALL = ModelSpec("alex", metrics=METRICS)


def _photo_pairs():
    pairs = []
    for i, name in enumerate(PHOTOS):
        ref = crop(photo(name), 187, 243)  # odd sizes; the full-size case is test_full_hd_frame
        for kind in ("blur", "jpeg", "noise", "colour"):
            pairs.append((f"{name}-{kind}", ref, distort(ref, kind, 0.5, seed=i)))
    return pairs


def _edge_pairs():
    ref = crop(photo("chelsea"), 121, 173)  # odd sizes
    flat = np.full((64, 80, 3), 200, np.uint8)
    black, white = np.zeros_like(flat), np.full_like(flat, 255)
    near_white = np.clip(250 + np.random.default_rng(3).integers(-3, 4, (64, 80, 3)), 0, 255).astype(np.uint8)
    return [("odd-jpeg", ref, distort(ref, "jpeg", 0.7)), ("odd-identical", ref, ref.copy()),
            ("flat-vs-flat+1", flat, flat + 1), ("flat-identical", flat, flat.copy()), ("black-vs-white", black, white),
            ("flat-vs-photo", flat, crop(photo("rocket"), 64, 80)),
            ("near-white-texture", near_white, near_white[::-1]),
            ("min-side-31", crop(photo("coffee"), 31, 31), distort(crop(photo("coffee"), 31, 31), "noise", 0.5))]


@pytest.fixture(scope="module")
def scorer(exported_spec):
    with Scorer(exported_spec(ALL)) as s:
        yield s


@pytest.mark.parametrize("label,img0,img1", _photo_pairs() + _edge_pairs(),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_onnx_graph_matches_scikit_image(scorer, label, img0, img1):
    assert_matches(scorer.scores(img0, img1), reference(img0, img1), label)


def test_full_hd_frame(scorer):
    # One spatial mean over 2 million values in float32 drifts by up to 6e-3 relative on ONNX Runtime's
    # kernel; the graph's two-stage means must not.
    ref = scene(1080, 1920)
    dist = distort(ref, "noise", 0.1)
    assert_matches(scorer.scores(ref, dist), reference(ref, dist, ("psnr", "ssim", "psnr_y")), "1080p")


def test_batches_and_identical_pairs(scorer):
    refs = [crop(photo(name), 96, 128) for name in ("astronaut", "coffee", "rocket")]
    dists = [distort(refs[0], "blur", 0.4), refs[1].copy(), distort(refs[2], "jpeg", 0.6)]
    got = scorer.scores(refs, dists)
    assert set(got) == {"distance", *METRICS} and all(v.shape == (3,) and v.dtype == np.float32 for v in got.values())
    for i in range(3):
        assert_matches({k: float(v[i]) for k, v in got.items()}, reference(refs[i], dists[i]), f"pair {i}")
    assert got["psnr"][1] == got["psnr_y"][1] == np.inf and got["ssim"][1] == got["ssim_y"][1] == 1.0
    assert got["distance"][1] == 0.0


def test_sixteen_bit_inputs_are_quantised_to_8_bits(scorer):
    # The documented rule: metrics are computed on round((x + 1) * 127.5), i.e. 16-bit data rounded
    # to the nearest of 256 levels (u16 / 257).
    ref = crop(photo("astronaut"), 96, 128)
    deep0 = ref.astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 120, ref.shape).astype(np.uint16)
    deep1 = distort(ref, "jpeg", 0.6).astype(np.uint16) * 257
    as8 = [np.round(d / 257.0).astype(np.uint8) for d in (deep0, deep1)]
    assert_matches(scorer.scores(deep0, deep1), reference(*as8), "16-bit")


def test_uint8_frame_and_fp16_graphs(exported_spec):
    # Metrics come straight from the frame values, and stay float32 next to a float16 backbone.
    ref = crop(photo("immunohistochemistry"), 120, 151)
    pairs = [(ref, distort(ref, "jpeg", 0.5)), (ref, distort(ref, "noise", 0.4)), (ref, ref.copy())]
    spec = ModelSpec("squeeze", precision="fp16", frames="nhwc-bgr", metrics=("psnr", "ssim_y"))
    with Scorer(exported_spec(spec)) as frames, Scorer(exported_spec(ALL)) as floats:
        for img0, img1 in pairs:
            got, float_graph = frames.scores(img0, img1), floats.scores(img0, img1)
            assert_matches(got, reference(img0, img1, spec.metrics), "u8 fp16 graph")
            assert got["psnr"] == float_graph["psnr"] and abs(got["ssim_y"] - float_graph["ssim_y"]) <= 1e-6


def test_torch_backend_matches_scikit_image():
    # The torch backend runs the same module eagerly, in its natural (non-portable) form.
    with Scorer("alex", backend="torch", metrics=METRICS) as torch_scorer:
        for label, img0, img1 in _photo_pairs()[::7] + _edge_pairs()[1:5]:
            assert_matches(torch_scorer.scores(img0, img1), reference(img0, img1), f"torch {label}")
