"""YUV -> RGB for scoring, done by FFmpeg's swscale (through PyAV), with every choice explicit.

* Matrix: the stream's colour space tag (BT.709, BT.601 = BT.470BG/SMPTE 170M, BT.2020 non-constant
  luminance, SMPTE 240M, FCC); untagged streams get BT.709 when at least 1280 wide or more than 576
  high and BT.601 otherwise (what players assume). ``--colorspace`` overrides it.
* Range: the stream's tag; untagged YUV is limited (16-235/240 in 8 bits, 64-940/960 in 10), except
  the JPEG formats (yuvj*), which are full. ``--range`` overrides it. RGB is always full range.
* Chroma: "bilinear" interpolates subsampled chroma (swscale's full horizontal chroma interpolation
  with accurate rounding; chroma siting as swscale assumes it, left for 4:2:0); "nearest" repeats each
  chroma sample over its 2x2 block (swscale's fast path, about 10x faster at 1080p).
* Output: 8-bit streams -> ``rgb24`` (HxWx3 uint8, scored by the uint8 frame graph as is); deeper
  streams -> ``gbrp16le`` (planar 16-bit RGB, full 16-bit scale; PyAV returns it as HxWx3 uint16 in
  RGB order), scored as the Scorer's 16-bit images: ``x / 32767.5 - 1``. Not packed ``rgb48le``:
  swscale (FFmpeg 8.0, as bundled with PyAV 18.1) writes a wrong green channel to rgb48le when full
  chroma interpolation is on with the bilinear filter (mean error 150/255 on a photograph, measured).
  swscale's 16-bit output of 10-bit input is not exactly ``v / 1023`` (see docs/video.md:
  full-range code 1023 becomes 65472, limited-range white 940 becomes 65283).
* No transfer-function or gamut conversion: HDR (PQ, HLG) is scored on its coded values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .source import VideoInfo

MATRICES = ("bt709", "bt601", "bt2020", "smpte240m", "fcc")
RANGES = ("limited", "full")
CHROMA = ("bilinear", "nearest")

# FFmpeg's AVColorSpace codes -> our matrix names (BT.2020 constant luminance is approximated by NCL).
_MATRIX_OF_TAG = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
# Our names -> PyAV's swscale colour space names.
_SWS_MATRIX = {"bt709": "ITU709", "bt601": "ITU601", "bt2020": "BT2020", "smpte240m": "SMPTE240M", "fcc": "FCC"}
_SWS_RANGE = {"limited": "MPEG", "full": "JPEG"}
_RANGE_OF_TAG = {1: "limited", 2: "full"}


def guess_matrix(width: int, height: int) -> str:
    """The matrix assumed for an untagged stream: HD and larger BT.709, SD BT.601."""
    return "bt709" if width >= 1280 or height > 576 else "bt601"


@dataclass(frozen=True)
class ColourConversion:
    """How one stream's frames become RGB arrays (``convert``); ``matrix``/``range`` are None for RGB
    streams. ``guessed`` lists what the stream did not say and was assumed ("matrix", "range")."""

    output: str  # "rgb24" or "gbrp16le"
    matrix: str | None
    range: str | None
    chroma: str
    guessed: tuple[str, ...] = ()

    @classmethod
    def for_stream(cls, info: VideoInfo, deep: bool, matrix: str = "auto", colour_range: str = "auto",
                   chroma: str = "bilinear") -> "ColourConversion":
        """The conversion of a stream described by ``info``: its own tags unless ``matrix``/``colour_range``
        name one; ``deep``: produce 16-bit RGB (when either video has more than 8 bits per sample)."""
        if matrix != "auto" and matrix not in MATRICES:
            raise InputError(f"colour space '{matrix}': choose auto or one of {', '.join(MATRICES)}")
        if colour_range != "auto" and colour_range not in RANGES:
            raise InputError(f"colour range '{colour_range}': choose auto, limited or full")
        if chroma not in CHROMA:
            raise InputError(f"chroma upsampling '{chroma}': choose bilinear or nearest")
        output = "gbrp16le" if deep else "rgb24"
        if info.is_rgb:
            return cls(output, None, None, chroma)
        guessed = []
        if matrix == "auto":
            matrix = _MATRIX_OF_TAG.get(info.colorspace)
            if matrix is None:
                matrix = guess_matrix(info.width, info.height)
                guessed.append("matrix")
        if colour_range == "auto":
            colour_range = _RANGE_OF_TAG.get(info.color_range)
            if colour_range is None:
                colour_range = "full" if info.pix_fmt.startswith("yuvj") else "limited"
                guessed.append("range")
        return cls(output, matrix, colour_range, chroma, tuple(guessed))

    def describe(self) -> str:
        depth = "8-bit" if self.output == "rgb24" else "16-bit"
        if self.matrix is None:
            return f"RGB -> {depth} RGB"
        note = f" ({' and '.join(self.guessed)} not tagged in the file: assumed)" if self.guessed else ""
        return f"{self.matrix} {self.range} range, {self.chroma} chroma -> {depth} RGB{note}"

    def sws_arguments(self) -> dict:
        """Keyword arguments of PyAV's ``VideoReformatter.reformat`` for this conversion."""
        from av.video.reformatter import Interpolation

        if self.chroma == "bilinear":
            flags = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND
        else:
            flags = Interpolation.POINT
        args = {"format": self.output, "interpolation": flags}
        if self.matrix is not None:
            args |= {"src_colorspace": _SWS_MATRIX[self.matrix], "src_color_range": _SWS_RANGE[self.range]}
        return args


class FrameConverter:
    """Converts decoded PyAV frames of one stream with one swscale context (reused across frames).
    Not thread-safe: one per reader thread."""

    def __init__(self, conversion: ColourConversion):
        from av.video.reformatter import VideoReformatter

        self.conversion = conversion
        self._args = conversion.sws_arguments()
        self._reformatter = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        """A decoded frame -> HxWx3 RGB, uint8 (rgb24) or uint16 (gbrp16le), C-contiguous."""
        rgb = self._reformatter.reformat(frame, **self._args).to_ndarray()
        return np.ascontiguousarray(rgb)
