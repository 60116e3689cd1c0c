"""The TensorRT backend against fake ``tensorrt`` and fake cuda-python: sidecar checks before
deserialising, profile validation before staging, and the set_input_shape / set_tensor_address /
execute_async_v3 wiring (the fake engine returns each pair's mean absolute difference)."""
from __future__ import annotations

import numpy as np
import pytest

import fake_cuda
import fake_tensorrt
from lpips_runtime.backends.trt_backend import TrtBackend
from lpips_runtime.model.engine_meta import EngineSidecar, Profile, engine_path_for, file_sha256, write_sidecar
from lpips_runtime.errors import BackendError, InputError
from lpips_runtime.model.modelfile import ModelSpec
from lpips_runtime.core.scorer import Scorer

PROFILE = Profile((1, 31, 31), (4, 64, 64), (4, 256, 256))


@pytest.fixture
def fakes(monkeypatch):
    return fake_cuda.install(monkeypatch), fake_tensorrt.install(monkeypatch)


@pytest.fixture
def model(tmp_path, exported_spec):
    """factory(spec, **sidecar changes) -> the ONNX path, with a fake engine and its sidecar beside it."""

    def make(spec, **changes):
        src = exported_spec(spec)
        onnx_path = tmp_path / src.name
        onnx_path.write_bytes(src.read_bytes())
        layout = spec.frames.split("-")[0] if spec.frames else "nchw"
        dtype = "uint8" if spec.frames else "float32"
        engine = engine_path_for(onnx_path)
        engine.write_bytes(fake_tensorrt.make_engine_bytes(dtype, layout, spec.spatial, spec.metrics))
        fields = dict(tensorrt_flavour="tensorrt", tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                      targets=("90",),
                      profile=PROFILE, source_onnx=onnx_path.name, source_onnx_sha256=file_sha256(onnx_path),
                      input_dtype=dtype, input_layout=layout, precision=spec.precision, workspace_bytes=1 << 30)
        fields.update(changes)
        write_sidecar(engine, EngineSidecar(**fields))
        return onnx_path

    return make


SPEC = ModelSpec("alex", precision="fp16", frames="nhwc-bgr")


def _frames(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))


def test_runs_batches_through_the_engine(fakes, model):
    rt, trt = fakes
    a, b = _frames(3, 40, 56)
    with TrtBackend(SPEC, model(SPEC), "cuda") as backend:
        got = backend.run(a, b)
        stream = backend.compute_stream.handle
    expected = np.abs(a.astype(np.float64) - b).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert ("set_input_shape", "img0", (3, 40, 56, 3)) in trt.calls
    assert ("execute_async_v3", stream) in trt.calls
    assert rt.live() == 0


def test_spatial_float_engine(fakes, model):
    spec = ModelSpec("squeeze", spatial=True, precision="fp16")
    a = np.full((2, 3, 40, 48), 0.5, np.float32)
    with TrtBackend(spec, model(spec), "cuda") as backend:
        out = backend.run(a, -a)
    assert out.shape == (2, 1, 40, 48) and np.allclose(out, 1.0)


def test_metric_outputs_each_get_their_buffer(fakes, model):
    rt, _ = fakes
    spec = ModelSpec("alex", precision="fp16", frames="nhwc-bgr", metrics=("psnr", "ssim"))
    a, b = _frames(2, 40, 56)
    with TrtBackend(spec, model(spec), "cuda") as backend:
        got = backend.infer(a, b)
        distance = backend.run(a, b)
    assert list(got) == ["distance", "psnr", "ssim"]
    np.testing.assert_array_equal(distance, got["distance"])
    # The fake engine writes metric k as the distance + k: each name landed in its own buffer.
    np.testing.assert_allclose(got["psnr"], got["distance"] + 1, rtol=1e-6)
    np.testing.assert_allclose(got["ssim"], got["distance"] + 2, rtol=1e-6)
    assert rt.live() == 0


def test_engine_outputs_must_match_the_spec(fakes, model, tmp_path):
    spec = ModelSpec("alex", precision="fp16", frames="nhwc-bgr", metrics=("psnr",))
    path = model(spec)
    engine_path_for(path).write_bytes(fake_tensorrt.make_engine_bytes("uint8", "nhwc"))  # built without metrics
    with pytest.raises(BackendError, match="expected inputs img0, img1 and outputs distance, psnr"):
        TrtBackend(spec, path, "cuda")


def test_missing_engine_names_the_command(fakes, exported_spec, tmp_path):
    src = exported_spec(SPEC)
    onnx_path = tmp_path / src.name
    onnx_path.write_bytes(src.read_bytes())
    with pytest.raises(BackendError, match=r"no TensorRT engine .*\.engine: run `lpips-export --net alex "
                                           r"--precision fp16 --input uint8 --layout nhwc --channels bgr .*--trt`"):
        TrtBackend(SPEC, onnx_path, "cuda")


@pytest.mark.parametrize("changes,message", [
    ({"tensorrt_version": "10.12.0.36"}, "built with tensorrt 10.12.0.36, this is 10.13.0.35"),
    ({"gpu_name": "NVIDIA A100-SXM4-80GB", "targets": ("80",)}, "built for NVIDIA A100-SXM4-80GB"),
    ({"engine_sha256": "00" * 32}, "not the engine its sidecar describes"),
    ({"source_onnx_sha256": "0" * 64}, "built from another"),
    ({"input_layout": "nchw"}, "takes uint8 nchw inputs"),
])
def test_sidecar_mismatch_is_refused_before_deserialising(fakes, model, changes, message):
    rt, trt = fakes
    with pytest.raises(BackendError, match=message):
        TrtBackend(SPEC, model(SPEC, **changes), "cuda")
    assert not [c for c in trt.calls if c[0] == "deserialize_cuda_engine"]
    assert rt.live() == 0


def test_deserialise_failure_says_what_tensorrt_said(fakes, model):
    fakes[1].deserialize_ok = False
    with pytest.raises(BackendError, match="could not deserialise .*serialization version mismatch"):
        TrtBackend(SPEC, model(SPEC), "cuda")


def test_batches_outside_the_profile_are_refused_before_staging(fakes, model):
    rt, trt = fakes
    with TrtBackend(SPEC, model(SPEC), "cuda") as backend:
        for n, h, w in [(5, 64, 64), (1, 300, 64), (1, 31, 30)]:
            with pytest.raises(InputError, match=f"batch {n}x{h}x{w} .*outside .*1x31x31 .. 4x256x256"):
                backend.run(*_frames(n, h, w))
        assert backend.pool.buckets() == {}
    assert not [c for c in trt.calls if c[0] == "set_input_shape"]


def test_refused_input_shape_is_an_error_and_frees_the_slot(fakes, model):
    fakes[1].refuse_shapes = True
    with TrtBackend(SPEC, model(SPEC), "cuda") as backend:
        with pytest.raises(BackendError, match="refused input shape"):
            backend.run(*_frames(1, 64, 64))
        (slots,) = backend.pool._buckets.values()
        assert not any(slot.busy for slot in slots)


def test_trt_needs_a_gpu_device(fakes, model):
    with pytest.raises(BackendError, match="runs on a GPU"):
        TrtBackend(SPEC, model(SPEC), "cpu")


def test_scorer_with_the_trt_backend(fakes, model, photo_pair_files):
    """Scorer + trt: decoded pairs go through staging and the engine in pipelined batches."""
    path = model(SPEC, profile=Profile((1, 31, 31), (2, 256, 256), (4, 512, 512)))
    with Scorer(path, backend="trt", device="cuda", batch_size=2) as scorer:
        results = list(scorer.score_pairs(photo_pair_files))
    assert all(r.ok for r in results) and all(r.distance > 0 for r in results)


def test_rtx_runtime_cache_and_cuda_graph_strategy(fakes, model, monkeypatch, tmp_path):
    """Where the engine offers TensorRT-RTX's runtime configuration: the runtime cache is loaded from and saved
    to lpips-rt's cache folder (per engine and compute capability), and cuda_graph=True asks for whole-graph
    capture. (The real classes have these names: test_trt_bindings_real.py checks them.)"""
    import enum

    rt, trt = fakes
    monkeypatch.setenv("LPIPS_RT_CACHE", str(tmp_path / "cache"))
    trt.CudaGraphStrategy = enum.IntEnum("CudaGraphStrategy", ["DISABLED", "WHOLE_GRAPH_CAPTURE"])
    configs, loaded = [], []

    class RuntimeCache:
        def deserialize(self, data):
            loaded.append(bytes(data))

        def serialize(self):
            return b"compiled kernels"

    class RuntimeConfig:
        cuda_graph_strategy = None

        def create_runtime_cache(self):
            return RuntimeCache()

        def set_runtime_cache(self, cache):
            self.cache = cache

    engine_cls = trt.imitates["ICudaEngine"]
    plain_context = engine_cls.create_execution_context
    monkeypatch.setattr(engine_cls, "create_runtime_config",
                        lambda self: configs.append(RuntimeConfig()) or configs[-1], raising=False)
    monkeypatch.setattr(engine_cls, "create_execution_context", lambda self, config: plain_context(self))
    onnx_path = model(SPEC)
    a, b = _frames(2, 40, 56)
    with TrtBackend(SPEC, onnx_path, "cuda", cuda_graph=True) as backend:
        backend.run(a, b)
    assert configs[0].cuda_graph_strategy == trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    (saved,) = (tmp_path / "cache" / "trt-runtime-cache").iterdir()
    assert saved.name == "engine-sm90.bin" and saved.read_bytes() == b"compiled kernels" and loaded == []
    monkeypatch.setenv("LPIPS_RT_TRT_CUDA_GRAPH", "0")
    with TrtBackend(SPEC, onnx_path, "cuda"):
        pass
    assert loaded == [b"compiled kernels"] and configs[1].cuda_graph_strategy is None
