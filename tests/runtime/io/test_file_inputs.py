"""Only regular files are read as images or models, and never beyond a cap (issue 11: /dev/zero was read
without limit, a FIFO hung forever, also inside a --pairs CSV)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from lpips_runtime.errors import InputError, ModelFileError
from lpips_runtime.io.images import load_rgb
from lpips_runtime.model.modelfile import MAX_MODEL_BYTES, read_model


def _within(seconds: float, fn):
    """``fn()``'s exception (or None), failing the test instead of hanging if it blocks."""
    box = {}

    def run():
        try:
            fn()
            box["error"] = None
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert "error" in box, f"still blocked after {seconds} s"
    return box["error"]


@pytest.fixture
def specials(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock.png"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    yield {"fifo": fifo, "socket": sock_path, "device": "/dev/zero"}
    sock.close()


@pytest.mark.parametrize("kind, what", [("fifo", "a FIFO"), ("socket", "a socket"), ("device", "a character device")])
def test_special_files_are_not_images(specials, kind, what):
    error = _within(10, lambda: load_rgb(specials[kind]))
    assert isinstance(error, InputError)
    assert str(error) == f"{specials[kind]}: cannot read as an image: is {what}, not a regular file"


@pytest.mark.parametrize("kind, what", [("fifo", "a FIFO"), ("device", "a character device")])
def test_special_files_are_not_models(specials, kind, what):
    error = _within(10, lambda: read_model(specials[kind]))
    assert isinstance(error, ModelFileError) and f"is {what}, not a regular file" in str(error)


def test_oversized_files_refused_by_their_size(tmp_path):
    """Sparse files: nothing is written to disk, and nothing may be read either."""
    model = tmp_path / "huge.onnx"
    with open(model, "wb") as f:
        f.truncate(MAX_MODEL_BYTES + 1)
    with pytest.raises(ModelFileError, match="more than the 2,147,483,647 allowed"):
        read_model(model)
    image = tmp_path / "huge.png"
    with open(image, "wb") as f:
        f.truncate(200 << 20)
    with pytest.raises(InputError, match="bytes, more than the .* allowed"):  # the cap follows the pixel limit
        load_rgb(image, max_pixels=1000)


def test_cli_fifo_in_a_pairs_csv_fails_its_row_only(tmp_path, photo_pair_files, split_models):
    os.mkfifo(tmp_path / "pipe.png")
    p0, p1 = photo_pair_files[0]
    (tmp_path / "pairs.csv").write_text(f"{p0},pipe.png\n{p0},{p1}\n")
    done = subprocess.run([sys.executable, "-m", "lpips_runtime.commands.score", "--pairs", str(tmp_path / "pairs.csv"), "-q",
                           "--net", "squeeze", "--models-dir", str(split_models("squeeze"))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    rows = done.stdout.strip().splitlines()
    assert "pipe.png: cannot read as an image: is a FIFO, not a regular file" in rows[1]
    assert rows[2].split(",")[3] == ""  # the next pair was scored


def test_cli_device_as_model_is_one_line(photo_pair_files):
    p0, p1 = photo_pair_files[0]
    done = subprocess.run([sys.executable, "-m", "lpips_runtime.commands.score", str(p0), str(p1), "--model", "/dev/zero"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: cannot read model /dev/zero: is a character device, not a regular file"]


def test_cli_fifo_as_the_pairs_csv_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "pairs.csv")
    done = subprocess.run([sys.executable, "-m", "lpips_runtime.commands.score", "--pairs", str(tmp_path / "pairs.csv")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"Error: {tmp_path / 'pairs.csv'}: cannot read (is a FIFO, not a regular file)"]
