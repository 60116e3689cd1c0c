"""Decoding and preprocessing with OpenCV, matching the official ``lpips.load_image`` + ``im2tensor``.

Official pipeline for 8-bit files: ``cv2.imread(path)[:, :, ::-1]`` (BGR->RGB; grey becomes three
channels; alpha is dropped; JPEG EXIF orientation applied), then ``x / 127.5 - 1`` computed in float64
and stored as float32. We decode from bytes (so any path, including non-ASCII ones, works), keep
16-bit depth and scale it from its full range instead of truncating it to 8 bits, and reproduce the
float64-then-float32 rounding exactly through a lookup table.

Hostile input is bounded before it costs anything: files are read only if regular and not larger than
the pixel limit allows (``fileio``), and the size an image declares is checked against the pixel limit
from its header (``headers``), before OpenCV allocates a pixel.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from ..errors import ImageTooLargeError, InputError
from .fileio import UnreadableFile, read_regular_file
from .headers import SIZED_FORMATS, image_size, sniff
from ..limits import DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_MAX_PIXELS", "OPENCV_MAX_PIXELS", "EncodedImage", "image_size", "decode_image", "read_image_file", "load_rgb",
           "rgb_to_unit_nchw", "check_unit_batch", "ResizePolicy", "describe", "check_pixels", "max_file_bytes"]


@dataclass(frozen=True)
class EncodedImage:
    """Encoded image bytes with the name that messages use for them (e.g. an upload's field and file
    name), where plain ``bytes`` would be called ``<N bytes>``."""

    data: bytes
    name: str


ImageSource = Union[str, Path, bytes, EncodedImage, np.ndarray]

# OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS default): what max_pixels=None leaves.
OPENCV_MAX_PIXELS = 1 << 30

# float32(u / 127.5 - 1) with the arithmetic done in float64, as the official im2tensor does.
_UNIT_LUT_U8 = (np.arange(256, dtype=np.float64) / 127.5 - 1.0).astype(np.float32)
# Inputs may overshoot [-1, 1] by float rounding of an upstream computation, not by more.
_RANGE_SLACK = 1e-4


def describe(src: ImageSource) -> str:
    """A short name for messages."""
    if isinstance(src, (str, Path)):
        return str(src)
    if isinstance(src, bytes):
        return f"<{len(src)} bytes>"
    if isinstance(src, EncodedImage):
        return src.name
    return f"<array {getattr(src, 'shape', '?')} {getattr(src, 'dtype', '?')}>"


def read_image_file(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file -> HxWx3 RGB, uint8 or uint16 (16-bit files keep their depth).

    Only regular files are read (a FIFO, device or socket is refused before reading), and, under a
    pixel limit, none larger than ``max_file_bytes(max_pixels)``; see ``decode_image`` for the limit.
    """
    try:
        data = read_regular_file(path, max_file_bytes(max_pixels))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnreadableFile as exc:
        raise InputError(f"{path}: cannot read as an image: {exc}") from None
    return decode_image(data, str(path), max_pixels=max_pixels)


def max_file_bytes(max_pixels: int | None) -> int | None:
    """The largest image file read under a pixel limit: an uncompressed 16-bit RGBA image of
    ``max_pixels`` (8 bytes a pixel) plus 64 MiB of metadata. None (no cap) without a limit."""
    return None if max_pixels is None else 8 * max_pixels + (64 << 20)


def check_pixels(name: str, width: int, height: int, max_pixels: int | None) -> None:
    """``ImageTooLargeError`` if ``width`` x ``height`` exceeds ``max_pixels`` (None: OpenCV's own limit)."""
    limit = OPENCV_MAX_PIXELS if max_pixels is None else max_pixels
    if width * height > limit:
        raise ImageTooLargeError(name, width, height, limit)


def decode_image(data: bytes, name: str = "<bytes>", *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes -> HxWx3 RGB, uint8 or uint16.

    Under a pixel limit (``max_pixels``, default ``DEFAULT_MAX_PIXELS``) the size is read from the
    header first (``image_size``) and an image declaring more is refused with ``ImageTooLargeError``
    before any pixel is decoded; a format whose header cannot be sized is refused too (``InputError``).
    ``max_pixels=None``: no limit but OpenCV's own (2^30 pixels), any format OpenCV reads.
    Float formats (PFM, HDR, EXR) are refused before decoding: LPIPS takes 8/16-bit images.
    """
    if not data:
        raise InputError(f"{name}: empty file")
    fmt = sniff(data)
    if fmt is not None and fmt.floating:
        raise InputError(f"{name}: {fmt.name} holds floating-point samples (8- or 16-bit images only)")
    if max_pixels is not None:
        if max_pixels < 1:
            raise InputError(f"max_pixels must be >= 1 (or None for no limit), got {max_pixels}")
        size = image_size(data)
        if size is None:
            raise InputError(f"{name}: {_unsized(fmt)}")
        check_pixels(name, *size, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR gives 3 channels (grey replicated, alpha dropped) and applies EXIF orientation,
    # exactly as cv2.imread(path) in the official loader; IMREAD_ANYDEPTH keeps 16-bit samples.
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:
        raise InputError(f"{name}: cannot decode ({str(exc).strip().splitlines()[-1]})") from None
    if img is None:
        kind = "corrupt or truncated image" if fmt is not None else "not an image format OpenCV can read"
        raise InputError(f"{name}: {kind}")
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{name}: unsupported sample type {img.dtype} (8- or 16-bit images only)")
    if max_pixels is not None:  # the header and the decoder disagreed: refuse what the limit refuses
        check_pixels(name, img.shape[1], img.shape[0], max_pixels)
    return np.ascontiguousarray(img[:, :, ::-1])


def _unsized(fmt) -> str:
    if fmt is None:
        return "not an image format OpenCV can read"
    if fmt.pillow is None:
        return (f"the size of a {fmt.name} image cannot be checked before decoding, so it is not decoded under a "
                f"pixel limit (convert it to one of {SIZED_FORMATS}, or lift the limit: --max-pixels none)")
    return f"corrupt or truncated image (its {fmt.name} header does not parse)"


def load_rgb(src: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any single-image source -> HxWx3 RGB uint8/uint16 (arrays: HxWx3 uint8/uint16 RGB, or HxW grey).
    Encoded sources (paths, bytes, ``EncodedImage``) are decoded under ``max_pixels`` (see ``decode_image``); arrays are
    already in memory and are not limited."""
    if isinstance(src, (str, Path)):
        return read_image_file(src, max_pixels=max_pixels)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return decode_image(bytes(src), max_pixels=max_pixels)
    if isinstance(src, EncodedImage):
        return decode_image(src.data, src.name, max_pixels=max_pixels)
    if isinstance(src, np.ndarray):
        if src.dtype not in (np.uint8, np.uint16):
            raise InputError(f"image array has dtype {src.dtype}: pass HxWx3 uint8 RGB, "
                             "or a float NCHW batch in [-1,1]")
        if src.ndim == 2:
            src = np.repeat(src[:, :, None], 3, axis=2)
        if src.ndim != 3 or src.shape[2] not in (3, 4):
            raise InputError(f"image array has shape {src.shape}: expected HxWx3 (RGB) or HxW (grey)")
        if src.shape[0] == 0 or src.shape[1] == 0:
            raise InputError(f"image array has shape {src.shape}: an image needs at least one row and column")
        return np.ascontiguousarray(src[:, :, :3])  # alpha dropped, as the official loader does
    raise InputError(f"cannot read an image from {type(src).__name__}")


def rgb_to_unit_nchw(img: np.ndarray) -> np.ndarray:
    """HxWx3 RGB uint8/uint16 -> float32 [1,3,H,W] in [-1,1] (uint8: bit-identical to ``im2tensor``)."""
    if img.dtype == np.uint8:
        unit = _UNIT_LUT_U8[img]
    else:  # 16-bit: full range [0, 65535] -> [-1, 1], same float64-then-float32 rounding
        unit = (img / 32767.5 - 1.0).astype(np.float32)
    return np.ascontiguousarray(unit.transpose(2, 0, 1)[None])


def check_unit_batch(arr: np.ndarray, name: str = "input") -> np.ndarray:
    """Validate a float NCHW batch in [-1,1] and return it as contiguous float32."""
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype.kind != "f":
        raise InputError(f"{name}: NCHW batches must be float in [-1,1], got dtype {arr.dtype} "
                         "(uint8 images go in as HxWx3)")
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise InputError(f"{name}: expected shape [N,3,H,W], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: empty batch")
    if arr.shape[2] == 0 or arr.shape[3] == 0:
        raise InputError(f"{name}: images of {arr.shape[3]}x{arr.shape[2]} pixels: no pixels to compare")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{name}: contains NaN or infinity")
    if lo < -1 - _RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise InputError(f"{name}: values span [{lo:.4g}, {hi:.4g}] but LPIPS takes [-1,1] "
                         "(map [0,1] data with 2*x-1, as LPIPS(normalize=True) does, or np.clip)")
    return arr


# -- resizing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResizePolicy:
    """How to reconcile image sizes: ``none`` (sizes must match), ``first`` (resize the second image
    to the first's size) or a fixed ``WxH`` for both. Resizing uses ``cv2.INTER_AREA``."""

    mode: str = "none"
    size: tuple[int, int] | None = None  # (width, height) for the fixed mode

    @classmethod
    def parse(cls, text: str) -> "ResizePolicy":
        text = text.strip().lower()
        if text in ("none", "first"):
            return cls(text)
        match = re.fullmatch(r"(\d+)x(\d+)", text)
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise InputError(f"resize policy '{text}': use none, first, or WxH (e.g. 256x256)")
        return cls("fixed", (int(match[1]), int(match[2])))

    def check_limit(self, max_pixels: int | None) -> None:
        """``InputError`` if a fixed size has more pixels than a decoded image may have (``max_pixels``;
        None: OpenCV's own limit), so that resizing cannot allocate what decoding would refuse."""
        if self.mode != "fixed":
            return  # "first" resizes to a decoded image's size: bounded by the same limit
        width, height = self.size
        limit = OPENCV_MAX_PIXELS if max_pixels is None else max_pixels
        if width * height > limit:
            raise InputError(f"resize to {width}x{height} is {width * height:,} pixels, above the pixel limit of "
                             f"{limit:,} (--max-pixels / max_pixels=)")

    def apply(self, img0: np.ndarray, img1: np.ndarray, names=("image 0", "image 1")):
        """Return the two HxWx3 images at a common size, or raise ``InputError`` on a mismatch."""
        if self.mode == "fixed":
            return _resized(img0, self.size), _resized(img1, self.size)
        if img0.shape[:2] != img1.shape[:2]:
            if self.mode == "first":
                return img0, _resized(img1, (img0.shape[1], img0.shape[0]))
            raise InputError(
                f"size mismatch: {names[0]} is {img0.shape[1]}x{img0.shape[0]}, {names[1]} is "
                f"{img1.shape[1]}x{img1.shape[0]} (LPIPS compares same-size images; see --resize)"
            )
        return img0, img1


def _resized(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA)
