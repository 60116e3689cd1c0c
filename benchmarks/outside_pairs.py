"""Outside-style accuracy data: photographs at several sizes under noise, blur, JPEG and resampling.

The sets that bf16_accuracy.py and int8_accuracy.py judged first were built around 256x256 crops and a few
native sizes. This module adds what a user's folder looks like: colour photographs (scikit-image's bundled
ones, so nothing is downloaded and the data is ours to ship) brought to several sizes (192x256 to 512x768,
by cropping and by area resampling), each against distortions users score: Gaussian noise, Gaussian blur,
JPEG at several qualities, and resampling (down and up again with another interpolation), at three
strengths each.

    python benchmarks/outside_pairs.py --out DIR     # writes DIR/ref/*.png and DIR/dist/*.png (for lpips-score)

``outside_set(quick)`` returns the pairs as the accuracy scripts take them: {"pairs": [(ref NCHW, other
NCHW)], "groups": [[pair indices of one reference at one size]]} (float32 in [-1,1], batch 1).
Everything is deterministic (seeded), so two runs judge the same pairs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

# Colour photographs bundled with scikit-image (no download), none of them used for int8 calibration.
PHOTOS = ("stereo_motorcycle", "hubble_deep_field", "retina", "coffee", "rocket", "astronaut")
# (height, width): how each photograph is brought to that size ("crop": a centre crop after area-resizing
# the short side; "resize": area resampling of the whole photograph, aspect ignored).
SIZES = (((192, 256), "crop"), ((320, 320), "resize"), ((384, 512), "crop"), ((512, 768), "resize"))
KINDS = ("noise", "blur", "jpeg", "resample")
STRENGTHS = (0.2, 0.5, 0.9)
QUICK_SIZES = SIZES[:2]


def photograph(name: str) -> np.ndarray:
    """RGB uint8 HxWx3 of a scikit-image photograph (the left view of the stereo pair)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):
        img = img[0]
    return np.ascontiguousarray(img[..., :3])


def sized(img: np.ndarray, size: tuple[int, int], how: str) -> np.ndarray:
    h, w = size
    if how == "resize":
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    scale = max(h / img.shape[0], w / img.shape[1])
    if scale < 1:
        img = cv2.resize(img, (max(w, round(img.shape[1] * scale)), max(h, round(img.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    elif scale > 1:
        img = cv2.resize(img, (max(w, round(img.shape[1] * scale)), max(h, round(img.shape[0] * scale))),
                         interpolation=cv2.INTER_CUBIC)
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def distorted(img: np.ndarray, kind: str, strength: float, seed: int) -> np.ndarray:
    """``img`` (RGB uint8) under one distortion; ``strength`` in (0, 1]."""
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(img + rng.normal(0, 1 + 24 * strength, img.shape), 0, 255).round().astype(np.uint8)
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), sigmaX=0.4 + 2.6 * strength)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(92 - 82 * strength))])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    # resampling: down by 1.25-4x (area), back up with bilinear or bicubic (alternating with the seed)
    factor = 1.25 + 2.75 * strength
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(8, round(w / factor)), max(8, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=(cv2.INTER_LINEAR, cv2.INTER_CUBIC)[seed % 2])


def unit(img: np.ndarray) -> np.ndarray:
    return (img / 127.5 - 1.0).astype(np.float32).transpose(2, 0, 1)[None]


def outside_images(quick: bool = False):
    """Yield (reference index, size label, ref uint8, distorted uint8, label) over every pair."""
    photos = PHOTOS[:3] if quick else PHOTOS
    strengths = STRENGTHS[1:2] if quick else STRENGTHS
    for r, name in enumerate(photos):
        base = photograph(name)
        for size, how in (QUICK_SIZES if quick else SIZES):
            ref = sized(base, size, how)
            label = f"{size[0]}x{size[1]}"
            for kind in KINDS:
                for k, strength in enumerate(strengths):
                    yield r, label, ref, distorted(ref, kind, strength, 31 * r + k), f"{name}-{label}-{kind}-{k}"


def outside_set(quick: bool = False) -> dict:
    """The pairs in the accuracy scripts' form; one ordering group per (photograph, size)."""
    pairs, groups, index = [], [], {}
    for r, label, ref, other, _ in outside_images(quick):
        index.setdefault((r, label), []).append(len(pairs))
        pairs.append((unit(ref), unit(other)))
    groups = list(index.values())
    return {"pairs": pairs, "groups": groups}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for ref/ and dist/ PNGs (same names)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for sub in ("ref", "dist"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    n = 0
    for _, _, ref, other, label in outside_images(args.quick):
        cv2.imwrite(str(args.out / "ref" / f"{label}.png"), ref[..., ::-1])
        cv2.imwrite(str(args.out / "dist" / f"{label}.png"), other[..., ::-1])
        n += 1
    print(f"{n} pairs in {args.out}/ref and {args.out}/dist", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
