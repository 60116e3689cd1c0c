"""Colourise a spatial LPIPS map, optionally blended over the reference image."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

COLORMAPS = {"inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS,
             "magma": cv2.COLORMAP_MAGMA, "turbo": cv2.COLORMAP_TURBO}


def render_heatmap(distance_map: np.ndarray, reference_rgb: np.ndarray | None = None, alpha: float = 0.6,
                   colormap: str = "inferno", vmax: float | None = None) -> np.ndarray:
    """[H,W] float map -> HxWx3 uint8 BGR picture (ready for ``cv2.imwrite``).

    The map is scaled to [0, vmax] (default: its own maximum; pass a fixed ``vmax`` to compare
    pictures). With ``reference_rgb`` (HxWx3, uint8 or uint16) the colours are blended over it with
    weight ``alpha``.
    """
    if distance_map.ndim != 2:
        raise InputError(f"heatmap needs an [H,W] map, got shape {distance_map.shape}")
    top = float(vmax) if vmax is not None else float(distance_map.max())
    scaled = np.clip(distance_map / top, 0, 1) if top > 0 else np.zeros_like(distance_map)
    picture = cv2.applyColorMap((scaled * 255).round().astype(np.uint8), COLORMAPS[colormap])
    if reference_rgb is None:
        return picture
    ref = reference_rgb if reference_rgb.dtype == np.uint8 else (reference_rgb / 257).round().astype(np.uint8)
    ref_bgr = np.ascontiguousarray(ref[:, :, ::-1])
    if ref_bgr.shape[:2] != picture.shape[:2]:
        ref_bgr = cv2.resize(ref_bgr, (picture.shape[1], picture.shape[0]), interpolation=cv2.INTER_AREA)
    return cv2.addWeighted(ref_bgr, 1.0 - alpha, picture, alpha, 0.0)


def write_image(path: str | Path, bgr: np.ndarray) -> None:
    """Encode by extension and write through Python (non-ASCII paths work)."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise InputError(f"{path}: OpenCV cannot write this image format")
    try:
        path.write_bytes(data.tobytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
