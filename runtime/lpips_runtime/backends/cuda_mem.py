"""Pinned host memory, device memory, streams and events through cuda-python's runtime bindings
(``cuda.bindings.runtime``, the API NVIDIA's TensorRT samples use), imported on first use.

Every call's status is checked; a failure raises ``CudaError`` naming the call and CUDA's message.
Ownership: each object owns its allocation or handle and releases it in ``close()`` (idempotent).
Arrays returned by ``PinnedBuffer.view`` borrow its memory: they are valid until ``close()``.

Written to the documented cuda-python 12/13 API; exercised in CI against a fake of it
(tests/fake_cuda.py), on a GPU only by the tests marked ``gpu``.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..model.engine_meta import GpuInfo
from ..errors import BackendError
from ..optional import require


class CudaError(BackendError):
    """A CUDA runtime call failed."""


# The failures a first GPU run usually meets, and where to look (CUDA's own words do not say).
_HINTS = {
    "cudaErrorInsufficientDriver": ": no NVIDIA driver, or one older than this CUDA runtime (nvidia-smi shows it)",
    "cudaErrorNoDevice": ": no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)",
    "cudaErrorInvalidDevice": ": no GPU with that index (check CUDA_VISIBLE_DEVICES and --device cuda:<index>)",
}


def runtime(extra: str = "gpu"):
    """The ``cuda.bindings.runtime`` module; ``MissingExtraError`` naming ``lpips-rt[extra]`` if absent."""
    return require("cuda.bindings.runtime", extra, "CUDA memory and streams (cuda-python)")


def call(rt, name: str, *args):
    """``rt.<name>(*args)``, checked: returns the call's value(s) after the status, or None."""
    result = getattr(rt, name)(*args)
    status, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if status != rt.cudaError_t.cudaSuccess:
        _, message = rt.cudaGetErrorString(status)
        text = message.decode() if isinstance(message, bytes) else str(message)
        code = getattr(status, "name", str(status))
        hint = _HINTS.get(code, "")
        raise CudaError(f"CUDA {name} failed: {text} ({code}){hint}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_count(rt) -> int:
    """How many CUDA GPUs this process sees (``CudaError`` when there is no usable driver)."""
    return call(rt, "cudaGetDeviceCount")


def set_device(rt, index: int) -> None:
    """Make GPU ``index`` current for the calling thread (CUDA's current device is per thread)."""
    call(rt, "cudaSetDevice", index)


def device_info(rt, index: int) -> GpuInfo:
    props = call(rt, "cudaGetDeviceProperties", index)
    name = props.name
    name = name.split(b"\0", 1)[0].decode() if isinstance(name, (bytes, bytearray)) else str(name)
    return GpuInfo(name=name.strip(), compute_capability=f"{props.major}.{props.minor}")


class Stream:
    """A non-blocking CUDA stream (no implicit sync with the legacy default stream)."""

    def __init__(self, rt):
        self._rt = rt
        self._stream = call(rt, "cudaStreamCreateWithFlags", rt.cudaStreamNonBlocking)

    @property
    def handle(self) -> int:
        """The raw ``cudaStream_t`` as an int (what ONNX Runtime and TensorRT take)."""
        return int(self._stream)

    @property
    def raw(self):
        return self._stream

    def synchronize(self) -> None:
        call(self._rt, "cudaStreamSynchronize", self._stream)

    def close(self) -> None:
        if self._stream is not None:
            call(self._rt, "cudaStreamDestroy", self._stream)
            self._stream = None


class Event:
    """A CUDA event; ``timing=True`` for ``elapsed_ms``, else the cheaper timing-free kind."""

    def __init__(self, rt, timing: bool = False):
        self._rt = rt
        flags = rt.cudaEventDefault if timing else rt.cudaEventDisableTiming
        self._event = call(rt, "cudaEventCreateWithFlags", flags)

    def record(self, stream: Stream) -> None:
        call(self._rt, "cudaEventRecord", self._event, stream.raw)

    def synchronize(self) -> None:
        call(self._rt, "cudaEventSynchronize", self._event)

    def make_wait(self, stream: Stream) -> None:
        """Work queued on ``stream`` after this call waits for this event (no host blocking)."""
        call(self._rt, "cudaStreamWaitEvent", stream.raw, self._event, 0)

    def elapsed_ms(self, end: "Event") -> float:
        return float(call(self._rt, "cudaEventElapsedTime", self._event, end._event))

    def close(self) -> None:
        if self._event is not None:
            call(self._rt, "cudaEventDestroy", self._event)
            self._event = None


class PinnedBuffer:
    """``nbytes`` of page-locked host memory: asynchronous copies from it overlap the GPU's work."""

    def __init__(self, rt, nbytes: int):
        self._rt, self.nbytes = rt, int(nbytes)
        self.ptr = int(call(rt, "cudaMallocHost", self.nbytes))

    def view(self, dtype, shape) -> np.ndarray:
        """A numpy array over the start of this buffer (borrowed: valid until ``close()``)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > self.nbytes:
            raise ValueError(f"a {dtype} array of shape {tuple(shape)} does not fit in {self.nbytes} bytes")
        raw = (ctypes.c_ubyte * (count * dtype.itemsize)).from_address(self.ptr)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def close(self) -> None:
        if self.ptr:
            call(self._rt, "cudaFreeHost", self.ptr)
            self.ptr = 0


class DeviceBuffer:
    """``nbytes`` of device memory (plain cudaMalloc, no managed memory)."""

    def __init__(self, rt, nbytes: int):
        self._rt, self.nbytes = rt, int(nbytes)
        self.ptr = int(call(rt, "cudaMalloc", self.nbytes))

    def close(self) -> None:
        if self.ptr:
            call(self._rt, "cudaFree", self.ptr)
            self.ptr = 0


def upload(rt, device: DeviceBuffer, host: PinnedBuffer, nbytes: int, stream: Stream) -> None:
    """Queue a host-to-device copy of the first ``nbytes`` on ``stream``."""
    call(rt, "cudaMemcpyAsync", device.ptr, host.ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.raw)


def download(rt, host: PinnedBuffer, device: DeviceBuffer, nbytes: int, stream: Stream) -> None:
    """Queue a device-to-host copy of the first ``nbytes`` on ``stream``."""
    call(rt, "cudaMemcpyAsync", host.ptr, device.ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.raw)
