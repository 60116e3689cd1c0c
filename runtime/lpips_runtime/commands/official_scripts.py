"""The official repository's scripts as commands: ``lpips-2imgs``, ``lpips-2dirs``, ``lpips-1dir-allpairs``.

They take the flags of richzhang/PerceptualSimilarity's ``lpips_2imgs.py``, ``lpips_2dirs.py`` and
``lpips_1dir_allpairs.py`` (same names, same defaults, ``--all-pairs`` off = consecutive pairs) and write the
same text, so a shell script written for those scripts runs with the script name replaced:

* ``lpips-2imgs -p0 A -p1 B``: ``Distance: %.3f`` on stdout;
* ``lpips-2dirs -d0 D0 -d1 D1 -o OUT``: the files of ``D0`` (directory order, as ``os.listdir``) that ``D1``
  has under the same name; ``name: %.3f`` on stdout, ``name: %.6f`` lines in OUT;
* ``lpips-1dir-allpairs -d D -o OUT [--all-pairs] [-N n]``: consecutive pairs of ``D``'s files (directory
  order), or every pair i<j; ``(a,b): %.3f`` on stdout, ``(a,b): %.6f`` lines in OUT, then
  ``Avg: mean +/- std/sqrt(n)`` (``%.5f`` on stdout, ``%.6f`` with no newline in OUT).

What differs, on purpose: the official's set-up lines ("Setting up [LPIPS] ...") are not printed (stdout
carries results only) and neither is ``lpips_2imgs.py``'s second line (torch's repr of the per-layer tuple);
a pair that cannot be scored (unreadable file, sizes differ) is one line on stderr and the run goes on (exit
code 1 at the end) where the official stops with a traceback; each OUT line is flushed as it is scored.
Scoring is the runtime's one ``Scorer`` (ONNX Runtime on the CPU; ``--use_gpu``: its CUDA device); ``-n``
picks the net in every command (the official hard-codes alex in two of them).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .common import echo_result, errors_to_click
from ..io.names import exact_bytes
from ..model.nets import DEFAULT_VERSION, NET_NAMES, VERSIONS

_CONTEXT = {"help_option_names": ["-h", "--help"]}


def _common(command):
    """-n/--net, -v/--version, --use_gpu (the official flags) and --models-dir (where exports are found)."""
    for option in reversed([
        click.option("-n", "--net", type=click.Choice(NET_NAMES), default="alex", show_default=True,
                     help="Backbone net."),
        click.option("-v", "--version", "lpips_version", type=click.Choice(VERSIONS), default=DEFAULT_VERSION,
                     show_default=True, help="LPIPS version (as the official scripts' -v)."),
        click.option("--use_gpu", is_flag=True, help="Score on the CUDA GPU (needs pip install 'lpips-rt[gpu]')."),
        click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of the exported models (default: $LPIPS_RT_MODELS, ./models, the user data "
                          "folder)."),
    ]):
        command = option(command)
    return command


def _scorer(net: str, version: str, use_gpu: bool, models_dir):
    from ..core.scorer import Scorer

    return Scorer(net, version=version, device="cuda" if use_gpu else "cpu", models_dir=models_dir)


class _Out:
    """The -o file: truncated at the start as the official opens it, each line flushed as it is written."""

    def __init__(self, path: str):
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, text: str) -> None:
        self.file.write(exact_bytes(text))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _score(scorer, pairs, labels, line, out: _Out | None):
    """Score ``pairs``; for each, ``line(label, distance, decimals)`` on stdout (3) and in ``out`` (6).
    Returns (the distances scored, how many pairs failed)."""
    distances, failed = [], 0
    for result, label in zip(scorer.score_pairs(pairs), labels):
        if not result.ok:
            failed += 1
            click.echo(f"{label}: {result.error}", err=True)
            continue
        distances.append(result.distance)
        echo_result(line(label, result.distance, 3))
        if out is not None:
            out.write(line(label, result.distance, 6) + "\n")
    return distances, failed


def _finish(failed: int, total: int) -> None:
    if failed:
        click.echo(f"{failed} of {total} pairs could not be scored (see above)", err=True)
        sys.exit(1)


@click.command("lpips-2imgs", context_settings=_CONTEXT)
@click.option("-p0", "--path0", default="./imgs/ex_ref.png", show_default=True, help="First image.")
@click.option("-p1", "--path1", default="./imgs/ex_p0.png", show_default=True, help="Second image.")
@_common
def two_images(path0, path1, net, lpips_version, use_gpu, models_dir):
    """LPIPS distance of two images, as the official lpips_2imgs.py: prints ``Distance: %.3f``."""
    with errors_to_click():
        scorer = _scorer(net, lpips_version, use_gpu, models_dir)
        echo_result("Distance: %.3f" % scorer.distance(path0, path1))


@click.command("lpips-2dirs", context_settings=_CONTEXT)
@click.option("-d0", "--dir0", default="./imgs/ex_dir0", show_default=True, help="First folder.")
@click.option("-d1", "--dir1", default="./imgs/ex_dir1", show_default=True, help="Second folder.")
@click.option("-o", "--out", default="./imgs/example_dists.txt", show_default=True, help="Text file of distances.")
@_common
def two_dirs(dir0, dir1, out, net, lpips_version, use_gpu, models_dir):
    """Distances of the same-named images of two folders, as the official lpips_2dirs.py."""
    with errors_to_click():
        scorer = _scorer(net, lpips_version, use_gpu, models_dir)
        names = [name for name in os.listdir(dir0) if os.path.exists(os.path.join(dir1, name))]
        pairs = [(os.path.join(dir0, name), os.path.join(dir1, name)) for name in names]
        writer = _Out(out)
        try:
            _, failed = _score(scorer, pairs, names, lambda name, d, k: f"{name}: {d:.{k}f}", writer)
        finally:
            writer.close()
        _finish(failed, len(pairs))


@click.command("lpips-1dir-allpairs", context_settings=_CONTEXT)
@click.option("-d", "--dir", "folder", default="./imgs/ex_dir_pair", show_default=True, help="Folder of images.")
@click.option("-o", "--out", default="./imgs/example_dists.txt", show_default=True, help="Text file of distances.")
@click.option("--all-pairs", is_flag=True,
              help="All N(N-1)/2 pairs; without it, consecutive pairs (N-1), as the official script.")
@click.option("-N", "count", type=click.IntRange(min=0), default=None, help="Only the first N files.")
@_common
def one_dir_all_pairs(folder, out, all_pairs, count, net, lpips_version, use_gpu, models_dir):
    """Distances between the images of one folder, as the official lpips_1dir_allpairs.py."""
    import numpy as np

    with errors_to_click():
        scorer = _scorer(net, lpips_version, use_gpu, models_dir)
        files = os.listdir(folder)
        if count is not None:
            files = files[:count]
        index = [(i, j) for i in range(len(files) - 1)
                 for j in (range(i + 1, len(files)) if all_pairs else (i + 1,))]
        pairs = [(os.path.join(folder, files[i]), os.path.join(folder, files[j])) for i, j in index]
        labels = [f"({files[i]},{files[j]})" for i, j in index]
        writer = _Out(out)
        try:
            distances, failed = _score(scorer, pairs, labels, lambda label, d, k: f"{label}: {d:.{k}f}", writer)
            with np.errstate(invalid="ignore", divide="ignore"):  # no pairs: nan, as the official prints
                values = np.array(distances, dtype=np.float64)
                mean = float(np.mean(values)) if len(values) else float("nan")
                sem = float(np.std(values) / np.sqrt(len(values))) if len(values) else float("nan")
            echo_result(f"Avg: {mean:.5f} +/- {sem:.5f}")
            writer.write(f"Avg: {mean:.6f} +/- {sem:.6f}")
        finally:
            writer.close()
        _finish(failed, len(pairs))
