"""Build the stock graphs without torch: a graph template (``templates``) filled with verified backbone weights.

The template is the torch export's own graph with its ``features.*`` bytes left out; filling them with the
arrays of ``offline_weights.load_backbone_numpy`` (checked against the pinned digest) gives back exactly the
graph the torch export writes: same nodes, same initializers, same ``graph_sha256``
(tests/export/test_template_build.py). The result is then checked as the runtime checks any model
(``modelfile.read_model``: graph digest, backbone and linear digests recomputed from the file). Needs the
``onnx`` package (``lpips-rt[light-export]``), no torch.
"""
from __future__ import annotations

import os
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version as dist_version
from pathlib import Path

from lpips_runtime.errors import LpipsError, MissingExtraError, ModelFileError
from lpips_runtime.model.modelfile import ModelSpec, read_model, scan_model_bytes
from lpips_runtime.model.nets import get_net

from .offline_weights import load_backbone_numpy
from .templates import TEMPLATE_SUFFIX, templates_dir

_FLOAT = 1  # TensorProto.FLOAT


def template_path(spec: ModelSpec) -> Path:
    return templates_dir() / (spec.filename() + TEMPLATE_SUFFIX)


def has_template(spec: ModelSpec) -> bool:
    return template_path(spec).is_file()


@lru_cache(maxsize=None)
def _backbone(net: str, cache_dir: str | None):
    return load_backbone_numpy(get_net(net), Path(cache_dir) if cache_dir else None)


def build_from_template(spec: ModelSpec, out_dir: str | Path, cache_dir: Path | None = None) -> Path:
    """Write ``out_dir/<spec.filename()>`` from its template and the verified backbone, check it, return its path."""
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("onnx", "light-export", "building graphs without torch") from None
    template = template_path(spec)
    if not template.is_file():
        raise LpipsError(f"no torch-free template for {spec.describe()} (templates cover the v0.1 bundles): "
                         "export it with torch, pip install 'lpips-rt[export]'")
    backbone, source = _backbone(spec.net, str(cache_dir) if cache_dir else None)
    model = onnx.load(str(template))
    filled = 0
    for init in model.graph.initializer:
        key = init.name.removeprefix("lpips.")
        if not key.startswith("features."):
            continue
        values = backbone.get(key)
        if values is None or tuple(init.dims) != values.shape or init.data_type != _FLOAT:
            raise LpipsError(f"template {template.name} does not fit the {spec.net} backbone at {key}: "
                             "regenerate the templates (python -m lpips_export.templates)")
        init.raw_data = values.tobytes()
        filled += 1
    if filled == 0 and spec.part != "head":
        raise LpipsError(f"template {template.name} has no backbone tensors: regenerate the templates")
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        exporter = dist_version("lpips-rt")
    except PackageNotFoundError:
        exporter = "source"
    meta["backbone_source"] = source
    meta["exporter"] = f"lpips-rt {exporter} (torch-free build from the graph template)"
    _, meta["graph_sha256"] = scan_model_bytes(model.SerializeToString())
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    path = Path(out_dir) / spec.filename()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_bytes(model.SerializeToString())
    try:
        info = read_model(tmp)
        if info.spec != spec:
            raise ModelFileError(f"template {template.name} holds {info.spec.describe()}, not {spec.describe()}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path
