"""``--device auto``: CUDA only where the backend can use a GPU here, else the CPU, and it says why."""
from __future__ import annotations

import fake_cuda
import pytest

from lpips_runtime.core.device import choose_device


@pytest.fixture
def cuda_provider(monkeypatch):
    """onnxruntime reporting the CUDA provider, as onnxruntime-gpu does (with or without a GPU)."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_cpu_onnxruntime_means_cpu():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    choice = choose_device("ort")
    assert choice.device == "cpu" and "pip install 'lpips-rt[gpu]'" in choice.reason
    assert choice.describe().startswith("device: cpu (")


def test_cuda_when_a_gpu_is_visible(cuda_provider, monkeypatch):
    fake_cuda.install(monkeypatch, gpu_name="NVIDIA H200")
    choice = choose_device("ort")
    assert (choice.device, choice.reason) == ("cuda", "GPU 0: NVIDIA H200")


def test_cpu_when_cuda_sees_no_gpu(cuda_provider, monkeypatch):
    fake = fake_cuda.install(monkeypatch)
    fake.fail["cudaGetDeviceCount"] = fake_cuda.cudaError_t.cudaErrorNoDevice
    choice = choose_device("ort")
    assert choice.device == "cpu" and "cudaGetDeviceCount failed" in choice.reason
    fake.device_count = 0
    assert choose_device("ort").reason == "no CUDA GPU is visible"


def test_cpu_without_cuda_python(cuda_provider, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    choice = choose_device("ort")
    assert choice.device == "cpu" and "pip install 'lpips-rt[gpu]'" in choice.reason


def test_other_backends():
    assert choose_device("trt").device == "cuda"
    torch = pytest.importorskip("torch")
    assert choose_device("torch").device == ("cuda" if torch.cuda.is_available() else "cpu")
