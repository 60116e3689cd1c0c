"""``lpips-export --net <net>`` with no variant option: the bundle (every graph the front ends use, and a manifest),
equal to the single-variant exports, quiet output, and the manifest's integrity check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lpips_export.cli import main
from lpips_runtime.model.bundle import bundle_specs, manifest_name, verify_bundle
from lpips_runtime.errors import ModelFileError
from lpips_runtime.model.locate import locate_model
from lpips_runtime.model.modelfile import ModelSpec, read_model


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """net -> (folder, CliRunner result) of `lpips-export --net <net> --no-check` (checks: test_onnx_export)."""
    cache = {}

    def get(net):
        if net not in cache:
            out = tmp_path_factory.mktemp(f"bundle-{net}")
            result = CliRunner().invoke(main, ["--net", net, "--out", str(out), "--offline", "--no-check"])
            assert result.exit_code == 0, result.output
            cache[net] = out, result
        return cache[net]

    return get


def _feeds(session, seed=0, h=67, w=45):
    """Random inputs for every input of ``session`` (images, frames or feature sets of a 67x45 pair)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in session.get_inputs():
        if i.type == "tensor(uint8)":
            feeds[i.name] = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        elif i.name.startswith("img"):
            feeds[i.name] = (rng.random((2, 3, h, w), dtype=np.float32) * 2 - 1)
    return feeds


def _outputs(path: Path, feeds: dict):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("net", ["alex", pytest.param("squeeze", marks=pytest.mark.slow),
                                 pytest.param("vgg", marks=pytest.mark.slow)])
def test_bundle_equals_todays_variants(net, bundles, exported_spec, tmp_path):
    """Every file of the bundle computes what the single-variant export of its spec computes (<= 1e-6, fed the
    same inputs; heads fed the encoder's features), and the bundle passes its own whole-bundle check."""
    import onnxruntime as ort

    folder, _ = bundles(net)
    specs = bundle_specs(net)
    assert sorted(p.name for p in folder.iterdir()) == sorted([s.filename() for s in specs] +
                                                              [manifest_name(specs[0])])
    assert verify_bundle(folder, specs[0]) == [folder / s.filename() for s in specs]
    encoder = ort.InferenceSession(str(folder / specs[0].with_part("encoder").filename()),
                                   providers=["CPUExecutionProvider"])
    for spec in specs:
        today = exported_spec(spec)
        ours = folder / spec.filename()
        assert read_model(ours).spec == read_model(today).spec == spec
        if spec.part == "head":
            rng = np.random.default_rng(1)
            imgs = [rng.random((2, 3, 67, 45), dtype=np.float32) * 2 - 1 for _ in range(2)]
            feats = [encoder.run(None, {"img": x}) for x in imgs]
            session = ort.InferenceSession(str(today), providers=["CPUExecutionProvider"])
            feeds = {}
            for i in session.get_inputs():
                if i.name.startswith("feat"):
                    layer, side = i.name[4:].split("_")
                    feeds[i.name] = feats[int(side)][int(layer)]
                else:  # the spatial head's size input
                    feeds[i.name] = np.zeros((0, 67, 45), np.float32)
        elif spec.part == "encoder":
            feeds = {"img": np.random.default_rng(2).random((2, 3, 67, 45), dtype=np.float32) * 2 - 1}
        else:
            import onnxruntime as ort2

            feeds = _feeds(ort2.InferenceSession(str(today), providers=["CPUExecutionProvider"]))
        for a, b in zip(_outputs(ours, feeds), _outputs(today, feeds)):
            assert a.shape == b.shape
            assert np.array_equal(np.isinf(a), np.isinf(b))
            finite = np.isfinite(b)
            assert np.max(np.abs(a[finite] - b[finite]), initial=0.0) <= 1e-6, spec.filename()


def test_bundle_output_is_one_line_per_file(bundles, tmp_path):
    folder, result = bundles("alex")
    lines = result.stdout.strip().splitlines()
    names = [s.filename() for s in bundle_specs("alex")] + [manifest_name(ModelSpec("alex"))]
    assert [line.split("  ")[0] for line in lines] == [str(folder / n) for n in names]
    assert all(line.endswith((" MB", " kB")) for line in lines)
    assert "partial" not in result.output and "/tmp/lpips-check" not in result.output
    quiet = CliRunner().invoke(main, ["--net", "alex", "--out", str(tmp_path), "--offline", "--no-check", "-q"])
    assert quiet.exit_code == 0 and quiet.stdout.strip().splitlines() == [str(tmp_path / n) for n in names]


def test_manifest_catches_a_file_changed_outside_its_graph(bundles, tmp_path):
    """A file whose metadata (outside the graph digest read_model checks) was edited passes read_model, but not
    the manifest: locate_model refuses it with the one command that rewrites the bundle."""
    import shutil

    import onnx

    folder, _ = bundles("alex")
    copy = tmp_path / "models"
    shutil.copytree(folder, copy)
    spec = ModelSpec("alex", spatial=True)
    path = copy / spec.filename()
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "exporter":
            prop.value = "someone else"
    onnx.save(model, str(path))
    read_model(path)  # still a sound export by itself
    with pytest.raises(ModelFileError, match=r"differs from the file its bundle manifest .* `lpips-export --net alex"):
        locate_model(spec, copy, auto_export=False)
    with pytest.raises(ModelFileError, match="differs from the file its bundle manifest"):
        verify_bundle(copy, ModelSpec("alex"))
    (copy / ModelSpec("alex", part="head").filename()).unlink()
    path.write_bytes(folder.joinpath(spec.filename()).read_bytes())
    with pytest.raises(ModelFileError, match=r"lpips-alex-v0.1-head.onnx of the bundle .* is missing"):
        verify_bundle(copy, ModelSpec("alex"))
