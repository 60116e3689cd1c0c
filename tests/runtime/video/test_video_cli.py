"""``lpips-video`` end to end on synthetic clips written with PyAV (FFV1/MKV, Y4M, raw YUV, H.264, 10-bit):
per-frame distances equal ``Scorer.distance`` on the same frames decoded independently (PyAV's own frame
API), alignment, mismatches, corrupt data, resumption after an interruption, the pooled summary."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("av")

from lpips_runtime import Scorer  # noqa: E402
from lpips_runtime.model.modelfile import ModelSpec  # noqa: E402
from conftest import wait_for_lines  # noqa: E402
from lpips_runtime.video.cli import main  # noqa: E402
from video_clips import (HEIGHT, WIDTH, corrupt_packet, decode_reference, distorted, pan, write,  # noqa: E402
                         write_raw)

SCRIPT = str(Path(sys.executable).with_name("lpips-video"))
N = 24
RAW8 = {"video_size": f"{WIDTH}x{HEIGHT}", "pixel_format": "yuv420p"}
RAW10 = {"video_size": f"{WIDTH}x{HEIGHT}", "pixel_format": "yuv420p10le"}


@pytest.fixture(scope="module")
def models_dir(exported, exported_spec, tmp_path_factory):
    """alex v0.1: float graph, spatial float graph, and the uint8 nhwc-rgb frame graph, in one folder."""
    folder = tmp_path_factory.mktemp("video-models")
    for path in (exported("alex"), exported("alex", spatial=True), exported_spec(ModelSpec("alex", frames="nhwc-rgb"))):
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    ref, dist = pan(N), None
    dist = distorted(ref)
    files = {
        "ref.mkv": write(root / "ref.mkv", ref),
        "dist.mkv": write(root / "dist.mkv", dist),
        "ref.y4m": write(root / "ref.y4m", ref, codec="rawvideo", fmt="yuv4mpegpipe"),
        "dist.yuv": write_raw(root / "dist.yuv", dist),
        "dist.mp4": write(root / "dist.mp4", dist, codec="libx264", options={"crf": "28"}),
        "ref10.mkv": write(root / "ref10.mkv", ref, pix_fmt="yuv420p10le"),
        "dist10.yuv": write_raw(root / "dist10.yuv", dist, "yuv420p10le"),
        "short.mkv": write(root / "short.mkv", dist[:20]),
        "short.mp4": write(root / "short.mp4", dist[:20], codec="libx264", options={"crf": "28"}),
        "ref.mp4": write(root / "ref.mp4", ref, codec="libx264", options={"crf": "28"}),
        "small.mkv": write(root / "small.mkv", [f[:64, :80] for f in dist]),
    }
    files["crc.mkv"] = write(root / "crc.mkv", dist, options={"g": "1"})  # intra only: damage stays in its frame
    files["corrupt.mkv"] = corrupt_packet(files["crc.mkv"], root / "corrupt.mkv", 10)
    files["text.mp4"] = root / "text.mp4"
    files["text.mp4"].write_text("not a video")
    return files


@pytest.fixture(scope="module")
def float_scorer(models_dir):
    with Scorer(models_dir / "lpips-alex-v0.1.onnx") as scorer:
        yield scorer


def _invoke(*args, models_dir):
    return CliRunner().invoke(main, [*map(str, args), "--models-dir", str(models_dir)])


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _expected(float_scorer, ref, dist, pairs) -> list[float]:
    """Scorer.distance of (REF frame i, DIST frame j) for each (i, j), on independently decoded frames."""
    return [float_scorer.distance(ref[i][1], dist[j][1]) for i, j in pairs]


CASES = {
    "ffv1-mkv": ("ref.mkv", "dist.mkv", [], None, "rgb24"),
    "y4m-vs-raw": ("ref.y4m", "dist.yuv", ["--raw", f"{WIDTH}x{HEIGHT}"], RAW8, "rgb24"),
    "lossless-vs-h264": ("ref.mkv", "dist.mp4", [], None, "rgb24"),
    "10bit-ffv1-vs-raw": ("ref10.mkv", "dist10.yuv", ["--raw", f"{WIDTH}x{HEIGHT}", "--pix-fmt", "yuv420p10le"],
                          RAW10, "gbrp16le"),
}


@pytest.mark.parametrize("case", CASES)
def test_frames_equal_scorer_distance_on_the_same_decoded_frames(case, clips, models_dir, float_scorer):
    ref_name, dist_name, options, raw, output = CASES[case]
    result = _invoke(clips[ref_name], clips[dist_name], *options, models_dir=models_dir)
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    ref = decode_reference(clips[ref_name], output)
    dist = decode_reference(clips[dist_name], output, raw=raw if dist_name.endswith(".yuv") else None)
    assert [int(r["frame"]) for r in rows] == list(range(N))
    expected = _expected(float_scorer, ref, dist, [(i, i) for i in range(N)])
    got = [float(r["distance"]) for r in rows]
    assert np.abs(np.array(got) - expected).max() <= 1e-6
    assert [float(r["pts_ref"]) for r in rows] == pytest.approx([t for t, _ in ref])
    assert [float(r["pts_dist"]) for r in rows] == pytest.approx([t for t, _ in dist])
    assert all(r["model"] == "LPIPS-alex v0.1" and not r["error"] for r in rows)
    if case != "lossless-vs-h264":
        assert got[0] == got[6] == 0.0 and min(got[1:6]) > 0  # identical frames every 6th, distortions between
    summary = result.stderr.strip().splitlines()
    assert summary[0].startswith(f"REF {clips[ref_name]}: {WIDTH}x{HEIGHT} ") and "bt601 limited range" in summary[0]
    assert summary[-1].startswith(f"n={N} mean=")


def test_eight_bit_frames_go_through_the_uint8_graph_without_host_floats(clips, models_dir, monkeypatch):
    """8-bit video runs the uint8 nhwc-rgb graph; the host float conversion is never called."""
    import lpips_runtime.core.scorer as scorer_module

    def refuse(*_):
        raise AssertionError("float conversion on the host")

    monkeypatch.setattr(scorer_module, "rgb_to_unit_nchw", refuse)
    opened = []
    real_init = Scorer.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(Scorer, "__init__", spy)
    result = _invoke(clips["ref.mkv"], clips["dist.mkv"], models_dir=models_dir)
    assert result.exit_code == 0, result.output
    assert [s.spec.frames for s in opened] == ["nhwc-rgb"]
    assert len(_rows(result.stdout)) == N


def test_ten_bit_scores_like_the_eight_bit_encoding_of_the_same_frames(clips, models_dir):
    """The 10-bit clip holds the same pictures as the 8-bit one: its distances (float graph, 16-bit RGB from
    swscale) must match them closely (a wrong scale or truncation to 8 bits would not)."""
    eight = _rows(_invoke(clips["ref.mkv"], clips["dist.mkv"], models_dir=models_dir).stdout)
    ten = _rows(_invoke(clips["ref10.mkv"], clips["dist10.yuv"], "--raw", f"{WIDTH}x{HEIGHT}", "--pix-fmt",
                        "yuv420p10le", models_dir=models_dir).stdout)
    d8, d10 = (np.array([float(r["distance"]) for r in rows]) for rows in (eight, ten))
    scored = d8 > 0
    assert np.abs(d10 - d8)[scored].max() <= 0.1 * d8[scored].min() + 0.01
    assert np.corrcoef(d8, d10)[0, 1] > 0.99


def test_alignment_offset_step_and_max_frames(clips, models_dir, float_scorer):
    ref, dist = decode_reference(clips["ref.mkv"]), decode_reference(clips["dist.mkv"])
    cases = {
        ("--offset", "2", "--shortest"): [(i, i + 2) for i in range(N - 2)],
        ("--offset", "-3", "--shortest"): [(i, i - 3) for i in range(3, N)],
        ("--step", "5"): [(i, i) for i in range(0, N, 5)],
        ("--max-frames", "4"): [(i, i) for i in range(4)],
        ("--offset", "1", "--step", "3", "--max-frames", "3"): [(0, 1), (3, 4), (6, 7)],
    }
    for options, pairs in cases.items():
        result = _invoke(clips["ref.mkv"], clips["dist.mkv"], *options, models_dir=models_dir)
        assert result.exit_code == 0, (options, result.output)
        rows = _rows(result.stdout)
        assert [int(r["frame"]) for r in rows] == [i for i, _ in pairs], options
        assert [float(r["pts_dist"]) for r in rows] == pytest.approx([dist[j][0] for _, j in pairs])
        expected = _expected(float_scorer, ref, dist, pairs)
        assert np.abs(np.array([float(r["distance"]) for r in rows]) - expected).max() <= 1e-6, options


def test_different_frame_counts_need_shortest(clips, models_dir):
    # MKV does not declare its length: the mismatch is found at the end, after the common rows are written.
    late = _invoke(clips["ref.mkv"], clips["short.mkv"], models_dir=models_dir)
    assert late.exit_code == 1 and len(_rows(late.stdout)) == 20
    assert late.stderr.strip().splitlines()[-1] == (
        "Error: frame counts differ: REF has 24 frames, DIST has 20: pass --shortest to score the common part; "
        "rows of the common frames are kept")
    # MP4 declares it: refused before any decoding.
    early = _invoke(clips["ref.mp4"], clips["short.mp4"], models_dir=models_dir)
    assert early.exit_code == 1 and early.stdout == ""
    assert early.stderr.strip() == ("Error: frame counts differ: REF has 24 frames, DIST has 20: pass --shortest "
                                    "to score the common part")
    shifted = _invoke(clips["ref.mkv"], clips["dist.mkv"], "--offset", "4", models_dir=models_dir)
    assert shifted.exit_code == 1 and "(with --offset 4: 24 REF frames against 20 DIST frames)" in shifted.stderr
    for ref, dist in (("ref.mkv", "short.mkv"), ("ref.mp4", "short.mp4")):
        ok = _invoke(clips[ref], clips[dist], "--shortest", models_dir=models_dir)
        assert ok.exit_code == 0 and len(_rows(ok.stdout)) == 20, ok.output
    limited = _invoke(clips["ref.mp4"], clips["short.mp4"], "--max-frames", "20", models_dir=models_dir)
    assert limited.exit_code == 0 and len(_rows(limited.stdout)) == 20  # the limit ends before the shorter one


def test_different_sizes_need_resize(clips, models_dir, float_scorer):
    refused = _invoke(clips["ref.mkv"], clips["small.mkv"], models_dir=models_dir)
    assert refused.exit_code == 1
    assert refused.stderr.strip() == ("Error: frame sizes differ: REF is 96x72, DIST is 80x64 (pass --resize first "
                                      "to scale DIST to REF, or --resize WxH)")
    first = _invoke(clips["ref.mkv"], clips["small.mkv"], "--resize", "first", models_dir=models_dir)
    assert first.exit_code == 0, first.output
    ref, small = decode_reference(clips["ref.mkv"]), decode_reference(clips["small.mkv"])
    with Scorer(models_dir / "lpips-alex-v0.1.onnx", resize="first") as resizing:
        expected = [resizing.distance(ref[i][1], small[i][1]) for i in range(N)]
    got = [float(r["distance"]) for r in _rows(first.stdout)]
    assert np.abs(np.array(got) - expected).max() <= 1e-6
    fixed = _invoke(clips["ref.mkv"], clips["small.mkv"], "--resize", "64x48", models_dir=models_dir)
    assert fixed.exit_code == 0 and len(_rows(fixed.stdout)) == N
    tiny = _invoke(clips["ref.mkv"], clips["small.mkv"], "--resize", "24x24", models_dir=models_dir)
    assert tiny.exit_code == 1 and "needs at least 31x31" in tiny.stderr


def test_corrupt_frame_mid_stream(clips, models_dir, float_scorer, tmp_path):
    summary = tmp_path / "summary.json"
    result = _invoke(clips["ref.mkv"], clips["corrupt.mkv"], "--summary", summary, models_dir=models_dir)
    assert result.exit_code == 3, result.output
    rows = _rows(result.stdout)
    assert [int(r["frame"]) for r in rows] == list(range(N))
    assert rows[10]["distance"] == "" and rows[10]["error"].startswith("DIST frame 10: cannot decode")
    ref, dist = decode_reference(clips["ref.mkv"]), decode_reference(clips["dist.mkv"])
    others = [i for i in range(N) if i != 10]
    expected = _expected(float_scorer, ref, dist, [(i, i) for i in others])
    assert np.abs(np.array([float(rows[i]["distance"]) for i in others]) - expected).max() <= 1e-6
    data = json.loads(summary.read_text())
    assert data["frames_scored"] == N - 1 and data["failures"] == 1
    assert result.stderr.strip().splitlines()[-1].endswith("failures=1")


def test_summary_matches_the_rows(clips, models_dir, tmp_path):
    from scipy import stats

    out, summary = tmp_path / "frames.jsonl", tmp_path / "summary.json"
    result = _invoke(clips["ref.mkv"], clips["dist.mp4"], "--out", out, "--summary", summary, models_dir=models_dir)
    assert result.exit_code == 0 and result.stdout == "", result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    d = np.array([r["distance"] for r in rows])
    data = json.loads(summary.read_text())
    assert data["frames_scored"] == N and data["failures"] == 0 and data["error"] is None
    assert data["mean"] == pytest.approx(d.mean(), abs=1e-7)
    assert data["std"] == pytest.approx(d.std(), abs=1e-7)
    assert data["harmonic_mean"] == pytest.approx(stats.hmean(d + 1) - 1, abs=1e-7)  # VMAF's shifted form
    for name, q in (("p5", 5), ("p50", 50), ("p95", 95)):
        assert data[name] == pytest.approx(np.percentile(d, q), abs=1e-7)
    assert (data["min"], data["max"]) == pytest.approx((d.min(), d.max()), abs=1e-7)
    assert data["worst_frame"] == rows[int(np.argmax(d))]["frame"]
    assert data["ref"]["frames_read"] == data["dist"]["frames_read"] == N
    assert data["dist"]["codec"] == "h264" and data["model"] == "LPIPS-alex v0.1"
    line = result.stderr.strip().splitlines()[-1]
    assert line == (f"n={N} mean={d.mean():.6f} harmonic_mean={stats.hmean(d + 1) - 1:.6f} std={d.std():.6f} "
                    f"min={d.min():.6f} p5={np.percentile(d, 5):.6f} p50={np.percentile(d, 50):.6f} "
                    f"p95={np.percentile(d, 95):.6f} max={d.max():.6f} worst_frame={data['worst_frame']} failures=0")


def test_bad_inputs_are_one_line_errors(clips, models_dir, tmp_path):
    empty = tmp_path / "empty.y4m"
    empty.write_text(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F25:1 Ip A1:1 C420jpeg\n")  # a stream with no frame in it
    cases = [
        ((tmp_path / "missing.mkv", clips["dist.mkv"]), f"Error: REF {tmp_path / 'missing.mkv'}: no such file"),
        ((clips["ref.mkv"], clips["text.mp4"]),
         f"Error: DIST {clips['text.mp4']}: not a video FFmpeg can read (Invalid data found when processing input)"),
        ((clips["ref.mkv"], clips["dist.yuv"]),
         f"Error: DIST {clips['dist.yuv']}: headerless raw video: give its frame size with --raw WxH "
         "(and --pix-fmt, default yuv420p)"),
        ((clips["ref.mkv"], clips["dist.mkv"], "--raw", "96x72"),
         "Error: --raw applies to inputs named *.yuv or *.raw; neither REF nor DIST is"),
        ((clips["ref.y4m"], clips["dist.yuv"], "--raw", "96by72"), "Error: raw frame size '96by72': use WxH, e.g. 1920x1080"),
        ((clips["ref.y4m"], clips["dist.yuv"], "--raw", "96x72", "--pix-fmt", "yuv999"),
         "Error: unknown pixel format 'yuv999' (FFmpeg's names: yuv420p, yuv420p10le, nv12, rgb24, ...)"),
    ]
    for args, message in cases:
        result = _invoke(*args, models_dir=models_dir)
        assert result.exit_code == 1 and result.stderr.strip() == message, (args, result.output)
    nothing = _invoke(empty, empty, models_dir=models_dir)
    assert nothing.exit_code == 1 and nothing.stderr.strip().splitlines()[-1] == f"Error: REF {empty}: no video frames"
    one_empty = _invoke(clips["ref.y4m"], empty, models_dir=models_dir)
    assert one_empty.exit_code == 1, one_empty.output
    assert one_empty.stderr.strip().splitlines()[-1] == f"Error: DIST {empty}: no video frames"
    assert _invoke(clips["ref.mkv"], models_dir=models_dir).exit_code == 2
    assert _invoke(clips["ref.mkv"], clips["dist.mkv"], "--resume", models_dir=models_dir).exit_code == 2
    assert _invoke(clips["ref.mkv"], clips["dist.mkv"], "--step", "0", models_dir=models_dir).exit_code == 2


def test_resume_after_an_interruption_keeps_every_row(models_dir, exported_spec, tmp_path):
    """Interrupt a streaming run (SIGINT: exit 130), resume it: rows written before stay as they were and
    every frame is there exactly once; a partial last row (a kill mid-write) is dropped and redone.
    DIST first comes through a pipe that holds back its last frames, so the run is surely midway."""
    n, held_back = 40, 12
    frames = pan(n, 128, 160, name="coffee")
    ref = write(tmp_path / "ref.y4m", frames, codec="rawvideo", fmt="yuv4mpegpipe")
    dist = write(tmp_path / "dist.y4m", distorted(frames), codec="rawvideo", fmt="yuv4mpegpipe")
    data = dist.read_bytes()
    frame_bytes = (len(data) - data.index(b"FRAME")) // n
    pipe = tmp_path / "dist-pipe.y4m"
    os.mkfifo(pipe)
    out = tmp_path / "frames.csv"
    options = ["--out", str(out), "--batch-size", "1", "--models-dir", str(models_dir)]
    proc = subprocess.Popen([SCRIPT, str(ref), str(pipe), *options], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    with open(pipe, "wb") as feed:  # opens once lpips-video opens the pipe
        feed.write(data[:len(data) - held_back * frame_bytes])
        feed.flush()
        wait_for_lines(out, 12, proc)  # rows are streaming; the reader waits for the frames held back
        os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)  # the pipe closed: the reader thread ends too
    before = out.read_text().splitlines()
    assert proc.returncode == 130 and 12 < len(before) - 1 <= n - held_back, stderr
    assert f"rerun with --resume to finish {out}" in stderr
    with out.open("a") as f:
        f.write("999,3.96,3.96,0.12")  # a partial row, as a kill mid-write leaves it
    done = subprocess.run([SCRIPT, str(ref), str(dist), *options, "--resume"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming {out}: {len(before) - 1} frames already there" in done.stderr
    after = out.read_text().splitlines()
    assert after[:len(before)] == before  # earlier rows untouched
    assert sorted(int(r["frame"]) for r in _rows("\n".join(after))) == list(range(n))
    full = _invoke(ref, dist, models_dir=models_dir)
    assert sorted(_rows(full.stdout), key=lambda r: int(r["frame"])) == \
        sorted(_rows("\n".join(after)), key=lambda r: int(r["frame"]))
    assert full.stderr.strip().splitlines()[-1] == done.stderr.strip().splitlines()[-1]  # pooled over all rows
    # another net's frame graph beside alex's (lpips-video never exports on demand): its resume is refused
    both = tmp_path / "both-models"
    both.mkdir()
    for path in [*models_dir.iterdir(), exported_spec(ModelSpec("squeeze", frames="nhwc-rgb"))]:
        (both / path.name).symlink_to(path.resolve())
    other = _invoke(ref, dist, "--out", out, "--resume", "--net", "squeeze", models_dir=both)
    assert other.exit_code == 1 and "holds results of LPIPS-alex v0.1" in other.stderr


def test_heatmap_video(clips, models_dir, tmp_path):
    import av

    heat = tmp_path / "heat.mp4"
    result = _invoke(clips["ref10.mkv"], clips["dist10.yuv"], "--raw", f"{WIDTH}x{HEIGHT}", "--pix-fmt",
                     "yuv420p10le", "--heatmap-video", heat, "--heatmap-alpha", "1", models_dir=models_dir)
    assert result.exit_code == 0, result.output
    with av.open(str(heat)) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(pictures) == N and pictures[0].shape[0] == HEIGHT and pictures[0].shape[1] > WIDTH  # + colour bar
    # identical frames (0, 6, ...) map to the colormap's bottom colour (black for inferno); distorted ones do not
    frame = (slice(None), slice(0, WIDTH))  # the map, left of the bar
    assert pictures[0][frame].mean() < 10 and pictures[6][frame].mean() < 10
    assert pictures[5][frame].mean() > pictures[0][frame].mean() + 5


def test_help_and_light_import():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--offset" in result.output and "--heatmap-video" in result.output
    code = "import sys, lpips_runtime.video.cli, lpips_runtime.video.compare; print('av' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_raw_frame_rate_sets_the_raw_inputs_pts(clips, models_dir):
    """Headerless frames carry no rate: --raw-fps gives it (pts = index / rate), default 25 as FFmpeg's."""
    args = (clips["ref.y4m"], clips["dist.yuv"], "--raw", f"{WIDTH}x{HEIGHT}", "--max-frames", "4")
    default = _rows(_invoke(*args, models_dir=models_dir).stdout)
    fifty = _rows(_invoke(*args, "--raw-fps", "50", models_dir=models_dir).stdout)
    assert [float(r["pts_dist"]) for r in default] == pytest.approx([i / 25 for i in range(4)])
    assert [float(r["pts_dist"]) for r in fifty] == pytest.approx([i / 50 for i in range(4)])
    assert [r["distance"] for r in fifty] == [r["distance"] for r in default]
    assert [r["pts_ref"] for r in fifty] == [r["pts_ref"] for r in default]  # the Y4M keeps its own rate
    for bad in (["--raw-fps", "0"], ["--heatmap-max", "auto"]):  # a per-frame scale would flicker: refused
        result = _invoke(*args, *bad, models_dir=models_dir)
        assert result.exit_code == 2, result.output
    assert _invoke(clips["ref.mkv"], clips["dist.mkv"], "--raw-fps", "50", models_dir=models_dir).exit_code == 2


def test_never_exports_on_demand_and_names_the_one_command(clips, tmp_path):
    """Issue 21: a missing frame graph is a one-line error naming the bundle command; nothing is exported."""
    result = CliRunner().invoke(main, [str(clips["ref.mkv"]), str(clips["dist.mkv"]), "--models-dir", str(tmp_path)])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: no exported model lpips-alex-v0.1-u8nhwcrgb.onnx")
    assert f"run `lpips-export --net alex --out {tmp_path}` (on-demand export is off)" in line
    assert list(tmp_path.iterdir()) == []
