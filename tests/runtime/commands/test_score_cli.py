"""``lpips-score`` end to end: CliRunner and the installed console script in a real subprocess.
Includes the bad-input matrix (one line on stderr, exit code 1, no traceback) and a SIGKILL + --resume run."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import crop, distort, photo, wait_for_lines
from lpips_runtime import Scorer
from lpips_runtime.commands.score import main

SCRIPT = str(Path(sys.executable).with_name("lpips-score"))


@pytest.fixture(scope="module")
def models_dir(alex_models):
    return alex_models


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of test images, good and bad, by role."""
    root = tmp_path_factory.mktemp("cli-images")
    ref = crop(photo("astronaut"), 96, 128)

    def save(name, bgr_or_grey):
        cv2.imwrite(str(root / name), bgr_or_grey)
        return root / name

    files = {
        "ref": save("ref.png", ref[..., ::-1]),
        "blur": save("blur.png", distort(ref, "blur", 0.5)[..., ::-1]),
        "jpeg": save("jpeg.jpg", distort(ref, "jpeg", 0.9)[..., ::-1]),
        "grey": save("grey.png", cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)),
        "rgba": save("rgba.png", np.dstack([ref[..., ::-1], np.full(ref.shape[:2], 9, np.uint8)])),
        "deep": save("deep16.png", ref[..., ::-1].astype(np.uint16) * 257),
        "other_size": save("other.png", crop(photo("coffee"), 80, 128)[..., ::-1]),
        "tiny": save("tiny.png", crop(photo("coffee"), 20, 24)[..., ::-1]),
    }
    files["corrupt"] = root / "corrupt.png"
    files["corrupt"].write_bytes(files["ref"].read_bytes()[:200])
    files["text"] = root / "notes.gif"
    files["text"].write_text("not an image at all")
    files["missing"] = root / "missing.png"
    return files


def _run(*args, models_dir=None):
    extra = ["--models-dir", str(models_dir)] if models_dir else []
    return subprocess.run([SCRIPT, *map(str, args), *extra], capture_output=True, text=True, timeout=300)


def test_help_and_usage_errors():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--dir0" in result.output and "--heatmap" in result.output
    assert CliRunner().invoke(main, ["only-one.png"]).exit_code == 2
    assert CliRunner().invoke(main, ["a.png", "b.png", "--all-pairs", "."]).exit_code == 2
    assert CliRunner().invoke(main, ["--dir0", "."]).exit_code == 2


def test_pair_through_installed_script(models_dir, images):
    done = _run(images["ref"], images["blur"], models_dir=models_dir)
    assert done.returncode == 0 and done.stderr == ""
    expected = Scorer(models_dir / "lpips-alex-v0.1.onnx").distance(images["ref"], images["blur"])
    assert done.stdout == f"{expected:.6f}\n"
    done = _run(images["ref"], images["jpeg"], "--json", models_dir=models_dir)
    record = json.loads(done.stdout)
    assert record["net"] == "alex" and record["version"] == "0.1" and record["backend"] == "ort"
    assert record["distance"] > 0.01


BAD_INPUTS = [  # (first, second, extra args, message fragment)
    ("missing", "ref", [], "missing.png: no such file"),
    ("corrupt", "ref", [], "corrupt.png: corrupt or truncated image"),
    ("text", "ref", [], "notes.gif: not an image format OpenCV can read"),
    ("ref", "other_size", [], "size mismatch"),
    ("tiny", "tiny", [], "needs at least 31x31"),
    ("ref", "blur", ["--model", "nowhere.onnx"], "model file not found: nowhere.onnx"),
    ("ref", "blur", ["--model", "IDENTITY"], "is not an LPIPS export of lpips-rt"),
    ("ref", "blur", ["--resize", "big"], "use none, first, or WxH"),
    ("ref", "blur", ["--device", "cuda"], "needs onnxruntime-gpu"),
]


@pytest.mark.parametrize("first,second,extra,message", BAD_INPUTS)
def test_bad_inputs_one_line_exit_1(models_dir, images, tmp_path, first, second, extra, message):
    if "IDENTITY" in extra:
        import onnx
        from onnx import helper

        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(graph), str(tmp_path / "identity.onnx"))
        extra = ["--model", str(tmp_path / "identity.onnx")]
    result = CliRunner().invoke(main, [str(images[first]), str(images[second]), "--models-dir", str(models_dir),
                                       *extra])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_bad_input_in_real_process(models_dir, images):
    done = _run(images["corrupt"], images["ref"], models_dir=models_dir)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"Error: {images['corrupt']}: corrupt or truncated image"]


@pytest.mark.parametrize("kind", ["grey", "rgba", "deep"])
def test_grey_alpha_and_16_bit_are_scored(models_dir, images, kind):
    result = CliRunner().invoke(main, [str(images["ref"]), str(images[kind]), "--models-dir", str(models_dir)])
    assert result.exit_code == 0, result.output
    value = float(result.output)
    assert (value > 0.01) if kind == "grey" else (value < 1e-3)  # alpha dropped; 16-bit = same picture


def test_heatmap(models_dir, images, tmp_path):
    out = tmp_path / "map.png"
    result = CliRunner().invoke(main, [str(images["ref"]), str(images["jpeg"]), "--heatmap", str(out),
                                       "--models-dir", str(models_dir)])
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(out))
    assert picture.shape[0] > 96 and picture.shape[1] > 128 and picture.std() > 5  # map + colour bar + caption


def test_folder_modes_rows_failures_and_unpaired(models_dir, images, tmp_path):
    d0, d1 = tmp_path / "d0", tmp_path / "d1"
    d0.mkdir(), d1.mkdir()
    for name, src0, src1 in [("a.png", "ref", "blur"), ("b.png", "ref", "other_size"), ("c.png", "ref", "jpeg")]:
        (d0 / name).write_bytes(images[src0].read_bytes())
        (d1 / name).write_bytes(images[src1].read_bytes() if src1 != "jpeg" else
                                cv2.imencode(".png", cv2.imread(str(images["jpeg"])))[1].tobytes())
    (d0 / "only-left.png").write_bytes(images["ref"].read_bytes())
    (d1 / "notes.txt").write_text("ignored: not an image")
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(main, ["--dir0", str(d0), "--dir1", str(d1), "--out", str(out), "--models-dir",
                                       str(models_dir)])
    assert result.exit_code == 3, result.output  # finished, but one pair failed
    assert "only in dir0" in result.output and "only-left.png" in result.output
    assert "n=2 mean=" in result.output and "failures=1" in result.output
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["img0"]).name for r in rows] == ["a.png", "b.png", "c.png"]
    assert rows[1]["distance"] == "" and "size mismatch" in rows[1]["error"]
    assert float(rows[0]["distance"]) > 0 and rows[0]["model"] == "LPIPS-alex v0.1"
    # without --resume an existing file is never overwritten
    again = CliRunner().invoke(main, ["--dir0", str(d0), "--dir1", str(d1), "--out", str(out)])
    assert again.exit_code == 1 and "--resume" in again.output


def test_all_pairs_and_pairs_csv(models_dir, images, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("ref", "blur", "grey", "rgba"):
        (folder / images[name].name).write_bytes(images[name].read_bytes())
    result = CliRunner().invoke(main, ["--all-pairs", str(folder), "--json", "-q", "--models-dir", str(models_dir)])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and len(rows) == 6 and all(r["distance"] is not None for r in rows)
    result = CliRunner().invoke(main, ["--all-pairs", str(folder), "--consecutive", "-q", "--models-dir",
                                       str(models_dir)])
    assert len(result.stdout.strip().splitlines()) == 1 + 3  # header + 3 neighbours
    listing = tmp_path / "pairs.csv"
    listing.write_text("img0,img1\nset/ref.png,set/blur.png\nset/ref.png,set/missing.png\n")
    result = CliRunner().invoke(main, ["--pairs", str(listing), "--out", str(tmp_path / "r.jsonl"),
                                       "--models-dir", str(models_dir)])
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert result.exit_code == 3 and rows[0]["distance"] > 0 and "no such file" in rows[1]["error"]


def test_resume_after_sigkill(models_dir, tmp_path):
    """Kill a streaming run midway, resume it, and find every pair exactly once. 132 pairs of 64x64
    images at batch 1: rows are written one at a time, so the kill lands after about 20 of them, midway
    (checked below: a run that finished first fails the test instead of passing untested)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    base = crop(photo("hubble_deep_field"), 64, 64)
    names = []
    for i in range(12):
        names.append(f"im{i:02d}.png")
        cv2.imwrite(str(folder / names[-1]), distort(base, ["blur", "noise", "jpeg", "colour"][i % 4], i / 12,
                                                      seed=i)[..., ::-1])
    listing = tmp_path / "pairs.csv"
    pairs = [(f"imgs/{names[i]}", f"imgs/{names[j]}") for i in range(12) for j in range(12) if i != j]
    listing.write_text("\n".join(f"{a},{b}" for a, b in pairs) + "\n")
    out = tmp_path / "results.csv"
    args = [SCRIPT, "--pairs", str(listing), "--out", str(out), "--batch-size", "1", "--workers", "1",
            "--models-dir", str(models_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_lines(out, 20, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = out.read_bytes().count(b"\n") - 1
    assert proc.returncode == -signal.SIGKILL and 0 < written < len(pairs), "the run was not killed midway"
    done = subprocess.run(args[:-2] + ["--resume", "--models-dir", str(models_dir)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "already there" in done.stderr
    rows = list(csv.DictReader(out.open()))
    keys = [(Path(r["img0"]).name, Path(r["img1"]).name) for r in rows]
    assert sorted(keys) == sorted((Path(a).name, Path(b).name) for a, b in pairs)  # each exactly once
    assert all(r["distance"] and not r["error"] for r in rows)


def test_resume_drops_a_partial_last_row(models_dir, images, tmp_path):
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"{images['ref']},{images['blur']}\n{images['ref']},{images['jpeg']}\n")
    out = tmp_path / "r.csv"
    out.write_text(f"img0,img1,distance,error,model\n{images['ref']},{images['blur']},0.1234,,LPIPS-alex v0.1\n"
                   f"{images['ref']},{str(images['jpeg'])[:-4]}")  # killed mid-row: no newline
    result = CliRunner().invoke(main, ["--pairs", str(listing), "--out", str(out), "--resume", "--models-dir",
                                       str(models_dir)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and rows[0]["distance"] == "0.1234" and rows[1]["img1"] == str(images["jpeg"])
    other = CliRunner().invoke(main, ["--pairs", str(listing), "--out", str(out), "--resume", "--net", "squeeze",
                                      "--models-dir", str(models_dir)])
    assert other.exit_code == 1 and "holds results of LPIPS-alex v0.1" in other.output
