"""Decoding and colour conversion: the reader's RGB frames match the pictures the clips were made from,
the stream's tags are followed (and overridden on request), deep video keeps its precision."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")

from lpips_runtime.video.colour import ColourConversion, FrameConverter  # noqa: E402
from lpips_runtime.video.decode import FrameReader  # noqa: E402
from lpips_runtime.video.source import RawFormat, VideoInfo, VideoSource  # noqa: E402
from video_clips import pan, write, write_raw  # noqa: E402



def _with_bars(frame: np.ndarray) -> np.ndarray:
    """The frame with saturated colour bars over its lower third (where a wrong matrix shows)."""
    bars = np.array([[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0],
                     [0, 0, 255], [0, 0, 0]], np.uint8)
    out = frame.copy()
    out[48:] = np.repeat(bars, 12, axis=0)[None, :, :]
    return out


FRAMES = [_with_bars(f) for f in pan(6)]


def _read(path, deep=False, raw=None, wanted=lambda i: True, **colour):
    source = VideoSource(path, "REF", raw)
    conversion = ColourConversion.for_stream(source.info, deep, **colour)
    reader = FrameReader(source, FrameConverter(conversion), wanted)
    try:
        return conversion, list(reader), reader
    finally:
        reader.close()


def _error(frames, deep: bool) -> float:
    """Mean absolute difference to the source pictures, in 8-bit steps."""
    scale = 257.0 if deep else 1.0
    return float(np.mean([np.abs(f.rgb / scale - src).mean() for f, src in zip(frames, FRAMES)]))


@pytest.mark.parametrize("tags", [(None, None), ("bt709", "limited"), ("bt709", "full"), ("bt601", "full")])
@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
def test_frames_match_their_source_pictures_and_follow_the_tags(tmp_path, tags, pix_fmt):
    matrix, colour_range = tags
    path = write(tmp_path / "clip.mkv", FRAMES, pix_fmt=pix_fmt, colorspace=matrix, colour_range=colour_range)
    deep = pix_fmt != "yuv420p"
    conversion, frames, reader = _read(path, deep)
    assert reader.count == 6 and reader.error is None and [f.index for f in frames] == list(range(6))
    assert frames[0].rgb.dtype == (np.uint16 if deep else np.uint8) and frames[0].rgb.shape == FRAMES[0].shape
    assert frames[0].rgb.flags["C_CONTIGUOUS"]
    assert (conversion.matrix, conversion.range) == (matrix or "bt601", colour_range or "limited")
    assert conversion.guessed == (() if matrix else ("matrix", "range"))
    # 4:2:0 loses chroma detail (most at the bars' edges): a few steps on average, not tens (a wrong
    # matrix or range, or a broken swscale path like its rgb48le output with full chroma interpolation:
    # 5.5 to 150)
    assert _error(frames, deep) < 4.5
    other = {"bt709": "bt601", "bt601": "bt709", None: "bt709"}[matrix]
    wrong_range = "full" if colour_range in (None, "limited") else "limited"
    assert _error(_read(path, deep, matrix=other)[1], deep) > _error(frames, deep) + 1.5
    assert _error(_read(path, deep, colour_range=wrong_range)[1], deep) > _error(frames, deep) + 4


def test_nearest_chroma_and_unwanted_frames(tmp_path):
    path = write(tmp_path / "clip.mkv", FRAMES)
    conversion, frames, _ = _read(path, chroma="nearest", wanted=lambda i: i % 2 == 0)
    assert conversion.describe() == ("bt601 limited range, nearest chroma -> 8-bit RGB (matrix and range not "
                                     "tagged in the file: assumed)")
    assert [f.rgb is None for f in frames] == [False, True] * 3  # decoded, counted, not converted
    assert _error([frames[0]], False) < 4.5


def test_raw_yuv_equals_y4m(tmp_path):
    raw = write_raw(tmp_path / "clip.yuv", FRAMES)
    y4m = write(tmp_path / "clip.y4m", FRAMES, codec="rawvideo", fmt="yuv4mpegpipe")
    _, from_raw, _ = _read(raw, raw=RawFormat.parse("96x72"))
    _, from_y4m, _ = _read(y4m)
    assert all((a.rgb == b.rgb).all() and a.pts == pytest.approx(b.pts) for a, b in zip(from_raw, from_y4m))


def test_ten_bit_scaling(tmp_path):
    """What swscale makes of 10-bit code values (documented in docs/video.md): within 0.5% of v/1023
    (full range) and (v-64)/876 (limited), with black at 0 and 16-bit output."""
    import av

    codes = np.arange(1024, dtype=np.uint16)
    for colour_range, lo, hi in (("full", 0, 1023), ("limited", 64, 940)):
        frame = av.VideoFrame(1024, 2, "yuv444p10le")
        for plane, value in zip(frame.planes, (np.tile(codes, (2, 1)), 512, 512)):
            np.frombuffer(plane, np.uint16).reshape(2, plane.line_size // 2)[:, :1024] = value
        info = VideoInfo(1024, 2, "yuv444p10le", 10, False, "ffv1", None, 25.0, 1, 2 if colour_range == "full" else 1)
        rgb = FrameConverter(ColourConversion.for_stream(info, deep=True))(frame)[0] / 65535.0
        exact = np.clip((codes.astype(float) - lo) / (hi - lo), 0, 1)
        assert rgb.shape == (1024, 3) and (rgb[:, 0] == rgb[:, 1]).all()  # grey stays grey
        assert np.abs(rgb[:, 0] - exact).max() < 0.005 and rgb[lo, 0] == 0
        assert len(np.unique(rgb[lo:hi + 1, 0])) == hi - lo + 1  # every 10-bit code keeps its own value


def test_colour_choices():
    hd = VideoInfo(1920, 1080, "yuv420p", 8, False, "h264", None, 25.0, 2, 0)
    assert ColourConversion.for_stream(hd, False).matrix == "bt709"  # untagged HD: BT.709
    assert ColourConversion.for_stream(hd, False, "bt2020", "full").describe() == \
        "bt2020 full range, bilinear chroma -> 8-bit RGB"
    jpeg = VideoInfo(640, 480, "yuvj420p", 8, False, "mjpeg", None, 25.0, 2, 0)
    assert (ColourConversion.for_stream(jpeg, False).matrix, ColourConversion.for_stream(jpeg, False).range) == \
        ("bt601", "full")
    rgb = VideoInfo(640, 480, "gbrp", 8, True, "ffv1", None, 25.0, 2, 0)
    assert ColourConversion.for_stream(rgb, True).describe() == "RGB -> 16-bit RGB"
    with pytest.raises(Exception, match="colour space 'xyz'"):
        ColourConversion.for_stream(hd, False, "xyz")
