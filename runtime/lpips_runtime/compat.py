"""A drop-in for ``lpips.LPIPS`` at inference: ``loss_fn(img0, img1)`` code moves over unchanged.

It scores through the exported ONNX graph, so nothing it returns carries a gradient: an input that requires
grad is refused with a line naming ``lpips_runtime.torch.LPIPS`` (the differentiable module, same API).
"""
from __future__ import annotations

import sys

import numpy as np

from .errors import LpipsError
from .core.scorer import Scorer

_FOR_TRAINING = "lpips_runtime.torch.LPIPS (pip install 'lpips-rt[torch]')"


class LPIPS:
    """Callable like the official ``lpips.LPIPS(net=..., version=...)`` module, for inference.

    ``__call__(in0, in1, retPerLayer=False, normalize=False)`` takes NCHW float batches in [-1,1]
    (``normalize=True``: [0,1]) and returns [N,1,1,1] distances (spatial: [N,1,H,W]) as float32.
    numpy in, numpy out; torch tensors in, a torch tensor out on the input's device, without a gradient:
    a tensor that requires grad (with grad mode on) is refused, naming ``lpips_runtime.torch.LPIPS``.

    The official keywords it can honour are accepted (``pretrained=True``, ``verbose`` (a line on stderr),
    ``eval_mode=True``, ``use_dropout``: no effect at inference, as in the official eval mode,
    ``pnet_rand=False``, ``pnet_tune=False``, ``model_path=None``); any other value of them is refused by name.
    Module idioms: ``.eval()`` and ``.requires_grad_(False)`` return the object, ``.to(device)``, ``.cuda()``,
    ``.cpu()`` choose the backend's device (the scorer is reopened there), ``.parameters()`` is empty (the
    weights live in the graph); ``.train()``, ``.half()`` and ``.requires_grad_(True)`` say what to use instead.
    """

    def __init__(self, net: str = "alex", version: str = "0.1", lpips: bool = True, spatial: bool = False,
                 *, pretrained: bool = True, pnet_rand: bool = False, pnet_tune: bool = False, use_dropout: bool = True,
                 model_path=None, eval_mode: bool = True, verbose: bool = False,
                 backend: str = "ort", device: str = "cpu", model=None, **scorer_options):
        values = {"pretrained": pretrained, "pnet_rand": pnet_rand, "pnet_tune": pnet_tune, "model_path": model_path,
                  "eval_mode": eval_mode}
        honoured = {"pretrained": True, "pnet_rand": False, "pnet_tune": False, "model_path": None, "eval_mode": True}
        what = {"pretrained": "random linear layers", "pnet_rand": "a random backbone",
                "pnet_tune": "a trainable backbone", "model_path": "linear layers from a file",
                "eval_mode": "training mode"}
        for name, value in values.items():
            if value != honoured[name]:
                raise LpipsError(f"LPIPS({name}={value!r}): {what[name]} is not offered by this inference runtime "
                                 f"(the verified exported graph); use {_FOR_TRAINING}")
        del use_dropout  # dropout acts in training mode only, which this runtime does not have
        self.spatial = spatial
        self._scorer_args = dict(model=model if model is not None else net, version=version, baseline=not lpips,
                                 backend=backend, **scorer_options)
        self.scorer = Scorer(**self._scorer_args, device=device)
        if verbose:
            print(f"Setting up [{'LPIPS' if lpips else 'baseline'}] perceptual loss: {self._scorer_args['model']}, "
                  f"v[{version}], spatial [{'on' if spatial else 'off'}]; {backend} on {device} (inference only)",
                  file=sys.stderr)

    def __call__(self, in0, in1, retPerLayer: bool = False, normalize: bool = False):
        return self.forward(in0, in1, retPerLayer=retPerLayer, normalize=normalize)

    def forward(self, in0, in1, retPerLayer: bool = False, normalize: bool = False):
        if retPerLayer:
            raise LpipsError("retPerLayer is not offered: the exported graph returns only the total "
                             f"(per-layer values: {_FOR_TRAINING})")
        for name, x in (("in0", in0), ("in1", in1)):
            if _needs_grad(x):
                raise LpipsError(f"LPIPS: {name} requires grad, but this inference runtime returns no gradient: "
                                 f"for a differentiable loss use {_FOR_TRAINING}")
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

    # -- torch.nn.Module idioms -----------------------------------------------------------------------

    def eval(self) -> LPIPS:
        return self

    def train(self, mode: bool = True) -> LPIPS:
        if mode:
            raise LpipsError(f"LPIPS.train(): this inference runtime has no training mode; use {_FOR_TRAINING}")
        return self

    def requires_grad_(self, requires_grad: bool = True) -> LPIPS:
        if requires_grad:
            raise LpipsError(f"LPIPS.requires_grad_(True): the exported graph has no trainable parameters; "
                             f"use {_FOR_TRAINING}")
        return self

    def parameters(self, recurse: bool = True):
        """No torch parameters: the weights live in the verified ONNX graph."""
        return iter(())

    def to(self, *args, **kwargs) -> LPIPS:
        """``.to(device)`` reopens the scorer on that device (``cuda``: the backend's GPU path); a dtype other
        than float32 is refused (the precision is the export's: ``precision="fp16"`` with a net name)."""
        device, dtype = kwargs.get("device"), kwargs.get("dtype")
        for arg in args:
            if _is_dtype(arg):
                dtype = arg
            elif hasattr(arg, "device") and hasattr(arg, "dtype"):  # .to(tensor): its device and dtype
                device, dtype = arg.device, arg.dtype
            else:
                device = arg
        if dtype is not None and "float32" not in str(dtype):
            raise LpipsError(f"LPIPS.to({dtype}): the precision is chosen by the export, not by a cast: "
                             "LPIPS(net, precision='fp16') on a GPU, or " + _FOR_TRAINING)
        if device is not None:
            self._reopen(_device_name(device))
        return self

    def cuda(self, device=None) -> LPIPS:
        return self.to("cuda" if device is None else f"cuda:{device}" if isinstance(device, int) else device)

    def cpu(self) -> LPIPS:
        return self.to("cpu")

    def float(self) -> LPIPS:
        return self

    def half(self) -> LPIPS:
        return self.to("float16")

    def _reopen(self, device: str) -> None:
        if device == self.scorer.device:
            return
        scorer = Scorer(**self._scorer_args, device=device)  # may refuse (no GPU): the old one stays open
        self.scorer.close()
        self.scorer = scorer

    def close(self) -> None:
        self.scorer.close()


def _needs_grad(x) -> bool:
    if not getattr(x, "requires_grad", False):
        return False
    torch = sys.modules.get("torch")  # loaded: a tensor came in
    return torch is None or torch.is_grad_enabled()


def _is_dtype(arg) -> bool:
    return type(arg).__name__ == "dtype" or (isinstance(arg, str) and arg.startswith(("float", "bfloat", "half")))


def _device_name(device) -> str:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device`` -> the scorer's device string."""
    name = str(device)
    if name == "cuda:0":
        return "cuda"
    return name


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32) if getattr(x, "dtype", None) != np.float32 else x
