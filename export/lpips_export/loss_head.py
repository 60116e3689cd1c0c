"""One LPIPS layer's distance term with a hand-written backward: the training loss's fast head.

``layer_distance(f0, f1, weight)`` is, for raw (un-normalised) features ``f0``, ``f1`` [N,C,h,w] of one tap
and the tap's linear weights [C] (ones for the baseline), what ``LPIPSModule.layer_terms`` computes for
that tap without ``spatial``::

    a = f0 / (sqrt(sum_c f0^2) + eps),  b = f1 / (sqrt(sum_c f1^2) + eps)
    term[n] = mean_hw( sum_c weight[c] * (a - b)[n,c]^2 )          -> [N,1,1,1]

but in fewer passes over the [N,C,h,w] maps, forward and backward, than autograd takes through the
elementwise form, and with almost no fresh [N,C,h,w] memory (benchmarks/loss.py):

* the 1x1 linear layer and the spatial mean commute (both are linear), so the mean of ``(a-b)^2`` is taken
  per channel first (one dot product per (n, c)) and the weights are applied to [N,C] numbers: no
  [N,1,h,w] convolution forward, and no convolution backward that writes a weight-shaped gradient for
  every pixel;
* ``a`` and ``b`` are never stored, nor is ``a - b``: it is one fused expression, computed again in the
  backward from the saved inputs and their [N,1,h,w] norms;
* the backward is the closed form of the chain rule through the normalisation,
  ``df0 = g/s0 - f0 * sum_c(g*f0) / (s0^2 * n0)`` with ``n0 = sqrt(sum_c f0^2)``, ``s0 = n0 + eps``,
  the same expression autograd evaluates through ``div``, ``add``, ``sqrt``, ``sum`` and ``mul``
  (including its NaN where a pixel's features are all zero, as the official's);
* the maps in between (squares, the difference, products) go to a ``Workspace``: buffers kept from one
  call to the next. On the CPU a fresh tensor of a few hundred MB costs as much as five in-place passes
  over one (the pages are faulted in and zeroed at every allocation: 167 ms for 268 MB against 22-35 ms for
  an in-place multiply, 2-vCPU EPYC), and vgg's first tap at 4x512x512 is 268 MB.

Results equal the elementwise form up to float32 rounding (tests/export/test_loss_head.py against the
official package). A backward with ``create_graph=True`` (a gradient penalty) takes the elementwise form
under autograd instead, so second derivatives are right, at the elementwise form's speed.
"""
from __future__ import annotations

import math
import threading

import torch
from lpips_runtime.model.nets import NORM_EPS


class Workspace:
    """Reusable float buffers for the head's intermediate maps: one flat buffer per slot and thread, grown
    to the largest map asked for and viewed at each call's shape. A slot's contents live only within one
    forward or one backward call (nothing saved for the backward points into them), so taps, steps and
    images of any size can share them; separate threads get separate buffers."""

    def __init__(self):
        self._local = threading.local()

    def take(self, slot: int, like: torch.Tensor) -> torch.Tensor:
        """Slot ``slot`` as an uninitialised contiguous tensor of ``like``'s shape, dtype and device."""
        buffers = self._local.__dict__.setdefault("buffers", {})
        numel = math.prod(like.shape)
        flat = buffers.get(slot)
        if flat is None or flat.numel() < numel or flat.dtype != like.dtype or flat.device != like.device:
            flat = buffers[slot] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return flat[:numel].view(like.shape)

    def release(self) -> None:
        """Free this thread's buffers (they are made again when next needed)."""
        self._local.__dict__.pop("buffers", None)

    def __reduce__(self):
        # copy.deepcopy / pickle of a module holding one (an EMA copy, torch.save of the whole module):
        # a new, empty workspace; the buffers are scratch, never state.
        return (Workspace, ())


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    """sum_c x as [N,1,h,w]. A [1,C] x [C,hw] matrix product per image: torch's reduction over the channel
    axis (stride h*w), whether ``sum(dim=1)`` or ``linalg.vector_norm``, is several times slower on the
    CPU than this for LPIPS's shapes (measured on a 2-core AVX2 EPYC)."""
    n, c, h, w = x.shape
    return torch.matmul(x.new_ones(1, c), x.reshape(n, c, h * w)).reshape(n, 1, h, w)


def _norm(f: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """sqrt(sum_c f^2) as [N,1,h,w]; ``scratch`` (f's shape) holds the squares."""
    return _channel_sum(torch.mul(f, f, out=scratch)).sqrt_()


def _difference(f0, f1, s0, s1, out: torch.Tensor) -> torch.Tensor:
    """a - b = f0 / s0 - f1 / s1 into ``out``."""
    return torch.div(f0, s0, out=out).addcdiv_(f1, s1, value=-1)


class _LayerDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, f0, f1, weight, workspace):
        f0, f1 = f0.contiguous(), f1.contiguous()
        scratch = workspace.take(0, f0)
        n0, n1 = _norm(f0, scratch), _norm(f1, scratch)
        diff = _difference(f0, f1, n0 + NORM_EPS, n1 + NORM_EPS, scratch)
        n, c, h, w = diff.shape
        rows = diff.view(n * c, 1, h * w)
        # mean_hw(diff^2) per (n, c): [N,C], one dot product per row (no squared map)
        channel_means = torch.bmm(rows, rows.transpose(1, 2)).view(n, c) / (h * w)
        ctx.save_for_backward(f0, f1, n0, n1, channel_means, weight)
        ctx.workspace = workspace
        return (channel_means @ weight)[:, None, None, None]

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # create_graph=True: the backward itself must be differentiable
            return _differentiable_backward(ctx, grad_out)
        f0, f1, n0, n1, channel_means, weight = ctx.saved_tensors
        g = grad_out.reshape(-1)  # [N]
        grad_f0 = grad_f1 = grad_w = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            workspace = ctx.workspace
            s0, s1 = n0 + NORM_EPS, n1 + NORM_EPS
            diff = _difference(f0, f1, s0, s1, workspace.take(0, f0))
            n, c, h, w = diff.shape
            # d term / d(a - b) = coef * (a - b), coef = 2 w_c g_n / hw: [N,C]
            coef = (2.0 / (h * w)) * g[:, None] * weight[None, :]
            if ctx.needs_input_grad[0]:
                grad_f0 = _through_normalisation(diff, coef, f0, n0, s0, workspace.take(1, f0))
            if ctx.needs_input_grad[1]:
                grad_f1 = _through_normalisation(diff, coef, f1, n1, s1, workspace.take(1, f1)).neg_()
        if ctx.needs_input_grad[2]:
            grad_w = g @ channel_means
        return grad_f0, grad_f1, grad_w, None


def _through_normalisation(diff, coef, f, n, s, scratch) -> torch.Tensor:
    """d loss / d f for ``a = f / s``, ``s = sqrt(sum_c f^2) + eps = n + eps``, given d loss / d a =
    ``coef[:, :, None, None] * diff``: ``grad_a / s - f * sum_c(grad_a * f) / (s^2 n)``. A new tensor."""
    b, c, h, w = diff.shape
    products = torch.mul(diff, f, out=scratch).view(b, c, h * w)
    # sum_c(grad_a * f) = sum_c coef[c] * (diff * f)[c]: a [1,C] x [C,hw] product per image.
    # s^2 * n, as autograd's div (-g f / s^2) and sqrt (1 / (2 n)) backward with the sum's factor 2 give it
    radial = torch.bmm(coef[:, None, :], products).view(b, 1, h, w).div_(s * s * n)
    grad = torch.mul(diff, coef[:, :, None, None]).div_(s)
    return grad.addcmul_(f, radial, value=-1)


def _differentiable_backward(ctx, grad_out):
    """The gradients through the elementwise form under autograd, with a graph (the saved inputs carry
    their history, so second derivatives reach the images)."""
    f0, f1, _, _, _, weight = ctx.saved_tensors
    wanted = [t for t, needed in zip((f0, f1, weight), ctx.needs_input_grad[:3]) if needed]
    a = f0 / (torch.sqrt((f0 * f0).sum(dim=1, keepdim=True)) + NORM_EPS)
    b = f1 / (torch.sqrt((f1 * f1).sum(dim=1, keepdim=True)) + NORM_EPS)
    term = ((a - b) ** 2).mean(dim=(2, 3)) @ weight
    grads = iter(torch.autograd.grad(term, wanted, grad_out.reshape(-1), create_graph=True))
    return (*(next(grads) if needed else None for needed in ctx.needs_input_grad[:3]), None)


def layer_distance(f0: torch.Tensor, f1: torch.Tensor, weight: torch.Tensor,
                   workspace: Workspace | None = None) -> torch.Tensor:
    """One tap's LPIPS term [N,1,1,1] from raw float32 features [N,C,h,w] and linear weights [C]
    (see the module docstring); differentiable once in ``f0``, ``f1`` and ``weight``. ``workspace``: the
    buffers to reuse across calls (a module's own); None: new ones for this call."""
    return _LayerDistance.apply(f0, f1, weight, workspace if workspace is not None else Workspace())
