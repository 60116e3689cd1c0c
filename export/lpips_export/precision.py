"""FP16 tools: the relative-error measure, a structural check that a graph is the mixed-precision one,
and two torch references used to judge it (an fp16-storage emulation, and a wholesale half conversion).

Why a structural check: ONNX Runtime's CPU execution provider has no float16 Conv on x86. It runs
a float16 graph by casting every float16 node to float32 and dropping the data-path Cast pairs
(they appear as ``InsertedPrecisionFreeCast_*`` in the optimised graph), so on the CPU an fp16
graph computes in float32 with float16-rounded weights only. A graph that put the head in float16
would look fine there and fail on a GPU; the check reads the graph's types instead.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from .module import FP32_STEM_LAYERS, LPIPSModule

# Relative errors are taken against max(|reference|, REL_FLOOR): distances below 1e-3 are far below
# what LPIPS resolves perceptually, and an identical pair (distance exactly 0) must not divide by 0.
REL_FLOOR = 1e-3

# Ops that make up the head (and the input scaling): none of them may see a float16 tensor.
_FLOAT32_OPS = ("Sqrt", "Div", "Sub", "GlobalAveragePool", "ReduceMean", "ReduceSum", "Resize")


def relative_error(got: np.ndarray, ref: np.ndarray, floor: float = REL_FLOOR) -> float:
    """Distances [N]: max |got - ref| / max(|ref|, floor). Distance maps [N,1,H,W]: each map's
    error relative to that map's largest value (a map is read against its own range, and single
    pixels carry no spatial averaging). ``inf`` if ``got`` has NaN/inf."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if not np.all(np.isfinite(got)):
        return float("inf")
    scale = np.abs(ref)
    if ref.ndim > 1:
        scale = scale.reshape(len(ref), -1).max(axis=1).reshape(-1, *([1] * (ref.ndim - 1)))
    return float(np.max(np.abs(got - ref) / np.maximum(scale, floor)))


def mixed_precision_problems(model) -> list[str]:
    """Why an ONNX ``ModelProto`` is not the mixed graph (float16 trunk, float32 head and I/O); [] if it is."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    problems = []
    for value in graph.input:
        if value.type.tensor_type.elem_type not in (fp32, onnx.TensorProto.UINT8):
            problems.append(f"input {value.name} is not float32/uint8")
    for value in graph.output:
        if value.type.tensor_type.elem_type != fp32:
            problems.append(f"output {value.name} is not float32")
    if not any(n.op_type == "Conv" and types.get(n.input[0]) == fp16 for n in graph.node):
        problems.append("no float16 convolution: the backbone is not in float16")
    for node in graph.node:
        if node.op_type in _FLOAT32_OPS and any(types.get(i) == fp16 for i in node.input if i):
            problems.append(f"{node.op_type} node {node.name or node.output[0]} computes in float16 "
                            "(the head must stay float32)")
    return problems


def wholesale_fp16(module: LPIPSModule) -> LPIPSModule:
    """A copy of ``module`` entirely in float16, head included: what a blanket conversion produces.

    Feed it float16 inputs. For comparisons only (it is what the mixed graph must beat).
    """
    half = copy.deepcopy(module).half()
    half.trunk_dtype = torch.float16
    half.head_dtype = torch.float16
    half.stem_layers = 0
    return half


def emulate_fp16_storage(module: LPIPSModule, stem_layers: int = FP32_STEM_LAYERS) -> LPIPSModule:
    """A float32 copy of ``module`` that stores the float16 part of the mixed graph in float16:
    the weights of every backbone layer after the float32 stem (``stem_layers`` leading layers), the
    stem's output and every later layer's output are rounded to float16, with float32 arithmetic
    (as GPU fp16 kernels accumulate), at float32 speed on a CPU. The head stays float32.
    ``stem_layers=0`` emulates a float16 stem too (input rounded).
    """
    if module.trunk_dtype != torch.float32:
        raise ValueError("emulate_fp16_storage takes a float32 module")
    emulated = copy.deepcopy(module)
    half_layers = list(emulated.features)[stem_layers:]
    with torch.no_grad():
        for layer in half_layers:
            for param in layer.parameters():
                param.copy_(param.half().float())

    def round_output(_layer, _inputs, output):
        return output.half().float()

    def round_input(_layer, inputs):
        return tuple(x.half().float() for x in inputs)

    if stem_layers == 0:
        emulated.features[0].register_forward_pre_hook(round_input)
    else:
        emulated.features[stem_layers - 1].register_forward_hook(round_output)
    for layer in half_layers:
        layer.register_forward_hook(round_output)
    return emulated
