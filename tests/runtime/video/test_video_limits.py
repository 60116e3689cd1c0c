"""lpips-video honours the Scorer's limits and says when nothing was scored (issue 25, defects 4 and 9):
--max-pixels refuses a stream by its declared frame size before decoding, --max-memory refuses a frame
pair that cannot fit and cannot be tiled (8-bit video: the uint8 frame graph), an offset past the end
exits 1 instead of 0, and Ctrl-C still writes --summary, marked incomplete."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("av")

from conftest import wait_for_lines  # noqa: E402
from lpips_runtime.model.modelfile import ModelSpec  # noqa: E402
from lpips_runtime.video.cli import main  # noqa: E402
from video_clips import distorted, pan, write  # noqa: E402

SCRIPT = str(Path(sys.executable).with_name("lpips-video"))
N, H, W = 8, 144, 192  # alex needs ~230 B per pixel of a pair: 6.4 MB for these frames


@pytest.fixture(scope="module")
def models_dir(exported, exported_spec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("video-models")
    for path in (exported("alex"), exported_spec(ModelSpec("alex", frames="nhwc-rgb"))):
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    frames = pan(N, H, W)
    return (write(root / "ref.y4m", frames, codec="rawvideo", fmt="yuv4mpegpipe"),
            write(root / "dist.y4m", distorted(frames), codec="rawvideo", fmt="yuv4mpegpipe"))


def _invoke(*args, models_dir):
    return CliRunner().invoke(main, [*map(str, args), "--models-dir", str(models_dir)])


def test_max_pixels_refuses_a_stream_by_its_declared_size(clips, models_dir):
    result = _invoke(*clips, "--max-pixels", str(H * W - 1), models_dir=models_dir)
    assert result.exit_code == 1, result.output
    assert f"{W}x{H} is {W * H:,} pixels, above the limit" in result.stderr and "--max-pixels" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert _invoke(*clips, "--max-pixels", str(H * W), models_dir=models_dir).exit_code == 0


def test_max_memory_refuses_frames_the_frame_graph_cannot_fit(clips, models_dir):
    result = _invoke(*clips, "--max-memory", "2M", models_dir=models_dir)
    assert result.exit_code == 1, result.output
    assert "over --max-memory" in result.stderr and "uint8 frame graph" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert _invoke(*clips, "--max-memory", "16M", models_dir=models_dir).exit_code == 0


def test_nothing_to_score_exits_1(clips, models_dir):
    result = _invoke(*clips, "--offset", str(N), "--shortest", models_dir=models_dir)
    assert result.exit_code == 1, result.output
    assert "no frame pairs to score" in result.stderr


def test_interrupted_run_writes_an_incomplete_summary(models_dir, tmp_path):
    """SIGINT midway (DIST comes through a pipe that holds back its last frames): exit 130 and --summary
    written with "complete": false and the frames scored so far."""
    n, held_back = 24, 8
    frames = pan(n, 96, 128)
    ref = write(tmp_path / "ref.y4m", frames, codec="rawvideo", fmt="yuv4mpegpipe")
    data = write(tmp_path / "dist.y4m", distorted(frames), codec="rawvideo", fmt="yuv4mpegpipe").read_bytes()
    frame_bytes = (len(data) - data.index(b"FRAME")) // n
    pipe, out, summary = tmp_path / "dist-pipe.y4m", tmp_path / "frames.csv", tmp_path / "summary.json"
    os.mkfifo(pipe)
    proc = subprocess.Popen([SCRIPT, str(ref), str(pipe), "--out", str(out), "--summary", str(summary),
                             "--batch-size", "1", "--models-dir", str(models_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with open(pipe, "wb") as feed:
        feed.write(data[:len(data) - held_back * frame_bytes])
        feed.flush()
        wait_for_lines(out, 1, proc)  # a first row: midway (small frames are decoded ahead in large chunks)
        os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    written = json.loads(summary.read_text())
    rows = out.read_text().count("\n") - 1
    assert written["complete"] is False and written["frames_scored"] == rows > 0
