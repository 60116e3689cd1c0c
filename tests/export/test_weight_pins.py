"""The extra pins the runtime checks exports against (models/nets.toml: backbone_digest_fp16, linear_digest)
are the verified weights' own digests, and the runtime reads backbone tensors in torchvision's order."""
from __future__ import annotations

import random

import pytest
import torch
import torchvision

from lpips_export.digests import tensor_digest
from lpips_export.linear_weights import load_linear
from lpips_export.module import FP32_STEM_LAYERS
from lpips_runtime.model.modelweights import _backbone_order
from lpips_runtime.model.nets import NET_NAMES, VERSIONS, get_net


@pytest.mark.parametrize("net", NET_NAMES)
def test_fp16_backbone_pin_is_the_rounded_verified_backbone(net, build_module):
    module, _ = build_module(net, "0.1", True, False)  # weights verified against backbone_digest on load
    state = module.features_state_for_official()
    rounded = [(k, v if int(k.split(".")[1]) < FP32_STEM_LAYERS else v.to(torch.float16).to(torch.float32))
               for k, v in state.items()]
    assert tensor_digest(rounded) == get_net(net).backbone_digest_fp16


@pytest.mark.parametrize("net", NET_NAMES)
@pytest.mark.parametrize("version", VERSIONS)
def test_linear_pin_is_the_official_state_dict(net, version):
    state, _ = load_linear(get_net(net), version)  # the official file, sha256-checked
    assert tensor_digest(state.items()) == get_net(net).linear_digest[version]


@pytest.mark.parametrize("net", NET_NAMES)
def test_backbone_order_is_torchvisions(net):
    spec = get_net(net)
    keys = [f"features.{k}" for k in getattr(torchvision.models, spec.torchvision_builder)(weights=None)
            .features.state_dict()]
    shuffled = random.Random(0).sample(keys, len(keys))
    assert sorted(shuffled, key=_backbone_order) == keys
