"""The feature cache (encoder + head, block Gram products) equals the fused graph to 1e-6 on real photographs."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import photo, crop, to_unit_nchw
from lpips_runtime.errors import BackendError, InputError
from lpips_runtime.core.features import Features, FeatureStore
from lpips_runtime.core.scorer import Scorer

TOL = 1e-6


@pytest.fixture(scope="module")
def scorers(split_models):
    made = {}

    def get(net="squeeze"):
        if net not in made:
            made[net] = Scorer(net, models_dir=split_models(net), auto_export=False, batch_size=4)
        return made[net]

    yield get
    for s in made.values():
        s.close()


def _fused_matrix(scorer, images):
    n = len(images)
    out = np.zeros((n, n), np.float32)
    for i in range(n):
        out[i] = scorer.distance([images[i]] * n, images)
    return out


@pytest.mark.parametrize("net", ["squeeze", "alex"])
def test_cache_paths_equal_the_fused_graph(scorers, photo_set, net):
    scorer = scorers(net)
    fused = _fused_matrix(scorer, photo_set)
    assert fused[0, 1] > 1e-3 and np.all(np.diag(fused) == 0)
    feats = scorer.embed(photo_set)
    assert isinstance(feats, Features) and len(feats) == len(photo_set)
    assert np.abs(scorer.distance_matrix(photo_set) - fused).max() <= TOL
    assert np.abs(scorer.distance_matrix(feats) - fused).max() <= TOL
    assert np.abs(scorer.one_to_many(photo_set[0], photo_set) - fused[0]).max() <= TOL
    assert np.abs(scorer.one_to_many(feats[3], feats) - fused[3]).max() <= TOL
    assert abs(scorer.distance(feats[1], photo_set[2]) - fused[1, 2]) <= TOL
    assert abs(scorer.distance(photo_set[4], scorer.embed(photo_set[5])) - fused[4, 5]) <= TOL
    pairs = scorer.distance(feats[0], feats)  # one against N, broadcast in the head
    assert pairs.shape == (len(photo_set),) and np.abs(pairs - fused[0]).max() <= TOL


def test_spatial_head_equals_the_fused_map(scorers, photo_set):
    scorer = scorers("squeeze")
    expected = scorer.distance_map(photo_set[0], photo_set[1])
    got = scorer.distance_map(scorer.embed(photo_set[0]), scorer.embed(photo_set[1]))
    assert got.shape == expected.shape == (96, 128)
    assert np.abs(got - expected).max() <= TOL


def test_float_batches_embed_like_images(scorers, photo_set):
    scorer = scorers("squeeze")
    batch = np.concatenate([to_unit_nchw(img) for img in photo_set[:3]])
    a, b = scorer.embed(batch), scorer.embed(photo_set[:3])
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la, lb)
    assert np.abs(scorer.distance_matrix(batch) - scorer.distance_matrix(b)).max() <= TOL


def test_block_streaming_and_spill_equal_the_whole_matrix(scorers, photo_set, tmp_path):
    scorer = scorers("squeeze")
    whole = scorer.distance_matrix(photo_set)
    # blocks of 5 over 12 images: ragged last block, strips that start mid-block; features on disk
    streamed = scorer.distance_matrix(photo_set, feature_memory=0, spill_dir=tmp_path, block=5)
    assert np.array_equal(streamed, streamed.T)
    assert np.abs(streamed - whole).max() <= TOL
    assert not list(tmp_path.iterdir())  # the spill file is gone afterwards


def test_the_old_name_of_feature_memory_still_spills_with_a_warning(scorers, photo_set, tmp_path, monkeypatch):
    """``max_memory`` on the Scorer is the working memory of scoring; on distance_matrix/score_all_pairs the
    features' RAM before spilling is ``feature_memory``, and the old keyword warns but still works."""
    import lpips_runtime.core.embedding as embedding

    scorer, images, spills, real = scorers("squeeze"), photo_set[:4], [], embedding.FeatureStore

    def spy(*args, **kwargs):
        store = real(*args, **kwargs)
        spills.append(store.spilled)
        return store

    monkeypatch.setattr(embedding, "FeatureStore", spy)
    with pytest.warns(DeprecationWarning, match="feature_memory"):
        old = scorer.distance_matrix(images, max_memory=0, spill_dir=tmp_path)
    with pytest.warns(DeprecationWarning, match="feature_memory"):
        rows = list(scorer.score_all_pairs(images, max_memory=0, spill_dir=tmp_path))
    new = scorer.distance_matrix(images, spill_dir=tmp_path)
    assert spills == [True, True, False]  # 0 bytes of RAM: spilled; the 1 GiB default: held in RAM
    assert np.array_equal(old, new) and len(rows) == 6
    with pytest.raises(Exception, match="feature_memory= only"):
        scorer.distance_matrix(images, max_memory=0, feature_memory=0)


def test_the_feature_cache_does_not_import_the_scorer():
    import subprocess
    import sys

    code = "import sys, lpips_runtime.core.embedding; print('lpips_runtime.core.scorer' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_feature_store_spills_past_its_budget(scorers, photo_set, tmp_path):
    feats = scorers("squeeze").embed(photo_set[:3])
    with FeatureStore(3, feats[0], max_memory=feats.bytes_per_image * 3, spill_dir=tmp_path) as ram:
        assert not ram.spilled
    with FeatureStore(3, feats[0], max_memory=feats.bytes_per_image * 2, spill_dir=tmp_path) as disk:
        assert disk.spilled and not list(tmp_path.iterdir())  # no name: nothing can outlive the process
        for i in range(3):
            disk.put(i, feats[i])
        back = disk.view(0, 3)
        assert all(np.array_equal(x, y) for x, y in zip(back.layers, feats.layers))
    assert not list(tmp_path.iterdir())


def test_features_object(scorers, photo_set):
    feats = scorers("squeeze").embed(photo_set[:4])
    assert feats.image_size == (96, 128) and feats.encoder == "lpips-squeeze-v0.1-encoder.onnx"
    assert feats.nbytes == 4 * feats.bytes_per_image
    assert [layer.shape[1] for layer in feats.layers] == [64, 128, 256, 384, 384, 512, 512]
    one = feats[2]
    assert len(one) == 1 and np.shares_memory(one.layers[0], feats.layers[0])
    assert not np.shares_memory(one.copy().layers[0], feats.layers[0])
    assert len(Features.concat([feats[0], feats[1:3]])) == 3


def test_head_weights_are_the_linear_layers(scorers, build_module):
    module, _ = build_module("squeeze", "0.1", True, False)
    weights = scorers("squeeze")._feature_cache().weights()
    for lin, w in zip(module.lins, weights):
        assert np.array_equal(lin.weight.detach().numpy().reshape(-1), w.astype(np.float32))


def test_errors(scorers, photo_set, tmp_path):
    scorer = scorers("squeeze")
    small = crop(photo("rocket"), 64, 64)
    with pytest.raises(InputError, match="size mismatch"):
        scorer.distance(scorer.embed(photo_set[0]), small)
    with pytest.raises(InputError, match="different sizes"):
        scorer.embed([photo_set[0], small])
    with pytest.raises(InputError, match="image 1"):
        scorer.one_to_many(photo_set[0], [photo_set[1], small])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="corrupt"):
        scorer.distance_matrix([photo_set[0], broken, photo_set[1]])
    with pytest.raises(InputError, match="at least 17x17"):
        scorer.embed(crop(photo("rocket"), 16, 40))


def test_all_pairs_rows_go_on_past_bad_images(scorers, photo_set, tmp_path):
    scorer = scorers("squeeze")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    images = [photo_set[0], broken, photo_set[1], crop(photo("rocket"), 64, 64), photo_set[2]]
    rows = list(scorer.score_all_pairs(images))
    assert [(r.index) for r in rows] == list(range(10))
    errors = [r for r in rows if not r.ok]
    assert len(errors) == 4 + 3  # every pair with the broken file, every other pair with the small image
    assert all(("corrupt" in r.error) == ("broken" in r.img0 + r.img1) for r in errors)
    assert all("size mismatch" in r.error for r in errors if "broken" not in r.img0 + r.img1)
    good = [r for r in rows if r.ok]
    expected = scorer.distance([photo_set[0], photo_set[0], photo_set[1]], [photo_set[1], photo_set[2], photo_set[2]])
    assert np.abs(np.array([r.distance for r in good]) - expected).max() <= TOL


def test_the_cache_needs_onnx_runtime(split_models):
    scorer = Scorer("squeeze", backend="torch", models_dir=split_models("squeeze"), auto_export=False)
    with pytest.raises(BackendError, match="backend='ort'"):
        scorer.embed(np.zeros((32, 32, 3), np.uint8))
