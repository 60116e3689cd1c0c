"""Shared pieces of the benchmark scripts: timing, peak memory, worker subprocesses, README sections.

Benchmarks are noisy on shared machines: every script compares only numbers measured in the same run,
takes medians over repeats, and excludes a warm-up run (first-run allocations, ORT's shape planning).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
README = HERE / "README.md"
RESULTS = HERE / "results"


def timed_runs(fn, repeats: int, budget_s: float, warmup: int = 1) -> list[float]:
    """Seconds of each timed call of ``fn`` after ``warmup`` untimed ones: ``repeats`` calls, fewer
    (at least one) when they would pass ``budget_s``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start + statistics.median(times) > budget_s:
            break
    return times


def interleaved_runs(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time several variants in turns (A B A B ...), so that load changes on a shared machine hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- peak memory ---------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: writing 5 to /proc/self/clear_refs); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's peak RSS since start or the last ``reset_peak_rss`` (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_worker(args: list[str], env: dict | None = None, timeout: float = 900) -> tuple[dict, float]:
    """Run ``python <args> --result FILE`` in a child process; return (the JSON it wrote, its ru_maxrss
    in MiB from ``os.wait4``). Workers report their own peaks (VmHWM) too, and those are the ones to
    quote: Linux carries a parent's high-water mark into a forked child's ru_maxrss across exec, so
    ru_maxrss is at least the parent's peak (here: the parent that exported the models with torch).
    """
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        result = Path(tmp.name)
    try:
        proc = subprocess.Popen([sys.executable, *args, "--result", str(result)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        output = []
        for line in proc.stdout:  # stream the child's progress lines
            output.append(line)
            if line.startswith("  "):
                print(line, end="", flush=True)
            if time.monotonic() > deadline:
                proc.kill()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            tail = "".join(output[-15:])
            raise RuntimeError(f"worker {' '.join(args[:4])} failed ({proc.returncode}):\n{tail}")
        return json.loads(result.read_text()), usage.ru_maxrss / 1024
    finally:
        result.unlink(missing_ok=True)


# -- machine and report -----------------------------------------------------------------------------


def machine_info() -> dict:
    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    from lpips_runtime.system import physical_cores

    versions = {}
    for mod in ("numpy", "onnxruntime", "torch", "lpips", "openvino"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = None
    return {
        "cpu": model, "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(),
        "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags],
        "python": platform.python_version(), "versions": versions,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def cluster_parser(description: str, quick_help: str):
    """The options of a benchmark that runs a local Ray cluster: --quick, --models-dir, --readme,
    --results-dir (argparse; the caller adds its own)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="where the alex exports are found or written (default: $LPIPS_RT_MODELS or ./models)")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    return parser


def add_models_dir(parser, default_text: str = "a temporary folder") -> None:
    """``--models-dir DIR``: exports are taken from DIR where they are there (the test suite hands its
    session's exports over this way, so the smoke runs export nothing) and written there otherwise."""
    parser.add_argument("--models-dir", type=Path, default=None,
                        help=f"exports found there, written there when missing (default: {default_text})")


def find_or_export(spec, models_dir: Path, check: bool = True) -> Path:
    """``models_dir/<spec.filename()>`` if that file exists, else ``spec`` exported there (checked unless
    ``check`` is false). Portable graph form only (the natural form has the same file name)."""
    path = Path(models_dir) / spec.filename()
    if path.is_file():
        return path
    from lpips_export.onnx_export import export_model

    return export_model(spec, models_dir, check=check)[0]


def private_ray_temp_dir() -> str:
    """A fresh folder for Ray's files (session folders, the address file), removed by the caller: Ray's
    default is the machine-wide /tmp/ray, shared with every other Ray user. Short, as Ray's socket paths
    must fit 107 bytes."""
    import tempfile

    return tempfile.mkdtemp(prefix="lr-", dir="/tmp")


def only_loopback() -> bool:
    """Whether this process sees no network interface but loopback (a private network namespace)."""
    import socket

    return {name for _, name in socket.if_nameindex()} <= {"lo"}


def rerun_in_private_network(script: str, argv: list[str]) -> int:
    """Run ``python script argv`` inside a private network + pid namespace with loopback up (Ray 2.60
    otherwise opens connections through the machine's interface address); its exit code."""
    import shutil

    if shutil.which("unshare") is None or shutil.which("ip") is None:
        print("needs unshare (util-linux) and ip (iproute2): Ray runs in a private network namespace here",
              file=sys.stderr)
        return 1
    command = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", 'ip link set lo up && "$@"', "sh",
               sys.executable, str(Path(script).resolve()), *argv]
    ray_tmp = private_ray_temp_dir()  # RAY_TMPDIR: every Ray default path (/tmp/ray) moves under it
    os.mkdir(os.path.join(ray_tmp, "ray"))  # Ray writes its address file there without making the folder
    try:
        return subprocess.run(command, env=dict(os.environ, RAY_TMPDIR=ray_tmp)).returncode
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def today() -> str:
    return datetime.date.today().isoformat()


def publish(result_name: str, section: str, report: dict, text: str, readme: Path = README,
            results: Path = RESULTS) -> None:
    """Write ``report`` to ``results/<result_name>-<date>.json``, put ``text`` in its README section, print it."""
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{result_name}-{today()}.json").write_text(json.dumps(report, indent=1) + "\n")
    replace_section(section, text, readme)
    print(text)


def finish(result_name: str, section: str, report: dict, text: str, quick: bool, start: float) -> None:
    """End of a script's run: a --quick run only prints its tables (results and README untouched); a full run
    publishes them. ``start``: the run's ``time.monotonic()`` at its start, for the elapsed time."""
    report["elapsed_s"] = time.monotonic() - start
    if quick:
        print(text)
    else:
        publish(result_name, section, report, text)
    print(f"({report['elapsed_s']:.0f} s)")


def replace_section(name: str, text: str, path: Path = README) -> None:
    """Put ``text`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path`` (created if
    absent; the section is appended if its markers are absent). Nothing outside the markers changes:
    other sections of the file belong to other scripts and people."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = f"{start}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: body, old, count=1) if pattern.search(old) else old.rstrip() + "\n\n" + body + "\n"
    path.write_text(new)


class Worker:
    """A child process that answers JSON commands, one per line, so that a parent can time several
    implementations in turns while each keeps its own process (own peak RSS, own thread pools).

    The child prints each reply as one line starting with ``@@ `` (other output is ignored); its
    stderr goes to a temporary file that is shown if it fails.
    """

    PREFIX = "@@ "

    def __init__(self, args: list[str], env: dict | None = None):
        import tempfile

        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, *args], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1)
        self.args = args
        self.ready = self._reply()

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(self.PREFIX):
                return json.loads(line[len(self.PREFIX):])
        self._err.seek(0)
        tail = "".join(self._err.read().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"worker {' '.join(self.args[-6:])} died ({self.proc.wait()}):\n{tail}")

    def call(self, **command) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> dict:
        last = self.call(cmd="exit")
        self.proc.wait(timeout=300)  # a loaded machine (swapping) can take minutes to tear torch down
        self._err.close()
        return last


def serve(handlers: dict) -> None:
    """The child side of ``Worker``: announce readiness, then answer commands until "exit"."""
    def reply(obj):
        print(Worker.PREFIX + json.dumps(obj), flush=True)

    reply({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        name = command.pop("cmd")
        reply(handlers[name](**command))
        if name == "exit":
            return
