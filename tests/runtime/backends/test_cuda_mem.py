"""cuda_mem against a fake of cuda-python's runtime bindings: ownership, copies, error messages."""
from __future__ import annotations

import numpy as np
import pytest

import fake_cuda
from lpips_runtime.backends import cuda_mem
from lpips_runtime.errors import MissingExtraError


@pytest.fixture
def rt(monkeypatch):
    return fake_cuda.install(monkeypatch)


def test_pinned_view_upload_download(rt):
    host, back = cuda_mem.PinnedBuffer(rt, 64), cuda_mem.PinnedBuffer(rt, 64)
    device, stream = cuda_mem.DeviceBuffer(rt, 64), cuda_mem.Stream(rt)
    src = host.view(np.float32, (4, 4))
    src[:] = np.arange(16, dtype=np.float32).reshape(4, 4)
    cuda_mem.upload(rt, device, host, 64, stream)
    cuda_mem.download(rt, back, device, 64, stream)
    stream.synchronize()
    np.testing.assert_array_equal(back.view(np.float32, (4, 4)), src)
    assert [entry[0] for entry in rt.log if entry[0] in ("h2d", "d2h")] == ["h2d", "d2h"]
    for resource in (host, back, device, stream):
        resource.close()
        resource.close()  # idempotent
    assert rt.live() == 0


def test_view_must_fit(rt):
    buf = cuda_mem.PinnedBuffer(rt, 16)
    with pytest.raises(ValueError, match="does not fit"):
        buf.view(np.float32, (5,))


def test_errors_name_the_call(rt):
    rt.fail["cudaMalloc"] = fake_cuda.cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(cuda_mem.CudaError, match="CUDA cudaMalloc failed: fake cudaErrorMemoryAllocation"):
        cuda_mem.DeviceBuffer(rt, 1 << 40)


def test_device_info(rt):
    info = cuda_mem.device_info(rt, 0)
    assert (info.name, info.compute_capability) == ("NVIDIA H100 80GB HBM3", "9.0")


def test_missing_cuda_python_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "cuda.bindings.runtime", None)
    with pytest.raises(MissingExtraError, match=r"lpips-rt\[gpu\]"):
        cuda_mem.runtime()
    with pytest.raises(MissingExtraError, match=r"lpips-rt\[trt\]"):
        cuda_mem.runtime("trt")
