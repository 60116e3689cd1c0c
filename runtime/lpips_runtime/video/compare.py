"""``VideoComparison``: two opened videos, checked against each other, scored frame by frame.

    with VideoComparison("ref.mp4", "dist.mp4") as videos:
        scorer = Scorer("alex", frames=videos.frame_layout, resize=videos.resize)
        for result in videos.frames(scorer):
            print(result.frame, result.distance)
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import ImageTooLargeError, InputError
from ..io.images import ResizePolicy
from .align import Alignment, FramePair, PairingOutcome, counts_message, pair_frames
from .colour import ColourConversion, FrameConverter
from .decode import FrameReader
from .score import FrameResult, score_frames
from .source import RawFormat, VideoInfo, VideoSource, is_raw_name

# The frame graph 8-bit video is scored through: PyAV's rgb24 arrays need neither a channel swap nor a copy.
FRAME_LAYOUT = "nhwc-rgb"


class VideoComparison:
    """REF and DIST opened and checked before any frame is decoded: sizes (unless ``resize`` reconciles
    them), declared frame counts (where both containers declare them), and the colour conversion of each.

    ``frame_layout`` is the uint8 frame graph to score 8-bit video with, or None when either video has
    deeper samples (both are then converted to 16-bit RGB and scored by the float graph).
    """

    def __init__(self, ref: str | Path, dist: str | Path, *, raw: RawFormat | None = None,
                 alignment: Alignment = Alignment(), colorspace: str = "auto", colour_range: str = "auto",
                 chroma: str = "bilinear", resize: str | ResizePolicy = "none"):
        if raw is not None and not (is_raw_name(ref) or is_raw_name(dist)):
            raise InputError("--raw applies to inputs named *.yuv or *.raw; neither REF nor DIST is")
        self.alignment = alignment
        self.resize = resize if isinstance(resize, ResizePolicy) else ResizePolicy.parse(resize)
        self.sources: list[VideoSource] = []
        self.readers: list[FrameReader] = []
        self.outcome = PairingOutcome()
        try:
            self.sources.append(VideoSource(ref, "REF", raw))
            self.sources.append(VideoSource(dist, "DIST", raw))
            self.size = scored_size(self.ref.info, self.dist.info, self.resize)
            check_declared_counts(self.ref.info, self.dist.info, alignment)
            self.bits = max(self.ref.info.bits, self.dist.info.bits)
            self.conversions = [ColourConversion.for_stream(s.info, self.bits > 8, colorspace, colour_range, chroma)
                                for s in self.sources]
        except BaseException:
            self.close()
            raise

    @property
    def ref(self) -> VideoSource:
        return self.sources[0]

    @property
    def dist(self) -> VideoSource:
        return self.sources[1]

    @property
    def frame_layout(self) -> str | None:
        return FRAME_LAYOUT if self.bits <= 8 else None

    def check_scorer(self, scorer) -> None:
        """Model problems and the Scorer's limits before any decoding: too small for the net, a frame graph
        for deep video, streams whose declared frame size passes ``scorer.max_pixels`` (``ImageTooLargeError``,
        as an image whose header declares too much), and frame pairs that need more working memory than
        ``scorer.max_memory`` at once where the Scorer cannot split them into tiles (``InputError``: the
        uint8 frame graphs of 8-bit video have no split export; larger pairs are batched by pixels or tiled
        by the Scorer itself)."""
        self.check_limits(scorer)
        scorer.net.check_size(self.size[1], self.size[0])
        if self.bits > 8 and scorer.spec.frames is not None:
            raise InputError(f"{scorer.model_info().path.name} takes 8-bit frames, but the video has "
                             f"{self.bits}-bit samples: use a float32 model")
        scorer.model_info()

    def check_limits(self, scorer) -> None:
        limit = scorer.max_pixels
        sizes = [(f"{s.name} ({s.path.name})", s.info.width, s.info.height) for s in self.sources]
        sizes.append(("scored frames (--resize)", *self.size))
        for name, width, height in sizes:
            if limit is not None and width * height > limit:
                raise ImageTooLargeError(name, width, height, limit)
        width, height = self.size
        need = scorer.net.work_bytes_per_pixel * width * height
        if need > scorer.max_memory and scorer.tile_plan(height, width) is None:
            why = ("8-bit video is scored by the uint8 frame graph, which has no tiles" if scorer.spec.frames
                   else "this Scorer cannot score in tiles (--tile off, or a model without split graphs)")
            raise InputError(f"a {width}x{height} frame pair needs about {need / 2**20:,.0f} MiB of working memory "
                             f"at once, over --max-memory {scorer.max_memory / 2**20:,.0f} MiB, and {why}: raise "
                             "--max-memory or score smaller frames (--resize WxH)")

    def expected_pairs(self, already_done: int = 0) -> int | None:
        """Pairs left to score where the containers declare their lengths (else ``max_frames`` or None)."""
        a = self.alignment
        counts = [info.declared_frames - skip for info, skip in ((self.ref.info, a.skip_ref), (self.dist.info, a.skip_dist))
                  if info.declared_frames is not None]
        if not counts:
            return None if a.max_frames is None else max(0, a.max_frames - already_done)
        n = (max(0, min(counts)) + a.step - 1) // a.step
        return max(0, (n if a.max_frames is None else min(n, a.max_frames)) - already_done)

    def pairs(self, skip: frozenset[int] = frozenset()) -> Iterator[FramePair]:
        """The aligned frame pairs, decoded and converted to RGB (REF frame indices in ``skip`` are left
        out), in order. Reading starts here, in one thread per video; call once (``frames`` calls it).
        Afterwards ``outcome`` tells whether the videos had different lengths and ``read_errors``
        whether one stopped early."""
        if self.readers:
            raise InputError("a VideoComparison reads its videos once: open them again")
        a = self.alignment
        self.readers = [FrameReader(self.ref, FrameConverter(self.conversions[0]), a.ref_wanted(skip)),
                        FrameReader(self.dist, FrameConverter(self.conversions[1]), a.dist_wanted(skip))]

        def count_rest(frames) -> int:  # only counted: what remains of the longer video
            for reader in self.readers:
                reader.stop_converting()
            return sum(1 for _ in frames)

        return pair_frames(*(iter(r.start()) for r in self.readers), a, skip, self.outcome, count_rest)

    def frames(self, scorer, skip: frozenset[int] = frozenset(), keep_frames: bool = False) -> Iterator[FrameResult]:
        """Score the aligned frame pairs with ``scorer``: one ``FrameResult`` per pair, in order (see ``pairs``).
        ``keep_frames``: results carry the two RGB frames (for heatmaps)."""
        return score_frames(scorer, self.pairs(skip), keep_frames=keep_frames)

    @property
    def read_errors(self) -> list[str]:
        return [r.error for r in self.readers if r.error]

    def failure(self) -> str | None:
        """After ``frames``: why the comparison as a whole failed (an empty video, frame counts that differ
        without ``shortest``), or None. Frames that failed one by one are in their rows instead."""
        for source, reader in zip(self.sources, self.readers):
            if reader.count == 0 and not reader.error:
                return f"{source.name}: no video frames"
        mismatch = None if self.read_errors else self.outcome.count_mismatch()
        return f"{mismatch}: pass --shortest to score the common part" if mismatch else None

    def describe(self) -> dict:
        """What was compared, for summaries."""
        return {
            "ref": {"path": str(self.ref.path), **_stream(self.ref.info), "colour": self.conversions[0].describe(),
                    "frames_read": self.readers[0].count if self.readers else None},
            "dist": {"path": str(self.dist.path), **_stream(self.dist.info), "colour": self.conversions[1].describe(),
                     "frames_read": self.readers[1].count if self.readers else None},
            "scored_size": f"{self.size[0]}x{self.size[1]}",
            "alignment": self.alignment.describe(),
        }

    def close(self) -> None:
        for reader in self.readers:
            reader.close()  # closes its source
        for source in self.sources:
            source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _stream(info: VideoInfo) -> dict:
    return {"size": info.size(), "pix_fmt": info.pix_fmt, "codec": info.codec, "rate": info.rate}


def scored_size(ref: VideoInfo, dist: VideoInfo, policy: ResizePolicy) -> tuple[int, int]:
    """(width, height) the frames are scored at, or ``InputError`` for sizes that differ without resizing."""
    if policy.mode == "fixed":
        return policy.size
    if (ref.width, ref.height) != (dist.width, dist.height) and policy.mode != "first":
        raise InputError(f"frame sizes differ: REF is {ref.size()}, DIST is {dist.size()} "
                         "(pass --resize first to scale DIST to REF, or --resize WxH)")
    return ref.width, ref.height


def check_declared_counts(ref: VideoInfo, dist: VideoInfo, alignment: Alignment) -> None:
    """Where both containers declare their frame counts, a mismatch is an error before any decoding
    (unless ``shortest``, or ``max_frames`` stops before the shorter one ends)."""
    if alignment.shortest or ref.declared_frames is None or dist.declared_frames is None:
        return
    n_ref, n_dist = ref.declared_frames - alignment.skip_ref, dist.declared_frames - alignment.skip_dist
    last = alignment.last_position
    if n_ref == n_dist or last is not None and min(n_ref, n_dist) > last:
        return
    raise InputError(f"{counts_message(ref.declared_frames, dist.declared_frames, alignment.offset)}: "
                     "pass --shortest to score the common part")
