"""Interim pixel limit of lpips-serve: an image's size read from its header, checked before decoding.

To be replaced by the runtime's own limit (``Scorer(max_pixels=...)``, which refuses with
``errors.ImageTooLargeError`` inside ``load_pair``) once that lands: then ``Service.load_pair`` calls
``scorer.load_pair`` alone and this module goes. Formats read here: PNG, JPEG, GIF, BMP, WebP (the
formats sent over the web); others are left to OpenCV's own limit (2^30 pixels).
"""
from __future__ import annotations

import struct

from ..errors import InputError


class ImageTooLarge(InputError):
    """An image whose header declares more pixels than the limit (answered 413, never decoded)."""

    def __init__(self, name: str, width: int, height: int, limit: int):
        self.width, self.height, self.limit = width, height, limit
        super().__init__(f"{name}: {width}x{height} is {width * height:,} pixels, above the limit of {limit:,} "
                         "(lpips-serve --max-pixels)")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: P, Y, X
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header of a PNG, JPEG, GIF, BMP or WebP file declares it; None for other
    formats or a header too short to say."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)  # a negative height: rows stored top-down
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def check_pixels(data: bytes, name: str, limit: int) -> None:
    """``ImageTooLarge`` if the header of ``data`` declares more than ``limit`` pixels."""
    size = declared_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageTooLarge(name, size[0], size[1], limit)
