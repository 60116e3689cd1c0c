"""How far torchmetrics' SSIM defaults are from the SSIM lpips-rt computes (scikit-image's definition).

    pip install torchmetrics   # not a dependency of lpips-rt (use -c constraints.txt here)
    python benchmarks/ssim_conventions.py

scikit-image (``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255``) averages
the SSIM map over the pixels whose 11x11 window lies inside the image (5 pixels cropped per side).
torchmetrics' ``structural_similarity_index_measure`` pads the image by reflection and averages the map
over every pixel, border included, and by default takes the data range from the data (max - min)
instead of 255. Prints both differences on the bundled scikit-image photographs and their distortions.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    try:
        import torch
        import torchmetrics
        from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim
    except ImportError:
        print("needs torchmetrics: pip install -c constraints.txt torchmetrics", file=sys.stderr)
        return 1
    from skimage.metrics import structural_similarity

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import PHOTOS, distort, photo

    def tensor(img):
        return torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None]

    rows = []
    for i, name in enumerate(PHOTOS):
        ref = photo(name)
        for kind in ("blur", "jpeg", "noise", "colour"):
            dist = distort(ref, kind, 0.5, seed=i)
            ours = structural_similarity(ref, dist, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=255, channel_axis=-1)
            default = tm_ssim(tensor(dist), tensor(ref)).item()
            range_255 = tm_ssim(tensor(dist), tensor(ref), data_range=255.0).item()
            rows.append((f"{name} {kind} {ref.shape[1]}x{ref.shape[0]}", ours, default - ours, range_255 - ours))
    print(f"torchmetrics {torchmetrics.__version__}: SSIM minus scikit-image's (the lpips-rt definition)\n")
    print("| pair | scikit-image | torchmetrics defaults | torchmetrics data_range=255 |\n|---|---|---|---|")
    for label, ours, default, range_255 in rows:
        print(f"| {label} | {ours:.6f} | {default:+.2e} | {range_255:+.2e} |")
    diffs = np.array([r[2:] for r in rows])
    print(f"\nmax |difference|: defaults {np.abs(diffs[:, 0]).max():.2e}, "
          f"data_range=255 {np.abs(diffs[:, 1]).max():.2e}; "
          f"mean: {diffs[:, 0].mean():+.2e}, {diffs[:, 1].mean():+.2e} ({len(rows)} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
