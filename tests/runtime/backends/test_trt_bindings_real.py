"""Our TensorRT code and its test stand-in (tests/fake_tensorrt.py) against the Python API of real
TensorRT releases, read from NVIDIA's bindings wheels by tests/real_tensorrt.py (downloaded
hash-pinned; skipped where that is impossible). TensorRT itself cannot run here: this is what shows
that the calls the CPU tests exercise through the fake exist, with those parameters, in TensorRT
10.12 and 11."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import fake_tensorrt
import real_tensorrt

ROOT = Path(__file__).resolve().parents[3]
TRT_SOURCES = [ROOT / "export/lpips_export/trt_build.py", ROOT / "runtime/lpips_runtime/backends/trt_backend.py",
               ROOT / "runtime/lpips_runtime/model/trt_logger.py"]
# Names only TensorRT for RTX has: our code reaches them only on that flavour (--trt-sm) or behind a getattr
# guard; test_every_name_our_code_uses_exists_in_tensorrt_rtx checks them against the real library.
RTX_ONLY = {"ComputeCapability", "CudaGraphStrategy", "EngineInvalidityDiagnostics"}
# Attributes the stand-ins set per instance rather than define on the class.
PROPERTIES = {"OnnxParser": ["num_errors"], "ICudaEngine": ["num_io_tensors"],
              "INetworkDefinition": ["num_inputs", "num_outputs"]}


@pytest.fixture(scope="module", params=sorted(real_tensorrt.WHEELS))
def api(request):
    found = real_tensorrt.api(request.param)
    if found is None:
        pytest.skip(f"TensorRT {request.param} bindings unavailable: {real_tensorrt.last_error.get(request.param)}")
    assert found["version"] == request.param
    return found["classes"]


def _accepts(overloads: list, params: list[str]) -> bool:
    """Whether some overload takes exactly these parameters, by name and position (the rest defaulted)."""
    for overload in overloads:
        names = [name for name, _ in overload]
        if names == ["*args", "**kwargs"]:
            continue  # pybind11's header line of an overloaded method
        if names[:len(params)] == params and all(default for _, default in overload[len(params):]):
            return True
    return False


def _stand_in_methods(cls) -> dict:
    own = {name: value for name, value in vars(cls).items() if callable(value) and not isinstance(value, type)}
    return {name: value for name, value in own.items() if not name.startswith("_") or name == "__init__"}


def test_every_stand_in_method_exists_with_the_same_parameters(api):
    fake = fake_tensorrt.FakeTensorRT()
    checked = 0
    for real_name, stand_in in fake.imitates.items():
        real_class = api[real_name]["attributes"]
        for name, function in _stand_in_methods(stand_in).items():
            if name == "__init__" and not real_class["__init__"]["overloads"]:
                continue  # TensorRT makes these objects; Python cannot construct them
            assert real_class.get(name, {}).get("kind") == "method", f"TensorRT has no {real_name}.{name}"
            params = [p for p in inspect.signature(function).parameters if p != "self"]
            overloads = real_class[name]["overloads"]
            assert _accepts(overloads, params), f"{real_name}.{name}{tuple(params)} vs TensorRT's {overloads}"
            checked += 1
        for name in PROPERTIES.get(real_name, []):
            assert real_class.get(name, {}).get("kind") == "property", f"{real_name}.{name}"
    assert checked >= 20  # the scan saw the stand-ins' methods


def _names_our_code_uses() -> set[str]:
    used = set()
    for source in TRT_SOURCES:
        text = source.read_text()
        used |= {m for m in re.findall(r"\btrt\.([A-Z]\w*(?:\.[A-Za-z_]\w*)*)", text)}
        used |= {f"ILogger.Severity.{m}" for m in re.findall(r"\bseverity\.([A-Z_]+)\b", text)}
    assert {"Builder", "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "ILogger.Severity.ERROR"} <= used
    return used


def test_every_tensorrt_name_our_code_uses_exists(api):
    for dotted in sorted(_names_our_code_uses()):
        head, *rest = dotted.split(".")
        if head in RTX_ONLY:
            continue
        assert head in api, dotted
        if head == "ILogger" and rest[:1] == ["Severity"]:
            assert not rest[1:] or rest[1] in api["ILogger"]["attributes"]["Severity"]["members"], dotted
        elif rest:
            entry = api[head]
            assert rest[0] in (entry["members"] or []) or rest[0] in entry["attributes"], dotted



def test_every_name_our_code_uses_exists_in_tensorrt_rtx():
    """TensorRT for RTX, installed by make test (lpips-rt[trt-rtx]): every TensorRT name our code uses and
    every method of the fake's stand-ins exists there too (the one code path serves both flavours)."""
    import os

    if os.environ.get("CI", "").lower() in ("1", "true"):
        import tensorrt_rtx as trt
    else:
        trt = pytest.importorskip("tensorrt_rtx")
    for dotted in sorted(_names_our_code_uses()):
        obj = trt
        for part in dotted.split("."):
            assert hasattr(obj, part), f"TensorRT-RTX has no {dotted}"
            obj = getattr(obj, part)
    fake = fake_tensorrt.FakeTensorRT()
    rtx_classes = {"INetworkDefinition": trt.INetworkDefinition, "ParserError": trt.ParserError}
    for real_name, stand_in in fake.imitates.items():
        real_class = rtx_classes.get(real_name) or getattr(trt, real_name)
        for name in _stand_in_methods(stand_in):
            assert name == "__init__" or hasattr(real_class, name), f"TensorRT-RTX has no {real_name}.{name}"
    for name in ("create_runtime_config", "create_execution_context"):
        assert hasattr(trt.ICudaEngine, name)
    for name in ("create_runtime_cache", "set_runtime_cache", "cuda_graph_strategy"):
        assert hasattr(trt.IRuntimeConfig, name)
