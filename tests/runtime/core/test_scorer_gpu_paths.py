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
from lpips_runtime.model.modelfile import ModelSpec
from lpips_runtime.core.scorer import Scorer


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
        Scorer("alex", precision="int4")


def test_frame_graph_skips_cpu_preprocessing_and_matches(models_dir, photo_pair_files, monkeypatch):
    with Scorer("alex", models_dir=models_dir) as floats:
        expected = [r.distance for r in floats.score_pairs(photo_pair_files)]
    monkeypatch.setattr("lpips_runtime.core.scorer.rgb_to_unit_nchw", lambda img: pytest.fail("CPU float conversion"))
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


def _check_one_ahead(log: list, batches: int) -> None:
    """Every batch is submitted before the previous one's result is collected (two in flight, never more),
    and every batch is collected."""
    assert [e for e in log if e[0] == "submit"] == [("submit", k) for k in range(batches)]
    assert sorted(e for e in log if e[0] == "result") == [("result", k) for k in range(batches)]
    for k in range(1, batches):
        assert log.index(("submit", k)) < log.index(("result", k - 1)), log
    in_flight = 0
    for kind, _ in log:
        in_flight += 1 if kind == "submit" else -1
        assert 0 <= in_flight <= 2, log


def test_batches_are_submitted_one_ahead_of_their_results():
    scorer = Scorer("alex", batch_size=2, auto_export=False)
    backend = scorer._backends[False] = RecordingBackend()
    results = list(scorer.score_pairs(_pairs(5)))
    _check_one_ahead(backend.log, backend.batches)
    distances = [r.distance for r in results]
    assert [r.index for r in results] == list(range(5))
    # Pairs go to batches in input order, at most batch_size per batch.
    assert distances == sorted(distances) and max(distances.count(d) for d in set(distances)) <= 2


def test_the_pipeline_runs_on_across_chunks():
    """Decoding runs in chunks (the first of one pair, while sizes are unknown; then sized by the memory
    budget): the first batch of each chunk is submitted before the last batch of the previous chunk is
    collected, so a GPU does not idle at chunk boundaries."""
    scorer = Scorer("alex", batch_size=2, auto_export=False)
    backend = scorer._backends[False] = RecordingBackend()
    results = list(scorer.score_pairs(_pairs(21)))
    assert backend.batches >= 11  # 21 pairs in batches of at most 2, over several chunks
    _check_one_ahead(backend.log, backend.batches)
    assert [r.index for r in results] == list(range(21))
    distances = [r.distance for r in results]
    assert distances == sorted(distances) and set(distances) == set(range(backend.batches))


def test_a_failed_batch_is_recorded_and_the_run_goes_on():
    pairs = _pairs(7)
    scorer = Scorer("alex", batch_size=2, auto_export=False)
    scorer._backends[False] = RecordingBackend()
    batch_of = [int(r.distance) for r in scorer.score_pairs(pairs)]  # the same pairs go to the same batches
    scorer = Scorer("alex", batch_size=2, auto_export=False)
    scorer._backends[False] = RecordingBackend(fail_batches={1})
    results = list(scorer.score_pairs(pairs))
    assert [r.error for r in results] == ["device lost in batch 1" if b == 1 else None for b in batch_of]
    assert [r.distance for r in results if r.error is None] == [b for b in batch_of if b != 1]
    assert batch_of[-1] > 1  # pairs after the failed batch were scored


def test_lpips_score_precision_option(exported, exported_spec, photo_pair_files, tmp_path):
    from click.testing import CliRunner

    from lpips_runtime.commands.score import main

    for path in (exported("alex"), exported_spec(ModelSpec("alex", precision="fp16"))):
        shutil.copy(path, tmp_path / path.name)
    ref, dist = (str(p) for p in photo_pair_files[0])
    values = []
    for precision in ("fp32", "fp16"):
        result = CliRunner().invoke(main, [ref, dist, "--models-dir", str(tmp_path), "--precision", precision])
        assert result.exit_code == 0, result.output
        values.append(float(result.output))
    assert abs(values[1] - values[0]) <= 1e-3 * values[0]
