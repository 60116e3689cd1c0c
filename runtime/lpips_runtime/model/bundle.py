"""The export bundle: every graph the front ends need for one net, version and calibration, and its manifest.

``lpips-export --net alex`` (no variant option) writes the files of ``bundle_specs`` into the models folder, each
a self-contained ONNX file exactly as the single-variant export writes it (so the C++ contract and every
backend are unchanged), then ``<bundle>.bundle.json``: the manifest naming each file with its size and sha256.
The runtime checks a file against the manifest when it opens it (``check_against_manifest``), and
``verify_bundle`` checks the whole bundle (every file present, unchanged, and a sound lpips-rt export).

Why separate files and not one multi-output graph: the inputs differ between variants (float32 images, uint8
frames, feature sets), so no single graph can serve them all; and where they share inputs, a merged graph loaded
and ran the plain distance call about 1.4x slower (benchmarks/export_layout.py; table in docs/export.md).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from ..errors import ModelFileError
from .modelfile import ModelSpec

MANIFEST_FORMAT = "lpips-rt-bundle/1"
# The uint8 frame layout of the bundle's frame graphs: what lpips-video decodes 8-bit video to.
BUNDLE_FRAMES = "nhwc-rgb"
# The metrics of the bundle's metric graphs: what `--metrics psnr,ssim` (the documented use) asks for.
BUNDLE_METRICS = ("psnr", "ssim")


def bundle_specs(net: str, version: str = "0.1", calibrated: bool = True) -> tuple[ModelSpec, ...]:
    """The graphs of one bundle, in the order they are written: distance, spatial map, encoder and head (and the
    spatial head) for the feature cache and tiles, uint8 frame graphs (distance and map) for lpips-video, and the
    PSNR/SSIM graphs (float and frames)."""
    base = ModelSpec(net, version, calibrated)
    frames = replace(base, frames=BUNDLE_FRAMES)
    return (base, replace(base, spatial=True), base.with_part("encoder"), base.with_part("head"),
            base.with_part("head", spatial=True), frames, replace(frames, spatial=True),
            replace(base, metrics=BUNDLE_METRICS), replace(frames, metrics=BUNDLE_METRICS))


def bundle_key(spec: ModelSpec) -> ModelSpec:
    """The distance spec that names the bundle ``spec`` would belong to."""
    return ModelSpec(spec.net, spec.version, spec.calibrated if spec.part != "encoder" else True)


def in_bundle(spec: ModelSpec) -> bool:
    """Whether ``lpips-export --net <net>`` (plus --version/--baseline) writes ``spec``."""
    if spec.part == "encoder":
        return True  # the encoder of a baseline bundle is the same file as a calibrated one's
    return spec in bundle_specs(spec.net, spec.version, spec.calibrated)


def manifest_name(spec: ModelSpec) -> str:
    """``lpips-<net>-v<version>[-baseline].bundle.json``."""
    return bundle_key(spec).filename().removesuffix(".onnx") + ".bundle.json"


def bundle_command(spec: ModelSpec, out_dir: str | Path | None = None) -> str:
    """The one ``lpips-export`` command that writes ``spec``: the bundle's when ``spec`` is in one, else the
    variant's own command (fp16, other frame layouts or metrics)."""
    if not in_bundle(spec):
        return spec.export_command(out_dir)
    return bundle_key(spec).export_command(out_dir)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path, spec: ModelSpec, paths: list[Path], exporter: str) -> Path:
    """Write the bundle's manifest (atomically) next to its files and return its path."""
    entries = [{"file": p.name, "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in paths]
    manifest = {"format": MANIFEST_FORMAT, "bundle": bundle_key(spec).describe(), "exporter": exporter,
                "export_command": bundle_command(spec), "files": entries}
    path = folder / manifest_name(spec)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(folder: Path, spec: ModelSpec) -> dict | None:
    """The manifest of ``spec``'s bundle in ``folder``: {file name: entry}, or None when there is none."""
    path = folder / manifest_name(spec)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, not {MANIFEST_FORMAT}")
        return {entry["file"]: entry for entry in manifest["files"]}
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable lpips-rt bundle manifest ({exc}): re-run "
                             f"`{bundle_command(spec, folder)}`") from None


def refresh_manifest_entry(path: Path, spec: ModelSpec) -> None:
    """After ``path`` (of ``spec``) was written alone (a single-variant or on-demand export) into a folder whose
    bundle manifest lists it: record the new file's size and sha256 there, so the manifest stays true."""
    if not in_bundle(spec):
        return
    manifest = path.parent / manifest_name(spec)
    if read_manifest(path.parent, spec) is None:
        return
    data = json.loads(manifest.read_text())
    for entry in data["files"]:
        if entry["file"] == path.name:
            entry.update(bytes=path.stat().st_size, sha256=file_sha256(path))
    tmp = manifest.with_name(f"{manifest.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, manifest)


def check_against_manifest(path: Path, spec: ModelSpec) -> None:
    """``ModelFileError`` when ``path``'s bundle manifest lists it with another size or sha256 (a file replaced
    or changed after the export). Files without a manifest (single-variant exports) pass."""
    if not in_bundle(spec):
        return
    entries = read_manifest(path.parent, spec)
    entry = entries.get(path.name) if entries is not None else None
    if entry is None:
        return
    if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
        raise ModelFileError(f"{path} differs from the file its bundle manifest {manifest_name(spec)} lists "
                             f"(changed or replaced since export): re-run `{bundle_command(spec, path.parent)}`")


def verify_bundle(folder: str | Path, spec: ModelSpec) -> list[Path]:
    """Check the whole bundle of ``spec`` in ``folder``: the manifest lists every file of ``bundle_specs``, each
    is present with the listed size and sha256, and each is a sound lpips-rt export of its spec
    (``modelfile.read_model``). Returns the files; ``ModelFileError`` (one line) otherwise."""
    from .modelfile import read_model

    folder = Path(folder)
    entries = read_manifest(folder, spec)
    if entries is None:
        raise ModelFileError(f"no bundle manifest {manifest_name(spec)} in {folder}: run "
                             f"`{bundle_command(spec, folder)}`")
    paths = []
    for member in bundle_specs(spec.net, spec.version, spec.calibrated):
        path = folder / member.filename()
        if path.name not in entries:
            raise ModelFileError(f"the bundle manifest {manifest_name(spec)} in {folder} does not list {path.name}: "
                                 f"re-run `{bundle_command(spec, folder)}`")
        if not path.is_file():
            raise ModelFileError(f"{path} of the bundle {manifest_name(spec)} is missing: re-run "
                                 f"`{bundle_command(spec, folder)}`")
        check_against_manifest(path, member)
        info = read_model(path)
        if info.spec != member:
            raise ModelFileError(f"{path} holds {info.spec.describe()}, not {member.describe()}: re-run "
                                 f"`{bundle_command(spec, folder)}`")
        paths.append(path)
    return paths
