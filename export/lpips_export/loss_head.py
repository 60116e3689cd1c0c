"""One LPIPS layer's distance term with a hand-written backward: the training loss's fast head.

``layer_distance(f0, f1, weight)`` is, for raw (un-normalised) features ``f0``, ``f1`` [N,C,h,w] of one tap
and the tap's linear weights [C] (ones for the baseline), what ``LPIPSModule.layer_terms`` computes for
that tap without ``spatial``::

    a = f0 / (sqrt(sum_c f0^2) + eps),  b = f1 / (sqrt(sum_c f1^2) + eps)
    term[n] = mean_hw( sum_c weight[c] * (a - b)[n,c]^2 )          -> [N,1,1,1]

but in fewer passes over the [N,C,h,w] maps, forward and backward, than autograd takes through the
elementwise form (the head is a third of a training step's time on a 2-core CPU: benchmarks/loss.py):

* the 1x1 linear layer and the spatial mean commute (both are linear), so the mean of ``(a-b)^2`` is taken
  per channel first and the weights are applied to [N,C] numbers: no [N,1,h,w] convolution forward, and
  no convolution backward that writes a weight-shaped gradient for every pixel;
* ``a`` and ``b`` are never stored: ``a - b`` is one fused expression and is the only map saved;
* the backward is the closed form of the chain rule through the normalisation,
  ``df0 = g/s0 - f0 * sum_c(g*f0) / (s0^2 * n0)`` with ``n0 = sqrt(sum_c f0^2)``, ``s0 = n0 + eps``,
  the same expression autograd evaluates through ``div``, ``add``, ``sqrt``, ``sum`` and ``mul``
  (including its NaN where a pixel's features are all zero, as the official's), in five passes.

Results equal the elementwise form up to float32 rounding (tests/export/test_loss_head.py against the
official package). A backward with ``create_graph=True`` (a gradient penalty) takes the elementwise form
under autograd instead, so second derivatives are right, at the elementwise form's speed.
"""
from __future__ import annotations

import torch
from lpips_runtime.model.nets import NORM_EPS


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    """sum_c x as [N,1,h,w]. A [1,C] x [C,hw] matrix product per image: torch's reduction over the channel
    axis (stride h*w), whether ``sum(dim=1)`` or ``linalg.vector_norm``, is several times slower on the
    CPU than this for LPIPS's shapes (measured on a 2-core AVX2 EPYC)."""
    n, c, h, w = x.shape
    return torch.matmul(x.new_ones(1, c), x.reshape(n, c, h * w)).reshape(n, 1, h, w)


def _norm(f: torch.Tensor) -> torch.Tensor:
    """sqrt(sum_c f^2) as [N,1,h,w]."""
    return _channel_sum(f * f).sqrt_()


class _LayerDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, f0, f1, weight):
        n0, n1 = _norm(f0), _norm(f1)
        s0, s1 = n0 + NORM_EPS, n1 + NORM_EPS
        diff = torch.addcdiv(f0 / s0, f1, s1, value=-1)  # a - b, without b as a map of its own
        hw = diff.shape[2] * diff.shape[3]
        channel_means = (diff * diff).sum(dim=(2, 3)) / hw  # mean_hw(diff^2) per (n, c): [N,C]
        ctx.save_for_backward(f0, f1, diff, n0, n1, channel_means, weight)
        return (channel_means @ weight)[:, None, None, None]

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # create_graph=True: the backward itself must be differentiable
            return _differentiable_backward(ctx, grad_out)
        f0, f1, diff, n0, n1, channel_means, weight = ctx.saved_tensors
        g = grad_out.reshape(-1)  # [N]
        hw = diff.shape[2] * diff.shape[3]
        grad_f0 = grad_f1 = grad_w = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            # d term / d(a - b) = 2 w_c (a - b) / hw, times the incoming gradient
            grad_diff = diff * ((2.0 / hw) * g[:, None] * weight[None, :])[:, :, None, None]
            if ctx.needs_input_grad[0]:
                grad_f0 = _through_normalisation(grad_diff, f0, n0)
            if ctx.needs_input_grad[1]:
                grad_f1 = _through_normalisation(grad_diff, f1, n1).neg_()
        if ctx.needs_input_grad[2]:
            grad_w = g @ channel_means
        return grad_f0, grad_f1, grad_w


def _through_normalisation(grad_a: torch.Tensor, f: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """d loss / d f for ``a = f / (n + eps)``, ``n = sqrt(sum_c f^2)``, given d loss / d a."""
    s = n + NORM_EPS
    # s^2 * n, as autograd's div (-g f / s^2) and sqrt (1 / (2 n)) backward with the sum's factor 2 give it
    radial = _channel_sum(grad_a * f) / (s * s * n)
    return torch.addcmul(grad_a / s, f, radial, value=-1)


def _differentiable_backward(ctx, grad_out):
    """The gradients through the elementwise form under autograd, with a graph (the saved inputs carry
    their history, so second derivatives reach the images)."""
    f0, f1, _, _, _, _, weight = ctx.saved_tensors
    wanted = [t for t, needed in zip((f0, f1, weight), ctx.needs_input_grad) if needed]
    a = f0 / (torch.sqrt((f0 * f0).sum(dim=1, keepdim=True)) + NORM_EPS)
    b = f1 / (torch.sqrt((f1 * f1).sum(dim=1, keepdim=True)) + NORM_EPS)
    term = ((a - b) ** 2).mean(dim=(2, 3)) @ weight
    grads = iter(torch.autograd.grad(term, wanted, grad_out.reshape(-1), create_graph=True))
    return tuple(next(grads) if needed else None for needed in ctx.needs_input_grad)


def layer_distance(f0: torch.Tensor, f1: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One tap's LPIPS term [N,1,1,1] from raw float32 features [N,C,h,w] and linear weights [C]
    (see the module docstring); differentiable once in ``f0``, ``f1`` and ``weight``."""
    return _LayerDistance.apply(f0, f1, weight)
