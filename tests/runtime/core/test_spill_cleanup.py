"""Spill files of an all-pairs run never outlive it: a real run killed by SIGTERM or SIGKILL while its
features are spilled leaves nothing in the temp folder (issue 11: a 1.07 GB lpips-features-*.f32 stayed)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import cv2
import pytest

CHILD = """
import sys, time
from lpips_runtime import Scorer

scorer = Scorer("squeeze", models_dir=sys.argv[1], auto_export=False)
results = scorer.score_all_pairs(sys.argv[2:], feature_memory=0)  # spill whatever the size
next(results)  # every image is encoded into the store by the first row
print("spilling", flush=True)
time.sleep(600)
"""


def _spill_links(pid: int, folder) -> list[str]:
    """Files in ``folder`` the process holds open (named or not: O_TMPFILE shows as '<folder>/#123 (deleted)')."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder) + "/"):
            out.append(target)
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_spill_file_gone_after_a_signal(split_models, photo_set, tmp_path, sig):
    images = []
    for i, img in enumerate(photo_set[:4]):
        images.append(str(tmp_path / f"im{i}.png"))
        cv2.imwrite(images[-1], img[..., ::-1])
    spill = tmp_path / "tmp"
    spill.mkdir()
    env = {**os.environ, "TMPDIR": str(spill)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(split_models("squeeze")), *images], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "spilling", child.stderr.read()
        assert _spill_links(child.pid, spill), "the run did not spill (nothing open in its temp folder)"
        child.send_signal(sig)
        assert child.wait(timeout=60) == -sig
    finally:
        child.kill()
        child.wait()
    # (onnxruntime's import leaves its own '.ses' file in TMPDIR: not ours)
    assert list(spill.glob("lpips-features-*")) == []
