"""Open a video (any container FFmpeg reads, or headerless raw frames) and describe its video stream."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..optional import require

# Headerless files: FFmpeg cannot guess their frame size and layout, the user gives them (--raw, --pix-fmt).
RAW_SUFFIXES = (".yuv", ".raw")
RAW_RATE = 25  # FFmpeg's default frame rate for raw input (--raw-fps changes it): pts are index / rate


def load_av():
    """PyAV, or ``MissingExtraError`` naming the ``video`` extra."""
    return require("av", "video", "reading video")


@dataclass(frozen=True)
class RawFormat:
    """Frame size and pixel format of headerless frames (e.g. a ``.yuv`` file of yuv420p frames)."""

    width: int
    height: int
    pix_fmt: str = "yuv420p"
    fps: float = RAW_RATE  # frames per second: only the rows' pts_* and a heatmap video's rate depend on it

    @classmethod
    def parse(cls, size: str, pix_fmt: str = "yuv420p", fps: float = RAW_RATE) -> "RawFormat":
        match = re.fullmatch(r"\s*(\d+)x(\d+)\s*", size.lower())
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise InputError(f"raw frame size '{size}': use WxH, e.g. 1920x1080")
        av = load_av()
        try:
            av.VideoFormat(pix_fmt)
        except (ValueError, TypeError):
            raise InputError(f"unknown pixel format '{pix_fmt}' (FFmpeg's names: yuv420p, yuv420p10le, "
                             "nv12, rgb24, ...)") from None
        if not fps > 0:
            raise InputError(f"raw frame rate {fps}: must be a positive number of frames per second")
        return cls(int(match[1]), int(match[2]), pix_fmt, float(fps))


def is_raw_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in RAW_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What the container and codec headers say about a video stream (before any frame is decoded)."""

    width: int
    height: int
    pix_fmt: str
    bits: int  # bits per sample of the deepest component (8 for yuv420p, 10 for yuv420p10le)
    is_rgb: bool  # samples are RGB already (no matrix, no range)
    codec: str
    declared_frames: int | None  # from the container (MP4, ...); None where it does not say (MKV, Y4M, raw)
    rate: float | None  # average frames per second, if known
    colorspace: int  # FFmpeg's AVColorSpace code from the stream headers (2: unspecified)
    color_range: int  # FFmpeg's AVColorRange code (0: unspecified, 1: limited, 2: full)

    def size(self) -> str:
        return f"{self.width}x{self.height}"


class VideoSource:
    """An opened video file: ``info`` describes its (first) video stream; ``container`` and ``stream`` are
    PyAV's objects, read by one ``FrameReader``. ``label`` ("REF", "DIST") prefixes every message."""

    def __init__(self, path: str | Path, label: str, raw: RawFormat | None = None):
        self.path, self.label = Path(path), label
        self.name = f"{label} {self.path}"
        av = load_av()
        if not self.path.exists():
            raise InputError(f"{self.name}: no such file")
        if self.path.is_dir():
            raise InputError(f"{self.name}: is a directory, not a video")
        if is_raw_name(self.path) and raw is None:
            raise InputError(f"{self.name}: headerless raw video: give its frame size with --raw WxH "
                             "(and --pix-fmt, default yuv420p)")
        options = {}
        if raw is not None and is_raw_name(self.path):
            options = {"video_size": f"{raw.width}x{raw.height}", "pixel_format": raw.pix_fmt,
                       "framerate": f"{raw.fps:g}"}
        try:
            self.container = av.open(str(self.path), format="rawvideo" if options else None, options=options)
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.name}: not a video FFmpeg can read ({_reason(exc)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{self.name}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame and slice threads: FFmpeg decodes while we score
        ctx = self.stream.codec_context
        fmt = self.stream.format
        if fmt is None or not ctx.width or not ctx.height:
            self.container.close()
            raise InputError(f"{self.name}: the video stream has no frame size or pixel format")
        self.info = VideoInfo(
            width=ctx.width, height=ctx.height, pix_fmt=fmt.name,
            bits=max((c.bits for c in fmt.components), default=8), is_rgb=bool(fmt.is_rgb), codec=ctx.name,
            declared_frames=self.stream.frames or None,
            rate=float(self.stream.average_rate) if self.stream.average_rate else None,
            colorspace=int(ctx.colorspace), color_range=int(ctx.color_range))

    def close(self) -> None:
        self.container.close()


def _reason(exc: Exception) -> str:
    """FFmpeg's reason without the errno and the repeated file name."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[0].strip() or type(exc).__name__
