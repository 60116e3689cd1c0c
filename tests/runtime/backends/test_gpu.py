"""On a real GPU (marked gpu / trt: skipped without one): the CUDA paths against the CPU.

Run by benchmarks/gpu_session.sh on the GPU machine (onnxruntime-gpu installed there from carried
wheel parts). The bounds: float32 on the GPU computes in float32 (TF32 is off), so it agrees with
the CPU to float32 summation-order noise; the fp16 graph stays within the 1e-3 relative bound that
the CPU emulation of float16 activations predicts (benchmarks/README.md).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import accuracy_pairs, ort_cuda_available, to_unit_nchw
from lpips_export.precision import relative_error
from lpips_runtime.model.modelfile import ModelSpec

pytestmark = pytest.mark.gpu


@pytest.fixture
def ort_cuda():
    if not ort_cuda_available():
        pytest.skip("needs onnxruntime-gpu (CUDAExecutionProvider)")


def _batch(pairs):
    return (np.concatenate([to_unit_nchw(x) for _, x, _ in pairs]),
            np.concatenate([to_unit_nchw(y) for _, _, y in pairs]))


def test_pinned_and_device_memory_round_trip():
    from lpips_runtime.backends import cuda_mem

    rt = cuda_mem.runtime()
    host, back = cuda_mem.PinnedBuffer(rt, 1 << 20), cuda_mem.PinnedBuffer(rt, 1 << 20)
    device, stream = cuda_mem.DeviceBuffer(rt, 1 << 20), cuda_mem.Stream(rt)
    host.view(np.uint8, (1 << 20,))[:] = np.arange(1 << 20) % 251
    cuda_mem.upload(rt, device, host, 1 << 20, stream)
    cuda_mem.download(rt, back, device, 1 << 20, stream)
    stream.synchronize()
    assert np.array_equal(back.view(np.uint8, (1 << 20,)), host.view(np.uint8, (1 << 20,)))
    for resource in (host, back, device, stream):
        resource.close()


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
def test_ort_cuda_fp32_and_fp16_against_the_cpu(net, ort_cuda, exported, exported_spec):
    from lpips_runtime.backends.ort_backend import OrtBackend
    from lpips_runtime.backends.ort_cuda_backend import OrtCudaBackend

    a, b = _batch(accuracy_pairs(256, 256))
    with OrtBackend(ModelSpec(net), exported(net)) as cpu:
        reference = cpu.run(a, b)
    with OrtCudaBackend(ModelSpec(net), exported(net), "cuda") as gpu:
        assert relative_error(gpu.run(a, b), reference) <= 1e-5
    spec16 = ModelSpec(net, precision="fp16")
    with OrtCudaBackend(spec16, exported_spec(spec16), "cuda") as gpu16:
        assert relative_error(gpu16.run(a, b), reference) <= 1e-3


def test_ort_cuda_frame_graph_equals_float_graph(ort_cuda, exported, exported_spec):
    from lpips_runtime.backends.ort_cuda_backend import OrtCudaBackend

    pairs = accuracy_pairs(240, 320)
    a, b = _batch(pairs)
    frames0 = np.stack([x[..., ::-1] for _, x, _ in pairs])
    frames1 = np.stack([y[..., ::-1] for _, _, y in pairs])
    spec = ModelSpec("alex", frames="nhwc-bgr")
    with OrtCudaBackend(ModelSpec("alex"), exported("alex"), "cuda") as floats, \
            OrtCudaBackend(spec, exported_spec(spec), "cuda") as frames:
        # Same kernels on both sides; 1e-5 rather than 1e-6 in case the GPU's division is not IEEE-exact.
        assert np.max(np.abs(frames.run(frames0, frames1) - floats.run(a, b))) <= 1e-5


def test_scorer_pipeline_on_the_gpu(ort_cuda, exported, photo_pair_files):
    from lpips_runtime.core.scorer import Scorer

    path = exported("alex")
    pairs = list(photo_pair_files) * 3
    with Scorer(path, device="cuda", batch_size=2) as gpu, Scorer(path, batch_size=2) as cpu:
        got = [r.distance for r in gpu.score_pairs(pairs)]
        expected = [r.distance for r in cpu.score_pairs(pairs)]
    assert relative_error(np.array(got), np.array(expected)) <= 1e-5


@pytest.mark.trt
def test_trt_engine_against_the_cpu(exported, exported_spec, tmp_path):
    from lpips_export.trt_build import build_engine
    from lpips_runtime.backends.ort_backend import OrtBackend
    from lpips_runtime.backends.trt_backend import TrtBackend
    from lpips_runtime.model.engine_meta import Profile

    spec = ModelSpec("alex", precision="fp16")
    onnx_path = tmp_path / exported_spec(spec).name
    onnx_path.write_bytes(exported_spec(spec).read_bytes())
    build_engine(onnx_path, Profile((1, 31, 31), (4, 256, 256), (8, 512, 512)))
    a, b = _batch(accuracy_pairs(256, 256))
    with OrtBackend(ModelSpec("alex"), exported("alex")) as cpu, TrtBackend(spec, onnx_path, "cuda") as engine:
        assert relative_error(engine.run(a, b), cpu.run(a, b)) <= 1e-3
