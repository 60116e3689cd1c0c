"""The ONNX Runtime CUDA backend made runnable on a CPU for tests: cuda-python is faked (its "device"
memory is host memory), and each session is a real CPU session whose real IOBinding is given those
pointers as "cpu" memory, so ORT itself checks every binding (names, element types, shapes, the
output written in place)."""
from __future__ import annotations

import onnxruntime as ort

import fake_cuda
from lpips_runtime.backends.ort_cuda_backend import OrtCudaBackend


class LoggedSession:
    """A real CPU session that logs each run into the fake CUDA's call log (for ordering checks)."""

    def __init__(self, path, rt):
        self.session, self.rt = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), rt

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run_with_iobinding(self, binding):
        self.session.run_with_iobinding(binding)
        self.rt.log.append(("run",))


def install(monkeypatch) -> fake_cuda.FakeCudaRuntime:
    """Fake CUDA + CPU sessions for ``OrtCudaBackend``; returns the fake, whose ``opened`` lists the
    (device, stream handle) of every session made."""
    fake = fake_cuda.install(monkeypatch)
    fake.opened = []

    def make_session(path, device, threads, stream_handle=None):
        fake.opened.append((device, stream_handle))
        return LoggedSession(path, fake)

    monkeypatch.setattr("lpips_runtime.backends.ort_cuda_backend.require_cuda_provider", lambda: None)
    monkeypatch.setattr("lpips_runtime.backends.ort_cuda_backend.make_session", make_session)
    monkeypatch.setattr(OrtCudaBackend, "binding_device", "cpu")
    return fake
