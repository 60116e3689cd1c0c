"""Tiled LPIPS equals the untiled graph (<= 1e-5) for every net and both versions on odd sizes of real
photographs, maps included; the Scorer tiles on its own above its memory budget and batches by pixels."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import distort, scene, to_unit_nchw
from lpips_runtime.model.nets import NET_NAMES, get_net
from lpips_runtime.core.scorer import Scorer
from lpips_runtime.core.tiling import Halo, plan_tiles, tap_geometry, tap_sizes

TOL = 1e-5
# (height, width, tile side): large enough that some crop starts inside the image on both axes (an
# inner boundary beyond the halo), small enough for a quick untiled reference.
SIZES = {"alex": (301, 257, 100), "squeeze": (263, 221, 96), "vgg": (257, 97, 130)}  # vgg is slow: an inner crop on one axis only


@pytest.fixture(scope="module")
def tile_models(build_module, exported, tmp_path_factory):
    """Factory (net, version) -> a models folder with the fused export (the untiled reference, shared with
    the parity tests) and the encoder and head the tiles run on."""
    from lpips_export.onnx_export import export_onnx, model_filename

    root = tmp_path_factory.mktemp("tile-models")
    made = {}

    def get(net, version):
        if (net, version) not in made:
            folder = root / f"{net}-{version}"
            folder.mkdir()
            fused = exported(net, version)
            (folder / fused.name).symlink_to(fused)
            module, provenance = build_module(net, version, True, False)
            for part in ("encoder", "head"):
                export_onnx(module, provenance, folder / model_filename(module, part), part=part)
            made[(net, version)] = folder
        return made[(net, version)]

    return get


def _pair(h, w, seed=0):
    ref = scene(h, w, seed)
    return ref, distort(ref, "blur", 0.6, seed=seed)


@pytest.mark.parametrize("net", NET_NAMES)
@pytest.mark.parametrize("version", ["0.1", "0.0"])
def test_tiled_equals_untiled(tile_models, net, version):
    h, w, tile = SIZES[net]
    folder = tile_models(net, version)
    tiled = Scorer(net, version=version, models_dir=folder, auto_export=False, tile=tile)
    whole = Scorer(net, version=version, models_dir=folder, auto_export=False, tile="off")
    plan = tiled.tile_plan(h, w)
    assert plan.count >= 2 and plan.rows[-1].crop[0] > 0 and (net == "vgg" or plan.cols[-1].crop[0] > 0)
    a, b = _pair(h, w)
    expected = whole.distance(a, b)
    assert abs(tiled.distance(a, b) - expected) <= TOL
    if net == "squeeze" and version == "0.1":  # float NCHW batches take the same path, image by image
        batch0, batch1 = np.concatenate([to_unit_nchw(a), to_unit_nchw(b)]), np.concatenate([to_unit_nchw(b)] * 2)
        assert np.abs(tiled.distance(batch0, batch1) - whole.distance(batch0, batch1)).max() <= TOL


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_tiled_map_equals_untiled(split_models, net):
    """The spatial map: tap maps assembled from tiles and upsampled on the host, as the graph does it."""
    h, w, tile = SIZES[net]
    tiled = Scorer(net, models_dir=split_models(net), auto_export=False, tile=tile)
    whole = Scorer(net, models_dir=split_models(net), auto_export=False, tile="off")
    a, b = _pair(h, w, seed=1)
    expected = whole.distance_map(a, b)
    got = tiled.distance_map(a, b)
    assert got.shape == expected.shape == (h, w)
    assert np.abs(got - expected).max() <= TOL


def test_auto_tiles_above_the_budget_only(split_models):
    folder = split_models("squeeze")
    small_budget = Scorer("squeeze", models_dir=folder, auto_export=False, max_memory=40 << 20)
    big_budget = Scorer("squeeze", models_dir=folder, auto_export=False)
    h, w = 263, 221  # 800 B/px x 58k px = 46.5 MB: over 40 MiB, under 1 GiB
    assert big_budget.tile_plan(h, w) is None and Scorer("squeeze", models_dir=folder, tile="off").tile_plan(h, w) is None
    plan = small_budget.tile_plan(h, w)
    assert plan is not None and plan.largest_crop * get_net("squeeze").work_bytes_per_pixel <= 40 << 20
    a, b = _pair(h, w, seed=2)
    assert abs(small_budget.distance(a, b) - big_budget.distance(a, b)) <= TOL
    # in a batch run, tiled pairs and batched ones keep their order and values
    small = _pair(64, 80, seed=3)
    pairs = [small, (a, b), small, (a, a)]
    got = [r.distance for r in small_budget.score_pairs(pairs)]
    want = [r.distance for r in big_budget.score_pairs(pairs)]
    assert np.allclose(got, want, rtol=0, atol=TOL) and got[3] == 0.0


def test_batches_are_formed_by_pixels(split_models):
    bpp = get_net("squeeze").work_bytes_per_pixel
    scorer = Scorer("squeeze", models_dir=split_models("squeeze"), auto_export=False, batch_size=16, tile="off",
                    max_memory=bpp * 2 * 150 * 200 + 1)  # room for two 150x200 pairs
    backend = scorer._backend(False)
    seen = []
    submit = backend.submit
    backend.submit = lambda p0, p1: (seen.append(len(p0)), submit(p0, p1))[1]
    pairs = [_pair(150, 200, seed=i) for i in range(5)] + [_pair(40, 50, seed=9)] * 5
    assert all(r.ok for r in scorer.score_pairs(pairs))
    assert max(seen[:3]) == 2 and 5 in seen  # large pairs two at a time, small ones all together


@pytest.mark.parametrize("net", NET_NAMES)
def test_plan_owns_every_position_once_with_its_whole_receptive_field(net):
    """For many sizes and grids: each tap's positions are split among the tiles exactly once, and every owned
    position's receptive field lies inside its tile's crop, except where the crop's edge is the image's."""
    spec = get_net(net)
    halo = Halo.of(spec)
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(spec.min_side, 700, 2))
        plan = plan_tiles(spec, h, w, tile=int(rng.integers(16, 300)))
        for axis, spans, length in (("rows", plan.rows, h), ("cols", plan.cols, w)):
            assert all(s.crop[0] % halo.step == 0 for s in spans)
            for layer, (g, n) in enumerate(zip(tap_geometry(spec), tap_sizes(spec, length))):
                owned = [s.owned[layer] for s in spans]
                assert owned[0][0] == 0 and owned[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))  # contiguous, no overlap
                for span, (p0, p1) in zip(spans, owned):
                    if p0 == p1:
                        continue
                    first, last = p0 * g.stride - g.offset, (p1 - 1) * g.stride - g.offset + g.field - 1
                    assert span.crop[0] == 0 or first >= span.crop[0], (axis, layer, span)
                    assert span.crop[1] == length or last < span.crop[1], (axis, layer, span)


def test_budget_plan_respects_the_budget_and_prefers_less_halo():
    alex = get_net("alex")
    budget = (1 << 30) // alex.work_bytes_per_pixel
    plan = plan_tiles(alex, 6000, 8000, max_crop_pixels=budget)
    assert plan.largest_crop <= budget
    assert plan.computed_pixels < 1.2 * 6000 * 8000
    finest = plan_tiles(alex, 6000, 8000, max_crop_pixels=10)  # no grid fits: the one with the smallest crops
    assert finest.largest_crop <= min(plan_tiles(alex, 6000, 8000, tile=t).largest_crop for t in (100, 400, 2000))


def test_only_fp32_float_graphs_on_ort_tile(tmp_path):
    """Tiles need the split encoder, exported for fp32 float-input graphs only: other Scorers do not tile
    (auto) and refuse an explicit tile size."""
    from lpips_runtime.errors import BackendError

    for settings in ({"precision": "fp16"}, {"frames": "nhwc-bgr"}, {"backend": "torch"}):
        with pytest.raises(BackendError, match="tiles run the split float32 encoder"):
            Scorer("alex", models_dir=tmp_path, auto_export=False, tile=512, **settings)
        assert Scorer("alex", models_dir=tmp_path, auto_export=False, **settings).tile_plan(9000, 9000) is None
    assert Scorer("alex", models_dir=tmp_path, auto_export=False).tile_plan(9000, 9000) is not None
