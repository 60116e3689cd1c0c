"""LPIPS as a differentiable loss: ``from lpips_runtime.torch import LPIPS``, the official API over the project's
one torch LPIPS (``lpips_export.module.LPIPSModule``, the module the ONNX exports are traced from) with verified
offline weights.

Needs torch, torchvision and the official package's linear-layer files: ``pip install 'lpips-rt[torch]'``
(``[export]`` has them too). Without them, importing this module raises ``MissingExtraError`` naming the extra.
The imports below are absolute: inside this package ``torch`` is always the real torch, never this module.
"""
from __future__ import annotations

import sys
from pathlib import Path

from lpips_runtime.errors import InputError, WeightsError
from lpips_runtime.optional import require

torch = require("torch", "torch", "lpips_runtime.torch (LPIPS as a differentiable loss)")
require("torchvision", "torch", "lpips_runtime.torch (LPIPS as a differentiable loss)")

from lpips_export.build import build_lpips  # noqa: E402 - after the extra check: this import needs torch
from lpips_export.loss_head import Workspace, layer_distance  # noqa: E402
from lpips_runtime.model.nets import get_net  # noqa: E402

__all__ = ["LPIPS"]

_NET_ALIASES = {"vgg16": "vgg"}  # the official constructor accepts both spellings
_LINEAR_KEY = "lin{}.model.1.weight"
# The official use_dropout=True lin layers: nn.Dropout() (p=0.5) before each 1x1 convolution, active in train mode.
_DROPOUT = 0.5


class LPIPS(torch.nn.Module):
    """``lpips.LPIPS`` (0.1.4) with the same constructor, forward and gradients, built from verified weights.

    ``forward(in0, in1, retPerLayer=False, normalize=False)``: two float tensors [N,3,H,W] RGB in [-1,1]
    (``normalize=True``: [0,1]), same shape, H and W at least the net's minimum side (31 alex, 16 vgg,
    17 squeeze). Returns float32 distances [N,1,1,1] (``spatial=True``: maps [N,1,H,W]); with ``retPerLayer``
    ``(total, [per-layer terms])`` as the official. Differentiable with respect to both inputs and, as the
    official, to the linear layers (trainable) and the backbone when ``pnet_tune=True`` (frozen otherwise).

    Differences from the official, all on purpose: weights come from the project's verified sources (sha256
    pins, strict loads, no download without a log line: ``lpips_export.backbone_weights``), a ``model_path``
    file must hold exactly the linear-layer keys, ``verbose`` writes to stderr, bad inputs raise
    ``InputError`` (one line), and the result and the normalisation are float32 whatever the trunk's precision
    (``torch.autocast`` or ``.half()``: the official ``x / (sqrt(sum x^2) + 1e-10)`` loses its eps in float16).

    Keyword-only extras: ``backbone_weights`` (a torchvision ``features`` state dict file, checked against the
    pinned digest), ``channels_last`` (the backbone's memory layout; off by default: on the CPU measured it
    was not faster for forward+backward, and with NCHW inputs its gradients were 2e-3 (alex) and 7e-3 (vgg)
    from the official's at 256x256, against 2e-7 for the default: docs/loss.md) and ``fused_head`` (on by default: the head's spatial means, normalisation and linear
    layers as one autograd function with a closed-form backward and work buffers kept from step to step,
    ``lpips_export.loss_head``, the same results in fewer passes; it applies without ``spatial`` and train-mode dropout, and a
    ``create_graph=True`` backward goes through the elementwise form; ``False`` always takes that form).
    """

    def __init__(self, pretrained: bool = True, net: str = "alex", version: str = "0.1", lpips: bool = True,
                 spatial: bool = False, pnet_rand: bool = False, pnet_tune: bool = False, use_dropout: bool = True,
                 model_path: str | Path | None = None, eval_mode: bool = True, verbose: bool = True, *,
                 backbone_weights: str | Path | None = None, channels_last: bool = False, fused_head: bool = True):
        super().__init__()
        net = _NET_ALIASES.get(net, net)
        spec = get_net(net)
        if model_path is not None and lpips and pretrained:
            linear = _read_linear_file(Path(model_path), spec.n_layers)
        else:
            linear = "official" if pretrained else None
        # The natural form (plain sum/mean/Sub): nothing is exported from here and eager torch runs it faster.
        core, self.provenance = build_lpips(net, version, calibrated=lpips, spatial=spatial, portable=False,
                                            backbone_weights=backbone_weights, pretrained_backbone=not pnet_rand,
                                            linear_weights=linear)
        self.core = core
        # Official attribute names, for code that reads them.
        self.pnet_type, self.version, self.lpips, self.spatial = net, version, lpips, spatial
        self.pnet_rand, self.pnet_tune = pnet_rand, pnet_tune
        self.chns, self.L = list(spec.channels), spec.n_layers
        self.channels_last = channels_last
        self.fused_head = fused_head
        self._head_workspace = Workspace()  # the fused head's scratch maps, reused from step to step
        # The official freezes the backbone unless pnet_tune and leaves its linear layers trainable.
        core.features.requires_grad_(pnet_tune)
        if core.lins is not None:
            core.lins.requires_grad_(True)
            core.lin_dropout = _DROPOUT if use_dropout else 0.0
        if channels_last:
            core.features.to(memory_format=torch.channels_last)
        self.train(not eval_mode)
        if verbose:
            print(f"Setting up [{'LPIPS' if lpips else 'baseline'}] perceptual loss: trunk [{net}], v[{version}], "
                  f"spatial [{'on' if spatial else 'off'}]; backbone: {self.provenance.backbone_source}"
                  f"{' (sha256 verified)' if self.provenance.backbone_digest else ''}", file=sys.stderr)

    # -- precision ---------------------------------------------------------------------------------

    def _apply(self, fn, *args, **kwargs):
        """``.half()``/``.to(dtype)`` convert the backbone only: the input scaling and the head (normalisation,
        linear layers, means) stay float32, as in the project's float16 exports (see ``LPIPSModule``)."""
        super()._apply(fn, *args, **kwargs)
        core = self.core
        trunk = next(p.dtype for p in core.features.parameters())
        core.trunk_dtype = trunk
        for module in (core.lins,):
            if module is not None and next(module.parameters()).dtype != torch.float32:
                module.float()
        for name, buf in core.named_buffers(recurse=False):
            if buf.dtype != torch.float32 and buf.is_floating_point():
                setattr(core, name, buf.float())
        return self

    def release_buffers(self) -> None:
        """Free the calling thread's work buffers of the fused head (about two of the largest tap's maps, kept
        from step to step; made again at the next step): e.g. after a step at an unusually large size."""
        self._head_workspace.release()

    # -- forward ----------------------------------------------------------------------------------

    def forward(self, in0, in1, retPerLayer: bool = False, normalize: bool = False):
        _check_pair(in0, in1, self.core.net.min_side)
        if normalize:  # [0,1] -> [-1,1], as the official forward does
            in0, in1 = 2 * in0 - 1, 2 * in1 - 1
        core = self.core
        fused = self._fused_head_applies()
        feats0 = self._encode(in0, normalised=not fused)
        feats1 = self._encode(in1, normalised=not fused)
        # The head in float32 whatever autocast asks for (the features are float32 already).
        with torch.autocast(device_type=in0.device.type, enabled=False):
            if fused:
                terms = [layer_distance(f0, f1, self._layer_weights(i), self._head_workspace)
                         for i, (f0, f1) in enumerate(zip(feats0, feats1))]
            else:
                terms = core.layer_terms(feats0, feats1, tuple(in0.shape[2:]) if self.spatial else None)
            total = core.sum_terms(terms)
        return (total, terms) if retPerLayer else total

    def _fused_head_applies(self) -> bool:
        """The fused head (``lpips_export.loss_head``) computes spatial means only, and no dropout."""
        core = self.core
        dropout = core.lins is not None and core.lin_dropout and self.training
        return self.fused_head and not self.spatial and not dropout

    def _layer_weights(self, layer: int):
        """Tap ``layer``'s linear weights as a [C] view (the parameter itself, so its gradient arrives), or
        the unit weights of the baseline's channel sum."""
        core = self.core
        weight = core.lins[layer].weight if core.lins is not None else getattr(core, f"ones{layer}")
        return weight.reshape(-1)

    def _encode(self, img, normalised: bool = True):
        """Float32 features of one batch, normalised or raw; without autograd when no gradient can flow
        through them (an input that does not require grad and a frozen backbone: the usual target image)."""
        core = self.core
        needs_grad = torch.is_grad_enabled() and (img.requires_grad or any(
            p.requires_grad for p in core.features.parameters()))
        with torch.set_grad_enabled(needs_grad):
            x = core.prepare(img)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return core.encode(x) if normalised else core.taps(x)


def _check_pair(in0, in1, min_side: int) -> None:
    for name, x in (("in0", in0), ("in1", in1)):
        if not torch.is_tensor(x):
            raise InputError(f"LPIPS: {name} must be a torch tensor [N,3,H,W], not {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"LPIPS: {name} must be [N,3,H,W] RGB, got shape {list(x.shape)} "
                             "(grey images: repeat the channel, x.expand(-1, 3, -1, -1))")
        if not x.is_floating_point():
            raise InputError(f"LPIPS: {name} must be a float tensor in [-1,1] (or [0,1] with normalize=True), "
                             f"got {x.dtype}")
    if in0.shape != in1.shape:
        raise InputError(f"LPIPS: in0 and in1 differ in shape: {list(in0.shape)} vs {list(in1.shape)}")
    if min(in0.shape[2:]) < min_side:
        raise InputError(f"LPIPS: {in0.shape[2]}x{in0.shape[3]} is below this net's minimum side of {min_side} "
                         "pixels (upsample or pad the images)")


def _read_linear_file(path: Path, layers: int) -> dict:
    """A ``model_path`` file: exactly the official linear-layer keys (strict, tensors only, on the CPU)."""
    if not path.is_file():
        raise WeightsError(f"model_path {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise WeightsError(f"model_path {path}: not a torch state dict of tensors ({type(exc).__name__})") from None
    expected = {_LINEAR_KEY.format(i) for i in range(layers)}
    if not isinstance(state, dict) or set(state) != expected:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise WeightsError(f"model_path {path}: expected exactly the keys lin0..lin{layers - 1}.model.1.weight "
                           f"(the official linear-layer file), got {str(keys)[:200]}")
    return state
