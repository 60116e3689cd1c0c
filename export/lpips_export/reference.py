"""The official ``lpips`` package (0.1.4) built with our verified backbone tensors: the reference that
parity tests and benchmarks compare against. Needs the export extra (the official package is in it)."""
from __future__ import annotations

import warnings

from lpips_runtime.model.nets import get_net
from lpips_runtime.optional import require


def official_lpips(net: str, version: str = "0.1", calibrated: bool = True, spatial: bool = False,
                   backbone_state: dict | None = None):
    """``lpips.LPIPS`` in eval mode on the CPU, float32.

    Its trunk is built random (``pnet_rand=True``: no download) and ``backbone_state`` (torchvision
    ``features.*`` tensors; default: the verified ones from ``build_lpips``) is loaded into it strictly,
    mapped onto the official ``slice<k>.<index>`` names. Its linear layers come from its own loader.
    """
    lpips = require("lpips", "export", "the official reference")
    if backbone_state is None:
        from .build import build_lpips

        backbone_state = build_lpips(net, version, calibrated=False)[0].features_state_for_official()
    spec = get_net(net)
    with warnings.catch_warnings():  # its torchvision calls use the deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version=version, lpips=calibrated, spatial=spatial, pnet_rand=True,
                            verbose=False)
    mapped = {}
    for key, tensor in backbone_state.items():
        index = int(key.split(".")[1])
        if index < spec.taps[-1]:
            slice_no = next(i for i, end in enumerate(spec.taps) if index < end) + 1
            mapped[f"slice{slice_no}." + key[len("features."):]] = tensor
    model.net.load_state_dict(mapped, strict=True)
    return model.eval().requires_grad_(False).float()
