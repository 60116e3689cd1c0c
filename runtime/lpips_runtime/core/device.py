"""``device="auto"``: a CUDA GPU when the backend can use one here, else the CPU, with the reason."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LpipsError
from ..optional import require

AUTO = "auto"


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    reason: str  # one line for people: why this device

    def describe(self) -> str:
        return f"device: {self.device} ({self.reason})"


def _cuda_gpu() -> tuple[str | None, str]:
    """(name of GPU 0, "") when cuda-python sees a usable GPU, else (None, why not)."""
    from ..backends import cuda_mem

    try:
        rt = cuda_mem.runtime()
        count = cuda_mem.device_count(rt)
        if not count:
            return None, "no CUDA GPU is visible"
        return cuda_mem.device_info(rt, 0).name, ""
    except LpipsError as exc:
        return None, str(exc)


def _torch_cuda() -> tuple[str | None, str]:
    torch = require("torch", "export", "the torch backend")
    if not torch.cuda.is_available():
        return None, "torch sees no CUDA GPU"
    return torch.cuda.get_device_name(0), ""


def choose_device(backend: str) -> DeviceChoice:
    """The device ``auto`` means for ``backend``: CUDA when this machine has what the backend needs on a
    GPU (ort: onnxruntime-gpu with its CUDA provider, cuda-python, a visible GPU; torch: a CUDA build of
    torch and a GPU; trt: always a GPU), else the CPU. Never raises for a missing GPU."""
    if backend == "trt":
        return DeviceChoice("cuda", "TensorRT runs on GPUs only")
    if backend == "torch":
        name, why = _torch_cuda()
    elif backend == "ort":
        ort = require("onnxruntime", "cpu", "the ONNX Runtime backend")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return DeviceChoice("cpu", "this onnxruntime has no CUDA provider; for GPUs: pip install 'lpips-rt[gpu]'")
        name, why = _cuda_gpu()
    else:
        return DeviceChoice("cpu", f"the {backend} backend runs on the CPU here")
    if name is None:
        return DeviceChoice("cpu", why)
    return DeviceChoice("cuda", f"GPU 0: {name}")
