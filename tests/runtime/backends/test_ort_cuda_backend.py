"""The ONNX Runtime CUDA backend's own logic (staging, binding, stream ordering, pipelining) on the
CPU, through tests/ort_cuda_standin.py (fake CUDA, real ORT IOBinding on CPU sessions). What only a
GPU can show (ORT's CUDA kernels, real asynchrony) is in test_gpu.py, marked gpu."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

import ort_cuda_standin
from conftest import crop, distort, photo
from lpips_runtime.backends import backend_class, open_backend
from lpips_runtime.backends import ort_backend
from lpips_runtime.backends.ort_backend import OrtBackend, cuda_provider_options, make_session
from lpips_runtime.backends.ort_cuda_backend import OrtCudaBackend
from lpips_runtime.errors import BackendError
from lpips_runtime.io.images import rgb_to_unit_nchw
from lpips_runtime.model.modelfile import ModelSpec, read_model
from lpips_runtime.core.scorer import Scorer


@pytest.fixture
def rt(monkeypatch):
    return ort_cuda_standin.install(monkeypatch)


def _photo_batch(n, h, w, seed=0):
    refs = [crop(photo(name), h, w) for name in ("astronaut", "coffee", "chelsea", "rocket")[:n]]
    return refs, [distort(r, "blur", 0.5, seed=seed + i) for i, r in enumerate(refs)]


def test_provider_options():
    options = cuda_provider_options("cuda:1", stream_handle=0x7F00)
    assert options == {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0",
                       "user_compute_stream": str(0x7F00)}
    assert "user_compute_stream" not in cuda_provider_options("cuda")


def test_registry_picks_the_cuda_class():
    assert backend_class("ort", "cpu") is OrtBackend
    assert backend_class("ort", "cuda:0") is OrtCudaBackend
    with pytest.raises(BackendError, match="--device cuda"):
        open_backend("trt", ModelSpec("alex"), None, "cpu")


def test_float_graph_matches_the_cpu_backend(rt, exported):
    path = exported("alex")
    refs, dists = _photo_batch(3, 64, 96)
    a = np.concatenate([rgb_to_unit_nchw(x) for x in refs])
    b = np.concatenate([rgb_to_unit_nchw(x) for x in dists])
    with OrtCudaBackend(ModelSpec("alex"), path, "cuda") as gpu, OrtBackend(ModelSpec("alex"), path) as cpu:
        assert rt.opened == [("cuda", gpu.compute_stream.handle)]  # the session computes on our stream
        np.testing.assert_array_equal(gpu.run(a, b), cpu.run(a, b))
    assert rt.live() == 0  # close() freed every pinned and device buffer


def test_frame_graph_and_the_order_of_operations(rt, exported_spec):
    spec = ModelSpec("alex", frames="nhwc-bgr")
    path = exported_spec(spec)
    refs, dists = _photo_batch(2, 48, 64)
    a = np.stack([x[..., ::-1] for x in refs])
    b = np.stack([x[..., ::-1] for x in dists])
    with OrtCudaBackend(spec, path, "cuda") as gpu:
        copy, compute = gpu.copy_stream.handle, gpu.compute_stream.handle
        rt.log.clear()
        # Pieces (one per pair, as decoded) are written straight into the pinned slot.
        got = gpu.submit([a[:1], a[1:]], [b[:1], b[1:]]).result()["distance"]
        ops = [e for e in rt.log if e[0] in ("h2d", "event_record", "stream_wait", "run", "d2h", "stream_sync")]
        assert [e[0] for e in ops] == ["h2d", "h2d", "event_record", "stream_wait", "run", "d2h", "stream_sync"]
        assert {e[4] for e in ops if e[0] == "h2d"} == {copy}  # uploads on the copy stream
        assert ops[2][2] == copy and ops[3][1] == compute and ops[3][2] == ops[2][1]  # compute waits on them
        assert ops[5][4] == compute and ops[5][3] == 2 * 4  # one copy back: two float32 distances
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"img0": a, "img1": b})[0]
    np.testing.assert_array_equal(got, expected)


def test_metric_outputs_come_back_with_the_distance(rt, exported_spec):
    spec = ModelSpec("alex", metrics=("psnr", "ssim"))
    path = exported_spec(spec)
    refs, dists = _photo_batch(2, 48, 64)
    a = np.concatenate([rgb_to_unit_nchw(x) for x in refs])
    b = np.concatenate([rgb_to_unit_nchw(x) for x in [dists[0], refs[1]]])  # the second pair is identical
    with OrtCudaBackend(spec, path, "cuda") as gpu, OrtBackend(spec, path) as cpu:
        rt.log.clear()
        got = gpu.infer(a, b)
        downloads = [e for e in rt.log if e[0] == "d2h"]
        expected = cpu.infer(a, b)
    assert list(got) == ["distance", "psnr", "ssim"] == list(expected)
    assert [e[3] for e in downloads] == [2 * 4] * 3  # one copy back per output, two float32 values each
    for name in got:
        np.testing.assert_array_equal(got[name], expected[name])
    assert got["psnr"][1] == np.inf and got["ssim"][1] == 1.0
    assert rt.live() == 0


def test_model_inputs_must_match_the_spec(rt, exported):
    with pytest.raises(BackendError, match="re-export"):
        OrtCudaBackend(ModelSpec("alex", frames="nhwc-bgr"), exported("alex"), "cuda")
    assert rt.live() == 0


def test_batches_must_be_one_bucket(rt, exported):
    a = np.zeros((1, 3, 40, 40), np.float32)
    with OrtCudaBackend(ModelSpec("alex"), exported("alex"), "cuda") as gpu:
        with pytest.raises(BackendError, match="one bucket"):
            gpu.submit([a, np.zeros((1, 3, 40, 41), np.float32)], [a, a])


def test_scorer_pairs_on_the_cuda_backend_equal_the_cpu(rt, exported, photo_pair_files, tmp_path):
    path = exported("alex")
    pairs = list(photo_pair_files) + [(tmp_path / "missing.png", photo_pair_files[0][1])] + list(photo_pair_files)
    with Scorer(path, device="cuda", batch_size=2) as gpu, Scorer(path, batch_size=2) as cpu:
        got, expected = list(gpu.score_pairs(pairs)), list(cpu.score_pairs(pairs))
        assert len(gpu._backend(False).pool.buckets()) == 4  # one bucket per image size
    assert [r.index for r in got] == list(range(len(pairs)))
    assert [r.error is None for r in got] == [r.error is None for r in expected] == [True] * 4 + [False] + [True] * 4
    np.testing.assert_array_equal([r.distance for r in got if r.ok], [r.distance for r in expected if r.ok])


def test_light_metadata_of_frame_exports(exported_spec):
    info = read_model(exported_spec(ModelSpec("alex", frames="nhwc-bgr")))
    assert (info.input_dtype, info.input_layout, info.input_channels, info.precision) == ("uint8", "nhwc", "bgr", "fp32")


def test_a_session_that_fell_back_to_the_cpu_is_refused(exported, monkeypatch):
    # onnxruntime-gpu without usable CUDA libraries or driver logs a warning and builds a CPU-only
    # session (seen with onnxruntime-gpu 1.31.1 on a machine without a GPU); simulate exactly that.
    fallback = SimpleNamespace(**{name: getattr(ort, name) for name in ("SessionOptions", "GraphOptimizationLevel",
                                                                         "ExecutionMode")})
    fallback.InferenceSession = lambda path, options, providers: ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"])
    monkeypatch.setattr(ort_backend, "require_cuda_provider", lambda: fallback)
    with pytest.raises(BackendError, match="could not start its CUDA execution provider for cuda:1"):
        make_session(exported("alex"), "cuda:1")
