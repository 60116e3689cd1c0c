"""Video benchmark: lpips-video's frames/s for LPIPS-alex on the CPU against its two ceilings, decoding
alone and inference alone, measured in the same run.

    python benchmarks/video.py            # 1280x720 and 1920x1080, 24 frames, 2 rounds (about 7 minutes on 2 quiet cores)
    python benchmarks/video.py --quick    # smoke run: 320x180 and 640x360, 8 frames, 1 round (< 1 minute)

The clips are made here with PyAV: a pan over a mosaic of photographs, REF encoded with libx264 at CRF 12
and DIST at CRF 36 (8-bit yuv420p, untagged: BT.709 assumed at these sizes). Variants, timed in turns
(A B C D A B C D ...) after one warm-up round each, medians reported:

* decode: both videos decoded and converted to RGB by the reader threads, the frame pairs consumed
  with nothing else to do (the ceiling set by FFmpeg + swscale);
* infer: ``Scorer.score_pairs`` on the same frames already decoded and held in memory (uint8 frame
  graph, the ceiling set by ONNX Runtime);
* e2e: ``VideoComparison.frames`` as lpips-video runs it (decoding in its threads overlapping inference);
* e2e float graph: the same with the float32 graph (uint8 -> float on the host), for comparison.

With perfect overlap e2e reaches min(decode, infer) frames/s; run back to back it would reach
1 / (1/decode + 1/infer) ("serial" column). Decoding and inference share the machine's cores, so on
2 cores neither ceiling is free. Writes benchmarks/results/video-<date>.json and the video-table section
of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import README, RESULTS, interleaved_runs, machine_info, median, publish, today  # noqa: E402


def make_clip(path: Path, width: int, height: int, n: int, crf: int) -> Path:
    """A pan over a mosaic of four photographs (scikit-image's bundled ones), H.264 in MP4."""
    import av
    import cv2
    import skimage.data

    photos = [getattr(skimage.data, name)()[..., :3] for name in ("astronaut", "coffee", "chelsea", "rocket")]
    tiles = [cv2.resize(np.ascontiguousarray(p), (width, height), interpolation=cv2.INTER_CUBIC) for p in photos]
    mosaic = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(n):
            x, y = (k * 7) % width, (k * 4) % height
            rgb = np.ascontiguousarray(mosaic[y:y + height, x:x + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def measure(ref: Path, dist: Path, n: int, models_dir: Path, threads: int | None, repeats: int) -> dict:
    from lpips_runtime.core.scorer import Scorer
    from lpips_runtime.video.cli import auto_batch_size
    from lpips_runtime.video.compare import VideoComparison

    with VideoComparison(ref, dist) as probe:
        batch = auto_batch_size(*probe.size)
        colour = probe.conversions[0].describe()
    u8 = Scorer("alex", frames="nhwc-rgb", models_dir=models_dir, threads=threads, batch_size=batch)
    f32 = Scorer("alex", frames=None, models_dir=models_dir, threads=threads, batch_size=batch)
    with VideoComparison(ref, dist) as videos:  # the frames for "infer", decoded once
        frames = [(p.ref.rgb, p.dist.rgb) for p in videos.pairs()]
    assert len(frames) == n

    def decode():
        with VideoComparison(ref, dist) as videos:
            assert sum(1 for _ in videos.pairs()) == n

    def infer():
        assert sum(1 for r in u8.score_pairs(frames) if r.ok) == n

    def e2e(scorer):
        def run():
            with VideoComparison(ref, dist) as videos:
                assert sum(1 for r in videos.frames(scorer) if r.ok) == n
        return run

    times = interleaved_runs({"decode": decode, "infer": infer, "e2e": e2e(u8), "e2e float graph": e2e(f32)},
                             repeats=repeats)
    u8.close()
    f32.close()
    fps = {name: n / median(t) for name, t in times.items()}
    return {"frames": n, "batch": batch, "colour": colour, "seconds": times, "fps": fps,
            "serial_fps": 1 / (1 / fps["decode"] + 1 / fps["infer"])}


def render(report: dict) -> str:
    lines = [f"### Video (lpips-video), LPIPS-alex on the CPU, {report['date']}", "",
             f"{report['machine']['cpu']}, {report['machine']['logical_cpus']} logical CPUs, ORT threads "
             f"{report['threads']}, load average at start "
             f"{' / '.join(f'{x:.1f}' for x in report['machine']['load_average_at_start'] or ())}; "
             f"{report['frames']} frame pairs per run, H.264 REF (CRF 12) vs DIST (CRF 36), medians of "
             f"{report['repeats']} rounds timed in turns. `python benchmarks/video.py` "
             f"({'--quick, ' if report['quick'] else ''}took {report['wall_s']:.0f} s).", "",
             "| size | batch | decode alone | inference alone | e2e (lpips-video) | e2e / min(ceilings) | "
             "serial (no overlap) | e2e float graph |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for size, row in report["sizes"].items():
        fps = row["fps"]
        bound = min(fps["decode"], fps["infer"])
        lines.append(f"| {size} | {row['batch']} | {fps['decode']:.1f} | {fps['infer']:.2f} | {fps['e2e']:.2f} | "
                     f"{fps['e2e'] / bound:.0%} | {row['serial_fps']:.2f} | {fps['e2e float graph']:.2f} |")
    lines += ["", "frames/s (frame pairs per second). Decoding includes both videos and their conversion to RGB "
              f"({next(iter(report['sizes'].values()))['colour']})."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 8 frames, one round (smoke test)")
    parser.add_argument("--threads", type=int, default=0, help="ORT threads (default: physical cores)")
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=None, help="default: $LPIPS_RT_MODELS or ./models")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    from lpips_runtime.model.locate import default_models_dir
    from lpips_runtime.system import physical_cores

    start = time.perf_counter()
    sizes = ((320, 180), (640, 360)) if args.quick else ((1280, 720), (1920, 1080))
    n = args.frames or (8 if args.quick else 24)
    repeats = args.repeats or (1 if args.quick else 2)
    threads = args.threads or physical_cores()
    models_dir = args.models_dir or default_models_dir()
    report = {"date": today(), "machine": machine_info(), "threads": threads, "frames": n, "repeats": repeats,
              "quick": args.quick, "net": "alex", "sizes": {}}
    print(f"video benchmark (alex), {n} frames, {threads} ORT threads, {today()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lpips-video-bench-") as tmp:
        for width, height in sizes:
            ref = make_clip(Path(tmp) / f"ref-{width}.mp4", width, height, n, crf=12)
            dist = make_clip(Path(tmp) / f"dist-{width}.mp4", width, height, n, crf=36)
            row = measure(ref, dist, n, models_dir, threads, repeats)
            report["sizes"][f"{width}x{height}"] = row
            print(f"  {width}x{height}: " + ", ".join(f"{k} {v:.2f} fps" for k, v in row["fps"].items()), flush=True)
    report["wall_s"] = time.perf_counter() - start
    publish("video-quick" if args.quick else "video", "video-table", report, render(report), args.readme,
            args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
