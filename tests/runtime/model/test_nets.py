"""The net table agrees with torchvision's layers and with the official package's slicing."""
from __future__ import annotations

import functools

import pytest
import torch
import torchvision

from lpips_runtime.errors import InputError, LpipsError
from lpips_runtime.model.nets import all_nets, check_version, get_net

NETS = list(all_nets())


@functools.lru_cache(maxsize=None)  # building vgg16 (initialising its classifier too) takes seconds; only read
def _features(net):
    return getattr(torchvision.models, get_net(net).torchvision_builder)(weights=None).features.eval()


def _tap_shapes(net, side):
    spec, features = get_net(net), _features(net)
    shapes, x = [], torch.zeros(1, 3, side, side)
    with torch.no_grad():
        for i, layer in enumerate(features[: spec.taps[-1]]):
            x = layer(x)
            if i + 1 in spec.taps:
                shapes.append(tuple(x.shape))
    return shapes


@pytest.mark.parametrize("net", NETS)
def test_min_side_is_the_smallest_that_works(net):
    spec = get_net(net)
    shapes = _tap_shapes(net, spec.min_side)
    assert [s[1] for s in shapes] == list(spec.channels)
    assert all(s[2] >= 1 and s[3] >= 1 for s in shapes)
    with pytest.raises(RuntimeError):  # one pixel less and torch itself gives up
        _tap_shapes(net, spec.min_side - 1)


@pytest.mark.parametrize("net", NETS)
def test_taps_match_the_official_slices(net):
    import lpips.pretrained_networks as pn

    official = {"alex": pn.alexnet, "vgg": pn.vgg16, "squeeze": pn.squeezenet}[net](requires_grad=False,
                                                                                    pretrained=False)
    ends = [max(int(k) for k in getattr(official, f"slice{i + 1}")._modules) + 1
            for i in range(official.N_slices)]
    assert tuple(ends) == get_net(net).taps


def test_lookup_errors_name_the_choices():
    with pytest.raises(LpipsError, match="alex, vgg, squeeze"):
        get_net("resnet")
    with pytest.raises(LpipsError, match="0.1, 0.0"):
        check_version("0.2")
    with pytest.raises(InputError, match="at least 31x31"):
        get_net("alex").check_size(30, 100)


def _torch_geometry(layer) -> tuple[int, int, int, int]:
    """[kernel, stride, padding, ceil_mode] of a torchvision `features` layer (Fire: its 3x3 expand conv)."""
    if isinstance(layer, torchvision.models.squeezenet.Fire):
        layer = layer.expand3x3
    if isinstance(layer, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
        pair = lambda v: v if isinstance(v, int) else (v[0] if v[0] == v[1] else None)  # noqa: E731
        return (pair(layer.kernel_size), pair(layer.stride), pair(layer.padding),
                int(getattr(layer, "ceil_mode", False)))
    assert isinstance(layer, torch.nn.ReLU), layer
    return (1, 1, 0, 0)


@pytest.mark.parametrize("net", NETS)
def test_geometry_matches_torchvision(net):
    """The layer geometry tiled scoring relies on is torchvision's, and the map sizes derived from it are the
    sizes torch computes (odd sizes, ceil-mode pools included)."""
    from lpips_runtime.core.tiling import tap_sizes

    spec = get_net(net)
    layers = _features(net)[: spec.taps[-1]]
    assert [(g.kernel, g.stride, g.padding, int(g.ceil_mode)) for g in spec.geometry] == \
        [_torch_geometry(layer) for layer in layers]
    for side in (spec.min_side, spec.min_side + 1, 67, 100, 129):
        assert tap_sizes(spec, side) == tuple(s[2] for s in _tap_shapes(net, side))
