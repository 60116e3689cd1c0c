"""The LPIPS graph in two parts, for the feature cache (embed once, compare many).

``EncoderGraph``: images -> the unit-normalised features of every tap (what ``LPIPSModule.encode``
returns after ``prepare``). ``HeadGraph``: two feature sets -> distances (or the spatial map).
Running the encoder on both images and the head on the two results computes exactly the fused graph.
Both wrap one ``LPIPSModule``: they share its weights and its code, so the parts cannot drift from it.
"""
from __future__ import annotations

import torch
from torch import nn

from .module import LPIPSModule

SIZE_INPUT = "image_size"  # spatial head: float32 [0,H,W], carries the output size only (zero bytes)


def feature_names(module: LPIPSModule, side: str = "") -> list[str]:
    """``feat0..featK`` (encoder outputs) or, with side "0"/"1", the head's inputs ``feat0_0..``."""
    return [f"feat{i}" + (f"_{side}" if side else "") for i in range(module.net.n_layers)]


class EncoderGraph(nn.Module):
    """img [N,3,H,W] float32 in [-1,1] (or uint8 frames) -> tuple of float32 [N,C_l,h_l,w_l], one per tap,
    each unit-normalised along C (``x / (sqrt(sum_c x^2) + 1e-10)``, as the official head)."""

    def __init__(self, module: LPIPSModule):
        super().__init__()
        self.lpips = module

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.lpips.encode(self.lpips.prepare(img)))


class HeadGraph(nn.Module):
    """Features of image batches 0 and 1 (K tensors each, as the encoder writes them) -> distances.

    The batch sizes may differ when one of them is 1 (broadcast: one reference against N). Output
    float32 [N]; a spatial module's head takes one more input, ``image_size`` float32 [0,H,W] (no data,
    only its shape: the output size) and returns the map [N,1,H,W].
    """

    def __init__(self, module: LPIPSModule):
        super().__init__()
        self.lpips = module
        self.n_layers = module.net.n_layers

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        k = self.n_layers
        feats0, feats1 = list(inputs[:k]), list(inputs[k:2 * k])
        out_hw = inputs[2 * k].shape[1:] if self.lpips.spatial else None
        return self.lpips.head(feats0, feats1, out_hw)
