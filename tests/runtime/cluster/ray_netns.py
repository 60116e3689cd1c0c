"""Ray tests inside a private network namespace, and what they share.

Ray 2.60 opens connections through the machine's own interface address even when told 127.0.0.1, and
only loopback traffic is allowed here. So every Ray test module (marked ``ray``) has one entry test
(``netns_entry``) that reruns the module with pytest under
``unshare --net --pid --fork --mount-proc``: loopback is the only interface there, and the pid
namespace guarantees that no Ray process outlives the run (when its first process exits, the kernel
kills the rest). Inside, ``tests/conftest.py`` deselects the entries and runs the real tests; the
entry fails with the inner output when the inner run fails, and skips with the reason when
``unshare`` is unavailable (not root, no user namespaces).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODELS_ENV = "LPIPS_RT_TEST_MODELS"  # the outer run's exported models, handed to the inner run
OBJECT_STORE = 256 << 20  # bytes per node: small, as a CI machine's /dev/shm may be
_UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def unshare_problem() -> str | None:
    """Why a private network namespace cannot be made here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2)"
    probe = subprocess.run([*_UNSHARE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a private network namespace ({probe.stderr.strip() or probe.returncode})"
    return None


def run_module_in_private_network(module: str, models: Path, timeout: float = 600) -> None:
    """Rerun a test module's tests inside a fresh network + pid namespace with only loopback up."""
    pytest.importorskip("ray", reason="needs the ray extra: pip install 'lpips-rt[ray]'")
    problem = unshare_problem()
    if problem:
        pytest.skip(problem)
    # RAY_TMPDIR: Ray's every default path (/tmp/ray: session folders, ray_current_cluster, which
    # ray.cluster_utils writes and deletes) moves to a folder of this run alone, so another Ray user of
    # the machine and this run cannot disturb each other.
    ray_tmp = _new_ray_tmpdir()
    env = dict(os.environ, **{MODELS_ENV: str(models), "RAY_TMPDIR": ray_tmp})
    command = [*_UNSHARE, "sh", "-c", 'ip link set lo up && "$@"', "sh",
               sys.executable, "-m", "pytest", module, "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the namespace run of {module} passed {timeout:.0f} s:\n{(exc.stdout or '')[-6000:]}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = (done.stdout + done.stderr)[-12000:]
    if done.returncode != 0:
        pytest.fail(f"the namespace run of {Path(module).name} failed (exit {done.returncode}):\n{output}")
    if " passed" not in done.stdout:
        pytest.fail(f"the namespace run of {Path(module).name} ran no test:\n{output}")
    print(f"{Path(module).name} in a private network namespace, {time.monotonic() - started:.0f} s:\n"
          f"{done.stdout.strip().splitlines()[-1]}")


@pytest.fixture(scope="session")
def models_for_namespace(split_models):
    """The outer run's alex exports (fused, encoder, head), exported once per session."""
    return split_models("alex")


@pytest.fixture(scope="session")
def models(split_models) -> Path:
    """Inside the namespace: the folder the outer run exported, else (run by hand) exports of our own."""
    given = os.environ.get(MODELS_ENV)
    return Path(given) if given else split_models("alex")


def _new_ray_tmpdir() -> str:
    """A fresh RAY_TMPDIR with its ``ray`` folder made (Ray writes its address file there without making it)."""
    folder = tempfile.mkdtemp(prefix="lr-", dir="/tmp")
    os.mkdir(os.path.join(folder, "ray"))
    return folder


def private_ray_tmpdir() -> str:
    """The run's own RAY_TMPDIR (set by ``run_module_in_private_network``; made here when the module is
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
