"""Graph templates: the stock exports (the bundle of each net, v0.1) with their backbone weights left out.

``python -m lpips_export.templates`` (needs torch) exports each graph of ``TEMPLATE_SPECS`` with the torch
exporter, clears the bytes of every ``features.*`` initializer (names, shapes and types stay; the official
linear layers, a few kB, stay in), and writes ``models/graph-templates/<file name>.tmpl`` (a folder name Python
cannot import: data, not a package). ``template_build`` fills
them with the verified backbone arrays, without torch, and gets back exactly the graph the torch export writes
(tests/export/test_template_build.py compares the graph digests). Re-run this after any change to the graph.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lpips_runtime.model.bundle import bundle_specs
from lpips_runtime.model.nets import NET_NAMES

TEMPLATE_SUFFIX = ".tmpl"


def template_specs():
    """The graphs with templates: every net's v0.1 bundle (the stock graphs; other versions and the
    baseline are exported with torch)."""
    return [spec for net in NET_NAMES for spec in bundle_specs(net, "0.1", True)]


def templates_dir() -> Path:
    from lpips_rt_models import MODELS_DIR

    return MODELS_DIR / "graph-templates"


def strip_backbone(model) -> None:
    """Clear the bytes of the ``features.*`` initializers of an ONNX ModelProto (in place)."""
    for init in model.graph.initializer:
        if init.name.removeprefix("lpips.").startswith("features."):
            init.ClearField("raw_data")
            del init.float_data[:]


def write_templates(out: Path | None = None, specs=None) -> list[Path]:
    import onnx

    from .backbone_weights import reuse_loaded
    from .onnx_export import export_model

    out = out or templates_dir()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="lpips-templates-") as tmp, reuse_loaded():
        for spec in specs or template_specs():
            path, _ = export_model(spec, tmp)
            model = onnx.load(str(path))
            strip_backbone(model)
            target = out / (spec.filename() + TEMPLATE_SUFFIX)
            target.write_bytes(model.SerializeToString())
            written.append(target)
            print(f"{target}  {target.stat().st_size / 1e3:.1f} kB")
    return written


if __name__ == "__main__":
    write_templates(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
