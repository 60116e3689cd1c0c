"""The tensors an lpips-rt export holds, checked against the digests pinned in ``models/nets.toml``.

The metadata of a file says which weights it was exported from, and its ``graph_sha256`` proves the file
unchanged since the metadata was written; but whoever writes a file can write both. Here the weights are
recomputed from the file's own initializers (parsed by hand, as ``modelfile`` does, so the light runtime
needs no ``onnx`` package):

* backbone (fused graphs and encoders): the ``features.*`` tensors, in torchvision's order, digested as
  ``backbone_digest`` defines it: equal to ``backbone_digest`` (fp32 trunks) or ``backbone_digest_fp16``
  (fp16 trunks: float16 except the float32 stem);
* linear layers (calibrated fused graphs and heads): the ``lins.*`` tensors under the official key names,
  equal to ``linear_digest.<version>``;
* nothing else: the v0.1 input scaling (scale and shift, checked by value) is the only other tensor an
  export has; any other initializer, a sparse one or weights in an external file are refused.

Not checked: the graph's operators and the constants held in its nodes (how the weights are wired up).
A deliberately rebuilt graph around the real weights passes this check; ``Scorer`` probes every graph it
opens on a small pair (no negative output, d(x, x) = 0, d(x, y) > 0) to catch the crude ones.
"""
from __future__ import annotations

import hashlib
import struct

import numpy as np

from .nets import V01_SCALE, V01_SHIFT, NetSpec
from .protobuf import fields, packed_varints

# TensorProto.DataType values
_FLOAT, _FLOAT16, _DOUBLE = 1, 10, 11
# TensorProto / GraphProto field numbers
_DIMS, _DATA_TYPE, _FLOAT_DATA, _INT32_DATA, _NAME, _RAW_DATA, _DOUBLE_DATA, _DATA_LOCATION = 1, 2, 4, 5, 8, 9, 10, 14
_INITIALIZER, _SPARSE_INITIALIZER = 5, 15
# Submodule and parameter names of torchvision's `features`, in its state-dict order (Fire: squeeze, expand1x1,
# expand3x3; each layer: weight, bias).
_TORCHVISION_ORDER = {"squeeze": 0, "expand1x1": 1, "expand3x3": 2, "weight": 0, "bias": 1}


class WeightCheckError(Exception):
    """The file's tensors are not what its kind of export holds (the message is the reason)."""


def _tensor(message) -> tuple[str, np.ndarray | None]:
    """(name, values as float32, or None for a non-float tensor) of a serialized TensorProto."""
    name, dtype, dims, raw, floats, halves, doubles = "", 0, [], None, [], [], []
    for number, wire, value in fields(message):
        if number == _NAME and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif number == _DATA_TYPE and wire == 0:
            dtype = value
        elif number == _DIMS:
            dims += packed_varints(value) if wire == 2 else [value]
        elif number == _RAW_DATA and wire == 2:
            raw = value
        elif number == _FLOAT_DATA:
            floats.append(np.frombuffer(value, "<f4") if wire == 2 else
                          np.frombuffer(struct.pack("<I", value), "<f4"))
        elif number == _INT32_DATA:  # float16 values are stored here as their 16-bit patterns
            halves += packed_varints(value) if wire == 2 else [value]
        elif number == _DOUBLE_DATA:
            doubles.append(np.frombuffer(value, "<f8") if wire == 2 else
                           np.frombuffer(struct.pack("<Q", value), "<f8"))
        elif number == _DATA_LOCATION and value == 1:
            raise WeightCheckError(f"tensor {name or '?'} is stored in an external file")
    kinds = {_FLOAT: "<f4", _FLOAT16: "<f2", _DOUBLE: "<f8"}
    if dtype not in kinds:
        return name, None
    if raw is not None:
        values = np.frombuffer(raw, kinds[dtype])
    elif dtype == _FLOAT:
        values = np.concatenate(floats) if floats else np.zeros(0, "<f4")
    elif dtype == _FLOAT16:
        values = np.asarray(halves, np.uint16).view("<f2")
    else:
        values = np.concatenate(doubles) if doubles else np.zeros(0, "<f8")
    if values.size != int(np.prod(dims, dtype=np.int64)):
        raise WeightCheckError(f"tensor {name} holds {values.size} values for shape {dims}")
    return name, values.astype("<f4", copy=False).reshape(dims)


def graph_tensors(graph) -> dict[str, np.ndarray | None]:
    """The initializers of a serialized GraphProto: name -> float32 values (None: not a float tensor)."""
    out: dict[str, np.ndarray | None] = {}
    for number, wire, value in fields(graph):
        if number == _SPARSE_INITIALIZER:
            raise WeightCheckError("it holds sparse initializers")
        if number == _INITIALIZER and wire == 2:
            name, values = _tensor(value)
            if name in out:
                raise WeightCheckError(f"tensor {name} appears twice")
            out[name] = values
    return out


def _digest(items) -> str:
    """``hashing.tensor_digest`` of float32 arrays, without copies."""
    h = hashlib.sha256()
    for key, values in items:
        h.update(key.encode("utf-8"))
        h.update(memoryview(np.ascontiguousarray(values, "<f4")).cast("B"))
    return h.hexdigest()


def _backbone_order(key: str) -> tuple:
    parts = key.split(".")
    return int(parts[1]), tuple(_TORCHVISION_ORDER[p] for p in parts[2:])


def _is_input_scaling(values: np.ndarray | None) -> bool:
    """The v0.1 ScalingLayer's tensors: scale [1,3,1,1], and the shift as a depthwise convolution's bias [3]
    (the portable form) or as a [1,3,1,1] tensor (the natural form ``export_model(portable=False)`` writes)."""
    if values is None or values.size != 3:
        return False
    flat = values.reshape(-1)
    return (np.array_equal(flat, np.float32(V01_SCALE)) and values.shape == (1, 3, 1, 1)) or \
        (np.array_equal(flat, -np.float32(V01_SHIFT)) and values.shape == (3,)) or \
        (np.array_equal(flat, np.float32(V01_SHIFT)) and values.shape == (1, 3, 1, 1))


def check_weights(graph, net: NetSpec, *, part: str, version: str, calibrated: bool, precision: str) -> None:
    """``WeightCheckError`` unless the graph's tensors are exactly what an export of this kind holds, with
    the pinned weights (see the module docstring)."""
    tensors = graph_tensors(graph)
    backbone, linear, other = {}, {}, []
    for name, values in tensors.items():
        key = name.removeprefix("lpips.")
        if key.startswith("features.") and values is not None:
            backbone[key] = values
        elif key.startswith("lins.") and key.endswith(".weight") and values is not None:
            linear[key] = values
        elif not _is_input_scaling(values):
            other.append(name)
    trunk = part in ("fused", "encoder")
    heads = part in ("fused", "head") and calibrated
    if other or (backbone and not trunk) or (linear and not heads):
        unexpected = other + (list(backbone) if not trunk else []) + (list(linear) if not heads else [])
        raise WeightCheckError(f"it holds tensors an lpips-rt {part} export does not: {', '.join(unexpected[:5])}")
    if trunk:
        try:
            ordered = sorted(backbone.items(), key=lambda item: _backbone_order(item[0]))
        except (KeyError, ValueError, IndexError):
            raise WeightCheckError("its backbone tensors are not named as torchvision's") from None
        pinned = net.backbone_digest_fp16 if precision == "fp16" else net.backbone_digest
        if _digest(ordered) != pinned:
            raise WeightCheckError(f"its backbone tensors are not the pinned {net.name} weights "
                                   f"({precision}; digest recomputed from the file)")
    if heads:
        official = []
        for i in range(net.n_layers):
            values = linear.get(f"lins.{i}.weight")
            if values is None:
                raise WeightCheckError(f"it has no linear layer {i}")
            official.append((f"lin{i}.model.1.weight", values))
        if len(linear) != net.n_layers or _digest(official) != net.linear_digest[version]:
            raise WeightCheckError(f"its linear layers are not the official v{version} ones "
                                   "(digest recomputed from the file)")
