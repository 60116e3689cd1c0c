"""The pixel limit is checked from the header, before decoding: decompression bombs (tiny files declaring
16000x16000 and more) are refused with one line and no large allocation (issue 11: a 249 KB PNG cost 16 s and
ended in a numpy traceback; a 875 KB one cost 5.4 GB). Every format lpips-rt lists is either sized from its
header or refused before decoding."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from conftest import crop, photo
from lpips_runtime.errors import ImageTooLargeError, InputError
from lpips_runtime.io.images import DEFAULT_MAX_PIXELS, decode_image, image_size, load_rgb
from lpips_runtime.io.pairs import IMAGE_SUFFIXES


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` RGB, followed by four rows of pixels only."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMBS = [("png", 16000, 16000), ("png", 30000, 30000), ("png", 100000, 100000),
         ("jpg", 16000, 16000), ("jpg", 30000, 30000), ("jpg", 65000, 65000)]


def test_bombs_are_sized_from_their_headers():
    for kind, w, h in BOMBS:
        data = png_declaring(w, h) if kind == "png" else jpeg_declaring(w, h)
        assert len(data) < 4096 and image_size(data) == (w, h)


CHILD = """
import json, resource, sys
import numpy as np
from lpips_runtime.errors import ImageTooLargeError
from lpips_runtime.io.images import load_rgb

for path in sys.argv[1:3]:  # small real images first: codecs loaded, their buffers counted in the baseline
    load_rgb(path)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = []
for path in sys.argv[3:]:
    try:
        load_rgb(path)
        out.append(None)
    except ImageTooLargeError as exc:
        out.append([exc.width, exc.height, exc.limit, str(exc)])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kib": after - before, "refused": out}))
"""


def test_bombs_refused_before_any_allocation(tmp_path):
    """Measured in a fresh process: peak RSS must not grow while the six bombs are refused (decoding even
    the smallest would allocate 768 MB)."""
    small = []
    for ext in (".png", ".jpg"):
        small.append(tmp_path / f"small{ext}")
        cv2.imwrite(str(small[-1]), crop(photo("coffee"), 64, 64))
    paths = []
    for kind, w, h in BOMBS:
        paths.append(tmp_path / f"bomb-{w}.{kind}")
        paths[-1].write_bytes(png_declaring(w, h) if kind == "png" else jpeg_declaring(w, h))
    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, small + paths)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    for (kind, w, h), refused in zip(BOMBS, got["refused"]):
        assert refused is not None, f"{kind} {w}x{h} was decoded"
        assert refused[:3] == [w, h, DEFAULT_MAX_PIXELS]
        assert "\n" not in refused[3] and "--max-pixels" in refused[3]
    assert got["grew_kib"] < 32 * 1024, f"peak RSS grew by {got['grew_kib'] / 1024:.0f} MiB while refusing bombs"


def test_limit_is_the_callers():
    data = png_declaring(3000, 2000)
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data, "x.png", max_pixels=5_000_000)
    assert (info.value.width, info.value.height, info.value.limit) == (3000, 2000, 5_000_000)
    with pytest.raises(InputError, match="corrupt or truncated"):  # within the limit: decoded, and it is truncated
        decode_image(data, "x.png", max_pixels=6_000_000)
    img = crop(photo("chelsea"), 40, 60)
    ok, buf = cv2.imencode(".png", img[..., ::-1])
    with pytest.raises(ImageTooLargeError):
        load_rgb(buf.tobytes(), max_pixels=40 * 60 - 1)
    assert np.array_equal(load_rgb(buf.tobytes(), max_pixels=40 * 60), img)
    assert np.array_equal(load_rgb(buf.tobytes(), max_pixels=None), img)


def _encode(ext: str, img: np.ndarray) -> bytes | None:
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error:
        return None
    return buf.tobytes() if ok else None


@pytest.mark.parametrize("ext", sorted(IMAGE_SUFFIXES))
def test_every_listed_format_is_sized_or_refused_before_decoding(ext):
    """8/16-bit formats: the header size is the decoded size. Float formats (PFM, HDR, EXR) are refused
    before decoding, whatever the limit (they were refused after decoding before)."""
    img = crop(photo("rocket"), 37, 53)[..., ::-1]
    floating = ext in (".pfm", ".hdr", ".pic", ".exr")
    src = img.astype(np.float32) / 255 if floating else img[..., 0] if ext in (".pbm", ".pgm") else img
    data = _encode(ext, src)
    if data is None:
        assert ext == ".exr"  # this OpenCV build writes no OpenEXR (reading it is off by default too)
        data = b"v/1\x01" + bytes(64)  # the OpenEXR signature
    if floating:
        for limit in (DEFAULT_MAX_PIXELS, None):
            with pytest.raises(InputError, match="floating-point samples"):
                decode_image(data, f"x{ext}", max_pixels=limit)
        return
    assert image_size(data) == (53, 37)
    assert decode_image(data, f"x{ext}").shape[:2] == (37, 53)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, f"x{ext}", max_pixels=53 * 37 - 1)


def test_formats_without_a_header_reader_are_not_decoded_under_a_limit():
    pam = _encode(".pam", crop(photo("rocket"), 20, 30)[..., ::-1])  # PAM: OpenCV reads it, Pillow cannot size it
    with pytest.raises(InputError, match="PAM image cannot be checked before decoding.*--max-pixels none"):
        decode_image(pam, "x.pam")
    assert decode_image(pam, "x.pam", max_pixels=None).shape == (20, 30, 3)


def test_resize_bounded_by_the_pixel_limit(split_models):
    from lpips_runtime import Scorer

    for size in ("99999999x99999999", "20000x20000"):
        with pytest.raises(InputError, match=f"resize to {size} is .* above the pixel limit of 100,000,000"):
            Scorer("squeeze", models_dir=split_models("squeeze"), resize=size)
    with pytest.raises(InputError, match="above the pixel limit of 1,073,741,824"):  # no limit: OpenCV's own
        Scorer("squeeze", models_dir=split_models("squeeze"), resize="99999999x99999999", max_pixels=None)
    Scorer("squeeze", models_dir=split_models("squeeze"), resize="20000x20000", max_pixels=None)


@pytest.mark.parametrize("size", ["99999999x99999999", "20000x20000"])
def test_cli_absurd_resize_is_one_line(split_models, photo_pair_files, size):
    p0, p1 = photo_pair_files[0]
    done = subprocess.run([sys.executable, "-m", "lpips_runtime.commands.score", str(p0), str(p1), "--net", "squeeze",
                           "--models-dir", str(split_models("squeeze")), "--resize", size],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"Error: resize to {size} is {np.prod([int(v) for v in size.split('x')]):,} pixels, above the pixel limit "
        "of 100,000,000 (--max-pixels / max_pixels=)"]


def test_cli_bomb_is_one_line_and_the_batch_goes_on(split_models, photo_pair_files, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(30000, 30000))
    p0, p1 = photo_pair_files[0]
    common = ["--net", "squeeze", "--models-dir", str(split_models("squeeze"))]
    done = subprocess.run([sys.executable, "-m", "lpips_runtime.commands.score", str(p0), str(bomb), *common],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: {bomb}: 30000x30000 is 900,000,000 pixels, above the limit of 100,000,000 (raise it with "
        "--max-pixels / max_pixels=, or shrink the image)"]
    (tmp_path / "pairs.csv").write_text(f"{p0},{bomb}\n{p0},{p1}\n")
    done = subprocess.run([sys.executable, "-m", "lpips_runtime.commands.score", "--pairs", str(tmp_path / "pairs.csv"),
                           "-q", *common], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3  # one pair failed, the other was scored
    rows = done.stdout.strip().splitlines()
    assert "above the limit of 100,000,000" in rows[1] and rows[2].split(",")[3] == ""
