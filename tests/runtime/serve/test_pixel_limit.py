"""The interim header reader of lpips-serve's pixel limit: sizes of real encoded files, as OpenCV wrote them."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from lpips_runtime.serve.pixel_limit import ImageTooLarge, check_pixels, declared_size


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
@pytest.mark.parametrize("width, height", [(97, 31), (640, 481)])
def test_sizes_of_files_opencv_writes(ext, width, height):
    img = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []  # 101: lossless (VP8L)
    data = cv2.imencode(ext, img, params)[1].tobytes()
    assert declared_size(data) == (width, height)
    if ext == ".webp":  # lossy WebP has another header (VP8)
        assert declared_size(cv2.imencode(ext, img, [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()) == (width, height)


def test_gif_header_unknown_formats_and_the_limit():
    assert declared_size(b"GIF89a" + struct.pack("<HH", 300, 200) + b"\0" * 8) == (300, 200)
    assert declared_size(b"P6\n3 2\n255\n") is None  # not read here: OpenCV's own limit applies
    assert declared_size(b"\x89PNG\r\n\x1a\n") is None  # too short to say
    check_pixels(b"GIF89a" + struct.pack("<HH", 100, 100), "small.gif", 10_000)
    with pytest.raises(ImageTooLarge, match=r"^big.gif: 101x100 is 10,100 pixels, above the limit of 10,000"):
        check_pixels(b"GIF89a" + struct.pack("<HH", 101, 100), "big.gif", 10_000)
