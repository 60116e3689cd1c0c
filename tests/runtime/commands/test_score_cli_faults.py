"""``lpips-score`` under I/O faults and signals, as real processes: names of any bytes through --out,
--resume and --pairs; a full disk; stdout closed, full or a closed pipe; a file where a folder is needed;
two writers on one --out; SIGINT in every mode. Each test reproduces a defect found at main 7071800
(tracebacks, a lost result with exit code 0, 232 rows for 200 pairs, UnicodeEncodeError on every run)."""
from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from conftest import crop, distort, photo
from lpips_runtime.commands.score import main
from odd_names import NAMES

SCRIPT = str(Path(sys.executable).with_name("lpips-score"))
TIMEOUT = 300


def _slow_rows(delay: float) -> str:
    """``lpips-score`` with every result row followed by a pause: a run long enough to be interrupted
    or raced at a known point, whatever the machine's speed."""
    return ("import time, lpips_runtime.records.results as results\n"
            "write_row = results.ResultWriter.write_row\n"
            "def slow(self, row):\n"
            "    write_row(self, row)\n"
            f"    time.sleep({delay})\n"
            "results.ResultWriter.write_row = slow\n"
            "from lpips_runtime.commands.score import main\n"
            "main()\n")


# A pair scored after saying so (a marker file) and then taking its time: SIGINT lands mid-computation.
_PAUSED_PAIR = ("import os, pathlib, time, lpips_runtime.core.scorer as scorer\n"
                "def paused(self, *args, **kwargs):\n"
                "    pathlib.Path(os.environ['LPIPS_TEST_MARKER']).touch()\n"
                "    time.sleep(60)\n"
                "scorer.Scorer.distance = scorer.Scorer.scores = paused\n"
                "from lpips_runtime.commands.score import main\n"
                "main()\n")


def _command(*args, inject: str | None = None) -> list[str]:
    head = [sys.executable, "-c", inject] if inject else [SCRIPT]
    return head + [os.fspath(a) if isinstance(a, Path) else str(a) for a in args]


def _run(*args, inject=None, **options) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args, inject=inject), capture_output=True, timeout=TIMEOUT, **options)


def _clean_one_line(stderr: bytes) -> str:
    """stderr of a failed run: exactly one line, ours, no traceback, no interpreter complaint."""
    text = stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in text and "Exception ignored" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    return lines[0]


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return list(csv.DictReader(f))


def _wait_for(predicate, what: str, proc: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
        assert time.monotonic() < deadline, f"no {what} within {limit} s"
        time.sleep(0.02)


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture(scope="module")
def names_tree(tmp_path_factory):
    """d0/ and d1/ holding one pair per troublesome name (bytes that are not UTF-8, commas, quotes, line
    breaks, spaces at the ends), each a real photograph and a distortion of it."""
    root = tmp_path_factory.mktemp("names")
    for i, raw in enumerate(NAMES):
        ref = crop(photo(["astronaut", "chelsea", "coffee", "rocket"][i % 4]), 64, 64)
        for side, img in ((b"d0", ref), (b"d1", distort(ref, "blur", 0.3 + i / 20))):
            os.makedirs(os.path.join(os.fsencode(root), side), exist_ok=True)
            ok, data = cv2.imencode(".png", img[..., ::-1])
            with open(os.path.join(os.fsencode(root), side, raw), "wb") as f:
                f.write(data.tobytes())
    return root


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Twelve real 64x64 images and a --pairs list of their 66 pairs i<j (paths relative to the list)."""
    root = tmp_path_factory.mktemp("many")
    (root / "imgs").mkdir()
    names = []
    for i in range(12):
        ref = crop(photo(["astronaut", "chelsea", "coffee", "rocket"][i % 4]), 64, 64)
        names.append(f"im{i:02d}.png")
        img = distort(ref, ["blur", "jpeg", "noise"][i % 3], 0.5, seed=i)
        cv2.imwrite(str(root / "imgs" / names[-1]), img[..., ::-1])
    listing = root / "pairs.csv"
    listing.write_text("".join(f"imgs/{a},imgs/{b}\n" for a, b in itertools.combinations(names, 2)))
    return root


# -- names of any bytes ------------------------------------------------------------------------------


def test_byte_names_through_out_resume_and_pairs(alex_models, names_tree, tmp_path):
    d0, d1 = names_tree / "d0", names_tree / "d1"
    base = ["--dir0", d0, "--dir1", d1, "--models-dir", alex_models, "-q"]
    csv_out, jsonl_out = tmp_path / "r.csv", tmp_path / "r.jsonl"
    for out in (csv_out, jsonl_out):
        done = _run(*base, "--out", out)
        assert done.returncode == 0, done.stderr
    rows = _rows(csv_out)
    assert sorted(os.fsencode(Path(r["img0"]).name) for r in rows) == sorted(NAMES)
    assert all(r["distance"] and not r["error"] for r in rows)
    records = [json.loads(line) for line in jsonl_out.read_bytes().decode("utf-8").split("\n") if line]
    exact = [base64.b64decode(r["img0_b64"]) if "img0_b64" in r else r["img0"].encode() for r in records]
    assert sorted(os.path.basename(e) for e in exact) == sorted(NAMES)
    assert [r["distance"] for r in records] == [float(r["distance"]) for r in rows]

    # resume after a kill that kept three rows: the rest is added once
    text = io.TextIOWrapper(io.BytesIO(csv_out.read_bytes()), encoding="utf-8", errors="surrogateescape",
                            newline="")
    records_csv = list(csv.reader(text))
    partial = io.StringIO()
    csv.writer(partial, lineterminator="\n").writerows(records_csv[:4])
    csv_out.write_bytes(partial.getvalue().encode("utf-8", "surrogateescape"))
    again = _run(*base[:-1], "--out", csv_out, "--resume")
    assert again.returncode == 0, again.stderr
    assert f"3 pairs already there, {len(NAMES) - 3} to go" in again.stderr.decode()
    resumed = _rows(csv_out)
    assert len(resumed) == len(NAMES) and {r["img0"] for r in resumed} == {r["img0"] for r in rows}

    # our own results file fed back as a pair list: the same pairs, the same distances
    fed = _run("--pairs", csv_out, "--models-dir", alex_models, "-q")
    assert fed.returncode == 0, fed.stderr
    assert all(raw.replace(b'"', b'""') in fed.stdout for raw in NAMES)
    again_rows = list(csv.DictReader(io.TextIOWrapper(io.BytesIO(fed.stdout), encoding="utf-8",
                                                      errors="surrogateescape", newline="")))
    assert len(again_rows) == len(NAMES) and all(r["distance"] and not r["error"] for r in again_rows)
    assert sorted(r["distance"] for r in again_rows) == sorted(r["distance"] for r in rows)


def test_byte_names_on_a_strict_stdout(alex_models, names_tree):
    """Rows on stdout keep the exact bytes even when Python's stdout would refuse them (a strict
    encoding, as with PYTHONIOENCODING=utf-8:strict or a non-C UTF-8 locale)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    done = _run("--dir0", names_tree / "d0", "--dir1", names_tree / "d1", "--models-dir", alex_models, "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert all(raw.replace(b'"', b'""') in done.stdout for raw in NAMES)
    pair = _run(names_tree / "d0" / os.fsdecode(NAMES[0]), names_tree / "d1" / os.fsdecode(NAMES[0]), "--json",
                "--models-dir", alex_models, env=env)
    assert pair.returncode == 0, pair.stderr
    record = json.loads(pair.stdout.decode("utf-8"))
    assert base64.b64decode(record["img0_b64"]).endswith(NAMES[0]) and "\ufffd" in record["img0"]


def test_pairs_cells_with_spaces_at_the_ends(alex_models, names_tree, tmp_path):
    """A results file written next to the images starts a cell with a space (the name's own); read back as
    a pair list it names the same file (hand-written lists' "a.png, b.png" still work)."""
    out = names_tree / "d0" / "here.csv"
    done = _run("--dir0", "d0", "--dir1", "d1", "--models-dir", alex_models, "-q", "--out", "d0/here.csv",
                cwd=names_tree)
    try:
        assert done.returncode == 0, done.stderr
        assert any(r["img0"].startswith(" lead") for r in _rows(out))
        fed = _run("--pairs", out, "--models-dir", alex_models, "-q")
        assert fed.returncode == 0, fed.stderr
    finally:
        out.unlink(missing_ok=True)
    listing = tmp_path / "hand.csv"
    cafe = "caf\u00e9.png"
    listing.write_text(f"{names_tree / 'd0' / cafe}, {names_tree / 'd1' / cafe}\n")
    assert _run("--pairs", listing, "--models-dir", alex_models, "-q").returncode == 0


# -- disks, streams and paths --------------------------------------------------------------------------


def test_a_full_disk_is_one_line_and_resume_finishes(alex_models, many, tmp_path):
    """--out on a 64 KiB tmpfs left with one free page (in a private mount namespace): the run stops with
    one line and exit 1, the rows that fit are kept, and --resume finishes once space is freed."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    disk, keep = tmp_path / "disk", tmp_path / "keep"
    disk.mkdir()
    keep.mkdir()
    run = " ".join(f"'{a}'" for a in _command("--pairs", many / "pairs.csv", "--models-dir", alex_models, "-q",
                                               "--out", disk / "r.csv"))
    script = (f"mount -t tmpfs -o size=64k tmpfs '{disk}' || exit 77\n"
              f"head -c 61440 /dev/zero > '{disk}/filler'\n"
              f"{run} 2> '{keep}/first.err'; echo $? > '{keep}/first.rc'\n"
              f"cp '{disk}/r.csv' '{keep}/after-enospc.csv'\n"
              f"rm '{disk}/filler'\n"
              f"{run} --resume 2> '{keep}/second.err'; echo $? > '{keep}/second.rc'\n"
              f"cp '{disk}/r.csv' '{keep}/final.csv'\n")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert (keep / "first.rc").read_text().strip() == "1"
    line = _clean_one_line((keep / "first.err").read_bytes())
    assert line == (f"Error: {disk / 'r.csv'}: cannot write (No space left on device): the rows written so far "
                    "are kept; free some space, then rerun with --resume")
    kept = (keep / "after-enospc.csv").read_bytes()
    assert 10 < kept.count(b"\n") < 66 and len(kept) <= 4096
    assert (keep / "second.rc").read_text().strip() == "0", (keep / "second.err").read_text()
    final = _rows(keep / "final.csv")
    assert len(final) == 66 == len({(r["img0"], r["img1"]) for r in final})
    assert all(r["distance"] and not r["error"] for r in final)


@pytest.mark.parametrize("mode,stdout,message", [
    ("batch", "/dev/full", "Error: standard output: cannot write (No space left on device)"),
    ("batch", "closed", "Error: standard output is closed: nowhere to write the rows (give --out FILE)"),
    ("pair", "/dev/full", "Error: standard output: cannot write (No space left on device)"),
    ("pair", "closed", "Error: standard output is closed: nowhere to print the distance"),
])
def test_stdout_faults_fail_with_one_line(alex_models, many, mode, stdout, message):
    """At main 7071800: tracebacks in batch mode, and in pair mode with stdout closed the result was lost
    with exit code 0."""
    imgs = many / "imgs"
    args = (["--dir0", imgs, "--dir1", imgs] if mode == "batch" else [imgs / "im00.png", imgs / "im01.png"])
    command = _command(*args, "--models-dir", alex_models, "-q")
    if stdout == "closed":
        done = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *command], capture_output=False,
                              stderr=subprocess.PIPE, timeout=TIMEOUT)
    else:
        with open(stdout, "w") as sink:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert done.returncode == 1
    assert _clean_one_line(done.stderr) == message


@pytest.mark.parametrize("mode", ["batch", "pair", "error"])
def test_a_closed_stderr_keeps_messages_off_stdout(alex_models, many, mode):
    """``2>&-``: messages (progress, the summary, an error) go nowhere; stdout still carries results only.
    Found on this branch: click sent them to stdout when ``sys.stderr`` was None."""
    imgs = many / "imgs"
    args = {"batch": ["--dir0", imgs, "--dir1", imgs], "pair": [imgs / "im00.png", imgs / "im01.png"],
            "error": ["--dir0", imgs, "--dir1", imgs / "nope"]}[mode]
    done = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *_command(*args, "--models-dir", alex_models)],
                          stdout=subprocess.PIPE, timeout=TIMEOUT)
    assert done.returncode == (1 if mode == "error" else 0)
    lines = done.stdout.decode().splitlines()
    if mode == "batch":
        assert lines[0].startswith("img0,img1,") and len(lines) == 13 and all(",LPIPS-alex" in x for x in lines[1:])
    elif mode == "pair":
        assert len(lines) == 1 and float(lines[0]) > 0
    else:
        assert lines == []


@pytest.mark.parametrize("mode", ["batch", "error"])
def test_a_full_stderr_does_not_fail_a_run(alex_models, many, mode):
    """``2>/dev/full``: messages are best effort; the exit code is the run's. Found on this branch: a run
    that had delivered every row exited 1 because its summary line could not be written."""
    imgs = many / "imgs"
    args = {"batch": ["--dir0", imgs, "--dir1", imgs], "error": ["--dir0", imgs, "--dir1", imgs / "nope"]}[mode]
    with open("/dev/full", "w") as full:
        done = subprocess.run(_command(*args, "--models-dir", alex_models), stdout=subprocess.PIPE, stderr=full,
                              timeout=TIMEOUT)
    assert done.returncode == (1 if mode == "error" else 0)
    lines = done.stdout.decode().splitlines()
    assert len(lines) == (13 if mode == "batch" else 0) and all(",LPIPS-alex" in x for x in lines[1:])


def test_a_closed_pipe_ends_the_run_quietly(alex_models, many):
    """``lpips-score ... | head -1``: exit 141 (as a tool killed by SIGPIPE reads in the shell), nothing on
    stderr, no 'Exception ignored' at interpreter shutdown."""
    proc = subprocess.Popen(_command("--pairs", many / "pairs.csv", "--models-dir", alex_models, "--batch-size", "1",
                                     inject=_slow_rows(0.05)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"img0,img1,")  # the header, with the first row
    proc.stdout.close()  # as head -1 does
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 141 and err == b"", err


def test_a_file_where_a_folder_is_needed(alex_models, many, tmp_path):
    (tmp_path / "afile").write_text("x")
    base = ["--dir0", many / "imgs", "--dir1", many / "imgs", "--models-dir", alex_models, "-q"]
    for extra in (["--out", tmp_path / "afile" / "x.csv"], ["--summary-json", tmp_path / "afile" / "s.json"]):
        result = CliRunner().invoke(main, [str(a) for a in (*base, *extra)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
        assert f"{tmp_path / 'afile'} is a file, not a folder" in result.stderr


# -- two writers, one file ---------------------------------------------------------------------------------


def test_a_second_writer_on_one_out_is_refused(alex_models, many, tmp_path):
    """At main 7071800 two concurrent --resume runs on one --out wrote 232 rows for 200 pairs. Now the
    second is refused (naming the first's pid) while the first runs, and the file holds each pair once."""
    out = tmp_path / "r.csv"
    args = ["--pairs", many / "pairs.csv", "--models-dir", alex_models, "--out", out, "--resume", "-q",
            "--batch-size", "1"]
    first = subprocess.Popen(_command(*args, inject=_slow_rows(0.05)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _line_count(out) >= 3, "rows", first)
        second = _run(*args)
        assert second.returncode == 1
        assert _clean_one_line(second.stderr) == (f"Error: {out} is being written by another process (pid "
                                                  f"{first.pid}): wait for it to end, or write to another file")
        assert first.wait(timeout=TIMEOUT) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    rows = _rows(out)
    assert len(rows) == 66 == len({(r["img0"], r["img1"]) for r in rows})
    after = _run(*args[:-3])
    assert after.returncode == 0 and _rows(out) == rows


# -- SIGINT ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_models(split_models):
    return split_models("squeeze")


@pytest.mark.parametrize("mode", ["pair", "dirs", "pairs", "all-pairs", "ref"])
def test_sigint_is_130_in_every_mode(request, alex_models, many, tmp_path, mode):
    """Interrupted mid-run: exit 130, one line on stderr (no traceback); in batch modes the rows written so
    far are whole and kept, --summary-json says complete: false, and the counts agree. --all-pairs and
    --ref go through the feature cache (squeeze's encoder/head exports)."""
    imgs = many / "imgs"
    out, summary = tmp_path / "r.csv", tmp_path / "s.json"
    models = request.getfixturevalue("cache_models") if mode in ("all-pairs", "ref") else alex_models
    model_args = ["--models-dir", models, "--net", "squeeze" if mode in ("all-pairs", "ref") else "alex"]
    if mode == "pair":
        marker = tmp_path / "scoring"
        proc = subprocess.Popen(_command(imgs / "im00.png", imgs / "im01.png", *model_args, inject=_PAUSED_PAIR),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "LPIPS_TEST_MARKER": str(marker)})
        _wait_for(marker.exists, "scoring", proc)
    else:
        batch = {"dirs": ["--dir0", imgs, "--dir1", imgs], "pairs": ["--pairs", many / "pairs.csv"],
                 "all-pairs": ["--all-pairs", imgs], "ref": ["--ref", imgs / "im00.png", "--dir", imgs]}[mode]
        proc = subprocess.Popen(_command(*batch, *model_args, "--out", out, "--summary-json", summary,
                                         "--batch-size", "1", inject=_slow_rows(0.2)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for(lambda: _line_count(out) >= 3, "rows", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    text = stderr.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert stdout == b""
    if mode == "pair":
        assert text.strip() == "interrupted"
        return
    assert text.strip().splitlines()[-1].startswith("interrupted after ")
    rows = _rows(out)
    assert rows and all(r["distance"] and r["model"] for r in rows)  # whole rows only
    record = json.loads(summary.read_text())
    assert record["complete"] is False and record["n"] + record["failures"] == len(rows)
