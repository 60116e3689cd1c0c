"""A simulated two-node cluster (``ray.cluster_utils.Cluster``: two raylets, two object stores) inside a
private network namespace. Custom resources pin decoding to the head and scoring to the second node,
so every decoded pair and every embedded chunk provably crosses from one node to the other."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import crop, distort, photo
from ray_netns import (OBJECT_STORE, SHARED_CLUSTER, assert_no_ray_processes_left,  # noqa: F401
                       assert_ray_paths_private, models, models_for_namespace, short_temp_dir,
                       test_ray_tests_in_private_network_namespace)

pytestmark = pytest.mark.ray
HEAD, WORKER = "lpips_test_head", "lpips_test_worker"  # custom resources: one per node


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    from lpips_runtime.cluster import ray_session

    SHARED_CLUSTER.stop()  # one Ray session per process
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, resources={HEAD: 100}, object_store_memory=OBJECT_STORE, include_dashboard=False,
        temp_dir=short_temp_dir()))
    cluster.add_node(num_cpus=2, resources={WORKER: 100}, object_store_memory=OBJECT_STORE)
    cluster.wait_for_nodes()
    assert_ray_paths_private()
    from ray._common.utils import get_ray_address_file

    assert Path(get_ray_address_file(None)).is_file()  # Cluster wrote its address: in our folder, not /tmp/ray
    try:
        with ray_session(cluster.address):
            yield ray
    finally:
        cluster.shutdown()
    assert_no_ray_processes_left()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    base = crop(photo("astronaut"), 48, 64)
    paths = []
    for i in range(10):
        paths.append(str(root / f"im{i}.png"))
        import cv2

        cv2.imwrite(paths[-1], distort(base, ["blur", "noise", "jpeg", "colour"][i % 4], 0.2 + i / 12, seed=i)[..., ::-1])
    return paths


def _settings(models):
    from lpips_runtime.cluster import ScorerSettings

    return ScorerSettings(models_dir=str(models), batch_size=4)


def test_two_raylets(two_nodes):
    nodes = [n for n in two_nodes.nodes() if n["Alive"]]
    assert len(nodes) == 2 and {HEAD, WORKER} <= {r for n in nodes for r in n["Resources"]}
    assert len({n["NodeID"] for n in nodes}) == 2


def test_pairs_decoded_on_one_node_scored_on_the_other(two_nodes, models, image_files):
    from lpips_runtime import Scorer
    from lpips_runtime.cluster import score_pair_table

    pairs = [(a, b) for a in image_files for b in image_files if a < b]
    rows = score_pair_table(pairs, _settings(models), actors=2, decode_resources={HEAD: 1},
                            actor_resources={WORKER: 1}).take_all()
    with Scorer("alex", models_dir=models, auto_export=False) as scorer:
        expected = {(r.img0, r.img1): np.float32(r.distance) for r in scorer.score_pairs(pairs)}
    assert len(rows) == len(pairs)
    assert {(r["img0"], r["img1"]): np.float32(r["distance"]) for r in rows} == expected  # bit for bit


def test_all_pairs_embedded_on_one_node_compared_on_the_other(two_nodes, models, image_files, tmp_path):
    import json

    from lpips_runtime import Scorer
    from lpips_runtime.cluster import all_pairs, read_results

    report = all_pairs(image_files, tmp_path / "ap", _settings(models), threshold=float("inf"), top_k=2, actors=2,
                       tile=3, actor_resources={WORKER: 1}, tile_resources={HEAD: 1})
    with Scorer("alex", models_dir=models, auto_export=False) as scorer:
        matrix = scorer.distance_matrix(image_files)
    index = {p: i for i, p in enumerate(image_files)}
    rows = read_results(tmp_path / "ap" / "near-duplicates").to_pylist()
    n = len(image_files)
    assert report.summary.stats.n == len(rows) == n * (n - 1) // 2 and report.summary.stats.failures == 0
    assert max(abs(r["distance"] - matrix[index[r["img0"]], index[r["img1"]]]) for r in rows) <= 1e-6
    mean = json.loads((tmp_path / "ap" / "summary.json").read_text())["mean"]
    assert abs(mean - matrix[np.triu_indices(n, 1)].astype(np.float64).mean()) <= 1e-6
