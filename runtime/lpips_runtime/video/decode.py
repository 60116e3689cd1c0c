"""Decode one video in a background thread, converting only the frames that will be scored.

PyAV releases the GIL while FFmpeg decodes and swscale converts, so two readers (REF and DIST) and
ONNX Runtime's inference run at the same time; a bounded queue keeps the reader at most ``queue_size``
frames ahead of the scorer.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .colour import FrameConverter
from .source import VideoSource, _reason


@dataclass(frozen=True)
class DecodedFrame:
    """Frame ``index`` of a stream (0-based, in output order). ``rgb`` is HxWx3 uint8/uint16 for a wanted
    frame that decoded; None for a frame that was not wanted or failed (``error`` says why)."""

    index: int
    pts: float | None  # presentation time in seconds, if the stream has timestamps
    rgb: np.ndarray | None = None
    error: str | None = None


@dataclass(frozen=True)
class _End:
    error: str | None  # why the stream stopped early (unreadable container data), None at its real end


class FrameReader:
    """Iterates the frames of ``source`` in output order, decoded in a daemon thread.

    ``wanted(index)``: whether frame ``index`` will be scored (only those are converted to RGB).
    A packet FFmpeg cannot decode yields a ``DecodedFrame`` with its ``error`` in place of the frame it
    held (exact for intra-only codecs: FFV1, ProRes, raw, MJPEG; for codecs with frame reordering the
    failure takes the next output position). A frame the decoder flags as corrupt (concealed damage)
    is an error too: it is not what the file holds. After the last frame, ``count`` is the number of
    frames seen and ``error`` says why reading stopped early, if it did.
    """

    def __init__(self, source: VideoSource, convert: FrameConverter, wanted: Callable[[int], bool],
                 queue_size: int = 8):
        self.source, self.convert, self.wanted = source, convert, wanted
        self.count = 0
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lpips-video-{source.label.lower()}", daemon=True)
        self._started = False

    def start(self) -> "FrameReader":
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def stop_converting(self) -> None:
        """From now on frames are only counted (the rest of a longer stream, to report its length)."""
        self.wanted = lambda index: False

    # -- the reader thread ------------------------------------------------------------------------

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        import av

        stream, index, error = self.source.stream, 0, None
        try:
            for packet in self.source.container.demux(stream):
                try:
                    frames = stream.codec_context.decode(packet)  # an empty packet at the end flushes
                except av.error.FFmpegError as exc:
                    item = DecodedFrame(index, _seconds(packet.pts, stream.time_base),
                                        error=f"{self.source.label} frame {index}: cannot decode ({_reason(exc)})")
                    if not self._put(item):
                        return
                    index += 1
                    continue
                for frame in frames:
                    if not self._put(self._decoded(index, frame)):
                        return
                    index += 1
        except av.error.FFmpegError as exc:
            error = f"{self.source.label}: unreadable after frame {index - 1} ({_reason(exc)})"
        except Exception as exc:  # never hang the consumer: report and end
            error = f"{self.source.label}: reading stopped after frame {index - 1} ({type(exc).__name__}: {exc})"
        self._put(_End(error))

    def _decoded(self, index: int, frame) -> DecodedFrame:
        pts = frame.time
        if frame.is_corrupt:
            return DecodedFrame(index, pts, error=f"{self.source.label} frame {index}: decoded with errors "
                                                  "(damaged data concealed by the decoder)")
        if not self.wanted(index):
            return DecodedFrame(index, pts)
        try:
            return DecodedFrame(index, pts, self.convert(frame))
        except Exception as exc:
            return DecodedFrame(index, pts, error=f"{self.source.label} frame {index}: cannot convert to RGB "
                                                  f"({_reason(exc)})")

    # -- the consumer side ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[DecodedFrame]:
        self.start()
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                self.error = item.error
                return
            self.count = item.index + 1
            yield item

    def close(self) -> None:
        """Stop the thread (it may be blocked on a full queue) and close the file. Idempotent."""
        self._stop.set()
        if self._started:
            self._thread.join(timeout=30)
        self.source.close()


def _seconds(pts, time_base) -> float | None:
    return float(pts * time_base) if pts is not None and time_base is not None else None
