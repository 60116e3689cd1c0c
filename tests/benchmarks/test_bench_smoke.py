"""The benchmark scripts run end to end in their quick modes and write only their own README sections."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script,section", [("cpu.py", "cpu-table"), ("cache.py", "cache-table"),
                                            ("serve.py", "serve-table")])
def test_quick_run(tmp_path, bench_models, script, section):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nsomeone else's text\n\n<!-- fp16:start -->\nkeep me\n<!-- fp16:end -->\n")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", "--readme", str(readme),
                           "--results-dir", str(tmp_path), "--models-dir", str(bench_models)],
                          capture_output=True, text=True, timeout=900)  # generous: a busy shared machine
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = readme.read_text()
    assert "someone else's text" in text and "<!-- fp16:start -->\nkeep me\n<!-- fp16:end -->" in text
    assert f"<!-- {section}:start -->" in text and f"<!-- {section}:end -->" in text
    result = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert result["machine"]["physical_cores"] >= 1


def test_tiling_quick_run(tmp_path, split_models):
    """benchmarks/tiling.py end to end on a tiny size (pairs only; the folder cells run the same child code):
    cells in child processes, tiled equal to untiled. Its work folder's models/ holds the session's exports."""
    from conftest import link_all

    link_all(split_models("squeeze").iterdir(), tmp_path / "work" / "models")
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nsomeone else's text\n")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tiling.py"), "--quick", "--nets", "squeeze",
                           "--sizes", "0.1", "--budget-mb", "40", "--skip-folders", "--readme", str(readme),
                           "--results-dir", str(tmp_path), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "someone else's text" in readme.read_text() and "<!-- tiling-quick:start -->" in readme.read_text()
    report = json.loads(next(tmp_path.glob("tiling-*.json")).read_text())
    (row,) = report["pairs"]
    assert row["tiled"]["tiles"] is not None and row["untiled"]["tiles"] is None
    assert row["abs_diff"] <= 1e-5
