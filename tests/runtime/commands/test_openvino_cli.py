"""``lpips-score`` on the OpenVINO backend: --precision bf16 (with and without --backend), the precision in
JSON and CSV output, a backend that cannot compute bf16, and the feature-cache modes. Skipped without OpenVINO."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("openvino", reason="needs OpenVINO: pip install 'lpips-rt[openvino]'")

from conftest import crop, distort, photo  # noqa: E402
from lpips_runtime import Scorer  # noqa: E402
from lpips_runtime.backends.openvino_backend import cpu_capabilities  # noqa: E402
from lpips_runtime.commands.score import main  # noqa: E402


def _has_bf16() -> bool:
    import openvino as ov

    return "BF16" in cpu_capabilities(ov.Core())


needs_bf16 = pytest.mark.skipif(not _has_bf16(), reason="this CPU has no native bfloat16 (OpenVINO lists no BF16)")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov-cli")
    ref = crop(photo("coffee"), 96, 112)
    for i, img in enumerate([ref] + [distort(ref, kind, 0.5, seed=1) for kind in ("blur", "jpeg", "noise")]):
        cv2.imwrite(str(root / f"img{i}.png"), img[..., ::-1])
    return root


def _invoke(models, *args):
    return CliRunner().invoke(main, ["--net", "squeeze", "--models-dir", str(models), *map(str, args)])


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_bf16
def test_bf16_pair_as_json(split_models, folder):
    models = split_models("squeeze")
    result = _invoke(models, folder / "img0.png", folder / "img1.png", "--backend", "openvino", "--precision", "bf16",
                     "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["backend"] == "openvino" and record["precision"] == "bf16"
    assert record["model"] == "LPIPS-squeeze v0.1 (bf16)"
    with Scorer("squeeze", models_dir=models, auto_export=False) as fp32:
        assert abs(record["distance"] - fp32.distance(folder / "img0.png", folder / "img1.png")) <= 1e-3


@needs_bf16
def test_bf16_without_backend_picks_openvino_and_says_so(split_models, folder):
    result = _invoke(split_models("squeeze"), folder / "img0.png", folder / "img2.png", "--precision", "bf16", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "openvino"
    assert "using --backend openvino" in result.stderr


def test_bf16_on_a_backend_without_it_is_an_error_naming_the_fix(split_models, folder):
    result = _invoke(split_models("squeeze"), folder / "img0.png", folder / "img1.png", "--backend", "ort",
                     "--precision", "bf16")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == "Error: the ort backend does not compute in bf16: use --backend openvino " \
                                    "(backend='openvino')"


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_batch_and_feature_cache_modes(split_models, folder, tmp_path, precision):
    models = split_models("squeeze")
    with Scorer("squeeze", models_dir=models, auto_export=False) as fp32:
        expected = {(str(folder / f"img{i}.png"), str(folder / f"img{j}.png")):
                    fp32.distance(folder / f"img{i}.png", folder / f"img{j}.png") for i in range(4) for j in range(4)}
    tol = 1e-5 if precision == "fp32" else 1e-3
    label = "LPIPS-squeeze v0.1" + (" (bf16)" if precision == "bf16" else "")
    runs = {"ref": ["--ref", folder / "img0.png", "--dir", folder], "all": ["--all-pairs", folder],
            "dirs": ["--dir0", folder, "--dir1", folder]}
    for mode, args in runs.items():
        out = tmp_path / f"{mode}-{precision}.csv"
        result = _invoke(models, *args, "--backend", "openvino", "--precision", precision, "--out", out, "-q")
        assert result.exit_code == 0, result.output
        rows = _rows(out)
        assert len(rows) == {"ref": 3, "all": 6, "dirs": 4}[mode]
        assert {r["model"] for r in rows} == {label}
        got = np.array([float(r["distance"]) for r in rows])
        assert np.abs(got - [expected[(r["img0"], r["img1"])] for r in rows]).max() <= tol
    # a file of fp32 results is not resumed with bf16 ones (nor the reverse)
    other = "fp32" if precision == "bf16" else "bf16"
    if other == "fp32" or _has_bf16():
        result = _invoke(models, "--all-pairs", folder, "--backend", "openvino", "--precision", other, "--out",
                         tmp_path / f"all-{precision}.csv", "--resume")
        assert result.exit_code == 1 and "resume with the same options" in result.stderr


def test_bf16_on_a_cpu_without_it_exits_1_with_one_line(split_models, folder, monkeypatch):
    from lpips_runtime.backends import openvino_backend

    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda core: ["FP32", "INT8"])  # e.g. an AVX2-only CPU
    result = _invoke(split_models("squeeze"), folder / "img0.png", folder / "img1.png", "--precision", "bf16")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: bf16 needs a CPU with native bfloat16 (AVX512_BF16 or AMX); OpenVINO finds only FP32, INT8 on this "
        "one: use --precision fp32")
