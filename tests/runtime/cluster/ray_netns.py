"""Ray tests inside a private network namespace, and what they share.

Ray 2.60 opens connections through the machine's own interface address even when told 127.0.0.1, and
only loopback traffic is allowed here. So the Ray tests (marked ``ray``) run in one inner pytest under
``unshare --net --pid --fork --mount-proc``: loopback is the only interface there, and the pid
namespace guarantees that no Ray process outlives the run (when its first process exits, the kernel
kills the rest). Every Ray module imports the entry test (``test_ray_tests_in_private_network_namespace``,
marked ``netns_entry``); outside a namespace ``tests/conftest.py`` keeps one of them and the Ray modules'
own tests are left out, and that entry reruns the tests of every Ray module collected (all of them in a
whole-suite run, one when a module is run by hand) in one inner pytest, so the interpreter, the imports
and the collection are paid once. Inside, the entries are left out and the modules that share the
session's local cluster (``ray_cluster``) run first. The entry fails with the inner output when the
inner run fails, and skips with the reason when ``unshare`` is unavailable (not root, no user namespaces).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import INNER_RAY_REPORT, RAY_MODULES, all_cpus, link_all

ROOT = Path(__file__).resolve().parents[3]
MODELS_ENV = "LPIPS_RT_TEST_MODELS"  # the outer run's exported models, handed to the inner run
OBJECT_STORE = 256 << 20  # bytes per node: small, as a CI machine's /dev/shm may be
SHARED_CPUS = 4  # logical CPUs of the shared cluster, on 2 cores: actors must not starve the decode tasks
METRICS = ("psnr", "ssim")  # the fused graph with these is among the models handed in
_UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def unshare_problem() -> str | None:
    """Why a private network namespace cannot be made here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2)"
    probe = subprocess.run([*_UNSHARE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a private network namespace ({probe.stderr.strip() or probe.returncode})"
    return None


def run_in_private_network(modules: list[str], models: Path, config, timeout: float = 900) -> None:
    """Run the Ray tests of ``modules`` in one pytest inside a fresh network + pid namespace with only
    loopback up. The inner run lists its slowest tests when the outer one does (``--durations``): the
    outer run's terminal summary shows them (``tests/conftest.py``)."""
    pytest.importorskip("ray", reason="needs the ray extra: pip install 'lpips-rt[ray]'")
    problem = unshare_problem()
    if problem:
        pytest.skip(problem)
    # RAY_TMPDIR: Ray's every default path (/tmp/ray: session folders, ray_current_cluster, which
    # ray.cluster_utils writes and deletes) moves to a folder of this run alone, so another Ray user of
    # the machine and this run cannot disturb each other.
    ray_tmp = _new_ray_tmpdir()
    env = dict(os.environ, **{MODELS_ENV: str(models), "RAY_TMPDIR": ray_tmp})
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):  # the inner run is no worker of the outer's
        env.pop(name, None)
    durations = config.getoption("durations", None)
    command = [*_UNSHARE, "sh", "-c", 'ip link set lo up && "$@"', "sh",
               sys.executable, "-m", "pytest", *modules, "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra",
               "--disable-warnings",  # the failures, not Ray's deprecation notices, end the output
               *([f"--durations={durations}"] if durations is not None else [])]
    names = ", ".join(Path(m).name for m in modules)
    started = time.monotonic()
    try:
        with all_cpus():  # a cluster of processes: not confined to this worker's share of the CPUs
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the namespace run of {names} passed {timeout:.0f} s:\n{(exc.stdout or '')[-6000:]}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = (done.stdout + done.stderr)[-12000:]
    if done.returncode != 0:
        pytest.fail(f"the namespace run of {names} failed (exit {done.returncode}):\n{output}")
    if " passed" not in done.stdout:
        pytest.fail(f"the namespace run of {names} ran no test:\n{output}")
    lines = done.stdout.strip().splitlines()
    slowest = [i for i, line in enumerate(lines) if " slowest " in line and line.startswith("=")]
    report = "\n".join(lines[slowest[0]:] if slowest else lines[-1:])
    config.stash[INNER_RAY_REPORT] = f"{names}, {time.monotonic() - started:.0f} s:\n{report}"
    print(config.stash[INNER_RAY_REPORT])


@pytest.mark.netns_entry
def test_ray_tests_in_private_network_namespace(request, models_for_namespace):
    """The Ray tests of every Ray module this session collected (this one's alone when the entry was
    picked by its node id), in one private network namespace."""
    modules = request.config.stash.get(RAY_MODULES, None) or [str(request.node.path)]
    run_in_private_network(modules, models_for_namespace, request.config)


def _models_folder(split_models, exported, folder: Path) -> Path:
    """alex v0.1 fused, spatial, encoder and heads, and the fused graph with PSNR and SSIM (links)."""
    return link_all([*split_models("alex").iterdir(), exported("alex", metrics=METRICS)], folder)


@pytest.fixture(scope="session")
def models_for_namespace(split_models, exported, tmp_path_factory):
    """The outer run's exports for the inner run, exported once per session."""
    return _models_folder(split_models, exported, tmp_path_factory.mktemp("ray-models"))


@pytest.fixture(scope="session")
def models(split_models, exported, tmp_path_factory) -> Path:
    """Inside the namespace: the folder the outer run exported, else (run by hand) exports of our own."""
    given = os.environ.get(MODELS_ENV)
    return Path(given) if given else _models_folder(split_models, exported, tmp_path_factory.mktemp("ray-models"))


class SharedCluster:
    """The local cluster that Ray modules of one topology share: ``SHARED_CPUS`` logical CPUs, a small
    object store, no dashboard, Ray's folders under the run's RAY_TMPDIR. Started on first use; stopped
    (every process it started checked gone) when a module needs a cluster of another topology (``stop``:
    one Ray session per process) and at the end of the session."""

    def __init__(self):
        self._stack: contextlib.ExitStack | None = None

    def start(self):
        """The ``ray`` module, connected to the shared cluster (started if it is not running)."""
        from lpips_runtime.cluster import ray_session

        if self._stack is None:
            stack = contextlib.ExitStack()
            ray = stack.enter_context(ray_session(num_cpus=SHARED_CPUS, object_store_memory=OBJECT_STORE,
                                                  temp_dir=short_temp_dir()))
            self._stack = stack
            assert_ray_paths_private()  # lpips-score --ray runs inherit RAY_TMPDIR too
            return ray
        import ray

        assert ray.is_initialized(), "the shared cluster's session was closed by someone else"
        return ray

    def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()
            assert_no_ray_processes_left()


SHARED_CLUSTER = SharedCluster()  # one per process: the module is imported once however many modules use it


@pytest.fixture(scope="session")
def ray_cluster():
    """The shared local cluster (``SharedCluster``); yields the ``ray`` module. (Each module that imports
    this fixture holds its own copy of it; they all hand out ``SHARED_CLUSTER``.)"""
    yield SHARED_CLUSTER.start()
    SHARED_CLUSTER.stop()


def _new_ray_tmpdir() -> str:
    """A fresh RAY_TMPDIR with its ``ray`` folder made (Ray writes its address file there without making it)."""
    folder = tempfile.mkdtemp(prefix="lr-", dir="/tmp")
    os.mkdir(os.path.join(folder, "ray"))
    return folder


def private_ray_tmpdir() -> str:
    """The run's own RAY_TMPDIR (set by ``run_in_private_network``; made here when the module is
    run by hand inside a namespace): Ray's default paths lie under it, never under /tmp/ray."""
    if not os.environ.get("RAY_TMPDIR"):
        os.environ["RAY_TMPDIR"] = _new_ray_tmpdir()
    return os.environ["RAY_TMPDIR"]


def short_temp_dir() -> str:
    """Ray's session folder: short (its socket paths must fit 107 bytes) and ours alone."""
    return tempfile.mkdtemp(prefix="s-", dir=private_ray_tmpdir())


def assert_ray_paths_private() -> None:
    """Ray's default temp folder and cluster address file (what ``ray.cluster_utils`` and ``ray start``
    write, and ``address="auto"`` reads) are this run's own, not the machine-wide /tmp/ray."""
    from ray._common.utils import get_default_ray_temp_dir, get_ray_address_file

    private = Path(private_ray_tmpdir()).resolve()
    for path in (get_default_ray_temp_dir(), get_ray_address_file(None)):
        assert private in Path(path).resolve().parents, f"{path} is not under {private}"


def other_processes() -> list[str]:
    """Processes of this pid namespace other than this one and its ancestors (``--mount-proc``
    shows only the namespace's own)."""
    mine, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        mine.add(pid)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in mine:
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                name = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if state != "Z":  # a zombie has ended; its parent (pid 1 here) reaps it
                found.append(f"{entry.name} {name[:80]}")
    return found


def assert_no_ray_processes_left(timeout: float = 30) -> None:
    """After a cluster's shutdown: every process it started has ended."""
    deadline = time.monotonic() + timeout
    while (left := other_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes still running after the cluster's shutdown: {left}"


def loopback_only_connections() -> tuple[int, list[str]]:
    """(TCP sockets seen, those with an address other than loopback/unspecified) from /proc/net."""
    allowed = {"0100007F", "00000000", "00000000000000000000000000000000", "00000000000000000000000001000000",
               "0000000000000000FFFF00000100007F"}
    seen, bad = 0, []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, remote = line.split()[1:3]
            seen += 1
            for address in (local, remote):
                if address.split(":")[0] not in allowed:
                    bad.append(line.strip())
    return seen, bad
