"""The official ``lpips`` package's model, loaded with our verified backbone tensors (for parity tests
and benchmarks): what users of ``lpips.LPIPS`` run, without its torchvision download."""
from __future__ import annotations

import torch

from lpips_runtime.nets import get_net


def official_lpips(net: str, version: str, calibrated: bool, spatial: bool, backbone_state: dict[str, torch.Tensor]):
    """``lpips.LPIPS`` with a random trunk (no download) into which ``backbone_state`` (torchvision
    ``features.*`` tensors) is loaded strictly; its linear layers come from the package's own loader.
    Returns the module in eval mode, float32, on the CPU."""
    import lpips

    spec = get_net(net)
    model = lpips.LPIPS(net=net, version=version, lpips=calibrated, spatial=spatial, pnet_rand=True,
                        verbose=False)
    mapped = {}
    for key, tensor in backbone_state.items():
        index = int(key.split(".")[1])
        if index >= spec.taps[-1]:
            continue
        slice_no = next(i for i, end in enumerate(spec.taps) if index < end) + 1
        mapped[f"slice{slice_no}." + key[len("features."):]] = tensor
    model.net.load_state_dict(mapped, strict=True)
    return model.eval().requires_grad_(False).to(torch.float32)
