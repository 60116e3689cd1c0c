"""A float64 matrix product on ONNX Runtime, for the feature cache's block distances.

Why not numpy: numpy's BLAS runs its own thread pool, outside the scorer's ``threads`` setting, and on a
shared machine its threads wait for a descheduled peer: a 100 x 32k by 32k x 100 product took 0.7 s with
two BLAS threads beside another busy process and 0.035 s with one. ORT's pool is the one the scorer
already sizes, so the product follows ``threads`` like every other graph the scorer runs.

The one-node graph (``Gemm``, B transposed, double) is written here directly as protobuf bytes, so the
runtime needs no ``onnx`` package.
"""
from __future__ import annotations

import numpy as np

_DOUBLE = 11  # TensorProto.DOUBLE
_INT = 2  # AttributeProto.INT


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    """One protobuf field: a varint (int) or a length-delimited value (bytes, str)."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _matrix(name: str, rows: str, cols: str) -> bytes:
    """ValueInfoProto of a float64 matrix with symbolic dimensions (name, type.tensor_type)."""
    dims = _field(1, _field(2, rows)) + _field(1, _field(2, cols))  # shape.dim[].dim_param
    tensor = _field(1, _DOUBLE) + _field(2, dims)  # TypeProto.Tensor: elem_type, shape
    return _field(1, name) + _field(2, _field(1, tensor))


def gemm_model_bytes() -> bytes:
    """ModelProto of ``C = A @ B.T`` for float64 A [R,K], B [S,K] (opset 17)."""
    trans_b = _field(1, "transB") + _field(20, _INT) + _field(3, 1)
    node = _field(1, "A") + _field(1, "B") + _field(2, "C") + _field(4, "Gemm") + _field(5, trans_b)
    graph = (_field(1, node) + _field(2, "gram") + _field(11, _matrix("A", "R", "K"))
             + _field(11, _matrix("B", "S", "K")) + _field(12, _matrix("C", "R", "S")))
    opset = _field(1, "") + _field(2, 17)
    return _field(1, 8) + _field(8, opset) + _field(7, graph)  # ir_version 8, opset_import, graph


class GramProduct:
    """``A @ B.T`` for float64 matrices on an ONNX Runtime CPU session with ``threads`` intra-op threads."""

    def __init__(self, threads: int | None = None):
        from ..backends.ort_backend import session_options
        from ..optional import require

        ort = require("onnxruntime", "cpu", "the feature cache")
        self.session = ort.InferenceSession(gemm_model_bytes(), session_options(ort, threads),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"A": np.ascontiguousarray(a, np.float64),
                                       "B": np.ascontiguousarray(b, np.float64)})[0]
