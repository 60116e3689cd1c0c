"""Bounded memory: peak RSS and time of large pairs, tiled vs untiled, and of a folder of photos in batch mode.

    python benchmarks/tiling.py [--quick] [--nets alex,squeeze,vgg] [--sizes 12,24,48] [--cap-gb 10]

1. For each net and size (megapixels: 12 = 4000x3000, 24 = 6000x4000, 48 = 8000x6000), one pair of JPEG
   photographs (scikit-image's, upscaled into a 2x2 mosaic, the second one blurred) scored from the files by
   ``Scorer.distance``, in a fresh process per cell: tiled ("auto" under the default 1 GiB --max-memory) and
   untiled (tile="off"). The parent watches each child's RSS and kills an untiled cell above ``--cap-gb``
   ("does not fit"): the machine is shared. Reported: the child's peak RSS (VmHWM, whole process), the
   time of the distance call, the tile grid, and |tiled - untiled| where both ran.
2. Batch mode (LPIPS-alex, else the first of --nets): ``score_folders`` over a folder of 2000x1500 JPEG pairs, "before" (no memory
   budget, no tiling: the previous behaviour, 32 pairs decoded ahead and batches of 16) at batch sizes 16 and 1,
   and "after" (defaults: batches and decode-ahead within --max-memory).
Writes benchmarks/results/tiling-<date>.json and the tiling section of benchmarks/README.md (not with --quick,
unless --readme is given). Full mode: about 15 minutes for alex and squeeze on 2 quiet cores; vgg at 48 Mpx
alone takes ~30-60 minutes (its tiles re-encode ~65% halo under the 1 GiB budget), see the README.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import README, RESULTS, machine_info, replace_section, today  # noqa: E402

SIDES = {12: (3000, 4000), 24: (4000, 6000), 48: (6000, 8000)}  # (height, width) of the sizes


def _sides(mpx: float) -> tuple[int, int]:
    """(height, width) of a 4:3 image of about ``mpx`` megapixels (the issue's sizes exactly)."""
    if mpx in SIDES:
        return SIDES[int(mpx)]
    h = int(round((mpx * 1e6 * 3 / 4) ** 0.5))
    return h, int(round(h * 4 / 3))
NO_BUDGET = 1 << 40  # "before": the memory budget never binds


# -- inputs ------------------------------------------------------------------------------------


def _photo_pair(h: int, w: int, folder: Path, stem: str) -> tuple[Path, Path]:
    """Two JPEG files of real photographs at h x w (a 2x2 mosaic of upscaled scikit-image photos; the second
    blurred), written once and reused."""
    import cv2
    import numpy as np
    import skimage.data

    p0, p1 = folder / f"{stem}-0.jpg", folder / f"{stem}-1.jpg"
    if p0.exists() and p1.exists():
        return p0, p1
    names = ("astronaut", "chelsea", "coffee", "rocket")
    hh, hw = h // 2, w // 2
    tiles = []
    for i, name in enumerate(names):
        img = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3][..., ::-1])
        tiles.append(cv2.resize(img, (w - hw if i % 2 else hw, h - hh if i >= 2 else hh), interpolation=cv2.INTER_CUBIC))
    ref = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    del tiles
    cv2.imwrite(str(p0), ref, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(p1), cv2.GaussianBlur(ref, (0, 0), 1.5), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return p0, p1


def _folders(n: int, h: int, w: int, root: Path) -> tuple[Path, Path]:
    d0, d1 = root / f"dir0-{n}-{w}x{h}", root / f"dir1-{n}-{w}x{h}"
    if not d0.exists():
        d0.mkdir()
        d1.mkdir()
        base0, base1 = _photo_pair(h, w, root, f"folder-{w}x{h}")
        for i in range(n):  # same content under many names: decoding and scoring cost the same per pair
            os.link(base0, d0 / f"img{i:03d}.jpg")
            os.link(base1, d1 / f"img{i:03d}.jpg")
    return d0, d1


# -- the child: one cell ------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> dict:
    """Run one cell in this (fresh) process and return its measurements."""
    import resource

    # The RSS watcher polls; one large allocation can outrun it. An address-space cap makes such an
    # allocation fail here instead of the kernel's OOM killer picking a process on a shared machine.
    if spec.get("as_limit_mb"):
        limit = int(spec["as_limit_mb"]) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from lpips_runtime.core.scorer import Scorer

    settings = {k: spec[k] for k in ("tile", "max_memory", "batch_size") if k in spec}
    scorer = Scorer(spec["net"], models_dir=spec["models"], auto_export=False, threads=spec["threads"], **settings)
    scorer.distance(spec["warmup"][0], spec["warmup"][1])  # sessions open, first-run allocations done
    t0 = time.perf_counter()
    if spec["kind"] == "pair":
        value = scorer.distance(spec["img0"], spec["img1"])
        plan = scorer.tile_plan(*spec["hw"])
        extra = {"distance": value, "tiles": None if plan is None else [len(plan.rows), len(plan.cols)],
                 "halo_overhead": None if plan is None else plan.computed_pixels / (spec["hw"][0] * spec["hw"][1])}
    else:
        results = list(scorer.score_folders(spec["dir0"], spec["dir1"]))
        extra = {"pairs": len(results), "failures": sum(not r.ok for r in results),
                 "mean": sum(r.distance for r in results if r.ok) / max(1, len(results))}
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), **extra}


def run_cell(spec: dict, cap_mb: float, timeout: float) -> dict:
    """``child(spec)`` in a fresh process, killed above ``cap_mb`` of RSS or after ``timeout`` seconds."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        result = Path(out.name)
    spec = {**spec, "as_limit_mb": cap_mb + 4096}  # virtual size runs ~1-3 GB above RSS (libraries, arenas)
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec), "--result", str(result)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start, highest, verdict = time.monotonic(), 0.0, None
    try:
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    status = {line.split(":")[0]: line.split()[1:2] for line in f}
                rss, hwm = (int(status.get(k, ["0"])[0]) / 1024 for k in ("VmRSS", "VmHWM"))
            except (OSError, ValueError, IndexError):
                rss = hwm = 0.0
            highest = max(highest, rss, hwm)
            if rss > cap_mb:
                verdict = f"does not fit (> {cap_mb / 1024:.0f} GB, killed at {rss / 1024:.1f} GB)"
            elif time.monotonic() - start > timeout:
                verdict = f"timed out (> {timeout:.0f} s)"
            if verdict:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return {"error": verdict, "watched_rss_mb": highest}  # for a time-out: the peak so far
            time.sleep(0.1)
        if proc.returncode != 0:
            last = (proc.stderr.read().strip().splitlines() or ["?"])[-1]
            if "MemoryError" in last or "bad_alloc" in last or "Failed to allocate" in last or proc.returncode == -9:
                return {"error": f"does not fit (> {cap_mb / 1024:.0f} GB: allocation refused at "
                                 f"{highest / 1024:.1f} GB RSS)", "watched_rss_mb": highest}
            return {"error": f"failed ({proc.returncode}): {last[:200]}"}
        return {**json.loads(result.read_text()), "watched_rss_mb": highest}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        result.unlink(missing_ok=True)


# -- the parent -------------------------------------------------------------------------------------


def _prepare_models(nets: list[str], folder: Path) -> None:
    """Export fused, encoder and head graphs of each net (v0.1) once, in this process (torch stays here)."""
    from lpips_runtime.core.scorer import Scorer

    for net in nets:
        scorer = Scorer(net, models_dir=folder)
        scorer.model_info(part="encoder"), scorer.model_info(part="head"), scorer.model_info()
        scorer.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 Mpx, a 128 MiB budget, 4 folder pairs (~1 min)")
    parser.add_argument("--nets", help="default: alex,squeeze,vgg (--quick: alex,squeeze)")
    parser.add_argument("--sizes", help="megapixels of the pairs (default 12,24,48; --quick: 1)")
    parser.add_argument("--folder-pairs", type=int, help="pairs in the batch-mode folders (default 40; --quick: 4)")
    parser.add_argument("--budget-mb", type=int, help="--max-memory of the tiled and 'after' cells (default: the "
                        "Scorer's 1 GiB; --quick: 128)")
    parser.add_argument("--cap-gb", type=float, default=10.0, help="kill a cell whose RSS passes this")
    parser.add_argument("--timeout", type=float, default=5400.0, help="seconds per cell")
    parser.add_argument("--skip-folders", action="store_true", help="only the pairs (part 1)")
    parser.add_argument("--repeats", type=int, default=1, help="run each pair's tiled and untiled cells in turns this "
                        "many times (median time, largest peak): a shared machine's load hits both alike")
    parser.add_argument("--section", default="tiling", help="README section (and results file) name")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for models and images (default: a temporary one)")
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LPIPS_RT_OFFLINE", "1")
    if args.child:
        args.result.write_text(json.dumps(child(json.loads(args.child))))
        return 0
    from lpips_runtime.system import physical_cores

    threads = args.threads or physical_cores()
    nets = (args.nets or ("alex,squeeze" if args.quick else "alex,squeeze,vgg")).split(",")
    sizes = [float(s) for s in (args.sizes or ("1" if args.quick else "12,24,48")).split(",")]
    budget = (args.budget_mb << 20) if args.budget_mb else (128 << 20) if args.quick else None  # None: the default
    n_folder = args.folder_pairs or (4 if args.quick else 40)
    folder_hw = (375, 500) if args.quick else (1500, 2000)
    cap_mb = args.cap_gb * 1024
    started = time.monotonic()
    report = {"date": today(), "machine": machine_info(), "threads": threads, "cap_gb": args.cap_gb,
              "repeats": args.repeats,
              "budget_bytes": budget or "default (1 GiB)", "pairs": [], "folders": []}
    print(f"tiling benchmark, {threads} threads, {today()}, cap {args.cap_gb} GB", flush=True)
    with tempfile.TemporaryDirectory(prefix="lpips-tiling-bench-") as tmp:
        work = args.work or Path(tmp)
        models, images = work / "models", work / "images"
        models.mkdir(parents=True, exist_ok=True)
        images.mkdir(parents=True, exist_ok=True)
        _prepare_models(nets, models)
        warmup = [str(p) for p in _photo_pair(64, 96, images, "warmup")]
        for mpx in sizes:
            h, w = _sides(mpx)
            img0, img1 = (str(p) for p in _photo_pair(h, w, images, f"pair-{w}x{h}"))
            for net in nets:
                row = {"net": net, "mpx": mpx, "height": h, "width": w}
                runs: dict[str, list] = {"tiled": [], "untiled": []}
                for _ in range(args.repeats):
                    for mode in ("tiled", "untiled"):
                        if runs[mode] and "error" in runs[mode][-1]:
                            continue  # it did not fit: no second try
                        spec = {"kind": "pair", "net": net, "models": str(models), "threads": threads,
                                "warmup": warmup, "img0": img0, "img1": img1, "hw": [h, w],
                                "tile": "auto" if mode == "tiled" else "off"}
                        if budget:
                            spec["max_memory"] = budget
                        runs[mode].append(run_cell(spec, cap_mb, args.timeout))
                        print(f"  {net} {w}x{h} {mode}: {_cell_text(runs[mode][-1])}", flush=True)
                for mode, cells in runs.items():
                    row[mode] = _combine(cells)
                t, u = row["tiled"], row["untiled"]
                if "distance" in t and "distance" in u:
                    row["abs_diff"] = abs(t["distance"] - u["distance"])
                    row["throughput_ratio"] = u["seconds"] / t["seconds"]
                report["pairs"].append(row)
        d0, d1 = (str(p) for p in _folders(n_folder, *folder_hw, images)) if not args.skip_folders else ("", "")
        folder_net = report["folder_net"] = "alex" if "alex" in nets else nets[0]
        for label, settings in () if args.skip_folders else (("before, batch 16", {"tile": "off", "max_memory": NO_BUDGET, "batch_size": 16}),
                                ("before, batch 1", {"tile": "off", "max_memory": NO_BUDGET, "batch_size": 1}),
                                ("after (defaults), batch 16", {"batch_size": 16, **({"max_memory": budget} if budget else {})})):
            spec = {"kind": "folders", "net": folder_net, "models": str(models), "threads": threads, "warmup": warmup,
                    "dir0": d0, "dir1": d1, **settings}
            cell = run_cell(spec, cap_mb, args.timeout)
            print(f"  folders {n_folder} x {folder_hw[1]}x{folder_hw[0]} {label}: {_cell_text(cell)}", flush=True)
            report["folders"].append({"label": label, "pairs": n_folder, "height": folder_hw[0],
                                      "width": folder_hw[1], **cell})
    report["total_seconds"] = time.monotonic() - started
    text = render(report)
    print("\n" + text)
    if not args.quick or args.readme:
        readme = args.readme or README
        args.results_dir.mkdir(parents=True, exist_ok=True)
        name = args.section + ("-quick" if args.quick else "")
        path = args.results_dir / f"{name}-{today()}.json"
        path.write_text(json.dumps(report, indent=1) + "\n")
        replace_section(name, text, readme)
        print(f"wrote {path} and the {name} section of {readme}")
    return 0


def _combine(cells: list[dict]) -> dict:
    """One cell from repeats: the median time, the largest peak (an error if any run failed)."""
    failed = [c for c in cells if "error" in c]
    if failed or len(cells) == 1:
        return failed[0] if failed else cells[0]
    times = sorted(c["seconds"] for c in cells)
    return {**cells[0], "seconds": times[len(times) // 2] if len(times) % 2 else sum(times[len(times) // 2 - 1:
            len(times) // 2 + 1]) / 2, "all_seconds": [c["seconds"] for c in cells],
            "peak_rss_mb": max(c["peak_rss_mb"] for c in cells)}


def _cell_text(cell: dict) -> str:
    if "error" in cell:
        return cell["error"]
    return f"{cell['seconds']:.1f} s, peak {cell['peak_rss_mb']:.0f} MiB"


def _cell(cell: dict) -> tuple[str, str]:
    if "error" in cell and cell["error"].startswith("timed out"):
        return f"{cell['watched_rss_mb']:,.0f} MiB until then", cell["error"]
    if "error" in cell:
        return cell["error"], "-"
    return f"{cell['peak_rss_mb']:,.0f} MiB", f"{cell['seconds']:.1f} s"


def render(report: dict) -> str:
    m = report["machine"]
    load = m.get("load_average_at_start")
    lines = [f"Run {report['date']} on {m['cpu']} ({m['physical_cores']} cores, load average at start "
             f"{', '.join(f'{v:.1f}' for v in load) if load else '?'}), {report['threads']} threads, ONNX Runtime, "
             f"memory budget {report['budget_bytes']}; each cell a fresh process (peak RSS = the whole process's "
             f"VmHWM), untiled cells killed above {report['cap_gb']:.0f} GB"
             + (f"; tiled and untiled run in turns {report['repeats']} times (median time)"
                if report.get("repeats", 1) > 1 else "") + ". Total running time "
             f"{report['total_seconds'] / 60:.1f} min.", "",
             "| net | pair | tiled: peak RSS | tiled: time | tiles (halo overhead) | untiled: peak RSS | untiled: time "
             "| untiled / tiled time | abs diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["pairs"]:
        t, u = r["tiled"], r["untiled"]
        grid = "-" if not t.get("tiles") else f"{t['tiles'][0]}x{t['tiles'][1]} ({t['halo_overhead']:.2f}x)"
        ratio = f"{r['throughput_ratio']:.2f}" if "throughput_ratio" in r else "-"
        diff = f"{r['abs_diff']:.1e}" if "abs_diff" in r else "-"
        lines.append(f"| {r['net']} | {r['width']}x{r['height']} ({r['mpx']:g} Mpx) | {' | '.join(_cell(t))} | {grid} | "
                     f"{' | '.join(_cell(u))} | {ratio} | {diff} |")
    if not report["folders"]:  # --skip-folders
        return "\n".join(lines)
    lines += ["", f"Batch mode, LPIPS-{report.get('folder_net', 'alex')}, `score_folders` (as `--dir0/--dir1`) "
              "over JPEG pairs:", "",
              "| folders | settings | peak RSS | time |", "|---|---|---|---|"]
    for f in report["folders"]:
        lines.append(f"| {f['pairs']} pairs of {f['width']}x{f['height']} | {f['label']} | {' | '.join(_cell(f))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
