"""Shared fixtures: offline weights, session-cached exports, real photographs and their distortions,
and the official ``lpips`` package built with the very same backbone tensors."""
from __future__ import annotations

import contextlib
import os

# Everything runs offline: never wait on torchvision's download site (set before any import uses it).
os.environ.setdefault("LPIPS_RT_OFFLINE", "1")


ALL_CPUS = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def _pin_xdist_worker() -> None:
    """Under pytest-xdist, worker i of n keeps every n-th CPU of the process's set, before any library starts
    threads (a thread inherits its creator's set). ONNX Runtime, torch, OpenVINO and lpips-rt itself size
    their thread pools by the CPUs a process may use, so each worker computes on its own cores with as many
    threads as it has, instead of every worker with all of them: two workers, each with 2-thread pools that
    spin while they wait, on 2 cores spent about a fifth of the suite's CPU time contending (make test:
    1377 CPU-s in 806 s unpinned, 1129 CPU-s in 689 s pinned, 2026-12-07). ``all_cpus()`` lifts it."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not worker.startswith("gw") or count < 2 or len(ALL_CPUS) < count:
        return
    os.sched_setaffinity(0, sorted(ALL_CPUS)[int(worker[2:]) % count::count])


_pin_xdist_worker()


@contextlib.contextmanager
def all_cpus():
    """Within it, this thread (and the threads and processes it starts) may use every CPU again: for a test
    that needs more threads than one worker's share, or that starts a cluster."""
    if not ALL_CPUS:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)

import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _map_source_tree() -> None:
    """Make the packages importable from a plain checkout (the GPU machine runs the tests without
    installing the project): export/ and runtime/ on sys.path, models/ as ``lpips_rt_models``."""
    if importlib.util.find_spec("lpips_runtime") is None:
        sys.path[:0] = [str(ROOT / "export"), str(ROOT / "runtime")]
    if importlib.util.find_spec("lpips_rt_models") is None:
        spec = importlib.util.spec_from_file_location("lpips_rt_models", ROOT / "models" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "models")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["lpips_rt_models"] = module
        spec.loader.exec_module(module)


_map_source_tree()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402



# -- markers: gpu / trt / slow skip cleanly where their requirement is missing ---------------------


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (vgg at 1920x1080 on the CPU: minutes)")


def _cuda_gpu_present() -> bool:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return err == cudart.cudaError_t.cudaSuccess and count > 0


def _ort_cuda_present() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def only_loopback_network() -> bool:
    """Whether this process sees no network interface but loopback (a private network namespace)."""
    import socket

    return {name for _, name in socket.if_nameindex()} <= {"lo"}


RAY_MODULES = pytest.StashKey[list]()  # outside a namespace: the Ray modules whose tests the entry runs
INNER_RAY_REPORT = pytest.StashKey[str]()  # the namespace run's slowest tests (or its last line)


def _select_ray_items(config, items) -> None:
    """Ray tests (marked ``ray``) must not open connections beyond loopback, which Ray 2.60 does on a
    machine with other interfaces. Outside a private network namespace one ``netns_entry`` test is kept
    (every Ray module imports the same one) and runs the Ray tests of every Ray module collected here
    inside one namespace (tests/runtime/cluster/ray_netns.py); the modules' own Ray tests are left out.
    Inside one, the entries are left out, and the modules that use the shared cluster (``ray_cluster``)
    run first, so that it starts once before the modules that start clusters of their own."""
    inside = only_loopback_network()
    keep, drop, modules = [], [], []
    entry_kept = False
    for item in items:
        entry = item.get_closest_marker("netns_entry") is not None
        ray_test = item.get_closest_marker("ray") is not None
        if ray_test and not entry and str(item.path) not in modules:
            modules.append(str(item.path))
        if entry and not inside and not entry_kept:
            entry_kept = True
            keep.append(item)
        else:
            (drop if entry or (ray_test and not inside) else keep).append(item)
    config.stash[RAY_MODULES] = modules
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if inside:
        shared = {str(item.path) for item in items if "ray_cluster" in getattr(item, "fixturenames", ())}
        items.sort(key=lambda item: item.get_closest_marker("ray") is None or str(item.path) not in shared)


def pytest_sessionfinish(session):
    """Under pytest-xdist the entry ran in a worker: its Ray report goes to the controller with the worker's output."""
    report = session.config.stash.get(INNER_RAY_REPORT, None)
    if report and hasattr(session.config, "workeroutput"):
        session.config.workeroutput["inner_ray_report"] = report


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent when the suite runs without it
def pytest_testnodedown(node, error):
    report = getattr(node, "workeroutput", {}).get("inner_ray_report")
    if report:
        node.config.stash[INNER_RAY_REPORT] = report


def pytest_terminal_summary(terminalreporter, config):
    """The Ray tests' own report (they ran in one inner pytest in a private network namespace)."""
    report = config.stash.get(INNER_RAY_REPORT, None)
    if report:
        terminalreporter.section("Ray tests in a private network namespace")
        terminalreporter.write_line(report)


# The modules that take longest (junit times of a whole run, 2026-12-07): under pytest-xdist's ``--dist loadfile``
# with ``--no-loadscope-reorder`` (``make test``) a worker takes one module at a time in collection order, so these
# start first and the run does not end with one worker busy on a long module while the other idles. (Without that
# flag xdist orders modules by their number of tests, and the one-test Ray module started last, at minute 7 of 10.)
# Order only; nothing is left out.
LONGEST_MODULES = ("runtime/cluster/test_ray_data.py", "test_packaging.py", "export/test_parity_official.py",
                   "benchmarks/test_bench_smoke.py", "export/test_fp16.py", "export/test_trt_engines.py",
                   "benchmarks/test_benchmark_scripts.py", "examples/test_cpp.py")


def _longest_modules_first(items) -> None:
    rank = {str(ROOT / "tests" / name): i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))  # stable: each module keeps its order


def pytest_collection_modifyitems(config, items):
    _select_ray_items(config, items)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _longest_modules_first(items)
    need = {item for item in items if {"gpu", "trt", "slow"} & {m.name for m in item.iter_markers()}}
    if not need:
        return
    gpu = _cuda_gpu_present()
    reasons = {
        "gpu": None if gpu else "needs a CUDA GPU (none visible to cuda-python)",
        "trt": None if gpu and (importlib.util.find_spec("tensorrt") or importlib.util.find_spec("tensorrt_rtx"))
        else "needs TensorRT (full or RTX) and a CUDA GPU",
        "slow": None if config.getoption("--run-slow") else "slow: run with --run-slow",
    }
    for item in need:
        for name in ("gpu", "trt", "slow"):
            if item.get_closest_marker(name) is not None and reasons[name]:
                item.add_marker(pytest.mark.skip(reason=reasons[name]))
                break


def results_of_threads(call, jobs, threads: int = 8) -> list:
    """``call(*job)`` for every job, from ``threads`` threads started together (a barrier), each taking
    every ``threads``-th job: the results in the jobs' order, to compare with a serial loop's."""
    import threading

    results = [None] * len(jobs)
    barrier = threading.Barrier(threads)

    def work(first):
        barrier.wait()
        for i in range(first, len(jobs), threads):
            results[i] = call(*jobs[i])

    started = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return results


def ort_cuda_available() -> bool:
    """onnxruntime-gpu installed and its CUDA provider listed (tests marked gpu that need it check this)."""
    return _ort_cuda_present()

def wait_for_lines(path: Path, lines: int, proc, timeout: float = 120) -> None:
    """Wait until ``path`` holds more than ``lines`` lines (a streaming run is midway), or ``proc`` has
    ended, or ``timeout`` seconds have passed."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") > lines:
            return
        time.sleep(0.01)


# Photographs bundled inside scikit-image (no download), RGB uint8.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def photo(name: str) -> np.ndarray:
    """A bundled photograph as HxWx3 uint8 RGB."""
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def distort(img: np.ndarray, kind: str, strength: float = 1.0, seed: int = 0) -> np.ndarray:
    """A realistic distortion of an RGB uint8 image: blur, jpeg, noise or colour."""
    rng = np.random.default_rng(seed)
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), sigmaX=0.5 + 2.0 * strength)
    if kind == "jpeg":
        quality = int(max(5, 90 - 80 * strength))
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    if kind == "noise":
        noisy = img.astype(np.float32) + rng.normal(0, 4 + 20 * strength, img.shape)
        return np.clip(noisy, 0, 255).round().astype(np.uint8)
    if kind == "colour":
        gains = 1 + strength * rng.uniform(-0.15, 0.15, 3)
        return np.clip(img.astype(np.float32) * gains, 0, 255).round().astype(np.uint8)
    raise ValueError(kind)


def crop(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """A centred crop (or, if the image is smaller, a resize) to exactly h x w."""
    if img.shape[0] < h or img.shape[1] < w:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def scene(h: int, w: int, index: int = 0) -> np.ndarray:
    """A real photograph at exactly h x w (HxWx3 uint8 RGB): a centred crop of a bundled photo when it
    fits, else a 2x2 mosaic of four photos resized to the quadrants (1920x1080 frames and the like)."""
    names = PHOTOS[:4]
    if h <= 400 and w <= 400:
        return crop(photo(names[index % 4]), h, w)
    tiles = [cv2.resize(photo(names[(index + i) % 4]), (w - w // 2 if i % 2 else w // 2,
                                                       h - h // 2 if i >= 2 else h // 2),
                        interpolation=cv2.INTER_CUBIC) for i in range(4)]
    return np.ascontiguousarray(np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]))


def accuracy_pairs(h: int, w: int, extremes: bool = True) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Labelled pairs of real images at h x w for precision checks: a photograph against blurred and
    JPEG-compressed versions of itself, and (``extremes``) all-black and all-white images against it
    and each other (zero feature vectors and the largest activations)."""
    ref = scene(h, w)
    pairs = [("blur", ref, distort(ref, "blur", 0.5, seed=1)), ("jpeg", ref, distort(ref, "jpeg", 0.6, seed=2))]
    if extremes:
        black, white = np.zeros_like(ref), np.full_like(ref, 255)
        pairs += [("black", black, ref), ("white", white, ref), ("black-white", black, white)]
    return pairs


def to_unit_nchw(img: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 [1,3,H,W] in [-1,1], computed as the official lpips.im2tensor does."""
    return (img / (255.0 / 2.0) - 1.0)[:, :, :, np.newaxis].transpose((3, 2, 0, 1)).astype(np.float32)


METRIC_LIMITS = {"psnr": 1e-4, "ssim": 1e-5, "psnr_y": 1e-4, "ssim_y": 1e-5}  # issue 16's parity limits


def skimage_metrics(img0: np.ndarray, img1: np.ndarray, metrics=tuple(METRIC_LIMITS)) -> dict[str, float]:
    """PSNR/SSIM of two HxWx3 uint8 RGB images by scikit-image, called as lpips_runtime.model.pixel_metrics
    defines them, word for word (the reference every metric test compares with)."""
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ssim_args = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    y0, y1 = rgb2ycbcr(img0)[..., 0], rgb2ycbcr(img1)[..., 0]  # MATLAB's BT.601 Y, unrounded
    compute = {"psnr": lambda: peak_signal_noise_ratio(img0, img1, data_range=255),
               "ssim": lambda: structural_similarity(img0, img1, channel_axis=-1, **ssim_args),
               "psnr_y": lambda: peak_signal_noise_ratio(y0, y1, data_range=255),
               "ssim_y": lambda: structural_similarity(y0, y1, **ssim_args)}
    with np.errstate(divide="ignore"):  # identical images: PSNR is +inf, as intended
        return {name: compute[name]() for name in metrics}


def assert_metrics_match(got: dict, expected: dict, what: str) -> None:
    """``got`` (floats by name) equals scikit-image's ``expected`` within METRIC_LIMITS (+inf exactly)."""
    for name, value in expected.items():
        if np.isinf(value):
            assert got[name] == value, f"{what} {name}: {got[name]} != {value}"
        else:
            assert abs(got[name] - value) <= METRIC_LIMITS[name], f"{what} {name}: {got[name]} vs scikit-image {value}"


def official_lpips(net: str, version: str, calibrated: bool, spatial: bool, backbone_state: dict):
    from lpips_export.reference import official_lpips as build

    return build(net, version, calibrated, spatial, backbone_state)


@pytest.fixture(scope="session")
def build_module():
    """Factory (net, version, calibrated, spatial, metrics=()) -> (LPIPSModule, Provenance), cached per session."""
    from lpips_export.build import build_lpips

    cache = {}

    def get(net="alex", version="0.1", calibrated=True, spatial=False, metrics=()):
        key = (net, version, calibrated, spatial, tuple(metrics))
        if key not in cache:
            cache[key] = build_lpips(net, version, calibrated, spatial, metrics=tuple(metrics))
        return cache[key]

    return get


class RunExports:
    """Exports made once per test run in one folder, whichever pytest-xdist worker asks first; a worker
    asking for one that another is writing waits for it (a file lock per export). Without xdist it is a
    per-session cache. ``get(key, make)``: ``make(folder)`` writes the export(s) and returns the path."""

    def __init__(self, tmp_path_factory, name: str):
        base = tmp_path_factory.getbasetemp()
        # a worker's base folder (.../popen-gw0) lies in the run's own: that one is shared by the workers
        self.folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"run-{name}"
        self.folder.mkdir(exist_ok=True)
        self.cache: dict = {}

    def get(self, key, make) -> Path:
        if key not in self.cache:
            from filelock import FileLock  # the test extra's; imported where it is used

            tag = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            done = self.folder / f".{tag}.done"
            with FileLock(str(self.folder / f".{tag}.lock")):
                if not done.exists():
                    done.write_text(str(make(self.folder)))  # written last: a failed export leaves no record
                self.cache[key] = Path(done.read_text())
        return self.cache[key]


@pytest.fixture(scope="session")
def exported(build_module, tmp_path_factory):
    """Factory (net, version, calibrated, spatial, metrics=()) -> Path of an ONNX export (written, not
    self-checked: ``exported_spec`` runs the checks), made once per run (all in one folder)."""
    from lpips_export.onnx_export import export_onnx, model_filename

    exports = RunExports(tmp_path_factory, "models")

    def get(net="alex", version="0.1", calibrated=True, spatial=False, metrics=()) -> Path:
        key = (net, version, calibrated, spatial, tuple(metrics))

        def make(out: Path) -> Path:
            module, provenance = build_module(*key)
            return export_onnx(module, provenance, out / model_filename(module))

        return exports.get(key, make)

    return get


@pytest.fixture(scope="session")
def alex_models(exported) -> Path:
    """A models folder holding the alex v0.1 distance and spatial exports (what lpips-score's pair and
    --heatmap runs look up), shared by the CLI tests."""
    exported("alex", spatial=True)
    return exported("alex").parent


@pytest.fixture(scope="session")
def exported_spec(tmp_path_factory):
    """Factory ModelSpec -> Path of an export written and self-checked by ``export_model`` (fp16 and
    uint8-frame variants included), made once per run."""
    from lpips_export.onnx_export import export_model

    exports = RunExports(tmp_path_factory, "spec-models")
    return lambda spec: exports.get(spec, lambda out: export_model(spec, out)[0])


@pytest.fixture(scope="session")
def photo_pair_files(tmp_path_factory):
    """Real photograph pairs on disk: list of (reference path, distorted path), PNG and JPEG, odd sizes."""
    root = tmp_path_factory.mktemp("photos")
    pairs = []
    specs = [("astronaut", "blur", 256, 256, ".png"), ("chelsea", "jpeg", 201, 299, ".png"),
             ("coffee", "noise", 120, 333, ".bmp"), ("rocket", "colour", 257, 190, ".jpg")]
    for i, (name, kind, h, w, ext) in enumerate(specs):
        ref = crop(photo(name), h, w)
        dist = distort(ref, kind, 0.7, seed=i)
        p0, p1 = root / f"{name}_ref{ext}", root / f"{name}_{kind}{ext}"
        cv2.imwrite(str(p0), ref[..., ::-1])
        cv2.imwrite(str(p1), dist[..., ::-1])
        pairs.append((p0, p1))
    return pairs


@pytest.fixture(scope="session")
def split_models(build_module, tmp_path_factory):
    """Factory net -> a models folder with the v0.1 fused, spatial, encoder, head and spatial-head
    exports of that net (what a Scorer with the feature cache looks up), made once per run."""
    from lpips_export.onnx_export import export_onnx, model_filename

    exports = RunExports(tmp_path_factory, "split-models")

    def get(net="squeeze") -> Path:
        def make(root: Path) -> Path:
            folder = root / net
            shutil.rmtree(folder, ignore_errors=True)  # what an export that failed midway left
            folder.mkdir()
            for spatial in (False, True):
                module, provenance = build_module(net, "0.1", True, spatial)
                for part in (("fused", "head") if spatial else ("fused", "encoder", "head")):
                    export_onnx(module, provenance, folder / model_filename(module, part), part=part)
            return folder

        return exports.get(net, make)

    return get


@pytest.fixture(scope="session")
def photo_set():
    """Twelve real same-size images (96x128 crops of four photographs and two distortions of each), RGB uint8."""
    images = []
    for i, name in enumerate(["astronaut", "chelsea", "coffee", "rocket"]):
        ref = crop(photo(name), 96, 128)
        images += [ref, distort(ref, "blur", 0.5, seed=i), distort(ref, "jpeg", 0.6, seed=i)]
    return images


@pytest.fixture(scope="session")
def exported_unchecked(tmp_path_factory):
    """Factory ModelSpec -> Path of an export written without its self-check (for tests about what is built
    from the file, e.g. TensorRT engines; the checks are ``exported_spec``'s), made once per run."""
    from lpips_export.onnx_export import export_model

    exports = RunExports(tmp_path_factory, "unchecked-models")
    return lambda spec: exports.get(spec, lambda out: export_model(spec, out, check=False)[0])


def link_all(sources, folder: Path) -> Path:
    """``folder`` holding a link to each of ``sources`` (export files), made if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not (folder / source.name).exists():
            (folder / source.name).symlink_to(source)
    return folder


@pytest.fixture(scope="session")
def bench_models(split_models, exported, tmp_path_factory) -> Path:
    """The benchmark smoke runs' models folder (their --models-dir), so they export nothing themselves:
    alex v0.1 fused, spatial, encoder and heads (the feature cache, lpips-serve) and the PSNR/SSIM graph
    (benchmarks/metrics.py), as links to the session's exports."""
    sources = [*split_models("alex").iterdir(), exported("alex", metrics=("psnr", "ssim"))]
    return link_all(sources, tmp_path_factory.mktemp("bench-models"))
