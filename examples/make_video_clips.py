"""Write two short clips for trying lpips-video: a slow pan over examples/ref.png (REF, H.264 at CRF 10)
and the same pan encoded at CRF 32 with frames 30-39 blurred (DIST), 48 frames of 256x192 at 25 fps.

    python examples/make_video_clips.py [OUT_DIR]     # writes OUT_DIR/ref.mp4 and OUT_DIR/dist.mp4 (default: .)

Needs PyAV (pip install 'lpips-rt[video]') and OpenCV (a dependency of lpips-rt).
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np


def frames(n: int = 48, width: int = 256, height: int = 192) -> list[np.ndarray]:
    """RGB uint8 frames of a window moving over the example photograph (enlarged 1.5x)."""
    photo = cv2.imread(str(Path(__file__).with_name("ref.png")))[:, :, ::-1]
    photo = cv2.resize(photo, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(photo[k:k + height, 2 * k:2 * k + width]) for k in range(n)]


def encode(path: Path, pictures: list[np.ndarray], crf: int) -> None:
    """H.264 with one encoder thread: x264's frame threads (one per core by default) change its choices, so
    the bytes, and the distances the docs show for these clips, would depend on the machine's core count."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": str(crf), "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], "yuv420p"
        for rgb in pictures:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main(out_dir: str = ".") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = frames()
    dist = [cv2.GaussianBlur(f, (0, 0), 2.0) if 30 <= k < 40 else f for k, f in enumerate(ref)]
    encode(out / "ref.mp4", ref, crf=10)
    encode(out / "dist.mp4", dist, crf=32)
    print(f"wrote {out / 'ref.mp4'} and {out / 'dist.mp4'} ({len(ref)} frames of 256x192)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
