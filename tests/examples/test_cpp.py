"""examples/cpp: build the OpenCV-DNN C++ scorer and check it against ONNX Runtime and on bad inputs."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import crop, photo

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "examples" / "cpp"
TOLERANCE = 1e-5

# What the build needs -> the Debian package that provides it.
TOOLS = {"cmake": "cmake", "g++": "g++", "make": "make"}
HEADERS = {"opencv2/dnn.hpp": "libopencv-dnn-dev", "opencv2/imgcodecs.hpp": "libopencv-imgcodecs-dev"}
INCLUDE_ROOTS = (Path("/usr/include/opencv4"), Path("/usr/local/include/opencv4"))


def _missing_packages() -> list[str]:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    missing += [pkg for header, pkg in HEADERS.items() if not any((r / header).is_file() for r in INCLUDE_ROOTS)]
    return missing


def _apt_install(packages: list[str]) -> str | None:
    """Install Debian packages; None on success, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not running as root"
    if shutil.which("apt-get") is None:
        return "no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, timeout=1200)

    install = ("install", "-y", "-q", "--no-install-recommends", *packages)
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*_Packages*")):  # never updated: nothing to install from
        apt("update", "-q")
    result = apt(*install)
    if result.returncode != 0:  # stale package lists are the usual cause: refresh once and retry
        if apt("update", "-q").returncode == 0:
            result = apt(*install)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
        return f"apt-get install {' '.join(packages)} failed: {tail[0]}"
    return None


@pytest.fixture(scope="module")
def lpips_score(tmp_path_factory) -> Path:
    """The built lpips_score binary (installing cmake/g++/OpenCV dev packages first if they are missing)."""
    missing = _missing_packages()
    if missing:
        started = time.monotonic()
        why_not = _apt_install(missing)
        if why_not is not None or _missing_packages():
            pytest.skip(f"C++ toolchain incomplete (need {' '.join(missing)}): {why_not or 'still missing after install'}")
        print(f"\napt-get installed {' '.join(missing)} in {time.monotonic() - started:.0f} s")
    build = tmp_path_factory.mktemp("cpp-build")
    started = time.monotonic()
    for cmd in (["cmake", "-S", str(SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build), "-j", "4"]):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(f"\nbuilt lpips_score in {time.monotonic() - started:.1f} s")
    return build / "lpips_score"


def run_cli(binary: Path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}  # OpenCV's own logging off
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def score(binary: Path, model: Path, path0: Path, path1: Path) -> float:
    result = run_cli(binary, model, path0, path1)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return float(lines[0])


@functools.lru_cache(maxsize=None)
def _scorer(model: str):
    from lpips_runtime import Scorer

    return Scorer(model)


def reference_distance(model: Path, path0: Path, path1: Path) -> float:
    """The distance the C++ program must print for this file pair: the Python runtime's Scorer on the
    same files and the same model."""
    return _scorer(str(model)).distance(path0, path1)


def assert_matches_reference(binary: Path, model: Path, pairs) -> float:
    """Max |C++ - reference| over the pairs (asserted <= TOLERANCE)."""
    worst = 0.0
    for p0, p1 in pairs:
        got, want = score(binary, model, p0, p1), reference_distance(model, p0, p1)
        assert abs(got - want) <= TOLERANCE, f"{model.name} {p0.name} vs {p1.name}: C++ {got!r}, reference {want!r}"
        worst = max(worst, abs(got - want))
    print(f"\n{model.name}: max |C++ - reference| = {worst:.3g} over {len(pairs)} pairs")
    return worst


# --- Agreement with ONNX Runtime -------------------------------------------------------------------

@pytest.mark.parametrize("net, options", [
    ("alex", {}), ("vgg", {}), ("squeeze", {}),
    ("alex", {"version": "0.0"}), ("alex", {"calibrated": False}),
], ids=["alex", "vgg", "squeeze", "alex-v0.0", "alex-baseline"])
def test_photo_pairs_match_onnxruntime(lpips_score, exported, photo_pair_files, net, options):
    assert_matches_reference(lpips_score, exported(net, **options), photo_pair_files)


def test_export_with_metrics_prints_its_distance(lpips_score, exported, exported_spec, photo_pair_files):
    # OpenCV 4.6 loads a graph with PSNR/SSIM outputs (Round, Log, valid depthwise convolutions, ...);
    # the program prints the distance output, the same number as for the plain export.
    from lpips_runtime.model.modelfile import ModelSpec
    from lpips_runtime.model.pixel_metrics import METRICS

    metrics_model = exported_spec(ModelSpec("alex", metrics=METRICS))
    for p0, p1 in photo_pair_files[:2]:
        got = score(lpips_score, metrics_model, p0, p1)
        assert abs(got - score(lpips_score, exported("alex"), p0, p1)) <= TOLERANCE
        assert abs(got - reference_distance(metrics_model, p0, p1)) <= TOLERANCE


def test_grey_and_alpha_images(lpips_score, exported, tmp_path):
    """Grey files are replicated to 3 channels and alpha is dropped, as cv2.imread(path) does."""
    rgb = crop(photo("coffee"), 64, 96)
    grey, bgra = tmp_path / "grey.png", tmp_path / "alpha.png"
    cv2.imwrite(str(grey), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    cv2.imwrite(str(bgra), np.dstack([rgb[..., ::-1], alpha]))
    assert_matches_reference(lpips_score, exported("alex"), [(grey, bgra)])


def test_sixteen_bit_images_use_full_range(lpips_score, exported, tmp_path):
    """16-bit files are scaled from their full range, as the Python runtime does (not cut to 8 bits)."""
    rng = np.random.default_rng(1)
    deep = (crop(photo("rocket"), 48, 64).astype(np.uint16) * 257 + rng.integers(0, 257, (48, 64, 3))).astype(
        np.uint16)
    p0, p1 = tmp_path / "deep0.png", tmp_path / "deep1.png"
    cv2.imwrite(str(p0), deep[..., ::-1])
    cv2.imwrite(str(p1), (deep[..., ::-1] // 256 * 256).astype(np.uint16))  # the same, low byte cleared
    assert score(lpips_score, exported("alex"), p0, p1) > 0  # a truncating reader would print 0
    assert_matches_reference(lpips_score, exported("alex"), [(p0, p1)])


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF APP1 segment holding only the Orientation tag, right after SOI."""
    tiff = (b"MM\x00\x2a" + (8).to_bytes(4, "big")                # big-endian TIFF header, IFD at 8
            + (1).to_bytes(2, "big")                              # one entry:
            + b"\x01\x12" + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")  # Orientation, SHORT, count 1
            + orientation.to_bytes(2, "big") + b"\x00\x00"
            + (0).to_bytes(4, "big"))                             # no next IFD
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_exif_orientation_applied(lpips_score, exported, tmp_path):
    """A 64x40 JPEG tagged 'rotate 90 clockwise' is a 40x64 image, so it pairs with a 40x64 PNG."""
    rgb = crop(photo("astronaut"), 40, 64)
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    tagged, upright = tmp_path / "tagged.jpg", tmp_path / "upright.png"
    tagged.write_bytes(_with_exif_orientation(jpeg.tobytes(), 6))
    cv2.imwrite(str(upright), np.rot90(rgb, k=-1)[..., ::-1])
    assert cv2.imread(str(tagged)).shape[:2] == (64, 40)  # the reference decoder applies it too
    assert_matches_reference(lpips_score, exported("alex"), [(tagged, upright)])


# --- Bad inputs: exit 1, one line on stderr, nothing on stdout ------------------------------------

def assert_fails(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    print(f"\n{lines[0]}")
    return lines[0]


@pytest.fixture(scope="module")
def pair(photo_pair_files):
    return photo_pair_files[0]  # 256x256 PNGs


def test_usage(lpips_score):
    result = run_cli(lpips_score, "only-one-argument")
    assert result.returncode == 2 and result.stdout == "" and "usage" in result.stderr.lower()


def test_missing_image(lpips_score, exported, pair, tmp_path):
    assert_fails(run_cli(lpips_score, exported("alex"), tmp_path / "nope.png", pair[1]),
                 "nope.png", "no such file")


def test_corrupt_image(lpips_score, exported, pair, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_fails(run_cli(lpips_score, exported("alex"), pair[0], junk), "junk.png", "cannot decode")


def test_truncated_png(lpips_score, exported, pair, tmp_path):
    """libpng prints its own 'libpng error: ...' line before ours; ours is the last one."""
    cut = tmp_path / "cut.png"
    cut.write_bytes(pair[0].read_bytes()[:3000])
    result = run_cli(lpips_score, exported("alex"), cut, pair[1])
    assert result.returncode == 1 and result.stdout == ""
    assert "cannot decode" in result.stderr.splitlines()[-1]


def test_size_mismatch(lpips_score, exported, photo_pair_files):
    (a, _), (b, _) = photo_pair_files[0], photo_pair_files[1]  # 256x256 and 299x201 (width x height)
    assert_fails(run_cli(lpips_score, exported("alex"), a, b), "size mismatch", "256x256", "299x201")


def test_below_min_side(lpips_score, exported, tmp_path):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), crop(photo("chelsea"), 20, 20))
    assert_fails(run_cli(lpips_score, exported("alex"), small, small), "too small", "20x20", ">= 31")


def test_missing_model(lpips_score, pair, tmp_path):
    assert_fails(run_cli(lpips_score, tmp_path / "absent.onnx", *pair), "model", "absent.onnx", "no such file")


def _tiny_onnx(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A valid one-node (Identity) ONNX model, optionally with metadata_props."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["img0"], ["distance"])], "tiny",
        [helper.make_tensor_value_info("img0", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("distance", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_not_an_lpips_export(lpips_score, pair, tmp_path):
    assert_fails(run_cli(lpips_score, _tiny_onnx(tmp_path / "identity.onnx"), *pair), "wrong model", "lpips-rt")


def test_not_an_onnx_file(lpips_score, pair):
    assert_fails(run_cli(lpips_score, pair[0], *pair), "wrong model", "not an onnx file")


@pytest.mark.parametrize("change, word", [
    ({"input_dtype": "uint8", "input": "img0, img1: uint8 [N,H,W,3] RGB in [0,255]"}, "uint8"),
    ({"kind": "features"}, "kind"),
    ({"min_side": "thirty"}, "min_side"),
], ids=["uint8-input", "unknown-kind", "bad-min-side"])
def test_unusable_metadata(lpips_score, pair, tmp_path, change, word):
    meta = {"format": "lpips-rt/1", "kind": "distance", "net": "alex", "min_side": "31", **change}
    assert_fails(run_cli(lpips_score, _tiny_onnx(tmp_path / "doctored.onnx", meta), *pair), "wrong model", word)


def test_spatial_export_refused(lpips_score, exported, pair):
    assert_fails(run_cli(lpips_score, exported("alex", spatial=True), *pair), "wrong model", "spatial")
