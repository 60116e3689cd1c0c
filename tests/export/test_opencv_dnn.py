"""The exported files also run in Python's cv2.dnn (opencv-python-headless), with the same results."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import assert_metrics_match, crop, distort, photo, skimage_metrics, to_unit_nchw
from lpips_runtime import Scorer


@pytest.mark.parametrize("net,version,calibrated", [("alex", "0.1", True), ("vgg", "0.1", True),
                                                    ("squeeze", "0.1", True), ("alex", "0.0", False)])
def test_cv2_dnn_matches_runtime(exported, net, version, calibrated):
    path = exported(net, version, calibrated)
    ref = crop(photo("coffee"), 120, 151)
    x0 = np.concatenate([to_unit_nchw(ref)] * 2)
    x1 = np.concatenate([to_unit_nchw(distort(ref, "jpeg", 0.7)), to_unit_nchw(distort(ref, "noise", 0.4))])
    dnn = cv2.dnn.readNetFromONNX(str(path))
    dnn.setInput(x0, "img0")
    dnn.setInput(x1, "img1")
    got = dnn.forward().reshape(-1)
    expected = Scorer(path).distance(x0, x1)
    assert got.shape == (2,) and np.abs(got - expected).max() <= 1e-5


@pytest.mark.skipif(int(cv2.__version__.split(".")[0]) < 5, reason="spatial graphs need OpenCV >= 5 (Shape op)")
def test_cv2_dnn_spatial(exported):
    path = exported("squeeze", spatial=True)
    ref = crop(photo("rocket"), 64, 80)
    x0, x1 = to_unit_nchw(ref), to_unit_nchw(distort(ref, "blur", 0.6))
    dnn = cv2.dnn.readNetFromONNX(str(path))
    dnn.setInput(x0, "img0")
    dnn.setInput(x1, "img1")
    got = dnn.forward()
    assert got.shape == (1, 1, 64, 80)
    assert np.abs(got - Scorer(path).distance_map(x0, x1)).max() <= 1e-5


def test_cv2_dnn_metric_outputs(exported_spec):
    # A graph with PSNR/SSIM outputs: every output by name; the metrics equal scikit-image's within the
    # parity limits, the distance ONNX Runtime's (the C++ example, on OpenCV 4.6, loads it too:
    # tests/examples/test_cpp.py).
    from lpips_runtime.model.modelfile import ModelSpec
    from lpips_runtime.model.pixel_metrics import METRICS

    path = exported_spec(ModelSpec("alex", metrics=METRICS))
    ref = crop(photo("chelsea"), 96, 133)
    dists = [distort(ref, "jpeg", 0.6), ref.copy()]
    x0 = np.concatenate([to_unit_nchw(ref)] * 2)
    x1 = np.concatenate([to_unit_nchw(d) for d in dists])
    dnn = cv2.dnn.readNetFromONNX(str(path))
    dnn.setInput(x0, "img0")
    dnn.setInput(x1, "img1")
    names = ["distance", *METRICS]
    got = dict(zip(names, (out.reshape(-1) for out in dnn.forward(names))))
    assert np.abs(got["distance"] - Scorer(path).distance(x0, x1)).max() <= 1e-5
    for i, dist in enumerate(dists):  # the second pair is identical: PSNR +inf, SSIM 1
        assert_metrics_match({m: float(got[m][i]) for m in METRICS}, skimage_metrics(ref, dist), f"cv2.dnn pair {i}")
