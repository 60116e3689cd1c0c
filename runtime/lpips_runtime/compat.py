"""A drop-in for ``lpips.LPIPS`` at inference: ``loss_fn(img0, img1)`` code moves over unchanged."""
from __future__ import annotations

import numpy as np

from .errors import LpipsError
from .scorer import Scorer


class LPIPS:
    """Callable like the official ``lpips.LPIPS(net=..., version=...)`` module, for inference.

    ``__call__(in0, in1, retPerLayer=False, normalize=False)`` takes NCHW float batches in [-1,1]
    (``normalize=True``: [0,1]) and returns [N,1,1,1] distances (spatial: [N,1,H,W]) as float32.
    numpy in, numpy out; torch tensors in, a torch tensor out on the input's device (no gradient:
    this is an inference runtime, not a training loss).
    """

    def __init__(self, net: str = "alex", version: str = "0.1", lpips: bool = True, spatial: bool = False,
                 *, backend: str = "ort", device: str = "cpu", model=None, **scorer_options):
        self.spatial = spatial
        self.scorer = Scorer(model if model is not None else net, version=version, baseline=not lpips,
                             backend=backend, device=device, **scorer_options)

    def __call__(self, in0, in1, retPerLayer: bool = False, normalize: bool = False):
        return self.forward(in0, in1, retPerLayer=retPerLayer, normalize=normalize)

    def forward(self, in0, in1, retPerLayer: bool = False, normalize: bool = False):
        if retPerLayer:
            raise LpipsError("retPerLayer is not offered: the exported graph returns only the total "
                             "(use the official lpips package for per-layer values)")
        torch_like = hasattr(in0, "detach") and hasattr(in0, "device")
        a, b = _to_numpy(in0), _to_numpy(in1)
        if normalize:  # [0,1] -> [-1,1], as the official forward does
            a, b = 2 * a - 1, 2 * b - 1
        if self.spatial:
            out = self.scorer.distance_map(a, b)
        else:
            out = self.scorer.distance(a, b).reshape(-1, 1, 1, 1)
        if torch_like:
            import torch  # the caller already has it: it passed a tensor

            return torch.from_numpy(np.ascontiguousarray(out)).to(in0.device)
        return out

    def close(self) -> None:
        self.scorer.close()


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32) if getattr(x, "dtype", None) != np.float32 else x
