"""Issue 25, defect 3, on the shared local cluster inside a private network namespace: actors that
reserve every CPU no longer starve the decode tasks (two actors of half the CPUs each, and one actor of
all of them: both finish with every row), and actors that cannot fit are an error up front, not a hang.

The defect does not depend on the CPU count (measured first on a 2-CPU cluster with ``--actors 2`` and
with ``--actors 1 --cpus-per-actor 2``): what matters is that the actor pool reserves every CPU the
cluster has. So these tests use the shared cluster (``SHARED_CPUS``) instead of starting one of their
own: a cluster's start and stop costs about 17 CPU-s on 2 cores."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from conftest import crop, distort, photo
from ray_netns import (SHARED_CPUS, models, models_for_namespace, ray_cluster,  # noqa: F401
                       test_ray_tests_in_private_network_namespace)

pytestmark = pytest.mark.ray
STALL_S = 90  # the run's own limit on waiting for rows (it says why and stops)
DEADLINE_S = 150  # the test's: a finished run on this tiny table takes seconds; the old code never finished


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The shared cluster once every one of its CPUs is free (the actors of earlier tests release theirs
    as they end)."""
    assert ray_cluster.cluster_resources().get("CPU") == SHARED_CPUS
    deadline = time.monotonic() + 60
    while (free := ray_cluster.available_resources().get("CPU", 0)) < SHARED_CPUS:
        assert time.monotonic() < deadline, f"only {free} of the shared cluster's {SHARED_CPUS} CPUs are free"
        time.sleep(0.2)
    return ray_cluster


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


@pytest.mark.parametrize("actors, cpus", [(2, SHARED_CPUS / 2), (1, float(SHARED_CPUS))])
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

    with pytest.raises(ClusterError, match=f"need {SHARED_CPUS + 1} CPUs; the cluster has {SHARED_CPUS}"):
        _run_within_deadline(models, pairs, tmp_path / "out", actors=SHARED_CPUS + 1)
