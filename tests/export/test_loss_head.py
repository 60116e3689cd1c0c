"""``lpips_export.loss_head``: the training loss's fused head (``lpips_runtime.torch.LPIPS``'s default) gives the
official package's values and gradients (lpips==0.1.4 with the same backbone tensors) on real photographs at odd
sizes, for each net: d/d(in0), d/d(in1) and d/d(linear weights), per-layer terms, the baseline; and its
reused work buffers (``Workspace``) change nothing across sizes, threads and copies of the module."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import distort, official_lpips, results_of_threads, scene, to_unit_nchw
from lpips_runtime.torch import LPIPS

VALUE_REL, GRAD_REL = 1e-5, 1e-4  # issue 22's parity limits
ODD_SIZES = {"alex": (67, 91), "squeeze": (45, 59), "vgg": (33, 47)}


def photographs(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two [2,3,h,w] batches in [-1,1], NCHW-contiguous as a training loop's tensors are: two real
    photographs against JPEG'd and noisy copies."""
    refs = [scene(h, w, 3), scene(h, w, 5)]
    outs = [distort(refs[0], "jpeg", 0.7, seed=3), distort(refs[1], "noise", 0.5, seed=4)]
    batch = lambda imgs: torch.from_numpy(np.ascontiguousarray(  # noqa: E731
        np.concatenate([to_unit_nchw(x) for x in imgs])))
    return batch(outs), batch(refs)


def models(net: str, lpips: bool = True):
    """(ours with the fused head, the official) sharing the backbone; the official's linear layers trainable,
    as a user's ``lpips.LPIPS`` is."""
    ours = LPIPS(net=net, lpips=lpips, verbose=False)
    assert ours._fused_head_applies()
    official = official_lpips(net, "0.1", lpips, False, ours.core.features_state_for_official())
    if lpips:
        official.lins.requires_grad_(True)
    return ours, official


def run(model, a, b, grad_b: bool, **kwargs):
    model.zero_grad()
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(grad_b)
    out = model(a, b, **kwargs)
    total = out[0] if isinstance(out, tuple) else out
    (total * torch.tensor([1.0, 0.5])[:, None, None, None]).sum().backward()  # unequal weights per pair
    return out, a.grad, b.grad


def linear_grads(model) -> list[torch.Tensor]:
    lins = model.core.lins if isinstance(model, LPIPS) else [lin.model[1] for lin in model.lins]
    return [lin.weight.grad.reshape(-1) for lin in lins]


def assert_close(got, expected, rel, what):
    got, expected = got.detach().double(), expected.detach().double()
    assert got.shape == expected.shape, what
    err, scale = float((got - expected).abs().max()), float(expected.abs().max())
    assert scale > 0 and err <= rel * scale, f"{what}: max error {err:.3g} > {rel} x {scale:.3g}"


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
def test_fused_head_equals_the_official(net):
    ours, official = models(net)
    a, b = photographs(*ODD_SIZES[net])
    got, expected = run(ours, a, b, grad_b=True), run(official, a, b, grad_b=True)
    assert float(expected[0].detach().min()) > 0.005  # real distances
    assert_close(got[0], expected[0], VALUE_REL, f"{net} value")
    assert_close(got[1], expected[1], GRAD_REL, f"{net} d/d(in0)")
    assert_close(got[2], expected[2], GRAD_REL, f"{net} d/d(in1)")
    for i, (g, e) in enumerate(zip(linear_grads(ours), linear_grads(official))):
        assert_close(g, e, GRAD_REL, f"{net} d/d(lin{i})")


def test_training_step_target_without_grad_and_per_layer_terms():
    """The usual step (the target does not require grad: its features are computed without autograd) with
    ``retPerLayer``: the total, each layer's term and d/d(output) as the official's."""
    ours, official = models("alex")
    a, b = photographs(71, 57)
    got, expected = run(ours, a, b, grad_b=False, retPerLayer=True), run(official, a, b, grad_b=False,
                                                                         retPerLayer=True)
    assert got[2] is None and expected[2] is None
    assert_close(got[0][0], expected[0][0], VALUE_REL, "total")
    assert len(got[0][1]) == len(expected[0][1]) == 5
    for i, (g, e) in enumerate(zip(got[0][1], expected[0][1])):
        assert_close(g, e, VALUE_REL, f"layer {i}")
    assert_close(got[1], expected[1], GRAD_REL, "d/d(output)")


def test_baseline_through_the_fused_head():
    ours, official = models("alex", lpips=False)
    a, b = photographs(45, 63)
    got, expected = run(ours, a, b, grad_b=True), run(official, a, b, grad_b=True)
    for i, what in enumerate(("value", "d/d(in0)", "d/d(in1)")):
        assert_close(got[i], expected[i], VALUE_REL if i == 0 else GRAD_REL, f"baseline {what}")


def test_second_derivative_as_the_official():
    """A gradient penalty (``create_graph=True``) through the fused head: its hand-written backward steps
    aside for the elementwise form under autograd, so the second derivative is the official's."""
    ours, official = models("alex")
    a, b = photographs(40, 44)

    def penalty(model):
        x = a.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x, b).sum(), x, create_graph=True)
        (second,) = torch.autograd.grad(grad.square().sum(), x)
        return second

    assert_close(penalty(ours), penalty(official), GRAD_REL, "second derivative")


def test_reused_buffers_change_nothing_across_sizes_threads_and_copies():
    """One module's workspace serves steps of several sizes (large, small, large again), several threads at
    once and deep copies: every gradient equals a fresh module's (bit for bit: the same operations)."""
    import copy

    # Parameters frozen: threads only read the module (concurrent zero_grad and accumulation into shared
    # parameter gradients would race in torch itself); the gradients compared are the images'.
    ours = LPIPS(net="alex", verbose=False).requires_grad_(False)
    jobs = [photographs(*size) for size in ((97, 131), (41, 37), (97, 131), (64, 48))]

    def step(model, a, b):
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        (model(a, b) * torch.tensor([1.0, 0.5])[:, None, None, None]).sum().backward()
        return a.grad, b.grad

    expected = [step(LPIPS(net="alex", verbose=False), a, b) for a, b in jobs]  # a fresh module per step
    serial = [step(ours, a, b) for a, b in jobs]
    threaded = results_of_threads(lambda a, b: step(ours, a, b), jobs * 2, threads=4)
    copied = [step(copy.deepcopy(ours), a, b) for a, b in jobs]
    ours.release_buffers()
    released = [step(ours, a, b) for a, b in jobs[:1]]
    for got in (serial, threaded[:4], threaded[4:], copied, released):
        for (ga, gb), (ea, eb) in zip(got, expected):
            assert torch.equal(ga, ea) and torch.equal(gb, eb)
