"""The drop-in ``lpips_runtime.LPIPS`` behaves like ``lpips.LPIPS`` for inference code."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import crop, distort, official_lpips, photo, to_unit_nchw
from lpips_runtime import LPIPS
from lpips_runtime.errors import LpipsError


@pytest.fixture(scope="module")
def models_dir(exported):
    exported("vgg")
    exported("alex", spatial=True)
    return exported("alex").parent


def test_same_call_same_result(models_dir, build_module):
    module, _ = build_module("vgg")
    official = official_lpips("vgg", "0.1", True, False, module.features_state_for_official())
    ref = crop(photo("chelsea"), 96, 120)
    x0 = np.concatenate([to_unit_nchw(ref)] * 2)
    x1 = np.concatenate([to_unit_nchw(distort(ref, "jpeg", 0.8)), to_unit_nchw(distort(ref, "blur", 0.5))])
    loss_fn = LPIPS(net="vgg", models_dir=models_dir)
    with torch.no_grad():
        expected = official(torch.from_numpy(x0), torch.from_numpy(x1)).numpy()
    got = loss_fn(x0, x1)
    assert got.shape == expected.shape == (2, 1, 1, 1) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5
    # normalize=True takes [0,1] inputs, as the official forward does
    assert np.abs(loss_fn((x0 + 1) / 2, (x1 + 1) / 2, normalize=True) - expected).max() <= 1e-5
    # torch tensors in -> a torch tensor out, so `loss_fn(a, b).mean().item()` code keeps working
    out = loss_fn(torch.from_numpy(x0), torch.from_numpy(x1))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 1, 1)
    assert abs(out.mean().item() - float(expected.mean())) <= 1e-5


def test_spatial_and_unsupported_options(models_dir):
    loss_fn = LPIPS(net="alex", spatial=True, models_dir=models_dir)
    x = to_unit_nchw(crop(photo("coffee"), 64, 72))
    assert loss_fn(x, -x).shape == (1, 1, 64, 72)
    with pytest.raises(LpipsError, match="retPerLayer is not offered"):
        loss_fn(x, x, retPerLayer=True)


def test_requires_grad_is_refused_naming_the_torch_module(models_dir):
    loss_fn = LPIPS(net="alex", models_dir=models_dir)
    x = torch.from_numpy(to_unit_nchw(crop(photo("coffee"), 48, 56)))
    with pytest.raises(LpipsError) as refused:
        loss_fn(x.clone().requires_grad_(True), x)
    assert str(refused.value) == ("LPIPS: in0 requires grad, but this inference runtime returns no gradient: for a "
                                  "differentiable loss use lpips_runtime.torch.LPIPS (pip install 'lpips-rt[torch]')")
    with pytest.raises(LpipsError, match="in1 requires grad"):
        loss_fn(x, x.clone().requires_grad_(True))
    with torch.no_grad():  # no gradient asked for: scored as usual
        assert float(loss_fn(x.clone().requires_grad_(True), x).max()) == 0.0


def test_official_keywords_and_module_idioms(models_dir, capsys):
    x = to_unit_nchw(crop(photo("coffee"), 48, 56))
    loss_fn = LPIPS(net="alex", verbose=True, pretrained=True, eval_mode=True, use_dropout=False, pnet_rand=False,
                    models_dir=models_dir)
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("Setting up [LPIPS] perceptual loss: alex, v[0.1], spatial [off]")
    assert loss_fn.eval() is loss_fn and loss_fn.to("cpu") is loss_fn and loss_fn.cpu() is loss_fn
    assert loss_fn.to(torch.device("cpu"), torch.float32) is loss_fn and loss_fn.float() is loss_fn
    assert loss_fn.requires_grad_(False) is loss_fn and list(loss_fn.parameters()) == []
    assert loss_fn.train(False) is loss_fn
    assert float(loss_fn(x, -x).max()) > 0
    for call, match in ((loss_fn.train, r"LPIPS.train\(\): .* use lpips_runtime.torch.LPIPS"),
                        (loss_fn.half, r"LPIPS.to\(float16\): the precision is chosen by the export"),
                        (lambda: loss_fn.requires_grad_(True), "no trainable parameters")):
        with pytest.raises(LpipsError, match=match):
            call()
    for name, value in (("pretrained", False), ("pnet_rand", True), ("pnet_tune", True), ("model_path", "x.pth"),
                        ("eval_mode", False)):
        with pytest.raises(LpipsError) as refused:
            LPIPS(net="alex", models_dir=models_dir, **{name: value})
        assert str(refused.value).startswith(f"LPIPS({name}={value!r}): ")
        assert str(refused.value).endswith("use lpips_runtime.torch.LPIPS (pip install 'lpips-rt[torch]')")
