"""ResultWriter: columns as data, one number format (float32 round trip), paths relative to the results
file, resume keys on real paths, formats and streams."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from lpips_runtime.errors import InputError
from lpips_runtime.formatting import float32_json, float32_text, human
from lpips_runtime.records.results import ResultWriter, format_for
from lpips_runtime.core.scorer import PairResult
from lpips_runtime.records.summary import RunSummary


def _digits(text: str) -> int:
    """Significant digits of a decimal string."""
    return len(text.split("e")[0].replace("-", "").replace(".", "").strip("0"))


def test_float32_text_round_trips_and_is_shortest():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(20000), rng.random(2000) * 1e-6, [0.0, 1.0, 3.4e38, 1e-40]]).astype(np.float32)
    for v in values:
        text = float32_text(float(v))
        assert np.float32(text) == v
        assert _digits(text) <= _digits(f"{float(v):.9g}")  # never more digits than the 9 that always round-trip
        assert json.dumps(float32_json(float(v))) == text or np.float32(json.dumps(float32_json(float(v)))) == v
    assert float32_text(0.14583078026771545) == "0.14583078" and human(0.14583078026771545) == "0.145831"


def test_columns_are_data_and_floats_keep_their_precision(tmp_path):
    """A front end with other columns (video-like rows) uses the same writer; float64 columns are not
    rounded to float32."""
    out = tmp_path / "frames.csv"
    columns = ("frame", "pts_ref", "pts_dist", "distance")
    with ResultWriter(out, columns=columns, key_columns=("frame",), path_columns=()) as writer:
        writer.write_row({"frame": 0, "pts_ref": 3600.0416666666665, "pts_dist": 0.1, "distance": np.float32(0.25)})
    rows = list(csv.DictReader(out.open()))
    assert rows == [{"frame": "0", "pts_ref": "3600.0416666666665", "pts_dist": "0.1", "distance": "0.25"}]
    with ResultWriter(out, columns=columns, key_columns=("frame",), path_columns=(), resume=True) as again:
        assert again.done == {("0",)}
    with pytest.raises(InputError, match="has the columns frame,pts_ref,pts_dist,distance, not img0"):
        ResultWriter(out, resume=True)


def test_paths_relative_to_the_results_file_and_resume_from_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "imgs").mkdir()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / "scores.csv"
    result = PairResult(0, "imgs/a.png", str(tmp_path / "imgs" / "b.png"), 0.14583078026771545)
    with ResultWriter(out, constants={"model": "m"}) as writer:
        writer.write(result)
    row = next(csv.DictReader(out.open()))
    assert row["img0"] == "../imgs/a.png"  # relative to the file's folder (as --pairs reads paths)
    assert row["img1"] == str(tmp_path / "imgs" / "b.png")  # absolute stays absolute
    assert row["distance"] == "0.14583078" and row["model"] == "m"
    monkeypatch.chdir(tmp_path / "imgs")  # resume from another working folder: same pair, other spelling
    with ResultWriter(out, constants={"model": "m"}, resume=True) as writer:
        assert writer.key_of({"img0": "a.png", "img1": "b.png"}) in writer.done
        assert writer.key_of({"img0": "b.png", "img1": "a.png"}) not in writer.done


def test_stream_rows_and_jsonl(tmp_path):
    stream = io.StringIO()
    summary = RunSummary()
    writer = ResultWriter(None, fmt="jsonl", stream=stream, constants={"model": "m"}, summary=summary)
    writer.write(PairResult(0, "a.png", "b.png", 0.5))
    writer.write(PairResult(1, "a.png", "c.png", error="c.png: no such file"))
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert rows == [{"img0": "a.png", "img1": "b.png", "distance": 0.5, "error": None, "model": "m"},
                    {"img0": "a.png", "img1": "c.png", "distance": None, "error": "c.png: no such file", "model": "m"}]
    assert summary.stats.n == 1 and summary.stats.failures == 1
    stream = io.StringIO()
    ResultWriter("-", stream=stream).write(PairResult(0, "a.png", "b.png", 0.1))
    assert stream.getvalue() == "img0,img1,distance,error,model\na.png,b.png,0.1,,\n"


def test_format_choice():
    assert format_for("x.csv", None) == "csv" and format_for("x.JSONL", None) == "jsonl"
    assert format_for(None, None) == "csv" and format_for("-", "jsonl") == "jsonl"
    assert format_for("results.txt", "jsonl") == "jsonl"
    with pytest.raises(InputError, match="x.csv is a csv file name but the format asked for is jsonl"):
        format_for("x.csv", "jsonl")
    with pytest.raises(InputError, match="results go to a .csv or .jsonl file"):
        format_for("results.txt", None)


def test_existing_file_is_never_clobbered(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("img0,img1,distance,error,model\n")
    with pytest.raises(InputError, match="exists: pass --resume"):
        ResultWriter(out)
    ResultWriter(out, overwrite=True).close()
