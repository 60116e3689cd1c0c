"""PSNR and SSIM as a torch module, traced into the LPIPS graph next to the distance.

Definitions (and why the inputs are 8-bit values): ``lpips_runtime.model.pixel_metrics``. Written with the
operators the LPIPS graph already uses (Conv, GlobalAveragePool, Reshape, elementwise arithmetic) plus
Round and Log, so that the graph still loads wherever the distance graph does (OpenCV 4.6 included):

* the Gaussian window is two depthwise convolutions (11x1, then 1x11) without padding: their output is
  exactly the interior that scikit-image keeps after cropping 5 pixels per side, so no border
  handling is needed;
* the SSIM map is written in a form that float32 computes to about 1e-6 of scikit-image's float64 value
  (see ``ssim_map``), from six windowed maps per channel;
* spatial means are two GlobalAveragePools, over rows then over the row means (``graph_ops.mean_hw``:
  one over the whole map loses up to 6e-3 relative in ONNX Runtime's float32 kernel at 1080p), the
  channel mean a 1x1 convolution with weights 1/C.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lpips_runtime.model.pixel_metrics import (DATA_RANGE, LUMA_OFFSET, LUMA_WEIGHTS, SSIM_K1, SSIM_K2, SSIM_WINDOW,
                                         gaussian_taps, on_luma, parse_metrics)

from .graph_ops import mean_hw

C1 = (SSIM_K1 * DATA_RANGE) ** 2
C2 = (SSIM_K2 * DATA_RANGE) ** 2
_DB_PER_NEPER = 10 / math.log(10)  # 10 log10(v) == _DB_PER_NEPER * ln(v)


def ssim_map(mean_sum: torch.Tensor, mean_diff: torch.Tensor, centred_sum: torch.Tensor, centred_diff: torch.Tensor,
             centred_sq: torch.Tensor, centred_diff_sq: torch.Tensor) -> torch.Tensor:
    """The SSIM map of images x0, x1 from windowed means: of x0+x1 and x0-x1 (``mean_*``), and of
    a0+a1, a0-a1, a0^2+a1^2 and (a0-a1)^2 (``centred_*``) where a0 = x0 - c0, a1 = x1 - c1 for
    constants c0, c1 (the images' own means).

    Equal to scikit-image's ``(2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))``, written
    as ``(1 - (ux - uy)^2 / (ux^2 + uy^2 + C1)) (1 - (vx + vy - 2 vxy) / (vx + vy + C2))``: variances do
    not change with the constants, and ``vx + vy - 2 vxy`` is the windowed variance of the difference.

    Why the centred copies: float32 computes a variance ``E[a^2] - E[a]^2`` with an error of ~1e-7 of
    ``E[a^2]``, which is up to 65025 for raw 8-bit values, i.e. 1e-4 of C2 per pixel; on flat images
    these errors do not average out. Measured against scikit-image: scikit-image's own formula in
    float32 was off by 7e-5 for two flat images; this form with a fixed centre (128) instead of each
    image's mean, by up to 7.5e-5 for flat pairs of different brightness (100 vs 200); with each
    image's mean, <= 1.2e-6 on photographs, flat pairs of any two levels and near-flat textures.
    (Adding c0 + c1 back to the centred means instead of filtering x0+x1 and x0-x1 as well would save
    two maps per channel, but OpenCV 4.6 cannot broadcast [N,C,1,1] over a convolution's output: measured.)
    """
    luminance_diff = mean_diff * mean_diff  # (ux - uy)^2
    means_sq = (mean_sum * mean_sum + luminance_diff) * 0.5  # ux^2 + uy^2
    variances = centred_sq - (centred_sum * centred_sum + centred_diff * centred_diff) * 0.5  # vx + vy
    diff_variance = centred_diff_sq - centred_diff * centred_diff  # vx + vy - 2 vxy
    return (1 - luminance_diff / (means_sq + C1)) * (1 - diff_variance / (variances + C2))


class PixelMetrics(nn.Module):
    """Two batches of 8-bit RGB values -> the requested metrics.

    Inputs ``rgb0``, ``rgb1``: float32 [N,3,H,W] holding exact integers in [0,255] (RGB order), H and W
    >= 11 (the SSIM window). Output: a list of float32 [N], one per name of ``metrics`` (in the order
    ``parse_metrics`` gives). ``portable=False`` uses torch's means instead of GlobalAveragePool and
    1x1 convolutions (for the eager torch backend, as ``LPIPSModule``).
    """

    def __init__(self, metrics, portable: bool = True):
        super().__init__()
        self.metrics = parse_metrics(metrics)
        if not self.metrics:
            raise ValueError("PixelMetrics needs at least one metric")
        self.portable = portable
        taps = torch.tensor(gaussian_taps(), dtype=torch.float32)
        for channels in {1 if on_luma(m) else 3 for m in self.metrics}:
            self.register_buffer(f"window_v{channels}", taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1),
                                 persistent=False)
            self.register_buffer(f"window_h{channels}", taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1),
                                 persistent=False)
        self.register_buffer("channel_mean3", torch.full((1, 3, 1, 1), 1 / 3), persistent=False)
        self.register_buffer("luma", (torch.tensor(LUMA_WEIGHTS, dtype=torch.float64) / 255).float().view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("luma_offset", torch.tensor([LUMA_OFFSET]), persistent=False)

    def forward(self, rgb0: torch.Tensor, rgb1: torch.Tensor) -> list[torch.Tensor]:
        values = {}
        if any(not on_luma(m) for m in self.metrics):
            values.update(self._on(rgb0, rgb1, rgb0 - rgb1, ""))
        if any(on_luma(m) for m in self.metrics):
            # The difference goes through the weights without the offset: exact inputs, no cancellation.
            y0, y1 = (F.conv2d(x, self.luma, self.luma_offset) for x in (rgb0, rgb1))
            values.update(self._on(y0, y1, F.conv2d(rgb0 - rgb1, self.luma), "_y"))
        return [values[m] for m in self.metrics]

    def _on(self, x0: torch.Tensor, x1: torch.Tensor, diff: torch.Tensor, suffix: str) -> dict[str, torch.Tensor]:
        """The metrics of one colour variant (suffix "" or "_y") from [N,C,H,W] images and their difference."""
        wanted = {m for m in self.metrics if on_luma(m) == bool(suffix)}
        squared = diff * diff
        out = {}
        if "psnr" + suffix in wanted:
            mse = self._mean(squared)
            out["psnr" + suffix] = torch.log(DATA_RANGE * DATA_RANGE / mse) * _DB_PER_NEPER
        if "ssim" + suffix in wanted:
            channels = x0.shape[1]
            # Each image relative to its mean per channel (see ssim_map), rounded so that 8-bit values
            # minus it stay exact. Any value near the mean does (the result does not depend on it), so
            # one GlobalAveragePool is accurate enough, and it is a form OpenCV 4.6 broadcasts (measured).
            c0, c1 = (torch.round(F.adaptive_avg_pool2d(x, 1) if self.portable else x.mean(dim=(2, 3), keepdim=True))
                      for x in (x0, x1))
            a0, a1 = x0 - c0, x1 - c1
            a_diff = a0 - a1
            # Filtered one by one: joined by a Concat and parted by a Split, ONNX Runtime spends longer
            # copying than it saves (measured).
            maps = (x0 + x1, diff, a0 + a1, a_diff, a0 * a0 + a1 * a1, a_diff * a_diff)
            out["ssim" + suffix] = self._mean(ssim_map(*(self._window(x, channels) for x in maps)))
        return out

    def _window(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """The Gaussian window's mean at every pixel whose window lies inside the image: [N,C,H-10,W-10]."""
        x = F.conv2d(x, getattr(self, f"window_v{channels}"), groups=channels)
        return F.conv2d(x, getattr(self, f"window_h{channels}"), groups=channels)

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        """[N,C,h,w] -> float32 [N]: the mean over pixels of each channel, then over channels."""
        if not self.portable:
            return x.mean(dim=(1, 2, 3))
        pooled = mean_hw(x)
        if x.shape[1] == 3:
            pooled = F.conv2d(pooled, self.channel_mean3)
        return pooled.reshape(-1)


def check_window(min_side: int) -> None:
    """Refuse a net whose minimum input side is below the SSIM window (none of ours is: 16, 17, 31 >= 11)."""
    if min_side < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, but this net accepts "
                         f"{min_side}x{min_side}")
