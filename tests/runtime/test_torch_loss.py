"""``lpips_runtime.torch.LPIPS``: the official module's values and gradients (lpips==0.1.4 with the same
backbone tensors), its constructor and module behaviour, and mixed precision that stays finite."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import distort, official_lpips, scene, to_unit_nchw
from lpips_runtime.errors import InputError, LpipsError, WeightsError
from lpips_runtime.torch import LPIPS

VALUE_REL, GRAD_REL = 1e-5, 1e-4  # issue 22's parity limits
# net -> an odd size above its minimum side (small: vgg's backward is the slow one)
ODD_SIZES = {"alex": (67, 91), "squeeze": (45, 59), "vgg": (33, 47)}


@pytest.fixture(scope="module")
def pair_maker():
    """(h, w) -> two [2,3,h,w] batches in [-1,1]: two real photographs against JPEG'd and blurred copies."""

    def make(h, w):
        refs = [scene(h, w, 0), scene(h, w, 2)]
        dists = [distort(refs[0], "jpeg", 0.6, seed=1), distort(refs[1], "blur", 0.5, seed=2)]
        return (torch.from_numpy(np.concatenate([to_unit_nchw(r) for r in refs])),
                torch.from_numpy(np.concatenate([to_unit_nchw(d) for d in dists])))

    return make


_CACHE: dict = {}


def pair_of_modules(net, version="0.1", lpips=True, spatial=False, **kwargs):
    """(ours, official) with the same backbone tensors, cached for the module."""
    key = (net, version, lpips, spatial, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        ours = LPIPS(net=net, version=version, lpips=lpips, spatial=spatial, verbose=False, **kwargs)
        official = official_lpips(net, version, lpips, spatial, ours.core.features_state_for_official())
        _CACHE[key] = ours, official
    return _CACHE[key]


def value_and_grads(model, a, b, **forward_kwargs):
    """The model's output and d(sum of outputs)/d(in0), d/d(in1), in float64 for comparison."""
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    out = model(a, b, **forward_kwargs)
    out.sum().backward()
    return out.detach().double(), a.grad.double(), b.grad.double()


def assert_close(got, expected, rel, what):
    err = float((got - expected).abs().max())
    scale = float(expected.abs().max())
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel} x {scale:.3g}"


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
@pytest.mark.parametrize("version", ["0.1", "0.0"])
def test_value_and_gradient_equal_the_official(net, version, pair_maker):
    ours, official = pair_of_modules(net, version)
    a, b = pair_maker(*ODD_SIZES[net])
    got, expected = value_and_grads(ours, a, b), value_and_grads(official, a, b)
    assert got[0].shape == expected[0].shape == (2, 1, 1, 1)
    assert float(expected[0].min()) > 0.005  # a real distance, not two near-zeros compared
    assert_close(got[0], expected[0], VALUE_REL, f"{net} v{version} value")
    assert_close(got[1], expected[1], GRAD_REL, f"{net} v{version} d/d(in0)")
    assert_close(got[2], expected[2], GRAD_REL, f"{net} v{version} d/d(in1)")


@pytest.mark.parametrize("lpips, spatial", [(False, False), (True, True), (False, True)])
def test_baseline_and_spatial_gradients(lpips, spatial, pair_maker):
    ours, official = pair_of_modules("alex", "0.1", lpips, spatial)
    a, b = pair_maker(63, 75)
    got, expected = value_and_grads(ours, a, b), value_and_grads(official, a, b)
    assert got[0].shape == expected[0].shape == ((2, 1, 63, 75) if spatial else (2, 1, 1, 1))
    for i, what in enumerate(("value", "d/d(in0)", "d/d(in1)")):
        assert_close(got[i], expected[i], VALUE_REL if i == 0 else GRAD_REL, f"lpips={lpips} spatial={spatial} {what}")


def test_per_layer_and_normalize(pair_maker):
    ours, official = pair_of_modules("squeeze")
    a, b = pair_maker(40, 52)
    a01, b01 = (a + 1) / 2, (b + 1) / 2
    with torch.no_grad():
        total, layers = ours(a01, b01, retPerLayer=True, normalize=True)
        expected_total, expected_layers = official(a01, b01, retPerLayer=True, normalize=True)
    assert len(layers) == len(expected_layers) == 7
    assert_close(total.double(), expected_total.double(), VALUE_REL, "total")
    for i, (got, expected) in enumerate(zip(layers, expected_layers)):
        assert got.shape == expected.shape == (2, 1, 1, 1)
        assert_close(got.double(), expected.double(), VALUE_REL, f"layer {i}")


def test_pnet_tune_gradients_reach_the_backbone(pair_maker):
    ours = LPIPS(net="alex", pnet_tune=True, verbose=False)
    official = official_lpips("alex", "0.1", True, False, ours.core.features_state_for_official())
    official.net.requires_grad_(True)
    a, b = pair_maker(48, 64)
    for model in (ours, official):
        model.zero_grad()
        model(a, b).sum().backward()
    got = ours.core.features[3].weight.grad  # the second convolution: torchvision features.3
    expected = dict(official.net.named_modules())["slice2.3"].weight.grad
    assert got is not None and float(got.abs().max()) > 0
    assert_close(got.double(), expected.double(), GRAD_REL, "d/d(features.3.weight)")
    # without pnet_tune the backbone stays frozen, as the official's
    assert not any(p.requires_grad for p in LPIPS(net="alex", verbose=False).core.features.parameters())


def test_trainable_parameters_and_dropout_as_the_official(pair_maker):
    import lpips as official_package

    ours = LPIPS(net="alex", eval_mode=False, verbose=False)
    reference = official_package.LPIPS(net="alex", pnet_rand=True, eval_mode=False, verbose=False)
    trainable = lambda m: sorted(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert trainable(ours) == trainable(reference) and trainable(ours)  # the linear layers, not the backbone
    assert ours.training and ours.core.training
    # train mode: dropout before each linear layer, drawing the same masks as the official for the same seed
    official = official_lpips("alex", "0.1", True, False, ours.core.features_state_for_official())
    official.load_state_dict(reference.state_dict() | {k: v for k, v in official.state_dict().items()
                                                       if not k.startswith("lin")})
    official.train()
    with torch.no_grad():
        for lin, official_lin in zip(ours.core.lins, official.lins):
            official_lin.model[1].weight.copy_(lin.weight)
    a, b = pair_maker(48, 64)
    torch.manual_seed(7)
    got = ours(a, b)
    torch.manual_seed(7)
    expected = official(a, b)
    assert_close(got.detach().double(), expected.detach().double(), VALUE_REL, "train-mode value")
    ours.eval()
    assert not ours.core.training and torch.equal(ours(a, b), ours(a, b))


def test_module_methods(pair_maker):
    ours = LPIPS(net="alex", verbose=False)
    a, b = pair_maker(40, 40)
    assert ours.eval() is ours and ours.to("cpu") is ours and ours.train() is ours and ours.training
    ours.eval()
    assert ours.requires_grad_(False) is ours and not any(p.requires_grad for p in ours.parameters())
    expected = ours(a, b)
    # .to(bfloat16) converts the backbone; the scaling and the head stay float32 and so does the result
    low = LPIPS(net="alex", verbose=False).to(torch.bfloat16)
    assert low.core.features[0].weight.dtype == torch.bfloat16 and low.core.lins[0].weight.dtype == torch.float32
    got = low(a.bfloat16(), b.bfloat16()).detach()
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert float((got - expected).abs().max()) <= 0.05 * float(expected.abs().max())


def test_official_model_path_and_errors(tmp_path, pair_maker):
    from lpips_export.linear_weights import linear_weights_path
    from lpips_runtime.model.nets import get_net

    path = linear_weights_path(get_net("alex"), "0.1")
    a, b = pair_maker(40, 48)
    with torch.no_grad():
        assert torch.equal(LPIPS(model_path=path, verbose=False)(a, b), LPIPS(verbose=False)(a, b))
    wrong = tmp_path / "wrong.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, wrong)
    with pytest.raises(WeightsError, match="expected exactly the keys lin0..lin4"):
        LPIPS(model_path=wrong, verbose=False)
    with pytest.raises(WeightsError, match="no such file"):
        LPIPS(model_path=tmp_path / "absent.pth", verbose=False)
    with pytest.raises(LpipsError, match="unknown net 'resnet'"):
        LPIPS(net="resnet", verbose=False)
    ours = LPIPS(verbose=False)
    with pytest.raises(InputError, match="differ in shape"):
        ours(a, b[:, :, :-1])
    with pytest.raises(InputError, match="below this net's minimum side of 31"):
        ours(a[:, :, :30], b[:, :, :30])
    with pytest.raises(InputError, match="repeat the channel"):
        ours(a[:, :1], b[:, :1])


def test_verbose_goes_to_stderr(capsys):
    LPIPS(net="alex", version="0.0")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Setting up [LPIPS] perceptual loss: trunk [alex], v[0.0], spatial [off]; backbone: ")
    assert "sha256 verified" in err


BF16_REL = 0.02  # documented in docs/loss.md: bf16 autocast vs float32 on the CPU


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_autocast_bf16_stays_finite_and_close(net):
    ours = LPIPS(net=net, verbose=False)
    h, w = 64, 80
    ref = to_unit_nchw(scene(h, w, 1))
    black, white, grey = -np.ones_like(ref), np.ones_like(ref), np.zeros_like(ref)
    x0 = torch.from_numpy(np.concatenate([ref, black, black, grey, ref]))
    x1 = torch.from_numpy(np.concatenate([to_unit_nchw(distort(scene(h, w, 1), "blur", 0.5)), ref, white,
                                          grey, ref]))
    expected = value_and_grads(ours, x0, x1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = value_and_grads(ours, x0, x1)
    assert got[0].dtype == torch.float64  # (converted) and every part finite, flat images included
    for part in got:
        assert torch.isfinite(part).all()
    assert float(got[0][3:].abs().max()) == 0.0  # identical images: exactly 0 in bf16 too
    err = (got[0] - expected[0]).abs().flatten()[:3] / expected[0].abs().flatten()[:3]
    assert float(err.max()) <= BF16_REL, err


def test_import_without_torch_names_the_extra():
    code = ("import sys\nfor m in ('torch', 'torchvision'):\n    sys.modules[m] = None\n"
            "import lpips_runtime\n"
            "try:\n    import lpips_runtime.torch\nexcept ImportError as exc:\n    print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("MissingExtraError lpips_runtime.torch (LPIPS as a differentiable loss) needs the "
                                   "'torch' module: pip install 'lpips-rt[torch]'")
