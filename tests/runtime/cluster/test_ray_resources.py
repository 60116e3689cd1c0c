"""Issue 25, defect 3, on a real 2-CPU local cluster inside a private network namespace: actors that
reserve every CPU no longer starve the decode tasks (``--actors 2``, and one actor of 2 CPUs, both
finish with every row), and actors that cannot fit are an error up front, not a hang."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from conftest import crop, distort, photo
from ray_netns import (OBJECT_STORE, SHARED_CLUSTER, assert_no_ray_processes_left, models,  # noqa: F401
                       models_for_namespace, short_temp_dir, test_ray_tests_in_private_network_namespace)

pytestmark = pytest.mark.ray
STALL_S = 90  # the run's own limit on waiting for rows (it says why and stops)
DEADLINE_S = 150  # the test's: a finished run on this tiny table takes seconds; the old code never finished


@pytest.fixture(scope="module")
def cluster():
    """Two CPUs: what a 2-core machine's local cluster has (a cluster of its own: the shared one has 4)."""
    from lpips_runtime.cluster import ray_session

    SHARED_CLUSTER.stop()  # one Ray session per process
    with ray_session(num_cpus=2, object_store_memory=OBJECT_STORE, temp_dir=short_temp_dir()) as ray:
        yield ray
    assert_no_ray_processes_left()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    base = crop(photo("chelsea"), 48, 64)
    names = []
    for i in range(6):
        names.append(str(root / f"im{i}.png"))
        cv2.imwrite(names[-1], distort(base, "blur", 0.2 + i / 10, seed=i)[..., ::-1])
    return [(names[0], n) for n in names[1:]] + [(names[0], str(root / "gone.png"))]


def _run_within_deadline(models, pairs, out, **options):
    """write_pair_scores in a thread: its report, or a failure if it has not finished by DEADLINE_S."""
    from lpips_runtime.cluster import ScorerSettings
    from lpips_runtime.cluster.run import write_pair_scores

    result = {}

    def run():
        try:
            result["report"] = write_pair_scores(pairs, out, ScorerSettings(models_dir=str(models)), fmt="csv",
                                                 stall_timeout_s=STALL_S, **options)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    assert not worker.is_alive(), f"no result after {DEADLINE_S} s: the run hangs"
    if "error" in result:
        raise result["error"]
    return result["report"]


def _expected(models, pairs):
    from lpips_runtime import Scorer

    with Scorer("alex", models_dir=models, auto_export=False) as scorer:
        return {(r.img0, r.img1): r.distance for r in scorer.score_pairs(pairs)}


@pytest.mark.parametrize("actors, cpus", [(2, 1.0), (1, 2.0)])
def test_actors_holding_every_cpu_still_finish(cluster, models, pairs, tmp_path, actors, cpus):
    from lpips_runtime.cluster.output import read_results

    report = _run_within_deadline(models, pairs, tmp_path / "out", actors=actors, cpus_per_actor=cpus)
    assert report.scored == len(pairs)
    rows = read_results(tmp_path / "out").to_pylist()
    got = {(r["img0"], r["img1"]): r["distance"] for r in rows}
    expected = _expected(models, pairs)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert (got[key] is None) == (value is None)
        if value is not None:
            assert np.float32(got[key]) == np.float32(value)


def test_actors_that_cannot_fit_are_an_error_up_front(cluster, models, pairs, tmp_path):
    from lpips_runtime.errors import ClusterError

    with pytest.raises(ClusterError, match="need 3 CPUs; the cluster has 2"):
        _run_within_deadline(models, pairs, tmp_path / "out", actors=3)
