"""PSNR and SSIM next to LPIPS: their names, definitions and constants, shared by export, runtime and CLIs.

A graph exported with metrics computes them in the same pass as LPIPS, on the 8-bit RGB values the
LPIPS input came from (data range 255):

* float32 inputs in [-1,1]: ``round(x * 127.5 + 127.5)``. For inputs made from 8-bit values by the usual
  conversions (the runtime's and the official im2tensor, ``u / 127.5 - 1`` or ``2 * (u / 255) - 1`` in
  float32, torchvision's ToTensor + Normalize(0.5, 0.5)) ``x * 127.5 + 127.5`` in float32 is already
  exactly ``u`` for all 256 levels (measured); the rounding keeps that exact whatever a backend fuses
  (a multiply-add rounds once), so float and frame graphs agree bit for bit, and it states the rule for
  other inputs: 16-bit images and float arrays are quantised to 8 bits.
* uint8 frame inputs: the frame values themselves.

``psnr``: ``skimage.metrics.peak_signal_noise_ratio(im0, im1, data_range=255)``, i.e.
``10 log10(255^2 / MSE)`` with the MSE over every pixel and channel; identical images give +inf.
``ssim``: ``skimage.metrics.structural_similarity(im0, im1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)``: Wang et al. (2004) with K1=0.01,
K2=0.03, an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma, normalised), the SSIM map
averaged over the pixels whose window lies inside the image (5 pixels cropped on each side, as
scikit-image does), per channel, then over the channels.
``psnr_y``/``ssim_y``: the same on the BT.601 luma of MATLAB's ``rgb2ycbcr`` (what super-resolution
papers report): ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for 8-bit R, G, B, so Y spans
[16, 235]; kept unrounded, as ``skimage.color.rgb2ycbcr`` and BasicSR's ``to_y_channel`` compute it
(MATLAB's uint8 output rounds it), data range 255.

Only the standard library is used here, so the light runtime can import it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from ..errors import LpipsError

# Every metric a graph can compute, in the order a graph outputs them (and files, columns, summaries list them).
METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")
DATA_RANGE = 255.0
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5, as scipy.ndimage rounds a Gaussian's radius
SSIM_WINDOW = 2 * SSIM_RADIUS + 1  # 11: images need both sides at least this long
LUMA_WEIGHTS = (65.481, 128.553, 24.966)  # BT.601 Y per 8-bit R, G, B, divided by 255
LUMA_OFFSET = 16.0

UNITS = {"psnr": "dB", "psnr_y": "dB", "ssim": "", "ssim_y": ""}
DEFINITIONS = {
    "psnr": "PSNR in dB of the 8-bit RGB values (data range 255; +inf for identical images)",
    "ssim": "SSIM of the 8-bit RGB values (Gaussian 11x11 window, sigma 1.5, K1 0.01, K2 0.03, data range 255, "
            "mean over the valid interior of each channel, then over channels: scikit-image's gaussian_weights=True, "
            "use_sample_covariance=False)",
    "psnr_y": "PSNR in dB of the BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, unrounded "
              "(data range 255; +inf for identical images)",
    "ssim_y": "SSIM (as ssim) of the BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, unrounded",
}


def parse_metrics(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"psnr,ssim"`` (or a sequence of names) -> the names in ``METRICS`` order, without duplicates.

    ``LpipsError`` naming the choices for an unknown name. ``None`` or ``""`` -> ``()``.
    """
    if value is None:
        return ()
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise LpipsError(f"unknown metric '{unknown[0]}': choose from {', '.join(METRICS)} "
                         "(psnr_y/ssim_y: on the BT.601 luma)")
    return tuple(m for m in METRICS if m in names)


def on_luma(metric: str) -> bool:
    """Whether ``metric`` is computed on the BT.601 luma (else on the three RGB channels)."""
    return metric.endswith("_y")


def gaussian_taps() -> tuple[float, ...]:
    """The SSIM window's 1-D weights (``SSIM_WINDOW`` taps, sum 1), as scipy.ndimage's gaussian_filter1d."""
    raw = [math.exp(-0.5 * (x / SSIM_SIGMA) ** 2) for x in range(-SSIM_RADIUS, SSIM_RADIUS + 1)]
    total = sum(raw)
    return tuple(w / total for w in raw)


def json_number(value: float | None) -> float | None:
    """A metric value as JSON can hold it: +inf (PSNR of identical images) becomes ``null``, as
    JavaScript's JSON.stringify writes it (JSON has no infinity); a ``null`` metric in a row whose
    ``error`` is also ``null`` therefore means "identical images"."""
    if value is None or not math.isfinite(value):
        return None
    return value


def format_metric(metric: str, value: float) -> str:
    """Text form for one-line outputs: PSNR with 4 decimals (dB), SSIM with 6; +inf as ``inf``."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}" if metric.startswith("psnr") else f"{value:.6f}"
