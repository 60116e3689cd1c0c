"""Scorer: ORT and torch backends against the official package on real decoded files; batching,
threads, ordering, and errors."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
import torch

from conftest import crop, distort, official_lpips, photo, results_of_threads, to_unit_nchw
from lpips_runtime import Scorer
from lpips_runtime.errors import InputError, MissingExtraError, ModelFileError

TOL = 1e-5


@pytest.fixture(scope="module")
def models_dir(exported):
    for net in ("alex", "squeeze"):
        exported(net)
    exported("alex", spatial=True)
    return exported("alex").parent


@functools.lru_cache(maxsize=None)  # one per (net, module, spatial): building the official vgg takes seconds
def _official(net, module, spatial):
    return official_lpips(net, "0.1", True, spatial, module.features_state_for_official())


def _official_on_files(net, module, p0, p1, spatial=False):
    import lpips

    official = _official(net, module, spatial)
    a, b = (lpips.im2tensor(lpips.load_image(str(p))) for p in (p0, p1))
    with torch.no_grad():
        return official(a, b).numpy()


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
def test_ort_and_torch_match_official_on_files(net, exported, build_module, photo_pair_files):
    module, _ = build_module(net)
    ort_scorer = Scorer(exported(net))
    torch_scorer = Scorer(net, backend="torch")
    for i, (p0, p1) in enumerate(photo_pair_files):
        expected = float(_official_on_files(net, module, p0, p1).reshape(-1)[0])
        assert abs(ort_scorer.distance(p0, p1) - expected) <= TOL
        assert abs(torch_scorer.distance(p0, p1) - expected) <= TOL
        if i == 0:  # any source kind (a str path, encoded bytes): the decode path, the same for every pair
            assert abs(ort_scorer.distance(str(p0), p1.read_bytes()) - expected) <= TOL


def test_distance_map_matches_official(models_dir, build_module, photo_pair_files):
    module, _ = build_module("alex", "0.1", True, True)
    p0, p1 = photo_pair_files[1]
    scorer = Scorer("alex", models_dir=models_dir)
    dmap = scorer.distance_map(p0, p1)
    expected = _official_on_files("alex", module, p0, p1, spatial=True)[0, 0]
    assert dmap.shape == expected.shape == cv2.imread(str(p0)).shape[:2]
    assert np.abs(dmap - expected).max() <= TOL


def test_batches_lists_and_single_pairs_agree(models_dir):
    scorer = Scorer("squeeze", models_dir=models_dir, batch_size=3)
    refs = [crop(photo(n), 64, 80) for n in ("astronaut", "coffee", "chelsea", "rocket", "astronaut")]
    dists = [distort(r, k, 0.6, seed=i) for i, (r, k) in enumerate(zip(refs, ["blur", "jpeg", "noise",
                                                                               "colour", "jpeg"]))]
    singles = np.array([scorer.distance(r, d) for r, d in zip(refs, dists)], np.float32)
    assert isinstance(scorer.distance(refs[0], dists[0]), float)
    listed = scorer.distance(refs, dists)
    batch = scorer.distance(np.concatenate([to_unit_nchw(r) for r in refs]),
                            np.concatenate([to_unit_nchw(d) for d in dists]))
    assert listed.shape == batch.shape == (5,)
    assert np.abs(listed - singles).max() <= 1e-6 and np.abs(batch - singles).max() <= 1e-6


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_run_prepared_batches_equal_single_pairs_bit_for_bit(models_dir, net):
    """The seam lpips-serve batches through: N prepared pairs in one backend call (chunks of batch_size
    here: 3 + 2) give exactly what each pair gives alone, distances and maps."""
    scorer = Scorer(net, models_dir=models_dir, batch_size=3)
    refs = [crop(photo(n), 64, 80) for n in ("astronaut", "coffee", "chelsea", "rocket", "astronaut")]
    pairs = [(r, distort(r, k, 0.6, seed=i)) for i, (r, k) in enumerate(zip(refs, ["blur", "jpeg", "noise",
                                                                                "colour", "jpeg"]))]
    prepared = [scorer.load_pair(a, b) for a, b in pairs]
    parts0, parts1 = [p[0] for p in prepared], [p[1] for p in prepared]
    assert scorer.run_prepared(parts0, parts1).tolist() == [scorer.distance(a, b) for a, b in pairs]
    if net == "alex":
        maps = scorer.run_prepared(parts0, parts1, spatial=True)
        assert maps.shape == (5, 1, 64, 80)
        assert all(np.array_equal(m[0], scorer.distance_map(a, b)) for m, (a, b) in zip(maps, pairs))
    other = scorer.load_pair(crop(photo("coffee"), 64, 64), crop(photo("coffee"), 64, 64))
    with pytest.raises(InputError, match="one shape and dtype"):
        scorer.run_prepared([parts0[0], other[0]], [parts1[0], other[1]])
    with pytest.raises(InputError, match="non-empty"):
        scorer.run_prepared([], [])
    assert scorer.pipeline_depth == 1


def test_run_prepared_keeps_to_the_memory_budget(models_dir):
    """Under ``max_memory`` run_prepared forms batches by pixels (tiles off: 2 pairs of 64x80 per call for
    alex in 3 MiB, not batch_size 8) and scores pairs that call for tiles in tiles, equal to ``distance``."""
    refs = [crop(photo(n), 64, 80) for n in ("astronaut", "coffee", "chelsea", "rocket", "astronaut")]
    pairs = [(r, distort(r, "blur", 0.4 + 0.1 * i)) for i, r in enumerate(refs)]
    budgeted = Scorer("alex", models_dir=models_dir, batch_size=8, tile="off", max_memory=3 << 20)
    backend = budgeted._backend(False)
    calls = []
    submit = backend.submit
    backend.submit = lambda a, b: calls.append(len(a)) or submit(a, b)
    prepared = [budgeted.load_pair(a, b) for a, b in pairs]
    values = budgeted.run_prepared([p[0] for p in prepared], [p[1] for p in prepared])
    assert calls == [2, 2, 1]
    assert values.tolist() == [budgeted.distance(a, b) for a, b in pairs]

    tiled = Scorer("alex", models_dir=models_dir, tile=32)
    assert tiled.tile_plan(64, 80).count == 6
    prepared = [tiled.load_pair(a, b) for a, b in pairs[:2]]
    values = tiled.run_prepared([p[0] for p in prepared], [p[1] for p in prepared])
    # distance() of a tiled pair is the float64 sum of the tiles' terms; batches are float32 arrays
    assert values.tolist() == [np.float32(tiled.distance(a, b)) for a, b in pairs[:2]]
    maps = tiled.run_prepared([p[0] for p in prepared], [p[1] for p in prepared], spatial=True)
    assert maps.shape == (2, 1, 64, 80) and np.array_equal(maps[0, 0], tiled.distance_map(*pairs[0]))


def test_spin_between_runs_is_a_session_setting_that_changes_no_value(models_dir):
    pair = (crop(photo("coffee"), 64, 64), distort(crop(photo("coffee"), 64, 64), "blur", 0.5))
    quiet = Scorer("alex", models_dir=models_dir, spin_between_runs=False)
    default = Scorer("alex", models_dir=models_dir)
    assert quiet.distance(*pair) == default.distance(*pair)

    def entry(scorer):
        options = scorer._backend(False).session.get_session_options()
        return options.get_session_config_entry("session.force_spinning_stop")

    assert entry(quiet) == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # not set at all by default
        entry(default)


def test_encoded_image_names_its_bytes_in_messages(models_dir):
    from lpips_runtime.io.images import EncodedImage

    scorer = Scorer("alex", models_dir=models_dir)
    ref = cv2.imencode(".png", crop(photo("coffee"), 64, 64))[1].tobytes()
    assert scorer.distance(EncodedImage(ref, "upload a"), EncodedImage(ref, "upload b")) == 0.0
    with pytest.raises(InputError, match=r"^upload b: not an image format OpenCV can read$"):
        scorer.distance(EncodedImage(ref, "upload a"), EncodedImage(b"text", "upload b"))


def test_threads_share_one_scorer(models_dir):
    scorer = Scorer("alex", models_dir=models_dir)
    pairs = [(crop(photo("coffee"), 48 + 8 * i, 64), distort(crop(photo("coffee"), 48 + 8 * i, 64), "noise",
                                                             0.3, seed=i)) for i in range(16)]
    serial = [scorer.distance(a, b) for a, b in pairs]
    results = results_of_threads(scorer.distance, pairs)
    assert results == serial  # bit-identical


def test_score_pairs_keeps_order_and_records_failures(models_dir, tmp_path):
    scorer = Scorer("alex", models_dir=models_dir, batch_size=2, workers=3)
    sizes = [(64, 64), (40, 90), (64, 64), (40, 90), (64, 64), (50, 50), (64, 64)]
    pairs = []
    for i, (h, w) in enumerate(sizes):
        ref = crop(photo("rocket"), h, w)
        pairs.append((ref, distort(ref, "blur", 0.2 * i, seed=i)))
    pairs.insert(2, (tmp_path / "missing.png", pairs[0][1]))
    pairs.insert(5, (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)))
    results = list(scorer.score_pairs(pairs))
    assert [r.index for r in results] == list(range(len(pairs)))
    assert [r.ok for r in results] == [i not in (2, 5) for i in range(len(pairs))]
    assert "no such file" in results[2].error and "at least 31x31" in results[5].error
    for r, (a, b) in zip(results, pairs):
        if r.ok:
            assert abs(r.distance - scorer.distance(a, b)) <= 1e-6


def test_input_errors(models_dir):
    scorer = Scorer("alex", models_dir=models_dir)
    small = np.zeros((30, 64, 3), np.uint8)
    with pytest.raises(InputError, match="needs at least 31x31"):
        scorer.distance(small, small)
    with pytest.raises(InputError, match="size mismatch"):
        scorer.distance(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 65, 3), np.uint8))
    with pytest.raises(InputError, match="batch shapes differ"):
        scorer.distance(np.zeros((2, 3, 64, 64), np.float32), np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InputError, match="same length"):
        scorer.distance([small], [small, small])
    resized = Scorer("alex", models_dir=models_dir, resize="first")
    assert resized.distance(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 65, 3), np.uint8)) == 0.0


def test_model_lookup(models_dir, tmp_path):
    with pytest.raises(ModelFileError, match="run `lpips-export --net vgg --out"):
        Scorer("vgg", models_dir=tmp_path, auto_export=False).distance(np.zeros((32, 32, 3), np.uint8),
                                                                      np.zeros((32, 32, 3), np.uint8))
    on_demand = Scorer("squeeze", version="0.0", models_dir=tmp_path)  # export extra present: exported now
    assert on_demand.distance(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)) == 0.0
    assert (tmp_path / "lpips-squeeze-v0.0.onnx").is_file()
    (tmp_path / "lpips-alex-v0.1.onnx").write_bytes((models_dir / "lpips-squeeze-v0.1.onnx").read_bytes())
    with pytest.raises(ModelFileError, match="holds LPIPS-squeeze v0.1, not LPIPS-alex v0.1"):
        Scorer("alex", models_dir=tmp_path).distance(np.zeros((32, 32, 3), np.uint8),
                                                     np.zeros((32, 32, 3), np.uint8))


def test_torch_backend_names_its_extra(monkeypatch):
    import lpips_runtime.backends.torch_backend as tb

    def missing(module, extra, purpose):
        raise MissingExtraError(module, extra, purpose)

    monkeypatch.setattr(tb, "require", missing)
    with pytest.raises(MissingExtraError, match=r"pip install 'lpips-rt\[export\]'"):
        Scorer("alex", backend="torch").distance(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8))


def test_folder_and_list_helpers(models_dir, tmp_path):
    scorer = Scorer("alex", models_dir=models_dir)
    d0, d1 = tmp_path / "a", tmp_path / "b"
    d0.mkdir(), d1.mkdir()
    for i in range(3):
        ref = crop(photo("coffee"), 64, 64 + 8 * i)
        cv2.imwrite(str(d0 / f"{i}.png"), ref[..., ::-1])
        cv2.imwrite(str(d1 / f"{i}.png"), distort(ref, "noise", 0.5, seed=i)[..., ::-1])
    (tmp_path / "list.csv").write_text("a/2.png,b/2.png\na/0.png,b/0.png\n")
    by_folder = [r.distance for r in scorer.score_folders(d0, d1)]
    by_list = [r.distance for r in scorer.score_pair_list(tmp_path / "list.csv")]
    assert by_list == [by_folder[2], by_folder[0]] and all(d > 0 for d in by_folder)
