"""Small hostile-input defects of lpips-serve (issue 25, defects 7, 10, 11), as a real process: a
non-ASCII API key matches a client that sends it in UTF-8, /v1/heatmap refuses a vmax that is not
finite, and error bodies quote request values cut short."""
from __future__ import annotations

import pytest

from conftest import distort, scene
from serve_helpers import pair_files, png, serve_model, start_server  # noqa: F401

KEY = "clé-ünïcode-λ"


@pytest.fixture(scope="module")
def keyed(start_server):
    return start_server(env={"LPIPS_SERVE_API_KEY": KEY})


@pytest.fixture(scope="module")
def open_door(start_server):
    return start_server("--no-access-log")


def _files():
    ref = scene(64, 64, 1)
    return pair_files(png(ref), png(distort(ref, "blur", 0.6, seed=1)))


def _auth(key: str = KEY) -> dict:
    return {"Authorization": b"Bearer " + key.encode("utf-8")}


def test_non_ascii_api_key_sent_in_utf8_is_accepted_and_a_wrong_one_is_not(keyed):
    with keyed.client() as c:
        assert c.post("/v1/distance", files=_files(), headers=_auth()).status_code == 200
        assert c.post("/v1/distance", files=_files(), headers=_auth(KEY[:-1] + "μ")).status_code == 401
        assert c.post("/v1/distance", files=_files()).status_code == 401


@pytest.mark.parametrize("vmax", ["1e999", "9e400"])
def test_heatmap_vmax_must_be_finite(open_door, vmax):
    with open_door.client() as c:
        r = c.post("/v1/heatmap", params={"vmax": vmax}, files=_files())
    assert r.status_code == 422 and "finite" in r.json()["error"], r.text[:200]


def test_error_bodies_quote_request_values_cut_short(open_door):
    accept = "x/" + "y" * 30_000  # under the head limit, over any sensible quote
    with open_door.client() as c:
        r = c.post("/v1/heatmap", files=_files(), headers={"Accept": accept})
    assert r.status_code == 406
    assert len(r.content) < 1000 and "30002 characters" in r.json()["error"]
