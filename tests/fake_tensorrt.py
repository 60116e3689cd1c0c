"""A fake ``tensorrt`` module for CPU tests of the engine builder and the TensorRT backend.

It records the calls our code makes (so tests can check the strongly-typed flag, the profile, the
timing cache, that no FP16 builder flag is set), and its "engine" computes a simple stand-in for
LPIPS on the fake CUDA memory of tests/fake_cuda.py: the mean absolute difference of each pair, so
that results prove the staging, addresses and shapes were wired correctly.

An engine file for it is JSON: {"dtype": "float32"|"uint8", "layout": "nchw"|"nhwc", "spatial": bool}.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import enum
import json
import sys
import types

import numpy as np


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    TF32 = 7
    BF16 = 17


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class ProfilingVerbosity(enum.IntEnum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity

    def __init__(self):
        pass


def make_engine_bytes(dtype: str = "float32", layout: str = "nchw", spatial: bool = False,
                      metrics: tuple[str, ...] = ()) -> bytes:
    return json.dumps({"dtype": dtype, "layout": layout, "spatial": spatial, "metrics": list(metrics)}).encode()


class FakeTensorRT(types.ModuleType):
    def __init__(self, version: str = "10.13.0.35"):
        super().__init__("tensorrt")
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # find_spec() callers need one
        self.__version__ = version
        self.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
        self.BuilderFlag = BuilderFlag
        self.MemoryPoolType = MemoryPoolType
        self.ProfilingVerbosity = ProfilingVerbosity
        self.TensorIOMode = TensorIOMode
        self.ILogger = ILogger
        self.calls: list[tuple] = []
        # knobs for failure paths
        self.parse_ok = True
        self.parse_errors = ["In node 3 (Conv): fake parser error"]
        self.build_result: bytes | None = make_engine_bytes()
        self.deserialize_ok = True
        self.refuse_shapes = False
        fake = self

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags):
                fake.calls.append(("create_network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build_serialized_network",))
                if fake.build_result is None:
                    self.logger.log(_Severity.ERROR, "fake builder: out of tactics")
                return fake.build_result

        class Tensor:
            def __init__(self, name, dtype, shape):
                self.name, self.dtype, self.shape = name, dtype, shape

        class Network:
            """The fused graph's tensors (float32 NCHW inputs; the names are what the builder reads)."""

            def __init__(self):
                self._inputs = [Tensor(n, "DataType.FLOAT", (-1, 3, -1, -1)) for n in ("img0", "img1")]
                self._outputs = [Tensor("distance", "DataType.FLOAT", (-1,))]
                self.num_inputs, self.num_outputs = len(self._inputs), len(self._outputs)

            def get_input(self, index):
                return self._inputs[index]

            def get_output(self, index):
                return self._outputs[index]

        class ParserError:
            def __init__(self, text):
                self.text = text

            def __str__(self):
                return self.text

        class OnnxParser:
            def __init__(self, network, logger):
                self.num_errors = 0

            def parse_from_file(self, model):
                fake.calls.append(("parse_from_file", model))
                if not fake.parse_ok:
                    self.num_errors = len(fake.parse_errors)
                return fake.parse_ok

            def get_error(self, index):
                return ParserError(fake.parse_errors[index])

        class TimingCache:
            def __init__(self, data: bytes):
                self.data = bytes(data)

            def serialize(self):
                return memoryview(self.data + b"+entry")

        class Config:
            def __init__(self):
                self._cache = None

            def set_memory_pool_limit(self, pool, pool_size):
                fake.calls.append(("set_memory_pool_limit", pool, pool_size))
                self._workspace = pool_size

            def get_memory_pool_limit(self, pool):  # noqa: D102
                return getattr(self, "_workspace", 80 << 30)  # TensorRT's default: the GPU's memory

            def set_flag(self, flag):
                fake.calls.append(("set_flag", flag))

            def clear_flag(self, flag):
                fake.calls.append(("clear_flag", flag))

            def add_optimization_profile(self, profile):
                fake.calls.append(("add_optimization_profile", profile.shapes))
                return 0

            def create_timing_cache(self, serialized_timing_cache):
                fake.calls.append(("create_timing_cache", bytes(serialized_timing_cache)))
                return TimingCache(serialized_timing_cache)

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("set_timing_cache", ignore_mismatch))
                self._cache = cache
                return True

            def get_timing_cache(self):
                return self._cache

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's parameter names
                self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

        class Runtime:
            def __init__(self, logger):
                self.logger = logger

            def deserialize_cuda_engine(self, serialized_engine):
                data = serialized_engine
                fake.calls.append(("deserialize_cuda_engine", len(data)))
                if not fake.deserialize_ok:
                    self.logger.log(_Severity.ERROR, "fake: serialization version mismatch")
                    return None
                return Engine(json.loads(bytes(data)))

        class Engine:
            def __init__(self, desc):
                self.desc = desc
                self.names = ["img0", "img1", "distance_map" if desc["spatial"] else "distance",
                              *desc.get("metrics", ())]
                self.num_io_tensors = len(self.names)

            def get_tensor_name(self, index):
                return self.names[index]

            def get_tensor_mode(self, name):
                return TensorIOMode.INPUT if name in ("img0", "img1") else TensorIOMode.OUTPUT

            def create_execution_context(self):
                return Context(self.desc)

        class Context:
            def __init__(self, desc):
                self.desc = desc
                self.shapes, self.addresses = {}, {}

            def set_input_shape(self, name, shape):
                fake.calls.append(("set_input_shape", name, tuple(shape)))
                if fake.refuse_shapes:
                    return False
                self.shapes[name] = tuple(shape)
                return True

            def set_tensor_address(self, name, memory):
                self.addresses[name] = int(memory)
                return True

            def get_tensor_shape(self, name):
                shape = self.shapes["img0"]
                n, (h, w) = shape[0], (shape[1:3] if self.desc["layout"] == "nhwc" else shape[2:4])
                return (n, 1, h, w) if name == "distance_map" else (n,)

            def execute_async_v3(self, stream_handle):
                fake.calls.append(("execute_async_v3", int(stream_handle)))
                shape = self.shapes["img0"]
                dtype = np.dtype(self.desc["dtype"])
                count = int(np.prod(shape))

                def read(name):
                    raw = (ctypes.c_ubyte * (count * dtype.itemsize)).from_address(self.addresses[name])
                    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float64)

                diff = np.abs(read("img0") - read("img1")).reshape(shape[0], -1).mean(axis=1).astype(np.float32)
                out_name = self.desc["spatial"] and "distance_map" or "distance"
                out_shape = self.get_tensor_shape(out_name)
                out = np.broadcast_to(diff.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape).astype(np.float32)
                ctypes.memmove(self.addresses[out_name], out.ctypes.data, out.nbytes)
                for k, metric in enumerate(self.desc.get("metrics", ()), start=1):  # metric k: the difference + k
                    value = (diff + k).astype(np.float32)
                    ctypes.memmove(self.addresses[metric], value.ctypes.data, value.nbytes)
                return True

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime
        # The TensorRT class each stand-in imitates: test_trt_bindings_real.py checks every method and
        # parameter name here against the real bindings of each TensorRT release we claim.
        self.imitates = {"Builder": Builder, "INetworkDefinition": Network, "OnnxParser": OnnxParser,
                         "ParserError": ParserError, "ITimingCache": TimingCache, "IBuilderConfig": Config,
                         "IOptimizationProfile": Profile, "Runtime": Runtime, "ICudaEngine": Engine,
                         "IExecutionContext": Context, "ILogger": ILogger}

    def flags_set(self) -> list:
        return [c[1] for c in self.calls if c[0] == "set_flag"]


def install(monkeypatch, **kwargs) -> FakeTensorRT:
    fake = FakeTensorRT(**kwargs)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake
