"""Open Inference Protocol (v2) request and response bodies: JSON tensors and the binary tensor data
extension, as numpy arrays and named images.

A request body is JSON, or, with the ``Inference-Header-Content-Length: n`` header, n bytes of JSON
followed by the binary data of the inputs whose ``parameters.binary_data_size`` say how many bytes are
theirs, in the order the inputs are listed. BYTES elements in binary are each a 4-byte little-endian
length and the bytes; in JSON they are strings, which this server reads as base64 (an encoded image
file is not text). UINT8 elements in JSON are numbers 0..255, flat or nested in row-major order.

A response is JSON, or JSON then binary outputs when the request asked for binary outputs (the
request parameter ``binary_data_output`` or an output's ``binary_data``), with the same header.
Nothing here decodes pictures: that stays in the Scorer.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field

import numpy as np

from ..formatting import float32_json
from ..io.images import EncodedImage
from .http_errors import ServiceError, bad_request, load_json

HEADER_LENGTH = "inference-header-content-length"
DTYPES = {"UINT8": np.uint8, "FP32": np.float32}  # the element types this server reads or writes


@dataclass
class Tensor:
    """One input as sent: ``data`` is an object array of ``bytes`` (BYTES) or a numpy array (UINT8)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, Tensor]
    outputs: list[str] | None  # asked-for output names, None: every output of the model
    binary: dict[str, bool] = field(default_factory=dict)  # output name -> answer it in binary
    binary_default: bool = False


def _header_length(value: str | None, body_size: int) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) > body_size:
        raise bad_request(f"Inference-Header-Content-Length {value!r} is not a byte count within the "
                          f"{body_size}-byte body")
    return int(value)


def json_part(body: bytes, header_length: str | None) -> bytes:
    """The JSON head of an inference request body (all of it without binary tensor data)."""
    json_size = _header_length(header_length, len(body))
    return body if json_size is None else body[:json_size]


def _shape(doc: dict, where: str) -> tuple[int, ...]:
    shape = doc.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise bad_request(f"{where}: 'shape' must be a list of non-negative integers")
    return tuple(shape)


def _bytes_from_binary(raw: memoryview, count: int, where: str) -> np.ndarray:
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise bad_request(f"{where}: truncated BYTES element length in the binary data")
        (size,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + size > len(raw):
            raise bad_request(f"{where}: a BYTES element of {size} bytes passes the end of its binary data")
        items.append(bytes(raw[at:at + size]))
        at += size
    if len(items) != count:
        raise bad_request(f"{where}: {len(items)} BYTES elements in the binary data, the shape says {count}")
    out = np.empty(count, dtype=object)
    out[:] = items
    return out


def _bytes_from_json(data, count: int, where: str) -> np.ndarray:
    flat = _flatten(data, where)
    if len(flat) != count or not all(isinstance(x, str) for x in flat):
        raise bad_request(f"{where}: BYTES data in JSON must be {count} base64 strings (or send them binary, "
                          "the binary tensor data extension)")
    out = np.empty(count, dtype=object)
    try:
        out[:] = [base64.b64decode(x, validate=True) for x in flat]
    except (binascii.Error, ValueError):
        raise bad_request(f"{where}: BYTES data in JSON must be base64 strings of encoded image files") from None
    return out


def _flatten(data, where: str) -> list:
    if not isinstance(data, list):
        raise bad_request(f"{where}: 'data' must be a list")
    if data and isinstance(data[0], list):
        out = []
        for row in data:
            out.extend(_flatten(row, where))
        return out
    return data


def _uint8_from_json(data, count: int, where: str) -> np.ndarray:
    flat = _flatten(data, where)
    if len(flat) != count:
        raise bad_request(f"{where}: {len(flat)} elements, the shape says {count}")
    try:
        values = np.asarray(flat, dtype=np.int16)  # 2 bytes per element: the parsed list already costs 8
    except (TypeError, ValueError, OverflowError):
        raise bad_request(f"{where}: UINT8 data must be integers 0..255") from None
    if values.ndim != 1 or (count and (values.min() < 0 or values.max() > 255)):
        raise bad_request(f"{where}: UINT8 data must be integers 0..255")
    return values.astype(np.uint8)


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request body -> its inputs as arrays (400 for anything malformed)."""
    json_size = _header_length(header_length, len(body))
    head = body if json_size is None else body[:json_size]
    doc = load_json(head, "the inference request")
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise bad_request("an inference request is a JSON object with an 'inputs' list")
    binary = memoryview(body)[json_size:] if json_size is not None else memoryview(b"")
    at = 0
    inputs: dict[str, Tensor] = {}
    for i, spec in enumerate(doc["inputs"]):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad_request(f"inputs[{i}] must be an object with a 'name'")
        name = spec["name"]
        where = f"input '{name}'"
        if name in inputs:
            raise bad_request(f"{where} is given twice")
        datatype, shape = spec.get("datatype"), _shape(spec, where)
        if datatype not in ("BYTES", "UINT8"):
            raise ServiceError(400, "bad_request", f"{where}: datatype {datatype!r} is not served: send BYTES "
                               "(encoded image files) or UINT8 [N,H,W,3] (RGB frames)")
        count = math.prod(shape)
        params = spec.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request(f"{where}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if json_size is None:
                raise bad_request(f"{where} has binary_data_size but the request has no "
                                  "Inference-Header-Content-Length header")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or at + size > len(binary):
                raise bad_request(f"{where}: binary_data_size {size!r} passes the end of the body")
            raw = binary[at:at + size]
            at += size
            if datatype == "BYTES":
                data = _bytes_from_binary(raw, count, where)
            else:
                if size != count:
                    raise bad_request(f"{where}: {size} bytes of UINT8 data, the shape {list(shape)} needs {count}")
                data = np.frombuffer(raw, dtype=np.uint8).copy()
        elif "data" in spec:
            data = (_bytes_from_json if datatype == "BYTES" else _uint8_from_json)(spec["data"], count, where)
        else:
            raise bad_request(f"{where} has neither 'data' nor binary data (parameters.binary_data_size)")
        inputs[name] = Tensor(name, datatype, shape, data.reshape(shape) if datatype == "UINT8" else data)
    if at != len(binary):
        raise bad_request(f"{len(binary) - at} bytes of binary data that no input claims")
    req_params = doc.get("parameters") or {}
    if not isinstance(req_params, dict):
        raise bad_request("'parameters' must be an object")
    outputs, binary_out = None, {}
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise bad_request("'outputs' must be a list")
        outputs = []
        for i, out in enumerate(doc["outputs"]):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise bad_request(f"outputs[{i}] must be an object with a 'name'")
            outputs.append(out["name"])
            params = out.get("parameters") or {}
            if isinstance(params, dict) and "binary_data" in params:
                binary_out[out["name"]] = bool(params["binary_data"])
            if isinstance(params, dict) and params.get("classification"):
                raise bad_request(f"output '{out['name']}': the classification extension is not served")
    request_id = doc.get("id")
    return InferRequest(id=request_id if isinstance(request_id, str) else None, inputs=inputs, outputs=outputs,
                        binary=binary_out, binary_default=bool(req_params.get("binary_data_output", False)))


def pair_images(request: InferRequest, max_pixels: int | None) -> list[tuple]:
    """The pairs of ``img0``/``img1``: ``EncodedImage`` for BYTES [N], HxWx3 uint8 arrays for UINT8
    [N,H,W,3] (413 for a frame over ``max_pixels``, checked before any work)."""
    sides = []
    for name in ("img0", "img1"):
        tensor = request.inputs.get(name)
        if tensor is None:
            raise bad_request(f"missing input '{name}': send img0 and img1, BYTES [N] (encoded image files) or "
                              "UINT8 [N,H,W,3] (RGB frames)")
        if tensor.datatype == "BYTES":
            if len(tensor.shape) != 1:
                raise bad_request(f"input '{name}': BYTES shape must be [N], got {list(tensor.shape)}")
            sides.append([EncodedImage(item, f"{name}[{i}]") for i, item in enumerate(tensor.data)])
        else:
            if len(tensor.shape) != 4 or tensor.shape[3] != 3:
                raise bad_request(f"input '{name}': UINT8 shape must be [N,H,W,3] (RGB), got {list(tensor.shape)}")
            pixels = tensor.shape[1] * tensor.shape[2]
            if max_pixels is not None and pixels > max_pixels:
                raise ServiceError(413, "image_too_large", f"input '{name}': {tensor.shape[2]}x{tensor.shape[1]} "
                                   f"frames are over the limit of {max_pixels} pixels (lpips-serve --max-pixels)")
            sides.append(list(tensor.data))
    extra = sorted(set(request.inputs) - {"img0", "img1"})
    if extra:
        raise bad_request(f"unknown input '{extra[0]}': this model takes img0 and img1")
    if len(sides[0]) != len(sides[1]):
        raise bad_request(f"img0 holds {len(sides[0])} images but img1 {len(sides[1])}: send one img1 per img0")
    if not sides[0]:
        raise bad_request("no pairs in the request (N = 0)")
    return list(zip(sides[0], sides[1]))


def encode_response(doc: dict, outputs: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, dict[str, str]]:
    """The response body and extra headers: ``doc`` (model_name, ...) with ``outputs`` as (name, float32
    values, binary?). Binary outputs follow the JSON, with ``Inference-Header-Content-Length``."""
    tensors, tail = [], []
    for name, values, binary in outputs:
        tensor = {"name": name, "datatype": "FP32", "shape": list(values.shape)}
        if binary:
            raw = values.astype("<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            # The shortest decimal that reads back as the same float32 (as /v1 writes distances).
            # JSON has no infinity (PSNR of identical images): null there, +inf in binary outputs.
            tensor["data"] = [float32_json(v) if math.isfinite(v) else None for v in values.astype(np.float32)]
        tensors.append(tensor)
    head = json.dumps({**doc, "outputs": tensors}).encode()
    if not tail:
        return head, {}
    return head + b"".join(tail), {"Inference-Header-Content-Length": str(len(head))}
