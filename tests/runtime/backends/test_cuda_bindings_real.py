"""cuda_mem and the CPU tests' fake against the real ``cuda.bindings.runtime`` (cuda-python), which
imports without a GPU: every CUDA name our code uses exists there, the fake takes the same arguments
and uses the same constants as the real calls, and without a usable GPU a real call fails with our
one-line ``CudaError``. (torch's CUDA build brings cuda-bindings into the test environment.)"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import fake_cuda
from lpips_runtime.backends import cuda_mem

real = pytest.importorskip("cuda.bindings.runtime")

CUDA_MEM_SOURCE = Path(cuda_mem.__file__).read_text()


def _used_names() -> set[str]:
    return set(re.findall(r"\b(cuda[A-Z]\w*)", CUDA_MEM_SOURCE))


def _real_arity(name: str) -> int:
    """Parameter count from the binding's documented signature, e.g. ``cudaMemcpyAsync(dst, src, ...)``."""
    first_line = (getattr(real, name).__doc__ or "").strip().splitlines()[0]
    match = re.fullmatch(rf"{name}\((.*)\)", first_line.strip())
    assert match, f"unexpected docstring for {name}: {first_line!r}"
    return len([p for p in match.group(1).split(",") if p.strip()])


def test_every_cuda_name_cuda_mem_uses_exists():
    used = _used_names()
    assert {"cudaMallocHost", "cudaMemcpyAsync", "cudaStreamWaitEvent"} <= used  # the scan finds them
    for name in sorted(used):
        # functions and flags live on the module; cudaSuccess and the copy kinds on their enums
        assert any(hasattr(holder, name) for holder in (real, real.cudaError_t, real.cudaMemcpyKind)), name


def test_the_fake_matches_the_real_calling_conventions():
    fake = fake_cuda.FakeCudaRuntime()
    calls = [n for n in _used_names() if callable(getattr(real, n, None)) and not isinstance(getattr(real, n), type)]
    assert len(calls) >= 15
    for name in calls:
        fake_params = list(inspect.signature(getattr(fake, name)).parameters)
        assert len(fake_params) == _real_arity(name), name
    for name in ("cudaStreamNonBlocking", "cudaEventDefault", "cudaEventDisableTiming"):
        assert getattr(fake, name) == int(getattr(real, name)), name
    for name in ("cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"):
        assert getattr(fake.cudaMemcpyKind, name) == int(getattr(real.cudaMemcpyKind, name)), name
    assert int(fake_cuda.cudaError_t.cudaSuccess) == int(real.cudaError_t.cudaSuccess)


def _gpu_usable() -> bool:
    status, count = real.cudaGetDeviceCount()
    return status == real.cudaError_t.cudaSuccess and count > 0


@pytest.mark.skipif(_gpu_usable(), reason="a GPU is usable here: this checks the no-GPU failure")
def test_without_a_gpu_real_calls_fail_with_one_clear_line():
    with pytest.raises(cuda_mem.CudaError) as failure:
        cuda_mem.set_device(real, 0)
    message = str(failure.value)
    assert message.startswith("CUDA cudaSetDevice failed: ") and "\n" not in message
    status = real.cudaSetDevice(0)[0]
    _, text = real.cudaGetErrorString(status)
    assert text.decode() in message  # CUDA's own reason, e.g. the driver is missing
    assert cuda_mem._HINTS.get(status.name, "") in message  # and where to look, for the usual ones
    with pytest.raises(cuda_mem.CudaError, match="CUDA cudaMallocHost failed"):
        cuda_mem.PinnedBuffer(real, 64)
