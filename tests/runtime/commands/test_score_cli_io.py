"""``lpips-score`` as a neighbour of other command line tools: stdout carries results only (JSON parses in
every mode, first-run export included), --summary-json, --out -/--format, nothing to score, skipped files,
--recursive, --pairs headers, resume from another folder, --device auto, --no-export, -V."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import crop, distort, photo
from lpips_runtime import Scorer
from lpips_runtime.commands.score import main
from lpips_runtime.formatting import float32_text


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """gt/ and pred/ with a subfolder, a file on one side only, and a non-image file."""
    root = tmp_path_factory.mktemp("io")
    ref = crop(photo("chelsea"), 96, 128)
    for side, img in (("gt", ref), ("pred", distort(ref, "jpeg", 0.8))):
        (root / side / "sub").mkdir(parents=True)
        cv2.imwrite(str(root / side / "a.png"), img[..., ::-1])
        cv2.imwrite(str(root / side / "sub" / "b.png"), np.ascontiguousarray(img[::-1, :, ::-1]))
    cv2.imwrite(str(root / "gt" / "only-gt.png"), ref[..., ::-1])
    (root / "gt" / "notes.txt").write_text("not an image")
    return root


def _invoke(alex_models, *args):
    return CliRunner().invoke(main, [*map(str, args), "--models-dir", str(alex_models)])


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_stdout_parses_in_every_mode(alex_models, tree, tmp_path):
    gt, pred = tree / "gt", tree / "pred"
    pair = _invoke(alex_models, gt / "a.png", pred / "a.png", "--json", "--device", "auto")
    record = json.loads(pair.stdout)  # the device notice went to stderr
    assert record["distance"] == float(float32_text(record["distance"])) and "device: cpu" in pair.stderr
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"ref,dist\n{gt / 'a.png'},{pred / 'a.png'}\n")
    batches = {"dirs": ["--dir0", gt, "--dir1", pred, "-r"], "all-pairs": ["--all-pairs", gt],
               "ref": ["--ref", gt / "a.png", "--dir", pred], "pairs": ["--pairs", listing]}
    for name, args in batches.items():
        result = _invoke(alex_models, *args, "--json")
        assert result.exit_code == 0, (name, result.output)
        rows = _json_lines(result.stdout)
        assert rows and all(r["distance"] is not None for r in rows), name
        assert "n=" in result.stderr  # the summary line goes to stderr


def test_first_run_export_keeps_stdout_for_results(tree, tmp_path):
    """An on-demand export in a real process, with torch-like chatter on stdout (Python prints, C printf,
    raw writes to file descriptor 1) injected into the export: stdout still holds only the JSON."""
    inject = (
        "import ctypes, os, lpips_export.onnx_export as ox\n"
        "real = ox.export_model\n"
        "def chatty(*a, **k):\n"
        "    print('chatter: python print')\n"
        "    os.write(1, b'chatter: fd 1\\n')\n"
        "    ctypes.CDLL(None).printf(b'chatter: C printf\\n')\n"
        "    return real(*a, **k)\n"
        "ox.export_model = chatty\n"
        "from lpips_runtime.commands.score import main\n"
        "main()\n")
    models = tmp_path / "fresh"
    args = [sys.executable, "-c", inject, tree / "gt" / "a.png", tree / "pred" / "a.png", "--json",
            "--models-dir", models]
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["net"] == "alex" and (models / "lpips-alex-v0.1.onnx").is_file()
    # the announcement comes first, before anything the export prints, and says what, where and why
    assert done.stderr.splitlines()[0].startswith(f"exporting lpips-alex-v0.1.onnx to {models} now, because this "
                                                  "run needs LPIPS-alex v0.1")
    for chatter in ("chatter: python print", "chatter: fd 1", "chatter: C printf"):
        assert chatter in done.stderr
    refused_args = [sys.executable, "-m", "lpips_runtime.commands.score", tree / "gt" / "a.png", tree / "pred" / "a.png",
                    "--no-export", "--net", "vgg", "--models-dir", models]
    refused = subprocess.run(list(map(str, refused_args)), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"Error: no exported model lpips-vgg-v0.1.onnx in {models} (the folder given): run `lpips-export --net vgg "
        f"--out {models}` (on-demand export is off), or name the folder that has it with --models-dir DIR or "
        "LPIPS_RT_MODELS=DIR"]


def test_summary_json_and_rows_agree(alex_models, tree, tmp_path):
    out, summary_file = tmp_path / "rows.csv", tmp_path / "summary.json"
    result = _invoke(alex_models, "--dir0", tree / "gt", "--dir1", tree / "pred", "--recursive", "--out", out,
                     "--summary-json", summary_file)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    distances = np.array([float(r["distance"]) for r in rows])
    summary = json.loads(summary_file.read_text())
    assert summary["n"] == len(rows) == 2 and summary["failures"] == 0 and summary["complete"] is True
    assert abs(summary["mean"] - distances.mean()) < 1e-7 and abs(summary["std"] - distances.std()) < 1e-7
    assert abs(summary["std_error"] - distances.std() / np.sqrt(2)) < 1e-7
    assert summary["min"] == pytest.approx(distances.min()) and summary["max"] == pytest.approx(distances.max())
    assert summary["model"] == "LPIPS-alex v0.1" and summary["precision"] == "fp32"
    assert (summary["backend"], summary["device"]) == ("ort", "cpu")
    assert summary["pairs_this_run"] == 2 and summary["elapsed_s"] > 0 and summary["pairs_per_s"] > 0
    expected = Scorer(alex_models / "lpips-alex-v0.1.onnx").distance(tree / "gt" / "a.png", tree / "pred" / "a.png")
    assert rows[0]["distance"] == float32_text(expected)  # full float32 precision in the rows


def test_out_dash_and_format(alex_models, tree):
    base = ["--dir0", tree / "gt", "--dir1", tree / "pred"]
    as_jsonl = _invoke(alex_models, *base, "--out", "-", "--format", "jsonl", "-q")
    assert as_jsonl.exit_code == 0 and _json_lines(as_jsonl.stdout)[0]["img0"].endswith("a.png")
    as_csv = _invoke(alex_models, *base, "--out", "-", "-q")
    assert as_csv.stdout.splitlines()[0] == "img0,img1,distance,error,model"
    for args, message in ((["--json", "--out", "x.csv"], "--json writes JSON lines, but --out x.csv"),
                          (["--format", "csv", "--out", "x.jsonl"], "x.jsonl is a jsonl file name"),
                          (["--out", "x.txt"], "results go to a .csv or .jsonl file"),
                          (["--resume", "--out", "-"], "--resume needs --out FILE"),
                          (["--json", "--format", "csv"], "drop --format csv or --json")):
        result = _invoke(alex_models, *base, *args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    single = _invoke(alex_models, tree / "gt" / "a.png", tree / "pred" / "a.png", "--summary-json", "s.json")
    assert single.exit_code == 2 and "are for batch modes" in single.output


def test_nothing_to_score_says_so_and_fails(alex_models, tree, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    cv2.imwrite(str(tmp_path / "one" / "x.png"), crop(photo("coffee"), 64, 64))
    header_only = tmp_path / "header.csv"
    header_only.write_text("img0,img1\n")
    cases = [(["--dir0", tmp_path / "empty", "--dir1", tree / "pred"], "no image has the same relative path"),
             (["--all-pairs", tmp_path / "one"], "has 1 image(s), all-pairs needs two"),
             (["--ref", tmp_path / "one" / "x.png", "--dir", tmp_path / "one"], "besides the reference"),
             (["--pairs", header_only], "lists no pairs")]
    for args, message in cases:
        result = _invoke(alex_models, *args)
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines()[-1].startswith("Error: nothing to score: ") and message in result.stderr


def test_unpaired_and_skipped_files_are_listed(alex_models, tree):
    result = _invoke(alex_models, "--dir0", tree / "gt", "--dir1", tree / "pred")
    assert "only in dir0" in result.stderr and "only-gt.png" in result.stderr
    assert f"not images (by extension) in dir0 ({tree / 'gt'}), skipped: notes.txt" in result.stderr
    assert len(result.stdout.splitlines()) == 2  # header + a.png: sub/ needs --recursive
    deep = _invoke(alex_models, "--dir0", tree / "gt", "--dir1", tree / "pred", "--recursive")
    assert [Path(r).name for r in (row.split(",")[0] for row in deep.stdout.splitlines()[1:])] == ["a.png", "b.png"]
    ref = _invoke(alex_models, "--ref", tree / "gt" / "a.png", "--dir", tree / "gt")
    assert f"not images (by extension) in {tree / 'gt'}, skipped: notes.txt" in ref.stderr


def test_pairs_header_detection_is_said(alex_models, tree, tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text(f"Reference Image,Test Image\n{tree / 'gt' / 'a.png'},{tree / 'pred' / 'a.png'}\n")
    result = _invoke(alex_models, "--pairs", listing, "--json")
    assert result.exit_code == 0 and len(_json_lines(result.stdout)) == 1
    assert "taken as a header: Reference Image,Test Image (--no-header scores it)" in result.stderr
    forced = _invoke(alex_models, "--pairs", listing, "--json", "--no-header")
    assert forced.exit_code == 3  # the header row scored as a pair: its files do not exist
    assert "no such file" in _json_lines(forced.stdout)[0]["error"]


def test_resume_from_another_working_folder(alex_models, tree, tmp_path, monkeypatch):
    """The same --pairs run, resumed from another folder (other relative spellings): no pair is scored twice."""
    work = tmp_path / "work"
    (work / "lists").mkdir(parents=True)
    (work / "results").mkdir()
    listing = work / "lists" / "pairs.csv"
    gt, pred = tree / "gt", tree / "pred"
    listing.write_text(f"{gt / 'a.png'},{pred / 'a.png'}\n{gt / 'sub' / 'b.png'},{pred / 'sub' / 'b.png'}\n"
                       f"{gt / 'a.png'},{pred / 'sub' / 'b.png'}\n")
    monkeypatch.chdir(work)
    first = _invoke(alex_models, "--pairs", "lists/pairs.csv", "--out", "results/r.csv")
    assert first.exit_code == 0, first.output
    lines = (work / "results" / "r.csv").read_text().splitlines(keepends=True)
    (work / "results" / "r.csv").write_text("".join(lines[:3]))  # as if killed after two rows
    monkeypatch.chdir(work / "results")
    again = _invoke(alex_models, "--pairs", "../lists/pairs.csv", "--out", "r.csv", "--resume")
    assert again.exit_code == 0, again.output
    assert "2 pairs already there, 1 to go" in again.stderr
    rows = list(csv.DictReader((work / "results" / "r.csv").open()))
    assert len(rows) == 3 and len({(r["img0"], r["img1"]) for r in rows}) == 3


def test_device_auto_is_said_unless_quiet(alex_models, tree):
    args = [tree / "gt" / "a.png", tree / "pred" / "a.png", "--device", "auto"]
    loud, quiet = _invoke(alex_models, *args), _invoke(alex_models, *args, "-q")
    assert loud.exit_code == quiet.exit_code == 0
    assert loud.stderr.startswith("device: ") and quiet.stderr == ""
    assert loud.stdout == quiet.stdout and len(loud.stdout.strip()) == 8  # the human line: 0.xxxxxx


def test_heatmap_of_an_unwritable_format_is_a_usage_error(alex_models, tree, tmp_path):
    result = _invoke(alex_models, tree / "gt" / "a.png", tree / "pred" / "a.png", "--heatmap", tmp_path / "out.txt")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "OpenCV cannot write" in result.output and not (tmp_path / "out.txt").exists()


def test_heatmap_picture(alex_models, tree, tmp_path):
    out = tmp_path / "map.png"
    result = _invoke(alex_models, tree / "gt" / "a.png", tree / "pred" / "a.png", "--heatmap", out)
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(out))
    assert picture.shape[0] > 96 and picture.shape[1] > 128  # the map, its colour bar and a caption
    auto = _invoke(alex_models, tree / "gt" / "a.png", tree / "pred" / "a.png", "--heatmap", tmp_path / "auto.png",
                   "--heatmap-max", "auto")
    assert auto.exit_code == 0 and not np.array_equal(cv2.imread(str(tmp_path / "auto.png")), picture)
    bad = _invoke(alex_models, tree / "gt" / "a.png", tree / "pred" / "a.png", "--heatmap", out, "--heatmap-max", "-1")
    assert bad.exit_code == 2 and "neither a positive number nor 'auto'" in bad.output


def test_tool_version():
    from lpips_runtime import __version__

    result = CliRunner().invoke(main, ["-V"])
    assert result.exit_code == 0 and result.stdout == f"lpips-rt {__version__}\n"
    assert CliRunner().invoke(main, ["--tool-version"]).stdout == result.stdout
