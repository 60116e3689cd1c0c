"""Photo-like test images for the export self-check, made from numpy and OpenCV alone (no data files).

Uniform noise is a poor stand-in for photographs when judging float16: noise pairs sit far apart
(distance ~0.5+) and have no smooth regions, flat areas or strong edges. These images have all three,
and the second image of a pair is a mild distortion of the first, as in real use.
"""
from __future__ import annotations

import cv2
import numpy as np

from lpips_runtime.io.images import rgb_to_unit_nchw


def photo_like(h: int, w: int, seed: int) -> np.ndarray:
    """HxWx3 uint8 RGB: smooth colour gradients, a few hard-edged shapes, fine texture and noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0, h + 1)), int(rng.integers(x0, w + 1))
        img[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img += 12 * np.sin(xx * rng.uniform(0.2, 0.9) + yy * rng.uniform(0.2, 0.9))[..., None]
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def distorted(img: np.ndarray, seed: int) -> np.ndarray:
    """A mild blur plus noise of ``img`` (uint8 RGB, same shape)."""
    rng = np.random.default_rng(seed)
    out = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigmaX=float(rng.uniform(0.6, 1.6)))
    out += rng.normal(0, 4, img.shape)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def check_pairs(n: int, h: int, w: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` pairs (reference, distortion) of HxWx3 uint8 RGB images; with n >= 2 the last pair is
    all-black vs all-white (zero feature vectors and the largest activations)."""
    first, second = [], []
    for i in range(n):
        if n >= 2 and i == n - 1:
            first.append(np.zeros((h, w, 3), np.uint8))
            second.append(np.full((h, w, 3), 255, np.uint8))
            continue
        ref = photo_like(h, w, seed + i)
        first.append(ref)
        second.append(distorted(ref, seed + 1000 + i))
    return first, second


def unit_batch(images: list[np.ndarray]) -> np.ndarray:
    """uint8 RGB images -> float32 [N,3,H,W] in [-1,1] through the runtime's own preprocessing."""
    return np.concatenate([rgb_to_unit_nchw(img) for img in images])


def frame_batch(images: list[np.ndarray], layout: str, channels: str) -> np.ndarray:
    """uint8 RGB images -> a uint8 frame batch as a frame graph takes it ([N,H,W,3] or [N,3,H,W])."""
    batch = np.stack(images)
    if channels == "bgr":
        batch = batch[..., ::-1]
    if layout == "nchw":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch)
