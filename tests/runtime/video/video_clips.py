"""Small synthetic clips for the video tests, written with PyAV: a slow pan over a photograph and a
distorted copy of it (frame k: a blur/noise/JPEG/colour distortion of strength k % 6 / 6; every sixth
frame identical)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from conftest import distort, photo

HEIGHT, WIDTH = 72, 96
KINDS = ("blur", "noise", "jpeg", "colour")


def pan(n: int, height: int = HEIGHT, width: int = WIDTH, name: str = "astronaut") -> list[np.ndarray]:
    """n RGB uint8 frames: a window moving 2 px down and 3 px right per frame over a photograph."""
    img = photo(name)
    return [np.ascontiguousarray(img[80 + 2 * k:80 + 2 * k + height, 120 + 3 * k:120 + 3 * k + width]) for k in range(n)]


def distorted(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [f if k % 6 == 0 else distort(f, KINDS[k % 4], (k % 6) / 6, seed=k) for k, f in enumerate(frames)]


def write(path: Path, frames: list[np.ndarray], codec: str = "ffv1", pix_fmt: str = "yuv420p", fmt: str | None = None,
          options: dict | None = None, colorspace: str | None = None, colour_range: str | None = None,
          rate: int = 25) -> Path:
    """Encode RGB frames. ``colorspace``/``colour_range`` ("bt709"/"full"...): convert with that matrix
    and range and tag the stream with them; default: swscale's untagged BT.601 limited range."""
    import av
    from av.video.reformatter import VideoReformatter

    tags = {"bt709": (1, "ITU709"), "bt601": (6, "ITU601")}
    ranges = {"limited": (1, "MPEG"), "full": (2, "JPEG")}
    reformatter = VideoReformatter()
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        if colorspace:
            stream.codec_context.colorspace = tags[colorspace][0]
        if colour_range:
            stream.codec_context.color_range = ranges[colour_range][0]
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = reformatter.reformat(
                frame, format=pix_fmt,
                dst_colorspace=tags[colorspace][1] if colorspace else None,
                dst_color_range=ranges[colour_range][1] if colour_range else None)
            frame.pts, frame.time_base = k, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_raw(path: Path, frames: list[np.ndarray], pix_fmt: str = "yuv420p") -> Path:
    """Headerless frames (what `ffmpeg -f rawvideo` writes): the planes of each frame, back to back."""
    import av

    with open(path, "wb") as f:
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            for plane in frame.planes:
                row = plane.width * (2 if "10" in pix_fmt or "16" in pix_fmt else 1)
                data = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                f.write(data[:, :row].tobytes())
    return path


def decode_reference(path: Path, output: str = "rgb24", matrix: str = "ITU601", colour_range: str = "MPEG",
                     raw: dict | None = None) -> list[tuple[float | None, np.ndarray]]:
    """(pts in seconds, RGB array) of every frame, decoded with PyAV's own frame API (not our reader):
    the frames lpips-video should score, converted as its defaults say (bilinear chroma, accurate rounding)."""
    import av
    from av.video.reformatter import Interpolation

    flags = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND
    out = []
    with av.open(str(path), format="rawvideo" if raw else None, options=raw or {}) as container:
        for frame in container.decode(video=0):
            out.append((frame.time, frame.to_ndarray(format=output, interpolation=flags, src_colorspace=matrix,
                                                     src_color_range=colour_range)))
    return out


def corrupt_packet(path: Path, out: Path, index: int) -> Path:
    """A copy of an FFV1 file with the last 3 bytes of packet ``index`` inverted: its last slice's size
    field, which FFmpeg's decoder rejects ("Invalid data"). (Damage inside slice data only fails the
    slice CRC, which FFmpeg 8 logs and conceals without telling the caller: not detectable through PyAV.)"""
    import av

    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[index]
    data = bytearray(path.read_bytes())
    for i in range(pos + size - 3, pos + size):
        data[i] ^= 0xFF
    out.write_bytes(bytes(data))
    return out
