"""The Python API of real TensorRT releases, read from NVIDIA's own bindings wheels, for checking our
TensorRT code (and tests/fake_tensorrt.py, which stands in for it) against it.

TensorRT's libraries cannot be obtained here, but its bindings wheel (``tensorrt-cu12-bindings``,
1.3 MB, on PyPI) can: it is downloaded hash-pinned, its few library imports are satisfied by
tests/tensorrt_stub.c (stand-ins returning NULL), and a subprocess imports it and dumps every
class's methods (parameter names of each overload, from pybind11's signatures), properties and enum
members as JSON, cached under ``~/.cache/lpips-rt/tensorrt-api``. A method's entry lists its
overloads, each a list of ``[parameter name, has a default]``. ``api(version)`` returns that
dump, or None (with the reason in ``last_error``) where the wheel or a C compiler is unavailable.

Run as a script (``python real_tensorrt.py --dump``) it is that subprocess.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# The releases our TensorRT code claims (10.12 is the first with weak typing deprecated; 11 removed it).
# sha256 of each cp311 manylinux_2_28 x86_64 wheel on PyPI, checked by pip (--require-hashes).
WHEELS = {
    "10.12.0.36": "58cf45605bb330e86f8ad49bc8997ed68cfdf5b09da229534fb7f84aa3fe5bf4",
    "11.4.0.106": "e2ab48f316bbff6a7a44a30e94a9ceb0d2cf6645ff39feadecfa68d7cb7a94bf",
}
STUB_SOURCE = Path(__file__).with_name("tensorrt_stub.c")
STUB_LIBRARIES = ("libnvinfer", "libnvinfer_plugin", "libnvonnxparser")
DUMP_FORMAT = 2  # bump when the dump's layout changes: it names the cached file
last_error: dict[str, str] = {}


def cache_dir() -> Path:
    # imported here: the --dump subprocess runs without the project on its path
    from lpips_export.backbone_weights import default_cache_dir  # noqa: PLC0415

    return default_cache_dir() / "tensorrt-api"


def api(version: str) -> dict | None:
    """The API dump of TensorRT ``version`` (a key of WHEELS), or None; see the module docstring."""
    dump = cache_dir() / version / f"api-{DUMP_FORMAT}.json"
    if dump.is_file():
        return json.loads(dump.read_text())
    try:
        _prepare(version, dump.parent)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        last_error[version] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return None
    return json.loads(dump.read_text())


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return done


def _prepare(version: str, folder: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) to build the library stand-ins")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        requirement = tmp / "requirements.txt"
        requirement.write_text(f"tensorrt-cu12-bindings=={version} --hash=sha256:{WHEELS[version]}\n")
        # No retries and a short timeout: offline (e.g. on the GPU machine) this should skip, not stall.
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
              "--retries", "0", "--timeout", "20", "-q", "-d", str(tmp / "wheel"), "-r", str(requirement)])
        site = tmp / "site"
        with zipfile.ZipFile(next((tmp / "wheel").glob("*.whl"))) as wheel:
            wheel.extractall(site)
        libs = tmp / "libs"
        libs.mkdir()
        major = version.split(".")[0]
        for name in STUB_LIBRARIES:
            soname = f"{name}.so.{major}"
            _run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(libs / soname), str(STUB_SOURCE)])
        env = {**os.environ, "LD_LIBRARY_PATH": str(libs), "PYTHONPATH": str(site)}
        done = _run([sys.executable, __file__, "--dump"], env=env)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"api-{DUMP_FORMAT}.json").write_text(done.stdout)


# -- the dump (runs in the subprocess) ------------------------------------------------------------

def _split_params(text: str) -> list[list]:
    """[name, has a default] for each parameter of one pybind11 signature's argument list, ``self``
    left out (commas inside brackets belong to types)."""
    names, depth, current = [], 0, ""
    for char in text + ",":
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            if current.strip():
                names.append([current.split(":", 1)[0].split("=", 1)[0].strip(), "=" in current])
            current = ""
        else:
            current += char
    return [n for n in names if n[0] != "self"]


def _overloads(name: str, doc: str) -> list[list]:
    found = []
    for line in doc.splitlines():
        match = re.match(rf"\s*(?:\d+\.\s*)?{re.escape(name)}\((.*)\)(?:\s*->.*)?$", line)
        if match:
            found.append(_split_params(match.group(1)))
    return found


def _describe_class(cls) -> dict:
    members, info = getattr(cls, "__members__", None), {}
    for attr in dir(cls):
        if attr.startswith("_") and attr != "__init__":
            continue
        value = getattr(cls, attr)
        if members is not None and attr in members:
            continue
        if isinstance(value, property):
            info[attr] = {"kind": "property"}
        elif isinstance(value, type):
            info[attr] = {"kind": "class", "members": sorted(getattr(value, "__members__", {}) or [])}
        elif callable(value):
            info[attr] = {"kind": "method", "overloads": _overloads(attr, value.__doc__ or "")}
    return {"members": sorted(members) if members is not None else None, "attributes": info}


def _dump() -> dict:
    import tensorrt_bindings as trt  # noqa: PLC0415 - only importable in the prepared subprocess

    classes = {name: _describe_class(value) for name, value in vars(trt).items()
               if isinstance(value, type) and not name.startswith("_")}
    return {"version": trt.__version__, "classes": classes}


if __name__ == "__main__" and sys.argv[1:] == ["--dump"]:
    json.dump(_dump(), sys.stdout, indent=1, sort_keys=True)
