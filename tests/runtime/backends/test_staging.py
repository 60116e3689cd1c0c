"""Shape buckets and double-buffered slots of the GPU backends, on fake CUDA memory."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fake_cuda
from lpips_runtime.backends.staging import BucketKey, Slot, SlotPool

KEY = BucketKey((3, 32, 32), "float32")


@pytest.fixture
def rt(monkeypatch):
    return fake_cuda.install(monkeypatch)


@pytest.fixture
def pool(rt):
    made = []

    def make(key, capacity):
        made.append((key, capacity))
        return Slot(rt, key, capacity, {"distance": ()})

    pool = SlotPool(make, slots_per_bucket=2, max_buckets=2)
    pool.made = made
    yield pool
    pool.close()


def test_slot_buffers_and_views(rt):
    slot = Slot(rt, BucketKey((40, 50, 3), "uint8"), 4, {"distance_map": (1, 40, 50), "ssim": ()})
    a, b = slot.inputs(3)
    assert a.shape == b.shape == (3, 40, 50, 3) and a.dtype == np.uint8
    assert slot.output("distance_map", 3).shape == (3, 1, 40, 50) and slot.output("ssim", 3).shape == (3,)
    assert slot.input_nbytes(3) == 3 * 40 * 50 * 3 and slot.output_nbytes("distance_map", 2) == 2 * 40 * 50 * 4
    assert slot.output_nbytes("ssim", 2) == 2 * 4
    slot.output("ssim", 3)[:] = [1, 2, 3]
    results = slot.results(2)
    assert list(results) == ["distance_map", "ssim"] and list(results["ssim"]) == [1, 2]
    results["ssim"][0] = 9  # the caller's copy, not the pinned buffer
    assert slot.output("ssim", 1)[0] == 1
    assert rt.live("host") == 4 and rt.live("device") == 4  # two inputs and one buffer per output, each side
    slot.close()
    assert rt.live() == 0


def test_two_slots_per_bucket_allocated_once(pool):
    first, second = pool.acquire(KEY, 8), pool.acquire(KEY, 8)
    assert first is not second
    pool.release(first)
    assert pool.acquire(KEY, 5) is first  # a smaller batch reuses the bucket
    assert pool.made == [(KEY, 8), (KEY, 8)]


def test_acquire_blocks_while_both_slots_are_in_flight(pool):
    first, second = pool.acquire(KEY, 4), pool.acquire(KEY, 4)
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(KEY, 4)))
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive() and not got  # the third batch waits: the pipeline is two deep
    pool.release(second)
    waiter.join(timeout=10)
    assert got == [second]
    pool.release(first)


def test_a_larger_batch_replaces_the_bucket(rt, pool):
    small = pool.acquire(KEY, 4)
    big = pool.acquire(KEY, 16)
    assert big.capacity == 16 and pool.buckets() == {KEY: 16}
    assert small.retired and small.host  # still in flight: freed on release, not before
    live = rt.live()
    pool.release(small)
    assert rt.live() < live
    pool.release(big)


def test_least_recently_used_idle_bucket_is_freed(rt, pool):
    keys = [BucketKey((3, s, s), "float32") for s in (32, 48, 64)]
    for key in keys[:2]:
        pool.release(pool.acquire(key, 2))
    pool.release(pool.acquire(keys[0], 2))  # keys[0] used last: keys[1] is the LRU
    pool.release(pool.acquire(keys[2], 2))
    assert set(pool.buckets()) == {keys[0], keys[2]}


def test_busy_buckets_are_never_freed(pool):
    keys = [BucketKey((3, s, s), "float32") for s in (32, 48, 64)]
    held = [pool.acquire(key, 2) for key in keys[:2]]
    pool.release(pool.acquire(keys[2], 2))
    assert set(pool.buckets()) == set(keys)  # over max_buckets rather than free memory in use
    for slot in held:
        pool.release(slot)


def test_close_frees_everything(rt, pool):
    held = pool.acquire(KEY, 2)
    pool.release(pool.acquire(BucketKey((3, 40, 40), "float32"), 2))
    pool.close()
    pool.release(held)
    assert rt.live() == 0
    with pytest.raises(RuntimeError, match="closed"):
        pool.acquire(KEY, 1)


def test_failed_allocation_leaks_nothing(rt, pool):
    rt.fail["cudaMalloc"] = fake_cuda.cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(Exception, match="cudaMalloc"):
        pool.acquire(KEY, 2)
    assert rt.live() == 0 and pool.buckets() == {}
