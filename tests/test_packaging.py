"""The distribution as users get it: the sdist and wheel built from the tracked files, the wheel installed
into a fresh virtualenv in a temporary folder and run from an empty folder (issue 10).

1. ``python -m build`` (the wheel is built from the sdist); the wheel must hold exactly the modules of
   ``export/lpips_export`` and ``runtime/lpips_runtime`` and the tracked files of ``models/``, plus the
   licence files, so that a module or data file can never again go missing from it.
2. ``pip install 'lpips_rt-*.whl[cpu]'``: no torch. Scores examples/ref.png vs examples/distorted.png with
   ``--model`` (an export made here) and through the Python API, checks ``--net alex`` names the missing
   export, where it looked and how to point elsewhere, and imports every public module.
3. The same environment plus ``[cpu,light-export,serve,video,ray]`` (installed by uv, the other installer
   users run): no torch, and ``lpips-export --net alex`` (from the graph templates) serves every front end.
4. The same environment plus ``[cpu,export]`` (``-c constraints.txt``): ``lpips-export --net alex`` from an
   empty folder writes to the user data folder, where ``lpips-score --net alex`` then finds it.

The pinned torch and torchvision (about 5 GB with their CUDA libraries) are not copied into the new
environment: their installed files are linked from this one (see ``_link_pinned_torch``), and pip sees
them as installed. Everything else comes from the wheel's own requirements, resolved by pip (uv in 3).

About 120 s alone on 2 cores (build 9 s, [cpu] install 23 s, the torch-free front ends 42 s, export extras and
export 29 s), 144 s on one core in ``make test`` (2026-12-07). ``LPIPS_RT_SKIP_WHEEL_TEST=1`` skips it locally;
CI (``CI=true``) always runs it.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

SKIP = os.environ.get("LPIPS_RT_SKIP_WHEEL_TEST") == "1" and os.environ.get("CI") != "true"
pytestmark = pytest.mark.skipif(SKIP, reason="LPIPS_RT_SKIP_WHEEL_TEST=1 (never skipped in CI)")

EXAMPLES = ROOT / "examples"
PACKAGE_DIRS = {"export/lpips_export": "lpips_export", "runtime/lpips_runtime": "lpips_runtime", "models": "lpips_rt_models"}
LICENSE_FILES = {"LICENSE", "NOTICE", "NOTICE-squeezenet.md"}


def _tracked_files() -> list[str]:
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"git ls-files failed in {ROOT}: the wheel test builds from the tracked files "
                    f"({done.stderr.decode(errors='replace').strip()})")
    return [name for name in done.stdout.decode().split("\0") if name]


def _expected_wheel_files(tracked: list[str]) -> dict[str, str]:
    """wheel path -> source path: every .py file under the package folders (tracked or not: an untracked
    module is missing from a clean clone) and every tracked file there (data files)."""
    expected = {}
    for src_dir, package in PACKAGE_DIRS.items():
        for path in (ROOT / src_dir).rglob("*.py"):
            if "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT / src_dir).as_posix()
                expected[f"{package}/{rel}"] = path.relative_to(ROOT).as_posix()
        for name in tracked:
            if name.startswith(src_dir + "/"):
                expected[f"{package}/{name[len(src_dir) + 1:]}"] = name
    return expected


def _run(args, cwd, env, timeout=600, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-3000:]}")
    return done


def pip_install(python, requirement: str, cwd, env, *pip_args) -> None:
    """``pip install REQUIREMENT`` into the environment of ``python``, as a user runs it. (Not --no-compile:
    it saves a quarter of the install, then Ray's processes compile its modules on every start of the
    --ray run below, which costs more than it saved: measured 2026-12-07.)"""
    _run([python, "-m", "pip", "install", "-q", *pip_args, requirement], cwd, env, timeout=900)


def uv_install(python, requirement: str, cwd, env) -> None:
    """``uv pip install --compile-bytecode REQUIREMENT`` into the environment of ``python``: the other
    installer users run, resolving the same wheel metadata. For the large environment (Ray, PyAV, FastAPI):
    17 s against pip's 86 s on 2 cores (2026-12-07), bytecode included as pip writes it."""
    _run([sys.executable, "-m", "uv", "pip", "install", "-q", "--compile-bytecode", "--python", python,
          requirement], cwd, env, timeout=900)


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist, wheel) built by ``python -m build`` from a copy of the tracked files."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    for name in _tracked_files():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "build", "--outdir", root / "dist", src], cwd=root, env=os.environ.copy())
    (sdist,) = (root / "dist").glob("lpips_rt-*.tar.gz")
    (wheel,) = (root / "dist").glob("lpips_rt-*.whl")
    return sdist, wheel


def _user_env(root: Path) -> dict:
    """The environment of a user's shell: no checkout on the path, no models folder named, its own
    user data folder (so exports land in ``root/data/lpips-rt/models``). HOME stays: pip's cache and
    the verified offline weight cache (~/.cache/lpips-rt) are what a second run on a machine has."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LPIPS_RT_MODELS",
                                                           "PYTHONHOME", "PYTHONSTARTUP")}
    env["XDG_DATA_HOME"] = str(root / "data")
    env["LPIPS_RT_OFFLINE"] = "1"
    return env


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory):
    """A fresh virtualenv with the wheel installed with [cpu]: (bin folder, environment, empty folder)."""
    root = tmp_path_factory.mktemp("user")
    env = _user_env(root)
    _run([sys.executable, "-m", "venv", root / "venv"], cwd=root, env=env)
    bin_dir = root / "venv" / "bin"
    pip_install(bin_dir / "python", f"{dists[1]}[cpu]", root, env)
    empty = root / "empty"
    empty.mkdir()
    return bin_dir, env, empty


def test_wheel_holds_every_module_and_data_file(dists):
    sdist, wheel = dists
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    content = {n for n in names if ".dist-info/" not in n}
    expected = _expected_wheel_files(_tracked_files())
    missing = sorted(f"{expected[n]} (as {n})" for n in expected.keys() - content)
    assert not missing, ("missing from the wheel (a module not tracked by git, or a data file without a "
                         f"[tool.setuptools.package-data] pattern in pyproject.toml): {missing}")
    assert not sorted(content - expected.keys()), "files in the wheel that are not in the source tree"
    licences = {Path(n).name for n in names if ".dist-info/licenses/" in n}
    assert LICENSE_FILES <= licences, licences
    assert "Requires-Python: >=3.11" in metadata and "License-Expression: BSD-2-Clause" in metadata
    assert "Project-URL: " in metadata and "Classifier: Programming Language :: Python :: 3.11" in metadata
    for line in ("Requires-Dist: platformdirs", "Requires-Dist: onnxruntime>=1.17; extra == \"cpu\""):
        assert line in metadata, line
    import tarfile

    with tarfile.open(sdist) as tf:
        sdist_names = {Path(*Path(n).parts[1:]).as_posix() for n in tf.getnames()}
    assert {"LICENSE", "NOTICE", "setup.py", "pyproject.toml", "models/nets.toml"} <= sdist_names
    # the README (the package description) links docs/ pages: they ship in the sdist (MANIFEST.in)
    assert {"docs/index.md", "docs/score.md", "docs/heatmap-example.png"} <= sdist_names


def test_cpu_install_runs_from_an_empty_folder(venv, exported):
    bin_dir, env, empty = venv
    from lpips_runtime import Scorer

    model = exported("alex")
    ref, dist = EXAMPLES / "ref.png", EXAMPLES / "distorted.png"
    expected = Scorer(model).distance(ref, dist)
    python = bin_dir / "python"

    # no torch in a [cpu] install, and the version comes from the installed metadata
    assert _run([python, "-c", "import torch"], empty, env, check=False).returncode == 1
    version = _run([bin_dir / "lpips-score", "-V"], empty, env).stdout.strip()
    import tomllib

    assert version == f"lpips-rt {tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']}"
    assert _run([bin_dir / "lpips-export", "-V"], empty, env).stdout.strip() == version

    done = _run([bin_dir / "lpips-score", "--model", model, ref, dist], empty, env)
    assert done.stdout == f"{expected:.6f}\n" and done.stderr == ""
    record = json.loads(_run([bin_dir / "lpips-score", "--model", model, ref, dist, "--json"], empty, env).stdout)
    assert abs(record["distance"] - expected) < 1e-7
    api = _run([python, "-c", "import sys; from lpips_runtime import Scorer, __version__; "
                "print(Scorer(sys.argv[1]).distance(sys.argv[2], sys.argv[3]), __version__)",
                model, ref, dist], empty, env).stdout.split()
    assert float(api[0]) == expected and f"lpips-rt {api[1]}" == version

    # a net name without an export: one line naming the file, where it looked, and the ways out
    done = _run([bin_dir / "lpips-score", "--net", "alex", ref, dist], empty, env, check=False)
    data_dir = Path(env["XDG_DATA_HOME"]) / "lpips-rt" / "models"
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == (
        f"Error: no exported model lpips-alex-v0.1.onnx in {data_dir} (the user data folder: no --models-dir, "
        f"$LPIPS_RT_MODELS not set, no ./models in {empty}): run `lpips-export --net alex` (needs pip install "
        "'lpips-rt[light-export]', no torch), or name the folder that has it with --models-dir DIR or "
        "LPIPS_RT_MODELS=DIR")
    # the export commands without their extra: one line naming it (the stock graphs need only [light-export])
    for args, extra in (([bin_dir / "lpips-export", "--net", "alex"], "light-export"),
                        ([bin_dir / "lpips-export", "--net", "alex", "--spatial"], "export"),
                        ([python, "-m", "lpips_export.fetch_weights", "alex"], "export")):
        done = _run(args, empty, env, check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().endswith(f"pip install 'lpips-rt[{extra}]'"), done.stderr

    # every public module imports (the export package's modules need torch: only the package itself here)
    done = _run([bin_dir / "lpips-serve", "--model", model], empty, env, check=False)  # no [serve] here
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().endswith("pip install 'lpips-rt[serve]'"), done.stderr
    # ... or, for the modules of an extra not installed here (lpips-serve's), say which extra in one error
    done = _run([python, "-c", _IMPORT_ALL, "lpips_runtime", "lpips_rt_models"], empty, env)
    needs = json.loads(done.stdout.strip().splitlines()[-1])
    assert needs.pop("lpips_runtime.torch", None) == "torch", needs  # the differentiable loss: [torch]
    assert needs and set(needs.values()) == {"serve"}, needs
    assert all(name.startswith("lpips_runtime.serve.") for name in needs), needs
    _run([python, "-c", "import lpips_export, lpips_export.cli, lpips_export.fetch_weights"], empty, env)


_IMPORT_ALL = """
import importlib, json, pkgutil, sys
from lpips_runtime.errors import MissingExtraError
failed, needs = [], {}
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    assert "site-packages" in package.__file__, package.__file__
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            try:
                importlib.import_module(info.name)
            except MissingExtraError as exc:
                needs[info.name] = exc.extra
            except Exception as exc:
                failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
assert not failed, failed
print(json.dumps(needs))
"""


def test_torch_free_machine_with_one_export_does_everything(dists, venv, exported, tmp_path):
    """Issue 21: the wheel with [cpu,light-export,serve,video,ray] (no torch) and `lpips-export --net alex` (built from
    the graph templates) serve every front end from an empty folder: a pair, --heatmap, --metrics, --all-pairs,
    --ref, tiles on a large pair, --ray workers, lpips-video with --heatmap-video, and lpips-serve with its default
    options."""
    import signal
    import time

    import cv2
    import httpx

    bin_dir, env, empty = venv
    python = bin_dir / "python"
    # [ray] too: lpips-score --ray is among the front ends (one resolution of the wheel's extras, not two). uv
    # installs them: pip installs this wheel in the other tests ([cpu], and [cpu,export] on top of it).
    uv_install(python, f"{dists[1]}[cpu,light-export,serve,video,ray]", empty, env)
    assert _run([python, "-c", "import torch"], empty, env, check=False).returncode == 1
    data_dir = Path(env["XDG_DATA_HOME"]) / "lpips-rt" / "models"
    done = _run([bin_dir / "lpips-export", "--net", "alex"], empty, env)
    written = [line.split("  ")[0] for line in done.stdout.splitlines()]
    assert len(written) == 10 and all(Path(w).parent == data_dir for w in written), done.stdout
    assert "building from graph templates (torch is not installed)" in done.stderr and "Traceback" not in done.stderr

    from lpips_runtime import Scorer

    ref, dist = EXAMPLES / "ref.png", EXAMPLES / "distorted.png"
    expected = Scorer(exported("alex")).distance(ref, dist)  # the torch export, in this (test) environment

    def score(*args):
        return _run([bin_dir / "lpips-score", *args], empty, env)

    assert abs(float(score(ref, dist).stdout) - expected) < 1e-6
    heatmap = tmp_path / "heat.png"
    score(ref, dist, "--heatmap", heatmap)
    assert cv2.imread(str(heatmap)) is not None
    record = json.loads(score(ref, dist, "--metrics", "psnr,ssim", "--json").stdout)
    assert abs(record["distance"] - expected) < 1e-6 and record["psnr"] > 0 and 0 < record["ssim"] < 1
    folder = tmp_path / "images"
    folder.mkdir()
    photo = cv2.imread(str(ref))
    for name, img in (("a.png", photo), ("b.png", cv2.imread(str(dist))), ("c.png", cv2.GaussianBlur(photo, (9, 9), 3))):
        cv2.imwrite(str(folder / name), img)
    assert score("--all-pairs", folder).stdout.strip()
    assert score("--ref", ref, "--dir", folder).stdout.strip()
    big0, big1 = tmp_path / "big0.png", tmp_path / "big1.png"
    cv2.imwrite(str(big0), cv2.resize(photo, (1200, 900), interpolation=cv2.INTER_CUBIC))
    cv2.imwrite(str(big1), cv2.resize(cv2.imread(str(dist)), (1200, 900), interpolation=cv2.INTER_CUBIC))
    tiled, whole = float(score(big0, big1, "--tile", "400").stdout), float(score(big0, big1, "--tile", "off").stdout)
    assert abs(tiled - whole) <= 1e-5

    _score_with_ray_workers(python, bin_dir, env, empty, folder, tmp_path)

    _run([python, EXAMPLES / "make_video_clips.py", tmp_path], empty, env)
    heat_video = tmp_path / "heat.mp4"
    done = _run([bin_dir / "lpips-video", tmp_path / "ref.mp4", tmp_path / "dist.mp4", "--max-frames", "12",
                 "--heatmap-video", heat_video], empty, env)
    assert done.stdout.strip() and heat_video.stat().st_size > 0

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([bin_dir / "lpips-serve", "--host", "127.0.0.1", "--port", str(port)], cwd=empty,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[1][-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "lpips-serve not ready in 120 s"
            time.sleep(0.5)
        files = {"img0": ("a.png", ref.read_bytes(), "image/png"), "img1": ("b.png", dist.read_bytes(), "image/png")}
        answer = httpx.post(url + "/v1/distance", files=files, timeout=60)
        assert answer.status_code == 200 and abs(answer.json()["distance"] - expected) < 1e-6, answer.text
        assert httpx.post(url + "/v1/heatmap", files=files, timeout=60).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)


def _score_with_ray_workers(python, bin_dir, env, empty, folder, tmp_path) -> None:
    """``lpips-score --ray`` from the same torch-free venv (its [ray] extra installed): a local Ray cluster
    (started by the command itself) inside a private network and pid namespace with loopback only and
    a Ray temp folder of its own; its distances equal the same folders scored without Ray."""
    sys.path.insert(0, str(ROOT / "tests" / "runtime" / "cluster"))
    from ray_netns import _UNSHARE, _new_ray_tmpdir, unshare_problem

    problem = unshare_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"--ray workers cannot be tested: {problem}")
        return
    import cv2

    dist_folder = tmp_path / "images-distorted"
    dist_folder.mkdir()
    for image in sorted(folder.glob("*.png")):
        cv2.imwrite(str(dist_folder / image.name), cv2.GaussianBlur(cv2.imread(str(image)), (5, 5), 2))
    plain, with_ray = tmp_path / "plain.csv", tmp_path / "ray.csv"
    pairs = ["--dir0", folder, "--dir1", dist_folder]
    _run([bin_dir / "lpips-score", *pairs, "--out", plain], empty, env)
    ray_tmp = _new_ray_tmpdir()
    try:
        _run([*_UNSHARE, "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
              bin_dir / "lpips-score", *pairs, "--ray", "--part-format", "csv", "--out", with_ray], empty,
             dict(env, RAY_TMPDIR=ray_tmp))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    def distances(*files):
        rows = [row for path in files for row in csv.DictReader(path.open(newline=""))]
        return {Path(row["img0"]).name: float(row["distance"]) for row in rows}

    plain_d, ray_d = distances(plain), distances(*sorted(with_ray.glob("part-*.csv")))
    assert len(plain_d) == 3 and plain_d.keys() == ray_d.keys()
    assert all(abs(plain_d[k] - ray_d[k]) <= 1e-6 for k in plain_d), (plain_d, ray_d)


def _link_pinned_torch(target: Path) -> None:
    """Link torch, torchvision and their dependencies' installed files (as this interpreter has them) into
    ``target``: a folder that a .pth file puts on the new environment's path. numpy and setuptools are
    left out: the new environment has its own."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo, seen, dists = [("torch", ()), ("torchvision", ())], set(), {}
    while todo:
        name, extras = todo.pop()
        name = canonicalize_name(name)
        if name in ("numpy", "setuptools") or (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = metadata.distribution(name)
        dists[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((req.name, tuple(sorted(req.extras))))
    target.mkdir()
    for dist in dists.values():
        for top in {f.parts[0] for f in dist.files or ()}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            source, link = Path(dist.locate_file(top)), target / top
            if source.exists() and not link.exists():
                link.symlink_to(source)


def test_export_install_exports_and_scores_from_an_empty_folder(dists, venv, exported, tmp_path):
    bin_dir, env, empty = venv
    from lpips_runtime import Scorer

    expected = Scorer(exported("alex")).distance(EXAMPLES / "ref.png", EXAMPLES / "distorted.png")
    python = bin_dir / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], empty, env).stdout.strip()
    assert site != sysconfig.get_path("purelib")
    _link_pinned_torch(tmp_path / "pinned")
    Path(site, "lpips-rt-test-pinned-torch.pth").write_text(f"{tmp_path / 'pinned'}\n")
    pip_install(python, f"{dists[1]}[cpu,export]", empty, env, "-c", ROOT / "constraints.txt")

    # the torch export of one graph (the bundle is test_torch_free_machine_with_one_export_does_everything's)
    done = _run([bin_dir / "lpips-export", "--net", "alex", "--distance-only"], empty, env)
    written = Path(env["XDG_DATA_HOME"]) / "lpips-rt" / "models" / "lpips-alex-v0.1.onnx"
    assert done.stdout.startswith(f"{written}  ") and done.stdout.endswith(" MB\n"), done.stdout  # path, size
    assert "checked: onnx.checker ok" in done.stderr and written.is_file()
    assert list(empty.iterdir()) == []  # nothing written into the working folder

    done = _run([bin_dir / "lpips-score", "--net", "alex", EXAMPLES / "ref.png", EXAMPLES / "distorted.png"],
                empty, env)
    assert abs(float(done.stdout) - expected) <= 1e-6 and done.stderr == ""
    _run([python, "-c", _IMPORT_ALL, "lpips_runtime", "lpips_rt_models", "lpips_export"], empty, env)

