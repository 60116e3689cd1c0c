"""The spatial LPIPS map of every scored frame as a video, coloured over the reference frame."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.heatmap import DEFAULT_ALPHA, render_heatmap
from .source import _reason, load_av


class HeatmapVideoWriter:
    """Encodes one picture per ``write`` (H.264 through libx264 where PyAV has it, else MPEG-4 Part 2;
    the container follows the file name). Odd frame sizes are padded by one edge pixel (4:2:0 needs even)."""

    def __init__(self, path: str | Path, rate: float | None, vmax: float, alpha: float = DEFAULT_ALPHA,
                 colormap: str = "inferno"):
        self.path = Path(path)
        self.alpha, self.colormap = alpha, colormap
        self.vmax = vmax  # one colour scale for every frame
        self.rate = Fraction(rate or 25).limit_denominator(1001)
        self._av = load_av()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = self._av.open(str(self.path), "w")
        except (self._av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"--heatmap-video {self.path}: cannot write ({_reason(exc)})") from None
        self._stream = None
        self.frames = 0

    def _open_stream(self, width: int, height: int) -> None:
        for codec in ("libx264", "mpeg4"):
            if codec in self._av.codecs_available:
                break
        else:
            raise InputError("--heatmap-video: this PyAV build has no H.264 or MPEG-4 encoder")
        self._stream = self._container.add_stream(codec, rate=self.rate)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": "18", "preset": "veryfast"}
        else:
            self._stream.bit_rate = 8_000_000

    def write(self, distance_map: np.ndarray, reference_rgb: np.ndarray) -> None:
        """Add one frame: ``distance_map`` float32 [H,W], ``reference_rgb`` HxWx3 uint8/uint16."""
        picture = render_heatmap(distance_map, reference_rgb if self.alpha < 1 else None, self.alpha,
                                 self.colormap, self.vmax)
        h, w = picture.shape[:2]
        if self._stream is None:
            self._open_stream(w, h)
        if (h + h % 2, w + w % 2) != (self._stream.height, self._stream.width):
            raise InputError(f"--heatmap-video: frame {self.frames} is {w}x{h}, the video "
                             f"{self._stream.width}x{self._stream.height} (the frame size changed mid-stream)")
        if h % 2 or w % 2:
            picture = np.pad(picture, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = self._av.VideoFrame.from_ndarray(picture, format="bgr24")
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file. Idempotent."""
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
