"""Graph pieces that need a hand-written ONNX form (shared by the LPIPS graph and the pixel metrics)."""
from __future__ import annotations

import torch


class _EqualSplit(torch.autograd.Function):
    """Split a tensor into equal parts along one axis; exported as one ONNX Split without a ``split``
    input (equal parts), so that no Shape arithmetic appears and OpenCV 4.6 loads it."""

    @staticmethod
    def forward(ctx, x, parts, dim):  # noqa: D102 - autograd hook
        return tuple(chunk.clone() for chunk in x.chunk(parts, dim=dim))

    @staticmethod
    def symbolic(g, x, parts, dim):  # noqa: D102 - ONNX export hook (legacy exporter)
        if g.opset >= 18:
            return g.op("Split", x, axis_i=dim, num_outputs_i=parts, outputs=parts)
        return g.op("Split", x, axis_i=dim, outputs=parts)


def split_equal(x: torch.Tensor, parts: int, dim: int = 0) -> tuple[torch.Tensor, ...]:
    """``x.chunk(parts, dim)`` (the size along ``dim`` must divide evenly), traced as one equal Split."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return _EqualSplit.apply(x, parts, dim)
    return x.chunk(parts, dim=dim)


class _RowsThenColumnMean(torch.autograd.Function):
    """Mean over H and W of [N,C,H,W] -> [N,C,1,1], exported as two GlobalAveragePools: over each row
    (Reshape [0,-1,1,0]: [N,C*H,1,W]), then over the row means (Reshape [0,C,-1,1]: [N,C,H,1]).

    Why not one GlobalAveragePool: ONNX Runtime's CPU kernel sums a whole channel in a few float32
    accumulators, which measured relative errors up to 6e-3 for a 1920x1080 map (3e-3 dB of PSNR);
    two stages of at most max(H, W) terms each measured <= 4.3e-6. ReduceMean over one axis would do
    the same, but OpenCV 4.6 returns NaN for it; this form loads there (measured).
    """

    @staticmethod
    def forward(ctx, x, channels):  # noqa: D102 - autograd hook
        return x.mean(dim=(2, 3), keepdim=True)

    @staticmethod
    def symbolic(g, x, channels):  # noqa: D102 - ONNX export hook (legacy exporter)
        rows = g.op("Reshape", x, g.op("Constant", value_t=torch.tensor([0, -1, 1, 0], dtype=torch.int64)))
        row_means = g.op("GlobalAveragePool", rows)
        columns = g.op("Reshape", row_means,
                       g.op("Constant", value_t=torch.tensor([0, channels, -1, 1], dtype=torch.int64)))
        return g.op("GlobalAveragePool", columns)


def mean_hw(x: torch.Tensor) -> torch.Tensor:
    """float32 [N,C,H,W] -> [N,C,1,1], the mean over H and W, accurate to ~1e-6 in float32 at any size
    (see ``_RowsThenColumnMean``)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return _RowsThenColumnMean.apply(x, int(x.shape[1]))
    return x.mean(dim=(2, 3), keepdim=True)
