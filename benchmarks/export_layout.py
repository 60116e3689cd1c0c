"""How one export should serve every feature: separate files (a bundle) or one graph with several outputs.

    python benchmarks/export_layout.py [--net alex] [--models-dir DIR] [--threads 2] [--repeats 15]

The bundle ``lpips-export --net <net>`` writes holds separate self-contained graphs. The alternative for the
graphs that share their inputs (two float32 images): ONE graph with the outputs distance, distance_map, psnr and
ssim, made here by merging the bundle's distance, spatial and psnr-ssim graphs with the weights stored once.
(The encoder/head and the uint8 frame graphs take other inputs, so no single graph can serve them: they stay
separate files in either layout.) Measured on ONNX Runtime's CPU provider, in one run, in turns:

* file size: the three separate files vs the merged one;
* load time: ``InferenceSession`` creation (median of 5), separate distance file vs merged file;
* per-call time of the plain distance (the common call): the distance file vs the merged file asked for
  ``distance`` only, and the merged file asked for every output, at 1x256x256 and 1x512x512.

Writes benchmarks/results/export-layout-<date>.json and prints the table. Needs the bundle in --models-dir (it
runs ``lpips-export --net <net> --out DIR`` into a temporary folder when none is given) and the ``onnx`` package.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, interleaved_runs, machine_info, median, today  # noqa: E402


def merge_same_inputs(paths: list[Path]):
    """One ModelProto computing every output of ``paths`` (graphs with the same inputs img0, img1): nodes and
    values of the second and later graphs are renamed apart; initializers equal by name and bytes are kept once."""
    import onnx

    models = [onnx.load(str(p)) for p in paths]
    base = models[0]
    graph = base.graph
    kept = {init.name: init.SerializeToString() for init in graph.initializer}
    inputs = {i.name for i in graph.input}
    for k, model in enumerate(models[1:], start=1):
        prefix = f"m{k}_"
        g = model.graph
        shared = {init.name for init in g.initializer if kept.get(init.name) == init.SerializeToString()}
        have = {o.name for o in graph.output}
        outputs = {o.name for o in g.output if o.name not in have}  # new outputs keep their names

        def rename(name: str) -> str:
            if not name or name in inputs or name in shared or name in outputs:
                return name
            return prefix + name

        for init in g.initializer:
            if init.name not in shared:
                init.name = rename(init.name)
                graph.initializer.append(init)
        for node in g.node:
            node.name = prefix + node.name
            node.input[:] = [rename(n) for n in node.input]
            node.output[:] = [rename(n) for n in node.output]
            graph.node.append(node)
        graph.output.extend(o for o in g.output if o.name in outputs)
    del base.metadata_props[:]  # a measurement artefact, not an lpips-rt export
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", default="alex")
    parser.add_argument("--models-dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="export-layout-") as tmp:
        folder = Path(args.models_dir) if args.models_dir else Path(tmp)
        distance = folder / f"lpips-{args.net}-v0.1.onnx"
        if not distance.is_file():
            subprocess.run(["lpips-export", "--net", args.net, "--out", str(folder), "-q"], check=True,
                           stdout=subprocess.DEVNULL)
        separate = [distance, folder / f"lpips-{args.net}-v0.1-spatial.onnx",
                    folder / f"lpips-{args.net}-v0.1-psnr-ssim.onnx"]
        merged_path = Path(tmp) / "merged.onnx"
        onnx.save(merge_same_inputs(separate), str(merged_path))
        onnx.checker.check_model(str(merged_path))
        sizes = {p.name: p.stat().st_size for p in separate}
        merged_bytes = merged_path.stat().st_size

        def session(path):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        load = interleaved_runs({"distance file": lambda: session(distance),
                                 "merged file": lambda: session(merged_path)}, repeats=5)
        plain, merged = session(distance), session(merged_path)
        rng = np.random.default_rng(0)
        rows = []
        for h, w in ((256, 256), (512, 512)):
            feed = {name: (rng.random((1, 3, h, w), dtype=np.float32) * 2 - 1) for name in ("img0", "img1")}
            same = float(np.max(np.abs(plain.run(None, feed)[0] - merged.run(["distance"], feed)[0])))
            times = interleaved_runs({
                "distance file": lambda: plain.run(None, feed),
                "merged, distance only": lambda: merged.run(["distance"], feed),
                "merged, every output": lambda: merged.run(None, feed),
            }, repeats=args.repeats)
            rows.append({"shape": f"1x{h}x{w}", "ms": {k: 1e3 * median(v) for k, v in times.items()},
                         "max_abs_diff_distance": same})
    report = {"date": today(), "machine": machine_info(), "net": args.net, "threads": args.threads,
              "separate_bytes": sizes, "merged_bytes": merged_bytes,
              "load_ms": {k: 1e3 * median(v) for k, v in load.items()}, "calls": rows}
    lines = [f"LPIPS-{args.net}, ONNX Runtime CPU, {args.threads} threads, {today()}",
             f"| layout | file size | load (ms) |", "| --- | --- | --- |",
             f"| separate: distance + spatial + psnr-ssim | {sum(sizes.values()) / 1e6:.1f} MB "
             f"(distance file {sizes[separate[0].name] / 1e6:.1f} MB) | {report['load_ms']['distance file']:.0f} "
             "(distance file) |",
             f"| one graph, 4 outputs | {merged_bytes / 1e6:.1f} MB | {report['load_ms']['merged file']:.0f} |", "",
             "| shape | distance file (ms) | merged, distance only (ms) | merged, every output (ms) |",
             "| --- | --- | --- | --- |"]
    for row in rows:
        ms = row["ms"]
        lines.append(f"| {row['shape']} | {ms['distance file']:.1f} | {ms['merged, distance only']:.1f} | "
                     f"{ms['merged, every output']:.1f} |")
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"export-layout-{today()}.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
