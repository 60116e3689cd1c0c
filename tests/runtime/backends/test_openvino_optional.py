"""Without OpenVINO installed (simulated: ``sys.modules['openvino'] = None`` in a subprocess) the backend's
tests skip with the reason, and asking for the backend is a one-line error naming the extra."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK = "import sys\nsys.modules['openvino'] = None\n"


def _run(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=HERE.parents[2])


def test_openvino_tests_skip_with_the_reason_when_it_is_absent():
    done = _run("import pytest\nsys.exit(pytest.main(sys.argv[1:]))", "-q", "-rs", "-p", "no:cacheprovider",
                str(HERE / "test_openvino_backend.py"), str(HERE.parent / "commands" / "test_openvino_cli.py"))
    assert done.returncode == 5, done.stdout + done.stderr  # pytest's "no tests ran": both modules skip whole
    assert done.stdout.count("SKIPPED") == 2 and "2 skipped" in done.stdout
    assert "needs OpenVINO: pip install 'lpips-rt[openvino]'" in done.stdout


def test_the_backend_names_its_extra_when_openvino_is_absent(exported):
    model = exported("alex")
    done = _run("from lpips_runtime.commands.score import main\nmain()", "examples/ref.png", "examples/distorted.png",
                "--model", str(model), "--backend", "openvino")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == ("Error: the OpenVINO backend needs the 'openvino' module: "
                                   "pip install 'lpips-rt[openvino]'")
