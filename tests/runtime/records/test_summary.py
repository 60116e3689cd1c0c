"""RunSummary: streaming statistics equal numpy's, the JSON summary's fields, resumed rows and speed."""
from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

from lpips_runtime.errors import InputError
from lpips_runtime.records.summary import DistanceStats, RunSummary


def test_stats_equal_numpy():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 0.1, 5000)
    stats = DistanceStats()
    for v in values:
        stats.add(float(v))
    stats.add(None)
    assert stats.n == 5000 and stats.failures == 1
    assert math.isclose(stats.mean, values.mean(), rel_tol=1e-12)
    assert math.isclose(stats.std, values.std(), rel_tol=1e-10)  # population std, as the official scripts
    assert math.isclose(stats.std_error, values.std() / math.sqrt(5000), rel_tol=1e-10)
    assert stats.min == values.min() and stats.max == values.max()


def test_json_summary(tmp_path):
    summary = RunSummary({"model": "LPIPS-alex v0.1", "precision": "fp32", "backend": "ort", "device": "cpu"})
    summary.add(0.1, resumed=True)
    summary.start()
    for v in (0.2, 0.3, None):
        summary.add(v)
    path = tmp_path / "sub" / "summary.json"
    summary.write_json(path, complete=False)
    data = json.loads(path.read_text())
    assert data["n"] == 3 and data["failures"] == 1 and math.isclose(data["mean"], 0.2)
    assert math.isclose(data["std"], np.std([0.1, 0.2, 0.3])) and data["min"] == 0.1 and data["max"] == 0.3
    assert data["pairs_resumed"] == 1 and data["pairs_this_run"] == 3 and data["complete"] is False
    assert data["model"] == "LPIPS-alex v0.1" and data["device"] == "cpu" and data["elapsed_s"] >= 0
    assert data["pairs_per_s"] is None or data["pairs_per_s"] > 0
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary file left


def test_summary_into_a_pipe_or_device_is_written_not_replaced(tmp_path):
    """``--summary-json /dev/stderr`` or a FIFO: the JSON goes into it. Found on this branch: the atomic
    rename put a regular file in the device's place (run as root, ``--summary-json /dev/full`` turned
    /dev/full into a JSON file)."""
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening to write does not wait
    try:
        RunSummary().write_json(fifo)
        data = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(data)["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.fifo"]


def test_summary_onto_a_folder_is_one_line(tmp_path):
    with pytest.raises(InputError, match=f"^{tmp_path} is a folder: the summary goes to a file$"):
        RunSummary().write_json(tmp_path)


def test_empty_summary_has_null_statistics():
    data = RunSummary().as_dict()
    assert data["n"] == 0 and data["mean"] is None and data["std"] is None and data["min"] is None
    assert RunSummary().line() == "n=0 failures=0"


def test_merged_statistics_equal_numpy():
    """Tiles of a cluster run are summarised apart and merged (Chan et al.): the result is numpy's over
    the whole, whatever the split."""
    values = np.random.default_rng(3).gamma(2.0, 0.2, 1000)
    merged = DistanceStats()
    for part in np.split(values, [1, 7, 300, 301, 760]):
        merged.merge(DistanceStats.of(part))
    merged.merge(DistanceStats(failures=4))
    assert merged.n == 1000 and merged.failures == 4
    assert abs(merged.mean - values.mean()) < 1e-12 and abs(merged.std - values.std()) < 1e-12
    assert (merged.min, merged.max) == (values.min(), values.max())
    summary = RunSummary()
    summary.add_stats(DistanceStats.of(values[:10]))
    summary.add_stats(DistanceStats(failures=2))
    assert summary.this_run == 12 and summary.stats.n == 10 and summary.line().startswith("n=10 mean=")
