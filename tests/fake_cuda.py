"""A fake of ``cuda.bindings.runtime`` for CPU tests: "device" memory is host memory, copies are
memmoves done at once, streams and events are counters, and every call is logged in order.

Only the calls lpips_runtime.backends.cuda_mem makes are implemented, with cuda-python's calling
convention: each returns a tuple whose first item is a ``cudaError_t``.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import enum
import sys
import types
from types import SimpleNamespace


class cudaError_t(enum.IntEnum):  # noqa: N801 - the name cuda-python uses
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidValue = 1
    cudaErrorNotReady = 600
    cudaErrorNoDevice = 100


class FakeCudaRuntime(types.ModuleType):
    def __init__(self, gpu_name: str = "NVIDIA H100 80GB HBM3", capability: tuple[int, int] = (9, 0)):
        super().__init__("cuda.bindings.runtime")
        self.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings.runtime", None)  # find_spec() callers need one
        self.cudaError_t = cudaError_t
        self.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
        self.cudaStreamNonBlocking, self.cudaEventDefault, self.cudaEventDisableTiming = 1, 0, 2
        self.gpu_name, self.capability = gpu_name, capability
        self.device_count = 1
        self.buffers: dict[int, tuple[str, object]] = {}  # ptr -> (kind, ctypes buffer)
        self.log: list[tuple] = []
        self.fail: dict[str, cudaError_t] = {}  # call name -> error to return on its next call
        self._handles = 0x1000

    # -- helpers ---------------------------------------------------------------------------

    def _ok(self, name: str, *values):
        if name in self.fail:
            return (self.fail.pop(name),)
        return (cudaError_t.cudaSuccess, *values)

    def _handle(self) -> int:
        self._handles += 1
        return self._handles

    def _alloc(self, kind: str, nbytes: int):
        buf = ctypes.create_string_buffer(max(1, int(nbytes)))
        ptr = ctypes.addressof(buf)
        self.buffers[ptr] = (kind, buf)
        self.log.append((f"malloc_{kind}", ptr, nbytes))
        return ptr

    def live(self, kind: str | None = None) -> int:
        """How many allocations are still held (of ``kind``: "host" or "device")."""
        return sum(1 for k, _ in self.buffers.values() if kind is None or k == kind)

    # -- memory ----------------------------------------------------------------------------

    def cudaMallocHost(self, nbytes):
        if "cudaMallocHost" in self.fail:
            return (self.fail.pop("cudaMallocHost"), None)
        return self._ok("cudaMallocHost", self._alloc("host", nbytes))

    def cudaMalloc(self, nbytes):
        if "cudaMalloc" in self.fail:
            return (self.fail.pop("cudaMalloc"), None)
        return self._ok("cudaMalloc", self._alloc("device", nbytes))

    def cudaFreeHost(self, ptr):
        assert self.buffers.pop(int(ptr))[0] == "host"
        return self._ok("cudaFreeHost")

    def cudaFree(self, ptr):
        assert self.buffers.pop(int(ptr))[0] == "device"
        return self._ok("cudaFree")

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        ctypes.memmove(int(dst), int(src), int(count))
        self.log.append(("h2d" if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else "d2h", int(dst), int(src),
                         int(count), int(stream)))
        return self._ok("cudaMemcpyAsync")

    # -- streams and events ----------------------------------------------------------------

    def cudaStreamCreateWithFlags(self, flags):
        handle = self._handle()
        self.log.append(("stream_create", handle, flags))
        return self._ok("cudaStreamCreateWithFlags", handle)

    def cudaStreamSynchronize(self, stream):
        self.log.append(("stream_sync", int(stream)))
        return self._ok("cudaStreamSynchronize")

    def cudaStreamDestroy(self, stream):
        self.log.append(("stream_destroy", int(stream)))
        return self._ok("cudaStreamDestroy")

    def cudaEventCreateWithFlags(self, flags):
        return self._ok("cudaEventCreateWithFlags", self._handle())

    def cudaEventRecord(self, event, stream):
        self.log.append(("event_record", int(event), int(stream)))
        return self._ok("cudaEventRecord")

    def cudaEventSynchronize(self, event):
        self.log.append(("event_sync", int(event)))
        return self._ok("cudaEventSynchronize")

    def cudaStreamWaitEvent(self, stream, event, flags):
        self.log.append(("stream_wait", int(stream), int(event)))
        return self._ok("cudaStreamWaitEvent")

    def cudaEventElapsedTime(self, start, end):
        return self._ok("cudaEventElapsedTime", 1.0)

    def cudaEventDestroy(self, event):
        return self._ok("cudaEventDestroy")

    # -- devices ---------------------------------------------------------------------------

    def cudaGetDeviceCount(self):
        return self._ok("cudaGetDeviceCount", self.device_count)

    def cudaSetDevice(self, index):
        return self._ok("cudaSetDevice")

    def cudaGetDeviceProperties(self, index):
        props = SimpleNamespace(name=self.gpu_name.encode() + b"\0" * 8, major=self.capability[0],
                                minor=self.capability[1])
        return self._ok("cudaGetDeviceProperties", props)

    def cudaGetErrorString(self, error):
        return (cudaError_t.cudaSuccess, f"fake {cudaError_t(error).name}".encode())


def install(monkeypatch, **kwargs) -> FakeCudaRuntime:
    """Put a fresh fake where ``require("cuda.bindings.runtime", ...)`` finds it; returns it."""
    fake = FakeCudaRuntime(**kwargs)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", fake)
    return fake
