"""Resuming a results file that cannot be fooled: every damaged row is one line naming the file and the
line (and the file is left as it was); another format or header is refused, never appended to; a partial
last row (a kill, a full disk, a crash) is dropped and said; repeated rows are counted; a second writer on
the same file is refused; names of any bytes come back as the same keys. Found at main 7071800: five
tracebacks (non-numeric distance, binary junk, bad JSON line, JSON array line) and a crash on every
non-UTF-8 name."""
from __future__ import annotations

import base64
import csv
import errno
import io
import json
import logging
import os

import numpy as np
import pytest

from lpips_runtime.errors import InputError, OutputError
from lpips_runtime.records.results import PAIR_COLUMNS, ResultWriter
from lpips_runtime.core.scorer import PairResult
from lpips_runtime.records.summary import RunSummary

HEADER = ",".join(PAIR_COLUMNS) + "\n"
MODEL = {"model": "LPIPS-alex v0.1"}
GOOD = "a.png,b.png,0.25,,LPIPS-alex v0.1\n"


def _resume(out, **options):
    return ResultWriter(out, constants=MODEL, resume=True, **options)


@pytest.mark.parametrize("name,content,message", [
    ("distance.csv", HEADER + GOOD + "a.png,c.png,abc,,LPIPS-alex v0.1\n", "line 3: distance 'abc' is not a number"),
    ("nan.csv", HEADER + "a.png,c.png,nan,,LPIPS-alex v0.1\n", "line 2: distance 'nan' is not a finite number"),
    ("junk.csv", (HEADER + GOOD).encode() + b"\x00\xff\xfe junk\x89\n", "line 3: 1 field(s), not the 5 of "
                                                              "img0,img1,distance,error,model"),
    ("noquote.csv", HEADER + 'a.png,"b.png"x,0.1,,LPIPS-alex v0.1\n', "line 2: not CSV ("),
    ("empty-key.csv", HEADER + ",b.png,0.1,,LPIPS-alex v0.1\n", "line 2: img0 is empty"),
    ("bad.jsonl", '{"img0": "a.png", "img1"\n', "line 1: not a JSON object (Expecting ':' delimiter"),
    ("array.jsonl", '["a.png", "b.png", 0.1, null, "m"]\n', "line 1: a JSON array, not an object"),
    ("missing.jsonl", '{"img0": "a.png", "img1": "b.png"}\n', "line 1: lacks distance, error, model"),
    ("extra.jsonl", json.dumps({"img0": "a.png", "img1": "b.png", "distance": 0.1, "error": None, "model": "m",
                                "psnr": 30.0}) + "\n", "line 1: has psnr, which this command does not write"),
    ("string-distance.jsonl", json.dumps({"img0": "a.png", "img1": "b.png", "distance": "0.1", "error": None,
                                          "model": "LPIPS-alex v0.1"}) + "\n",
     "line 1: distance '0.1' is not a number"),
    ("bad-b64.jsonl", json.dumps({"img0": "a.png", "img0_b64": "%%%", "img1": "b.png", "distance": 0.1,
                                  "error": None, "model": "LPIPS-alex v0.1"}) + "\n", "line 1: img0_b64 is not base64"),
    ("latin1.jsonl", b'{"img0": "lat\xe9.png"}\n', "line 1: not UTF-8 text"),
    ("csv-in.jsonl", HEADER + GOOD, "line 1: not a JSON object"),
    ("jsonl-in.csv", json.dumps({"img0": "a.png"}) + "\n", "has the columns"),
    ("one-column.csv", "foo\n1\n2\n", "has the columns foo, not img0,img1,distance,error,model"),
    ("other-model.csv", HEADER + "a.png,b.png,0.25,,LPIPS-vgg v0.1\n", "line 2: holds results of LPIPS-vgg v0.1, "
                                                                      "not LPIPS-alex v0.1"),
])
def test_damaged_or_foreign_files_are_one_line_and_left_alone(tmp_path, name, content, message):
    out = tmp_path / name
    out.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = out.read_bytes()
    with pytest.raises(InputError) as caught:
        _resume(out)
    text = str(caught.value)
    assert text.startswith(str(out)) and message in text and "\n" not in text, text
    assert out.read_bytes() == before  # refused: never appended to, never truncated


@pytest.mark.parametrize("name,content,message", [
    ("notes.csv", "some,other,table\n1,2", "has the columns some,other,table"),
    ("config.jsonl", '{"a": 1}', "line 1: an unfinished last line that does not begin like a row of this command"),
    ("table.csv", "x,y", "line 1: an unfinished last line"),
])
def test_a_foreign_file_with_an_unfinished_last_line_is_not_truncated(tmp_path, name, content, message):
    """No final newline looks like our partial row, but the file is not ours: refused, left whole."""
    out = tmp_path / name
    out.write_text(content)
    with pytest.raises(InputError, match=message):
        _resume(out)
    assert out.read_text() == content


@pytest.mark.parametrize("tail", ["a.png,d.p", '"new\nline.png",d.png,0.', "\x00" * 4096, 'a.png,"x'])
def test_a_partial_last_row_is_dropped_and_said(tmp_path, caplog, tail):
    """What a kill (no final newline, also inside a quoted name holding a newline), or a crash that
    left the file's last block zero-filled, leaves: dropped, said once, and the rest resumes."""
    out = tmp_path / "r.csv"
    out.write_text(HEADER + GOOD + tail)
    with caplog.at_level(logging.WARNING, logger="lpips_runtime"):
        writer = _resume(out)
    writer.close()
    assert out.read_text() == HEADER + GOOD
    assert writer.done == {writer.key_of({"img0": tmp_path / "a.png", "img1": tmp_path / "b.png"})}
    assert f"{out}: dropped an incomplete last row" in caplog.text


def test_repeated_rows_are_counted_not_refused(tmp_path, caplog):
    """Rows that repeat a pair (two writers without the lock, or files joined by hand) are safe to
    keep: the pair is done; the count is said."""
    out = tmp_path / "r.csv"
    out.write_text(HEADER + GOOD + "a.png,c.png,0.5,,LPIPS-alex v0.1\n" + GOOD + GOOD)
    summary = RunSummary()
    with caplog.at_level(logging.WARNING, logger="lpips_runtime"):
        _resume(out, summary=summary).close()
    assert f"{out}: 2 rows repeat a pair of an earlier row (first at line 4)" in caplog.text
    assert summary.resumed == 4 and summary.stats.n == 4  # the statistics count the file's rows as they are


def test_blank_lines_are_skipped(tmp_path):
    out = tmp_path / "r.jsonl"
    row = json.dumps({"img0": "a.png", "img1": "b.png", "distance": 0.25, "error": None, **MODEL})
    out.write_text(row + "\n\n" + row.replace("b.png", "c.png") + "\n")
    assert len(_resume(out).done) == 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_byte_names_round_trip_and_resume(tmp_path, monkeypatch, fmt):
    """Names that are not UTF-8 (and CSV/line-break troublemakers) are written exactly and read back as
    the same resume keys; at main 7071800 the first such row was a UnicodeEncodeError."""
    from odd_names import NAMES

    monkeypatch.chdir(tmp_path)
    names = [os.fsdecode(raw) for raw in NAMES]
    out = tmp_path / f"r.{fmt}"
    with ResultWriter(out, constants=MODEL) as writer:
        for i, name in enumerate(names):
            writer.write(PairResult(i, name, "ref.png", np.float32(0.5), None))
        writer.write(PairResult(99, names[0], names[1], None, f"{names[0]}: no such file"))
    raw = out.read_bytes()
    if fmt == "jsonl":
        records = [json.loads(line) for line in raw.decode("utf-8").split("\n") if line]  # strict UTF-8
        assert base64.b64decode(records[0]["img0_b64"]) == NAMES[0]
        assert base64.b64decode(records[-1]["error_b64"]).startswith(NAMES[0])
    else:
        assert all(r.replace(b'"', b'""') in raw for r in NAMES)  # exact bytes (CSV doubles quotes)
        rows = list(csv.DictReader(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="surrogateescape",
                                                    newline="")))
        assert [os.fsencode(r["img0"]) for r in rows[:-1]] == NAMES
    again = _resume(out)
    again.close()
    assert again.done == {again.key_of({"img0": n, "img1": "ref.png"}) for n in names} | {
        again.key_of({"img0": names[0], "img1": names[1]})}


def test_a_second_writer_on_the_same_file_is_refused(tmp_path):
    out = tmp_path / "r.csv"
    with ResultWriter(out, constants=MODEL) as first:
        first.write(PairResult(0, "a.png", "b.png", 0.5))
        for options in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(InputError, match=rf"{out} is being written by another process \(pid {os.getpid()}\)"):
                ResultWriter(out, constants=MODEL, **options)
        first.write(PairResult(1, "a.png", "c.png", 0.5))
    assert out.read_text().count("\n") == 3  # header + 2 rows: the refused writers changed nothing
    _resume(out).close()  # free again once the first is closed


def test_a_file_where_a_folder_is_needed(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match=f"{tmp_path / 'afile'} is a file, not a folder"):
        ResultWriter(tmp_path / "afile" / "x.csv")
    with pytest.raises(InputError, match=f"{tmp_path / 'afile'} is a file, not a folder"):
        ResultWriter(tmp_path / "afile" / "deeper" / "x.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(InputError, match="folder.csv is a folder: results go to a file"):
        ResultWriter(tmp_path / "folder.csv")


def test_resume_needs_a_regular_file():
    with pytest.raises(InputError, match="/dev/null is not a regular file: --resume needs one"):
        ResultWriter("/dev/null", fmt="csv", resume=True)


def test_write_faults_are_typed_one_line_errors(tmp_path):
    writer = ResultWriter("/dev/full", fmt="csv")
    with pytest.raises(OutputError, match="^/dev/full: cannot write .No space left on device.") as caught:
        writer.write(PairResult(0, "a.png", "b.png", 0.5))
    assert caught.value.errno == errno.ENOSPC
    writer.close()  # after a failed write, closing raises nothing more

    class Broken(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    stream = io.TextIOWrapper(io.BufferedWriter(Broken()), encoding="utf-8")
    writer = ResultWriter(None, stream=stream)
    with pytest.raises(OutputError, match="^standard output: cannot write") as caught:
        writer.write(PairResult(0, "a.png", "b.png", 0.5))
    assert caught.value.errno == errno.EPIPE and caught.value.stream
    writer.close()


def test_metric_columns_are_checked_and_infinity_is_kept(tmp_path):
    """With --metrics, PSNR's +inf (identical images: ``inf`` in CSV) resumes as infinity, counted apart by
    the summary; a metric that is not a number is refused like a distance."""
    from lpips_runtime.records.results import pair_columns

    columns = pair_columns(("psnr", "ssim"))
    header = ",".join(columns) + "\n"
    out = tmp_path / "m.csv"
    out.write_text(header + "a.png,b.png,0.25,31.5,0.9,,LPIPS-alex v0.1\na.png,a.png,0,inf,1,,LPIPS-alex v0.1\n")
    summary = RunSummary()
    ResultWriter(out, columns=columns, constants=MODEL, resume=True, summary=summary).close()
    assert summary.metrics["psnr"].infinite == 1 and summary.metrics["psnr"].finite.mean == 31.5
    out.write_text(header + "a.png,b.png,0.25,high,0.9,,LPIPS-alex v0.1\n")
    with pytest.raises(InputError, match="line 2: psnr 'high' is not a number"):
        ResultWriter(out, columns=columns, constants=MODEL, resume=True)
