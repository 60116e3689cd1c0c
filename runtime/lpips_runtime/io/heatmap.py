"""Pictures of spatial LPIPS maps that can be compared: a fixed scale, a colour bar with its numbers, and
the reference shown through where the images agree.

The default scale is fixed per net (``DEFAULT_SCALE``), not each map's own maximum, so the same colour means
the same distance in every picture of that net. The values come from ``benchmarks/heatmap_scale.py``
(benchmarks/README.md, "Heatmap scale"): the 99th percentile of the per-pixel map values over six
photographs under moderate blur, JPEG, noise and colour distortions (strength 0.5), rounded to 0.1. So the
worst 1% of a moderate distortion reaches the top colour, mild ones stay visible (a scale at the strong
distortions' p99, alex 1.0, left them faint), and strong ones saturate only in their worst regions. The
colour bar marks its top with ">=" when the map goes beyond it.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

COLORMAPS = {"inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS,
             "magma": cv2.COLORMAP_MAGMA, "turbo": cv2.COLORMAP_TURBO}
DEFAULT_SCALE = {"alex": 0.7, "vgg": 0.6, "squeeze": 0.5}  # measured: p99 0.717, 0.605, 0.511
DEFAULT_ALPHA = 0.8
# Share of the colour shown where the distance is 0: enough to read the scale everywhere, little enough to
# leave the photograph readable where the images agree.
_FLOOR = 0.2
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def heatmap_scale(net: str, distance_map: np.ndarray, requested: float | str | None = None) -> float:
    """The map value drawn at the top colour: ``requested`` (a number), the map's maximum ("auto"), or the
    fixed default of ``net``."""
    if requested == "auto":
        top = float(np.max(distance_map))
        return top if top > 0 else 1e-6
    if requested is not None:
        return float(requested)
    return DEFAULT_SCALE.get(net, max(DEFAULT_SCALE.values()))


def _grey_bgr(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ref = rgb if rgb.dtype == np.uint8 else (rgb / 257).round().astype(np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(ref), cv2.COLOR_RGB2GRAY)
    if grey.shape != shape:
        grey = cv2.resize(grey, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """Light text on the dark panels beside and below the picture."""
    cv2.putText(img, text, org, _FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)


def _tick_text(value: float) -> str:
    return f"{value:.3g}"


def colour_bar(height: int, vmax: float, colormap: str, clipped: bool) -> np.ndarray:
    """A vertical colour bar ``height`` pixels tall: the colours from 0 (bottom) to ``vmax`` (top) and
    their values as numbers beside them (``>=`` at the top when the map goes beyond it)."""
    scale = float(np.clip(height / 600, 0.4, 0.8))
    (text_w, text_h), _ = cv2.getTextSize(">=" + _tick_text(vmax), _FONT, scale, 1)
    strip_w = max(12, height // 25)
    pad = max(4, text_h // 2 + 2)
    panel = np.full((height, strip_w + text_w + 3 * pad, 3), 32, np.uint8)
    top, bottom = pad, height - pad
    ramp = np.linspace(255, 0, max(bottom - top, 2)).round().astype(np.uint8)[:, None]
    colours = cv2.applyColorMap(ramp, COLORMAPS[colormap])
    panel[top:bottom, pad:pad + strip_w] = np.repeat(colours, strip_w, axis=1)
    ticks = 5 if height >= 160 else 3 if height >= 80 else 2
    for i in range(ticks):
        frac = i / (ticks - 1)
        y = int(round(bottom - 1 - frac * (bottom - top - 1)))
        cv2.line(panel, (pad + strip_w, y), (pad + strip_w + pad // 2, y), (230, 230, 230), 1)
        label = _tick_text(frac * vmax)
        if i == ticks - 1 and clipped:
            label = ">=" + label
        baseline_y = int(np.clip(y + text_h // 2, text_h + 1, height - 2))
        _text(panel, label, (pad + strip_w + pad, baseline_y), scale)
    return panel


def render_heatmap(distance_map: np.ndarray, reference_rgb: np.ndarray | None = None, alpha: float = DEFAULT_ALPHA,
                   colormap: str = "inferno", vmax: float = 1.0, label: str | None = None,
                   with_bar: bool = True) -> np.ndarray:
    """[H,W] float map -> a BGR uint8 picture (for ``cv2.imwrite``): the map's colours over the reference,
    then a colour bar with its numbers on the right (``with_bar``) and ``label`` as a caption.

    Values are scaled to [0, ``vmax``] (beyond it: the top colour). With ``reference_rgb`` (HxWx3 RGB,
    uint8 or uint16) the colours are laid over the reference in grey, each pixel's colour weighted by
    ``alpha`` times its place on the scale (at least a fifth of that), so the photograph stays readable where
    the images agree; without it, or with ``alpha`` 1, the colours alone.
    """
    if distance_map.ndim != 2:
        raise InputError(f"heatmap needs an [H,W] map, got shape {distance_map.shape}")
    if not vmax > 0:
        raise InputError(f"the heatmap scale must be positive, got {vmax}")
    scaled = np.clip(distance_map.astype(np.float32) / vmax, 0, 1)
    picture = cv2.applyColorMap((scaled * 255).round().astype(np.uint8), COLORMAPS[colormap])
    if reference_rgb is not None and alpha < 1:
        base = _grey_bgr(reference_rgb, picture.shape[:2]).astype(np.float32)
        weight = (alpha * (_FLOOR + (1 - _FLOOR) * scaled))[..., None]
        picture = (base * (1 - weight) + picture.astype(np.float32) * weight).round().astype(np.uint8)
    if with_bar:
        bar = colour_bar(picture.shape[0], vmax, colormap, clipped=bool(distance_map.max() > vmax))
        picture = np.hstack([picture, bar])
    if label:
        picture = _caption(picture, label)
    return picture


def pair_heatmap(net: str, model: str, distance: float, distance_map: np.ndarray, reference_rgb: np.ndarray | None,
                 alpha: float = DEFAULT_ALPHA, colormap: str = "inferno", vmax: float | str | None = None) -> np.ndarray:
    """The ``lpips-score --heatmap`` picture of one pair (lpips-serve's /v1/heatmap draws the same):
    ``distance_map`` [H,W] on ``heatmap_scale(net, distance_map, vmax)``, over ``reference_rgb``, with the
    colour bar and the caption "<model>: <distance>" (``model``: ``Scorer.describe()``)."""
    from ..formatting import human

    scale = heatmap_scale(net, distance_map, vmax)
    return render_heatmap(distance_map, reference_rgb, alpha, colormap, scale, label=f"{model}: {human(distance)}")


def _caption(picture: np.ndarray, text: str) -> np.ndarray:
    scale = float(np.clip(picture.shape[1] / 700, 0.4, 0.7))
    while cv2.getTextSize(text, _FONT, scale, 1)[0][0] > picture.shape[1] - 8 and scale > 0.3:  # long: shrink
        scale -= 0.05
    (_, h), _ = cv2.getTextSize("Ag", _FONT, scale, 1)  # one strip height whatever the text
    strip = np.full((h + 12, picture.shape[1], 3), 32, np.uint8)
    _text(strip, text, (4, h + 5), scale)
    return np.vstack([picture, strip])


def write_image(path: str | Path, bgr: np.ndarray) -> None:
    """Encode by extension and write through Python (non-ASCII paths work). ``InputError`` for a format
    OpenCV cannot write or a file that cannot be written."""
    path = Path(path)
    try:
        ok, data = cv2.imencode(path.suffix or ".png", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise InputError(f"{path}: OpenCV cannot write this image format (use .png or .jpg)")
    try:
        path.write_bytes(data.tobytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
