"""benchmarks/int8_accuracy.py's quantiser: the int8 model it builds runs, quantises only what it says, and misses
the accuracy bound on a handful of real pairs, as lpips_runtime.model.int8 records for alex (the reason int8 is refused).
If this starts to pass the bound, measure the full sets and offer int8 where they hold."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="needs OpenVINO: pip install 'lpips-rt[openvino]'")
# Found, not imported: importing NNCF takes 3.4 s, which every pytest-xdist worker would pay while collecting.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="needs NNCF (the test extra)")

from conftest import distort, scene, to_unit_nchw  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_alex_int8_misses_the_bound_on_real_pairs(exported, tmp_path):
    import openvino as ov
    from int8_accuracy import ACCEPT, backbone_convs, calibration, quantize

    from lpips_runtime import Scorer
    from lpips_runtime.model.int8 import OFFERED

    path = exported("alex")
    quantized, n_convs = quantize(path, 1, calibration(12, 128))
    assert n_convs == 5 and backbone_convs(quantized)[0] == backbone_convs(ov.Core().read_model(str(path)))[0]
    fq_readers = {t.get_node().get_type_name() for op in quantized.get_ordered_ops()
                  if op.get_type_name() == "FakeQuantize" for t in op.output(0).get_target_inputs()}
    assert fq_readers <= {"Convolution", "MaxPool"}  # taps, normalisation and head read float values
    compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    refs = [scene(96, 128, i) for i in range(4)]
    pairs = [(ref, distort(ref, kind, 0.5, seed=i)) for i, ref in enumerate(refs) for kind in ("blur", "noise")]
    a = np.concatenate([to_unit_nchw(p[0]) for p in pairs])
    b = np.concatenate([to_unit_nchw(p[1]) for p in pairs])
    with Scorer(path) as fp32:  # ORT fp32: equal to the official lpips 0.1.4 to 1e-5 (tests/export)
        want = fp32.distance(a, b)
    got = compiled({"img0": a, "img1": b})[0].reshape(-1)
    assert np.all(np.isfinite(got)) and np.abs(got - want).max() < 0.05  # a working model, near fp32
    assert "alex" not in OFFERED
    assert np.abs(got - want).max() > ACCEPT["max_abs"], "alex int8 now meets the bound here: measure and offer it"
