"""The streaming pipeline of batch runs (lpips_runtime.core.stream), driven without a Scorer: a fake backend
that sums pixels, so that every value can be checked by hand."""
from concurrent.futures import Future

import numpy as np
import pytest

from lpips_runtime.errors import InputError
from lpips_runtime.core.stream import DecodeAhead, PairStream, TiledPair


def test_decode_ahead_sized_by_bytes():
    ahead = DecodeAhead(budget=1000, most=32, first=4)
    assert ahead.size() == 4  # nothing seen yet
    ahead.saw(10)
    assert ahead.size() == 32  # small pairs: the count cap
    ahead.saw(300)
    assert ahead.size() == 1  # two chunks alive at once, each within half the budget
    ahead.saw(5000)
    assert ahead.size() == 1  # never zero


class _SumBackend:
    """distance = sum(img1) - sum(img0) per pair; ``psnr`` = the pair's side; one batch size per call."""

    pipeline_depth = 2

    def __init__(self, fail_on_size=None):
        self.calls, self.fail_on_size = [], fail_on_size

    def submit(self, parts0, parts1):
        self.calls.append(len(parts0))
        if parts0[0].shape[-1] == self.fail_on_size:
            raise RuntimeError("device lost\nstack trace")
        a, b = np.concatenate(parts0), np.concatenate(parts1)
        future = Future()
        future.set_result({"distance": (b.sum(axis=(1, 2, 3)) - a.sum(axis=(1, 2, 3))).astype(np.float32),
                           "psnr": np.full(len(a), float(a.shape[-1]), np.float32)})
        return future


def _prepare(src0, src1):
    side0, side1 = src0, src1
    if side0 != side1:
        raise InputError(f"size mismatch: {side0} vs {side1}")
    if side0 >= 100:  # a "large" pair: scored in tiles
        return TiledPair(np.zeros((side0, side0, 3), np.uint8), np.ones((side0, side0, 3), np.uint8), None)
    return np.zeros((1, 3, side0, side0), np.float32), np.ones((1, 3, side1, side1), np.float32)


def _stream(backend, **kw):
    settings = dict(outputs=("distance", "psnr"), pairs_per_batch=lambda pixels, batch: batch,
                    score_tiled=lambda pair: -1.0, memory=1 << 20, batch_size=3, workers=2)
    settings.update(kw)
    return PairStream(backend, _prepare, **settings)


def test_results_come_in_input_order_with_failures_recorded_and_tiles_one_by_one():
    pairs = [(4, 4), (8, 8), (4, 5), (4, 4), (120, 120), (8, 8), (4, 4), (4, 4)]
    backend = _SumBackend()
    results = list(_stream(backend).run(pairs))
    assert [r.index for r in results] == list(range(len(pairs)))
    assert [r.distance for r in results] == [48.0, 192.0, None, 48.0, -1.0, 192.0, 48.0, 48.0]
    assert results[2].error == "size mismatch: 4 vs 5" and results[2].metrics is None
    assert results[0].metrics == {"psnr": 4.0} and results[4].metrics is None  # tiles give the distance alone
    assert max(backend.calls) <= 3  # batch_size


def test_a_failing_batch_fails_its_pairs_alone_with_the_backends_first_line():
    pairs = [(4, 4), (8, 8), (4, 4)]
    results = list(_stream(_SumBackend(fail_on_size=8)).run(pairs))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "device lost"


@pytest.mark.parametrize("per_batch", [1, 2])
def test_the_memory_rule_sizes_the_batches(per_batch):
    backend = _SumBackend()
    results = list(_stream(backend, pairs_per_batch=lambda pixels, batch: per_batch).run([(4, 4)] * 5))
    assert all(r.ok for r in results) and max(backend.calls) == per_batch
