"""lpips-serve's memory admission as a real process (issue 25, defects 5, 6 and 8): body memory is
reserved service-wide before a body is read, so concurrent maximal bodies keep the process under the
documented bound (docs/serve.md, "Memory"):

    peak RSS <= baseline + --max-memory + --workers x 24 B x --max-pixels + 24 B x --max-queue-mpx
                + --max-bodies-mb

and a JSON batch's pair count is refused before parsing (413), deep nesting is a 400, not a 500.
Peak RSS is the kernel's high-water mark of the server process (VmHWM), reset before each attack."""
from __future__ import annotations

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serve_helpers import serve_model, start_server  # noqa: F401

MiB = 1 << 20
MAX_BODY_MB, MAX_BODIES_MB = 8, 24
MAX_MEMORY_MB, MAX_PIXELS, WORKERS, QUEUE_MPX, MAX_PAIRS = 16, 250_000, 2, 0.25, 4
# The formula's terms past the baseline, and what the allocator, threads and sockets of the attack add.
BOUND = (MAX_MEMORY_MB * MiB + WORKERS * 24 * MAX_PIXELS + 24 * QUEUE_MPX * 1e6 + MAX_BODIES_MB * MiB)
SLACK = 32 * MiB


@pytest.fixture(scope="module")
def lean(start_server):
    return start_server("--max-body-mb", str(MAX_BODY_MB), "--max-bodies-mb", str(MAX_BODIES_MB),
                        "--max-memory", f"{MAX_MEMORY_MB}M", "--max-pixels", str(MAX_PIXELS),
                        "--workers", str(WORKERS), "--max-queue-mpx", str(QUEUE_MPX),
                        "--max-pairs", str(MAX_PAIRS), "--timeout-s", "20")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _baseline(server) -> int:
    """The server's RSS now; its high-water mark is reset to it (Linux clear_refs 5)."""
    Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
    return _status_kb(server.proc.pid, "VmRSS")


def _post_json(server, body: bytes):
    with server.client(timeout=60) as c:
        return c.post("/v1/distance/batch", content=body, headers={"content-type": "application/json"})


def _junk_batch(nbytes: int, seed: int) -> bytes:
    """A JSON batch of one pair of random bytes (valid base64, not images) of about ``nbytes``."""
    raw = os.urandom(nbytes * 3 // 8 - 64) if seed >= 0 else b""
    part = base64.b64encode(raw).decode()
    return json.dumps({"pairs": [{"img0": part, "img1": part}]}).encode()


def test_concurrent_maximal_bodies_stay_under_the_memory_formula(lean):
    base = _baseline(lean)
    bodies = [_junk_batch(MAX_BODY_MB * MiB - 4096, i) for i in range(24)]
    assert all(len(b) <= MAX_BODY_MB * MiB for b in bodies)
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: _post_json(lean, b), bodies))
    peak = _status_kb(lean.proc.pid, "VmHWM")
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses  # some admitted, the rest refused unread
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["code"] == "overloaded"
    assert peak - base <= BOUND + SLACK, f"peak {(peak - base) / MiB:.0f} MiB over the baseline"


def test_a_batch_of_millions_of_empty_pairs_is_413_before_parsing(lean):
    base = _baseline(lean)
    pair = b'{"img0":"","img1":""},'
    count = (MAX_BODY_MB * MiB - 64) // len(pair)
    body = b'{"pairs":[' + pair * (count - 1) + pair[:-1] + b"]}"
    r = _post_json(lean, body)
    assert r.status_code == 413 and r.json()["code"] == "too_many_pairs", r.text[:200]
    peak = _status_kb(lean.proc.pid, "VmHWM")
    assert peak - base <= BOUND + SLACK, f"peak {(peak - base) / MiB:.0f} MiB over the baseline"


def test_deeply_nested_json_is_a_400(lean):
    r = _post_json(lean, b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text[:200]


def test_json_nested_past_the_recursion_limit_is_a_400_however_many_pairs_are_allowed():
    pytest.importorskip("starlette")
    from lpips_runtime.serve.http_errors import ServiceError
    from lpips_runtime.serve.uploads import json_pairs

    with pytest.raises(ServiceError) as info:
        json_pairs(b'{"pairs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", max_pairs=1_000_000)
    assert info.value.status == 400 and "nested too deeply" in info.value.message


def _v2_infer(server, body: bytes):
    with server.client(timeout=60) as c:
        return c.post("/v2/models/lpips-alex/infer", content=body, headers={"content-type": "application/json"})


def test_v2_json_tensors_are_charged_what_parsing_them_costs(lean):
    """Nested JSON lists cost Python objects of 24-80 bytes per token (about 15x the body measured):
    charged before parsing, an 8 MiB body of them is refused (413: more than the whole budget) instead
    of being parsed past the bound."""
    triples = (MAX_BODY_MB * MiB - 256) // 8
    data = b"[" + b",".join([b"[7,7,7]"] * triples) + b"]"
    body = (b'{"inputs": [{"name": "img0", "datatype": "UINT8", "shape": [1, 1, %d, 3], "data": ' % triples
            + data + b"}]}")
    assert len(body) <= MAX_BODY_MB * MiB
    base = _baseline(lean)
    r = _v2_infer(lean, body)
    peak = _status_kb(lean.proc.pid, "VmHWM")
    assert peak - base <= BOUND + SLACK, f"peak {(peak - base) / MiB:.0f} MiB over the baseline"
    assert r.status_code == 413 and "binary data" in r.json()["error"], r.text[:300]


def test_v2_deeply_nested_json_is_a_400(lean):
    r = _v2_infer(lean, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert r.status_code == 400, r.text[:300]
