"""lpips-2imgs, lpips-2dirs, lpips-1dir-allpairs: the official scripts' flags and text, with the official
package's distances (lpips 0.1.4, same backbone tensors, its own image loader) written the official way."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import crop, distort, official_lpips, photo

NUMBER = re.compile(r"-?\d+\.\d+|nan")


def run(command: str, *args, cwd=None):
    code = f"from lpips_runtime.commands.official_scripts import {command}; {command}()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """dir0/dir1 of same-named real photographs (64x80 PNG and JPEG), one name in dir0 only."""
    root = tmp_path_factory.mktemp("official")
    (root / "d0").mkdir()
    (root / "d1").mkdir()
    for i, (name, kind) in enumerate([("astronaut", "blur"), ("chelsea", "jpeg"), ("coffee", "noise"),
                                      ("rocket", "colour")]):
        ref = crop(photo(name), 64, 80)
        ext = ".jpg" if i == 1 else ".png"
        cv2.imwrite(str(root / "d0" / f"{name}{ext}"), ref[..., ::-1])
        cv2.imwrite(str(root / "d1" / f"{name}{ext}"), distort(ref, kind, 0.7, seed=i)[..., ::-1])
    cv2.imwrite(str(root / "d0" / "only_here.png"), crop(photo("astronaut"), 64, 80))
    return root


@pytest.fixture(scope="module")
def official_distance(build_module):
    """(path0, path1, version) -> the official package's distance, images read by lpips.load_image."""
    import lpips

    models = {}

    def distance(p0, p1, version="0.1"):
        if version not in models:
            ours, _ = build_module("alex", version)
            models[version] = official_lpips("alex", version, True, False, ours.features_state_for_official())
        with torch.no_grad():
            return models[version](lpips.im2tensor(lpips.load_image(str(p0))), lpips.im2tensor(lpips.load_image(str(p1))))

    return distance


def assert_same_text(got: bytes, expected: str, what: str):
    """Byte for byte but the numbers, which agree within the parity limit plus one printed digit."""
    text = got.decode()
    assert NUMBER.sub("#", text) == NUMBER.sub("#", expected), f"{what}:\n{text}\n---\n{expected}"
    for a, b in zip(NUMBER.findall(text), NUMBER.findall(expected)):
        assert (a == b == "nan") or abs(float(a) - float(b)) <= 1e-5 + 10 ** -len(b.split(".")[1]), (what, a, b)


def test_2imgs(folders, alex_models, official_distance):
    p0, p1 = folders / "d0" / "chelsea.jpg", folders / "d1" / "chelsea.jpg"
    done = run("two_images", "-p0", p0, "-p1", p1, "--models-dir", alex_models)
    assert done.returncode == 0, done.stderr
    assert_same_text(done.stdout, "Distance: %.3f\n" % official_distance(p0, p1), "lpips-2imgs")
    # the long names and -v, as argparse took them
    done = run("two_images", "--path0", p0, "--path1", p0, "-v", "0.1", "--models-dir", alex_models)
    assert done.stdout == b"Distance: 0.000\n"


def test_2dirs_text_and_file(folders, alex_models, official_distance, tmp_path):
    out = tmp_path / "dists.txt"
    done = run("two_dirs", "-d0", folders / "d0", "-d1", folders / "d1", "-o", out, "--models-dir", alex_models)
    assert done.returncode == 0, done.stderr
    stdout, written = "", ""
    for name in os.listdir(folders / "d0"):  # the official's order and its silent skip of unmatched names
        if os.path.exists(folders / "d1" / name):
            d = official_distance(folders / "d0" / name, folders / "d1" / name)
            stdout += "%s: %.3f\n" % (name, d)
            written += "%s: %.6f\n" % (name, d)
    assert written.count("\n") == 4
    assert_same_text(done.stdout, stdout, "lpips-2dirs stdout")
    assert_same_text(out.read_bytes(), written, "lpips-2dirs -o")


@pytest.mark.parametrize("all_pairs", [False, True])
def test_1dir_pairs_and_average(folders, alex_models, exported, official_distance, tmp_path, all_pairs):
    exported("alex", "0.0")  # -v 0.0 finds its export in the same folder
    out = tmp_path / "dists.txt"
    args = ["-d", folders / "d0", "-o", out, "-v", "0.0", "-N", "4", "--models-dir", alex_models]
    done = run("one_dir_all_pairs", *args, *(["--all-pairs"] if all_pairs else []))
    assert done.returncode == 0, done.stderr
    files = os.listdir(folders / "d0")[:4]
    stdout, written, dists = "", "", []
    for i, file in enumerate(files[:-1]):
        for file1 in (files[i + 1:] if all_pairs else [files[i + 1]]):
            d = official_distance(folders / "d0" / file, folders / "d0" / file1, "0.0")
            stdout += "(%s,%s): %.3f\n" % (file, file1, d)
            written += "(%s,%s): %.6f\n" % (file, file1, d)
            dists.append(d.item())
    assert len(dists) == (6 if all_pairs else 3)
    avg, sem = np.mean(np.array(dists)), np.std(np.array(dists)) / np.sqrt(len(dists))
    stdout += "Avg: %.5f +/- %.5f\n" % (avg, sem)
    written += "Avg: %.6f +/- %.6f" % (avg, sem)
    assert_same_text(done.stdout, stdout, "lpips-1dir-allpairs stdout")
    assert_same_text(out.read_bytes(), written, "lpips-1dir-allpairs -o")


def test_a_bad_pair_is_one_line_and_the_run_goes_on(folders, alex_models, tmp_path):
    d0, d1 = tmp_path / "a", tmp_path / "b"
    d0.mkdir()
    d1.mkdir()
    for name in ("good.png", "bad.png"):
        (d0 / name).write_bytes((folders / "d0" / "astronaut.png").read_bytes())
    (d1 / "good.png").write_bytes((folders / "d1" / "astronaut.png").read_bytes())
    (d1 / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "dists.txt"
    done = run("two_dirs", "-d0", d0, "-d1", d1, "-o", out, "--models-dir", alex_models)
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert re.fullmatch(rb"good\.png: \d\.\d{3}\n", done.stdout)
    assert re.fullmatch(rb"good\.png: \d\.\d{6}\n", out.read_bytes())
    lines = done.stderr.decode().strip().splitlines()
    assert lines[0].startswith("bad.png: ") and lines[-1] == "1 of 2 pairs could not be scored (see above)"
    # lpips-2imgs on images of different sizes: one line, exit 1 (the official: a traceback)
    cv2.imwrite(str(tmp_path / "other.png"), crop(photo("coffee"), 70, 80))
    done = run("two_images", "-p0", d0 / "good.png", "-p1", tmp_path / "other.png", "--models-dir", alex_models)
    assert done.returncode == 1 and done.stdout == b"" and done.stderr.count(b"\n") == 1
    assert done.stderr.startswith(b"Error: ") and b"Traceback" not in done.stderr
