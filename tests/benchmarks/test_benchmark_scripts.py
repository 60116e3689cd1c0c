"""Smoke runs of the benchmark scripts on tiny inputs: they run, and write what they promise
(no timing is asserted). benchmarks/gpu.py runs here in its CPU mode."""
from __future__ import annotations

import importlib.util
import json

from conftest import ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_cpu_mode(tmp_path, capsys):
    gpu = _script("gpu")
    assert gpu.main(["--device", "cpu", "--nets", "squeeze", "--shapes", "1x32x32,2x24x40", "--iters", "1",
                     "--pipeline-batches", "0", "--out", str(tmp_path)]) == 0
    (result,) = tmp_path.glob("gpu-*-cpu.json")
    report = json.loads(result.read_text())
    rows = report["rows"]
    variants = {r["variant"] for r in rows}
    assert {"ort fp32 float32", "ort fp32 uint8", "ort fp16 float32", "ort fp16 uint8", "torch fp32",
            "official fp32", "wholesale fp16"} <= variants
    assert not [r for r in rows if "error" in r], rows
    assert len(rows) == 2 * len(variants) and all(r["finite"] for r in rows)
    for r in rows:
        if r["variant"] != "wholesale fp16":
            assert r["e2e_ms"] > 0 and r["pairs_per_s"] > 0 and r["max_rel_err"] <= 1e-3, r
    assert "| squeeze | 2x24x40 | ort fp16 uint8 |" in capsys.readouterr().out


def test_fp16_accuracy_script(tmp_path):
    accuracy = _script("fp16_accuracy")
    accuracy.main(["--nets", "squeeze", "--sizes", "64x64", "--out", str(tmp_path)])
    (result,) = tmp_path.glob("fp16-accuracy-*.json")
    data = json.loads(result.read_text())
    (row,) = data["rows"]
    assert row["ort_fp16"] <= 1e-3 and row["finite"]
    assert data["wholesale"][0]["wholesale"] > 0.1


def test_video_benchmark_smoke(tmp_path, exported, exported_spec):
    """benchmarks/video.py on two tiny sizes, 3 frames, one round: every variant runs and is reported."""
    from lpips_runtime.model.modelfile import ModelSpec

    models = tmp_path / "models"
    models.mkdir()
    for path in (exported("alex"), exported_spec(ModelSpec("alex", frames="nhwc-rgb"))):
        (models / path.name).symlink_to(path)
    readme = tmp_path / "README.md"
    video = _script("video")
    assert video.main(["--quick", "--frames", "3", "--models-dir", str(models), "--readme", str(readme),
                       "--results-dir", str(tmp_path)]) == 0
    (result,) = tmp_path.glob("video-quick-*.json")
    report = json.loads(result.read_text())
    assert set(report["sizes"]) == {"320x180", "640x360"}
    for row in report["sizes"].values():
        assert set(row["fps"]) == {"decode", "infer", "e2e", "e2e float graph"} and min(row["fps"].values()) > 0
    assert "| 640x360 | 9 |" in readme.read_text()


def test_metrics_benchmark_quick(capsys, bench_models):
    metrics = _script("metrics")
    assert metrics.main(["--quick", "--models-dir", str(bench_models)]) == 0
    out = capsys.readouterr().out
    for variant in ("lpips", "lpips+psnr+ssim (graph)", "lpips + scikit-image", "lpips + OpenCV"):
        assert f"| 128x128 (2) | {variant} |" in out and f"| 480x270 (1) | {variant} |" in out


def test_loss_benchmark_smoke(capsys):
    """benchmarks/loss.py on one tiny batch, ours and the backbone-only bound against the official: a row
    each, ours with equal results, the bound with none to check and its line under the table."""
    loss = _script("loss")
    assert loss.main(["--quick", "--nets", "alex", "--shapes", "2x40x48", "--repeats", "1",
                      "--variants", "official,ours,backbone only"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| alex | 2x40x48 |")]
    assert [row.split(" | ")[2] for row in rows] == ["official", "ours", "backbone only"]
    header = next(line for line in out.splitlines() if line.startswith("| net |")).strip(" |").split(" | ")
    ours, bound = (dict(zip(header, row.strip(" |").split(" | "))) for row in rows[1:])
    assert float(ours["grad error"]) <= 1e-4 and ours["equal"] == "yes"
    assert bound["grad error"] == bound["equal"] == "-"
    assert f"- alex 2x40x48: backbone alone {bound['vs official']} the official's step; ours " in out and "of the bound's speed" in out


def test_no_script_shadows_an_installed_package():
    """The test modules put benchmarks/ on sys.path; a script named like an installed top-level package (a
    benchmarks/ray.py once) is then what ``import ray`` finds in the test process, and it broke the test run."""
    from importlib.metadata import packages_distributions

    scripts = {path.stem for path in (ROOT / "benchmarks").glob("*.py")}
    assert scripts & set(packages_distributions()) == set()
