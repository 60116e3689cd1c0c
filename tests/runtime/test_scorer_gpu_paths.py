"""The Scorer's GPU-facing behaviour on the CPU: which graph it picks (frame graphs, precision), that
frame graphs skip the CPU float conversion, and that batch runs keep two batches in flight on a
pipelined backend."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import ort_cuda_standin
from conftest import crop, distort, photo
from lpips_runtime.backends.base import Backend
from lpips_runtime.backends.staging import Pending
from lpips_runtime.errors import LpipsError
from lpips_runtime.modelfile import ModelSpec
from lpips_runtime.scorer import Scorer


@pytest.fixture
def models_dir(tmp_path, exported, exported_spec):
    """A models folder with alex's float export and its uint8 NHWC BGR twin."""
    for path in (exported("alex"), exported_spec(ModelSpec("alex", frames="nhwc-bgr"))):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_auto_frames_prefers_the_bgr_frame_export_on_cuda(models_dir, tmp_path_factory):
    assert Scorer("alex", device="cuda", models_dir=models_dir).spec.frames == "nhwc-bgr"
    assert Scorer("alex", device="cpu", models_dir=models_dir).spec.frames is None  # CPU: the float graph
    assert Scorer("alex", device="cuda", models_dir=models_dir, frames=None).spec.frames is None
    empty = tmp_path_factory.mktemp("empty")
    assert Scorer("alex", device="cuda", models_dir=empty, auto_export=False).spec.frames is None  # never exported
    assert Scorer("alex", frames="nchw-rgb", models_dir=empty).spec.frames == "nchw-rgb"  # asked for: on demand
    assert Scorer("alex", precision="fp16", models_dir=empty).spec.precision == "fp16"
    with pytest.raises(LpipsError, match="frames 'rgb'"):
        Scorer("alex", frames="rgb")
    with pytest.raises(LpipsError, match="unknown precision"):
        Scorer("alex", precision="int8")


def test_frame_graph_skips_cpu_preprocessing_and_matches(models_dir, photo_pair_files, monkeypatch):
    with Scorer("alex", models_dir=models_dir) as floats:
        expected = [r.distance for r in floats.score_pairs(photo_pair_files)]
    monkeypatch.setattr("lpips_runtime.scorer.rgb_to_unit_nchw", lambda img: pytest.fail("CPU float conversion"))
    with Scorer(models_dir / ModelSpec("alex", frames="nhwc-bgr").filename()) as frames:
        got = [r.distance for r in frames.score_pairs(photo_pair_files)]
        single = frames.distance(*photo_pair_files[0])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert abs(single - expected[0]) <= 1e-6


def test_frame_graph_on_the_cuda_backend(models_dir, photo_pair_files, monkeypatch):
    """Net name + cuda: the frame export is picked and scored through the CUDA backend (faked)."""
    ort_cuda_standin.install(monkeypatch)
    with Scorer("alex", models_dir=models_dir) as floats:
        expected = [r.distance for r in floats.score_pairs(photo_pair_files)]
    with Scorer("alex", device="cuda", models_dir=models_dir) as gpu:
        assert gpu.spec.frames == "nhwc-bgr"
        got = [r.distance for r in gpu.score_pairs(photo_pair_files)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_frame_graphs_refuse_16_bit_and_float_batches(models_dir):
    with Scorer(models_dir / ModelSpec("alex", frames="nhwc-bgr").filename()) as frames:
        img = crop(photo("astronaut"), 64, 64).astype(np.uint16) * 257
        with pytest.raises(LpipsError, match="8-bit frames"):
            frames.distance(img, img)
        with pytest.raises(LpipsError, match="uint8 frames"):
            frames.distance(np.zeros((1, 3, 64, 64), np.float32), np.zeros((1, 3, 64, 64), np.float32))


# -- pipelining --------------------------------------------------------------------------------


class _Recorded(Pending):
    def __init__(self, log, batch, value, fail):
        self.log, self.batch, self.value, self.fail = log, batch, value, fail

    def result(self):
        self.log.append(("result", self.batch))
        if self.fail:
            raise RuntimeError(f"device lost in batch {self.batch}")
        return self.value


class RecordingBackend(Backend):
    """Two batches in flight, like the GPU backends; logs submit/result order; distance = batch index."""

    name = "recording"
    pipeline_depth = 2

    def __init__(self, fail_batches=()):
        super().__init__(ModelSpec("alex"), None)
        self.log, self.batches, self.fail_batches = [], 0, set(fail_batches)

    def infer(self, img0, img1):  # pragma: no cover - the Scorer uses submit
        raise AssertionError("infer() called")

    def submit(self, parts0, parts1):
        batch, self.batches = self.batches, self.batches + 1
        self.log.append(("submit", batch))
        return _Recorded(self.log, batch, {"distance": np.full(len(parts0), batch, np.float32)},
                         batch in self.fail_batches)


def _pairs(count, size=40):
    img = crop(photo("coffee"), size, size)
    return [(img, distort(img, "noise", 0.3, seed=i)) for i in range(count)]


def test_batches_are_submitted_one_ahead_of_their_results():
    scorer = Scorer("alex", batch_size=2, auto_export=False)
    backend = scorer._backends[False] = RecordingBackend()
    results = list(scorer.score_pairs(_pairs(5)))
    assert backend.log == [("submit", 0), ("submit", 1), ("result", 0), ("submit", 2), ("result", 1), ("result", 2)]
    assert [r.distance for r in results] == [0, 0, 1, 1, 2]


def test_the_pipeline_runs_on_across_chunks():
    """Chunks of 8 pairs: the first batch of the second chunk is submitted before the last batch of
    the first chunk is collected, so a GPU does not idle at chunk boundaries."""
    scorer = Scorer("alex", batch_size=2, auto_export=False)
    backend = scorer._backends[False] = RecordingBackend()
    results = list(scorer.score_pairs(_pairs(9)))
    assert backend.log == [("submit", 0), ("submit", 1), ("result", 0), ("submit", 2), ("result", 1),
                           ("submit", 3), ("result", 2), ("submit", 4), ("result", 3), ("result", 4)]
    assert [r.index for r in results] == list(range(9))
    assert [r.distance for r in results] == [0, 0, 1, 1, 2, 2, 3, 3, 4]


def test_a_failed_batch_is_recorded_and_the_run_goes_on():
    scorer = Scorer("alex", batch_size=2, auto_export=False)
    scorer._backends[False] = RecordingBackend(fail_batches={1})
    results = list(scorer.score_pairs(_pairs(5)))
    assert [r.error for r in results] == [None, None, "device lost in batch 1", "device lost in batch 1", None]


def test_lpips_score_precision_option(exported, exported_spec, photo_pair_files, tmp_path):
    from click.testing import CliRunner

    from lpips_runtime.cli import main

    for path in (exported("alex"), exported_spec(ModelSpec("alex", precision="fp16"))):
        shutil.copy(path, tmp_path / path.name)
    ref, dist = (str(p) for p in photo_pair_files[0])
    values = []
    for precision in ("fp32", "fp16"):
        result = CliRunner().invoke(main, [ref, dist, "--models-dir", str(tmp_path), "--precision", precision])
        assert result.exit_code == 0, result.output
        values.append(float(result.output))
    assert abs(values[1] - values[0]) <= 1e-3 * values[0]
