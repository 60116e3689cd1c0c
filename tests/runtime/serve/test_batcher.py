"""DynamicBatcher on its own, with a recording stand-in for the model: who shares a batch, who waits,
what is dropped, and what is refused."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")

from lpips_runtime.serve.batcher import DynamicBatcher, QueueFull  # noqa: E402


class Model:
    """Returns each pair's first sample of img0 (so every caller can check it got its own value)."""

    def __init__(self, fail: bool = False):
        self.batches: list[list[float]] = []
        self.fail = fail

    def __call__(self, parts0, parts1, spatial):
        if self.fail:
            raise RuntimeError("backend broke")
        values = [float(p.flat[0]) for p in parts0]
        self.batches.append(values)
        return np.asarray(values, np.float32)


def _pair(value: float, h: int = 8, w: int = 8):
    a = np.full((1, 3, h, w), value, np.float32)
    return a, a.copy()


def _batcher(model, **kw) -> DynamicBatcher:
    settings = {"max_batch": 4, "max_wait_s": 5.0, "max_queue": 64, "max_queue_pixels": 10**9, **kw}
    return DynamicBatcher(model, **settings)


def test_a_lone_pair_does_not_wait_for_company_that_cannot_come():
    async def main():
        batcher = _batcher(Model(), max_wait_s=30.0)
        started = time.monotonic()
        with batcher.reserve(1) as r:
            value = await batcher.put(r, *_pair(0.25))
        await batcher.drain()
        return value, time.monotonic() - started

    value, seconds = asyncio.run(main())
    assert value == 0.25 and seconds < 15  # it would have taken the full 30 s wait


def test_same_shapes_share_batches_up_to_max_batch_and_shapes_never_mix():
    async def main():
        model = Model()
        batcher = _batcher(model)
        reservation = batcher.reserve(10)  # all expected: the first pairs wait for the rest
        values = [float(i) for i in range(10)]
        shapes = [(8, 8) if i < 7 else (8, 12) for i in range(10)]
        got = await asyncio.gather(*(batcher.put(reservation, *_pair(v, *s)) for v, s in zip(values, shapes)))
        await batcher.drain()
        return model.batches, got, values

    batches, got, values = asyncio.run(main())
    assert got == values  # each caller gets its own pair's value
    assert sorted(batches, key=len, reverse=True) == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]


def test_a_cancelled_pair_is_dropped_before_the_model_sees_it():
    async def main():
        model = Model()
        batcher = _batcher(model, max_wait_s=30.0)
        reservation = batcher.reserve(2)
        gone = asyncio.ensure_future(batcher.put(reservation, *_pair(1.0)))  # waits: one more is expected
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.sleep(0.05)
        assert batcher.depth == 1  # its room is given back at once
        stays = await batcher.put(reservation, *_pair(2.0))
        await batcher.drain()
        return model.batches, stays

    batches, stays = asyncio.run(main())
    assert batches == [[2.0]] and stays == 2.0


def test_admission_refuses_past_the_queue_and_pixel_limits():
    async def main():
        batcher = _batcher(Model(), max_queue=3, max_queue_pixels=100, max_wait_s=30.0)
        held = batcher.reserve(3)
        with pytest.raises(QueueFull, match="the queue is full"):
            batcher.reserve(1)
        held.release(1)
        assert batcher.depth == 2
        first = asyncio.ensure_future(batcher.put(held, *_pair(1.0)))  # 64 pixels waiting (one more expected)
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull, match="megapixels"):
            await batcher.put(held, *_pair(2.0))  # 64 more would pass 100
        assert await first == 1.0
        held.close()
        await batcher.drain()
        return batcher.depth

    assert asyncio.run(main()) == 0


def test_a_failing_model_call_fails_each_of_its_callers():
    async def main():
        batcher = _batcher(Model(fail=True))
        reservation = batcher.reserve(2)
        results = await asyncio.gather(batcher.put(reservation, *_pair(1.0)), batcher.put(reservation, *_pair(2.0)),
                                       return_exceptions=True)
        await batcher.drain()
        return results

    assert [str(r) for r in asyncio.run(main())] == ["backend broke", "backend broke"]
