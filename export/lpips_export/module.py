"""The LPIPS graph as one torch module, shared by the exporter and the runtime's torch backend.

Numerics follow the official ``lpips`` 0.1.4 forward exactly (same scaling, same eps placement:
``x / (sqrt(sum_c x^2) + 1e-10)``), but every operation is written so that the traced ONNX graph
uses only operators that every ONNX consumer understands with dynamic batch/height/width:

* the channel sums (feature norm, baseline sum) are 1x1 convolutions with unit weights, not
  ReduceSum (whose axes moved from attribute to input at opset 13 and which OpenCV 4.6 rejects);
* spatial means are GlobalAveragePool;
* the v0.1 shift is a depthwise 1x1 convolution's bias (see ``prepare``);
* the two images share one backbone pass (concatenated on the batch axis) and are separated again
  by an equal two-way Split, which needs no run-time shape arithmetic.

``portable=False`` writes the "natural" form instead (ReduceSum over channels, ReduceMean for spatial
means, a plain Sub for the shift). It exists so that benchmarks/cpu.py can measure both forms on ONNX
Runtime; the measured choice is recorded in benchmarks/README.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lpips_runtime.errors import WeightsError
from lpips_runtime.model.nets import NORM_EPS, V01_SCALE, V01_SHIFT, NetSpec, check_version

from lpips_runtime.model.pixel_metrics import parse_metrics

from .graph_ops import split_equal
from .pixel_metrics import PixelMetrics, check_window


@dataclass(frozen=True)
class FrameFormat:
    """How a uint8 frame input is laid out; ``None`` in place of this means float32 NCHW RGB [-1,1]."""

    layout: str = "nhwc"  # "nhwc" (as cv2.imread gives, batched) or "nchw"
    channels: str = "bgr"  # "bgr" (OpenCV's order) or "rgb"

    def __post_init__(self):
        if self.layout not in ("nhwc", "nchw"):
            raise ValueError(f"layout must be nhwc or nchw, not {self.layout!r}")
        if self.channels not in ("bgr", "rgb"):
            raise ValueError(f"channels must be bgr or rgb, not {self.channels!r}")


def split_pair(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch of 2N into its two halves; exported as one equal ONNX Split (no Shape ops)."""
    return split_equal(x, 2, dim=0)


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Only when needed: a same-dtype .to() would still be traced as a Cast node.
    return x if x.dtype == dtype else x.to(dtype)


def frames_to_rgb(frames: torch.Tensor, fmt: FrameFormat) -> torch.Tensor:
    """uint8 frames laid out as ``fmt`` -> float32 [N,3,H,W] RGB holding the same values (0..255)."""
    # Cast first: TensorRT takes uint8 only as a network input that is cast to float straight away.
    x = frames.to(torch.float32)
    if fmt.layout == "nhwc":
        x = x.permute(0, 3, 1, 2)
    if fmt.channels == "bgr":
        x = x[:, [2, 1, 0]]
    return x


def rgb_to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """float32 8-bit values (0..255) -> [-1,1] (the official im2tensor scaling).

    Bit-identical to the runtime's CPU preprocessing (``images.rgb_to_unit_nchw``), so a frame graph
    and a float graph fed by the runtime give the same distances.
    """
    # (x - 127.5) / 127.5 in float32 equals float32(x / 127.5 - 1) computed in float64 (the official
    # im2tensor and the runtime's lookup table) for all 256 values; x / 127.5 - 1 in float32 differs
    # by one ulp for 128 of them.
    return (x - 127.5) / 127.5


def frames_to_unit_range(frames: torch.Tensor, fmt: FrameFormat) -> torch.Tensor:
    """uint8 frames laid out as ``fmt`` -> float32 [N,3,H,W] RGB in [-1,1] (the official im2tensor scaling)."""
    return rgb_to_unit_range(frames_to_rgb(frames, fmt))


def unit_range_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """float32 [-1,1] -> the 8-bit values it was made from, as float32 0..255 (``round(x * 127.5 + 127.5)``).

    Exact for inputs made from 8-bit values (see ``lpips_runtime.model.pixel_metrics``); other inputs are
    quantised to the nearest of the 256 levels.
    """
    return torch.round(x * 127.5 + 127.5)


# The stem every torchvision backbone here starts with: Conv2d(3, 64, ...) and its ReLU.
FP32_STEM_LAYERS = 2


class LPIPSModule(nn.Module):
    """LPIPS distance between two image batches.

    Inputs ``img0``, ``img1``: float32 [N,3,H,W] RGB in [-1,1] (or uint8 frames when built with a
    ``frame_format``), H and W at least ``net.min_side``. Output: float32 distances [N], or with
    ``spatial=True`` the per-pixel map [N,1,H,W] whose spatial mean approximates the distance
    (the per-layer maps are bilinearly upsampled to HxW and summed, as in the official package).
    With ``metrics`` (names of ``lpips_runtime.model.pixel_metrics.METRICS``), the output is a tuple: that
    one, then one float32 [N] per metric (computed in float32 on the input's 8-bit values, whatever
    the trunk's precision: ``pixel_metrics.PixelMetrics``).

    ``trunk_dtype=torch.float16`` gives the mixed-precision graph: the input scaling and the stem
    (the first convolution and its ReLU, ``FP32_STEM_LAYERS``) run in float32, the rest of the
    backbone in float16, and every tapped feature map is cast back to float32 before the head
    (normalisation, squared difference, linear layers, spatial mean, layer sum), whose
    ``x / (sqrt(sum_c x^2) + 1e-10)`` would otherwise divide 0 by 0 (the eps is 0 in float16) or
    zero features whose ``sum_c x^2`` passes 65504.

    Why the stem stays float32: its filters have only 3 input channels (27 weights for 3x3), so
    float16 rounding of those weights and of the input does not average out, and it is the largest
    single error source: with float16 activations (emulated) on uniform images it accounts for
    nine tenths of vgg's error (2.5e-3 -> 2.5e-4 relative when kept in float32). It is a small share
    of the backbone's work (3 input channels).

    ``random_init=False``: the backbone starts as zeros, for a caller that loads its weights next
    (``load_backbone``); True gives torchvision's random initialisation.
    """

    # The dtype features are cast to at each tap, i.e. the head's dtype. Always float32 in exports:
    # float16 here (with the module converted by ``precision.wholesale_fp16``) only reproduces a
    # wholesale half conversion for comparisons (eps underflows to 0, sum_c x^2 overflows).
    head_dtype: torch.dtype = torch.float32
    # Leading ``features`` layers kept in float32 when the trunk is float16 (see the class docstring);
    # 0 for a float32 trunk and for a wholesale conversion.
    stem_layers: int = 0
    # Dropout probability applied to each layer's squared difference before its linear layer, in training
    # mode only (the official ``use_dropout=True`` lin layers: ``lpips_runtime.torch.LPIPS`` sets 0.5).
    # 0 everywhere else: an eval-mode module, and so every traced export, never sees it.
    lin_dropout: float = 0.0

    def __init__(
        self,
        net: NetSpec,
        version: str = "0.1",
        calibrated: bool = True,
        spatial: bool = False,
        trunk_dtype: torch.dtype = torch.float32,
        frame_format: FrameFormat | None = None,
        portable: bool = True,
        metrics: tuple[str, ...] = (),
        random_init: bool = True,
    ):
        super().__init__()
        self.portable = portable
        self.net = net
        self.version = check_version(version)
        self.calibrated = calibrated
        self.spatial = spatial
        self.trunk_dtype = trunk_dtype
        self.frame_format = frame_format
        self.register_buffer("shift", torch.tensor(V01_SHIFT, dtype=torch.float32)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(V01_SCALE, dtype=torch.float32)[None, :, None, None])
        self.register_buffer("unit_depthwise", torch.ones(3, 1, 1, 1), persistent=False)
        builder = getattr(torchvision.models, net.torchvision_builder)
        # Only the layers up to the last tap: trailing pools would be dead weight in the graph.
        if random_init:  # torchvision's initialisation (the official pnet_rand), or weights loaded next anyway
            self.features = builder(weights=None).features[: net.taps[-1]]
        else:
            # Built without initialising anything: torchvision would draw random values for every layer,
            # the classifier's 100M+ parameters included (vgg: 2.4 s), all of them overwritten or unused.
            with torch.device("meta"):
                trunk = builder(weights=None).features[: net.taps[-1]]
            self.features = trunk.to_empty(device="cpu")
            for param in self.features.parameters():
                param.data.zero_()  # zeros, not leftover memory, until load_backbone fills them
        self.features.to(trunk_dtype)
        if trunk_dtype != torch.float32:
            self.stem_layers = FP32_STEM_LAYERS
            self.features[:FP32_STEM_LAYERS].to(torch.float32)
        self._tap_after = {end - 1 for end in net.taps}
        # Unit weights that turn a channel sum into a 1x1 convolution (see the module docstring).
        for i, c in enumerate(net.channels):
            self.register_buffer(f"ones{i}", torch.ones(1, c, 1, 1), persistent=False)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in net.channels) if calibrated else None
        self.metrics = parse_metrics(metrics)
        # Only when asked for: a graph without metrics stays exactly the graph it was before they existed.
        self.pixel_metrics = PixelMetrics(self.metrics, portable) if self.metrics else None
        if self.metrics:
            check_window(net.min_side)
        self.eval().requires_grad_(False)

    # -- weights ---------------------------------------------------------------------------

    def load_backbone(self, features_state: dict[str, torch.Tensor]) -> None:
        """Load torchvision ``features.*`` tensors strictly (keys beyond the last tap are ignored)."""
        kept = {k[len("features."):]: v for k, v in features_state.items()
                if int(k.split(".")[1]) < self.net.taps[-1]}
        # load_state_dict copies into each parameter in its own dtype (float32 stem, float16 rest).
        self.features.load_state_dict(kept, strict=True)

    def load_linear(self, official_state: dict[str, torch.Tensor]) -> None:
        """Load the official linear layers (keys ``lin{i}.model.1.weight``) strictly."""
        if self.lins is None:
            raise ValueError("a baseline (uncalibrated) LPIPS has no linear layers to load")
        expected = {f"lin{i}.model.1.weight" for i in range(self.net.n_layers)}
        if set(official_state) != expected:
            missing, extra = sorted(expected - set(official_state)), sorted(set(official_state) - expected)
            raise WeightsError(f"linear-layer keys differ from the official ones: missing {missing}, "
                               f"unexpected {extra}")
        self.lins.load_state_dict(
            {f"{i}.weight": official_state[f"lin{i}.model.1.weight"] for i in range(self.net.n_layers)},
            strict=True,
        )

    def features_state_for_official(self) -> dict[str, torch.Tensor]:
        """This module's backbone as torchvision ``features.*`` float32 tensors (for loading elsewhere)."""
        return {f"features.{k}": v.to(torch.float32) for k, v in self.features.state_dict().items()}

    # -- graph -----------------------------------------------------------------------------

    def prepare(self, img: torch.Tensor, rgb: torch.Tensor | None = None) -> torch.Tensor:
        """Graph input -> float32 [N,3,H,W] in the backbone's input space (v0.1 scaling applied).
        ``rgb``: a frame input's values as ``frames_to_rgb`` gives them, when already computed."""
        if self.frame_format is not None:
            img = rgb_to_unit_range(rgb if rgb is not None else frames_to_rgb(img, self.frame_format))
        img = _cast(img, self.head_dtype)
        if self.version == "0.1":
            # (img - shift) / scale, as the official ScalingLayer. The subtraction is a depthwise 1x1
            # convolution with unit weights and bias -shift (bit-identical to x - shift) because
            # OpenCV 4.6 mis-broadcasts a per-channel constant Add/Sub over batches larger than 1.
            if self.portable:
                img = F.conv2d(img, self.unit_depthwise, bias=-self.shift.flatten(), groups=3) / self.scale
            else:
                img = (img - self.shift) / self.scale
        return img

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Prepared images [B,3,H,W] -> unit-normalised float32 features of every tap, [B,C_l,h_l,w_l]."""
        return self.taps(x, self._normalise)

    def taps(self, x: torch.Tensor, then=None) -> list[torch.Tensor]:
        """Prepared images [B,3,H,W] -> every tap's features in the head's dtype, [B,C_l,h_l,w_l], raw or,
        with ``then(features, layer)``, as it returns them (called at each tap, so a traced graph keeps the
        head's work next to its tap)."""
        h = x
        feats = []
        for i, layer in enumerate(self.features):
            if i == self.stem_layers:
                h = _cast(h, self.trunk_dtype)
            h = layer(h)
            if i in self._tap_after:
                tap = _cast(h, self.head_dtype)
                feats.append(then(tap, len(feats)) if then is not None else tap)
        return feats

    def _channel_sum(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        if not self.portable:
            return x.sum(dim=1, keepdim=True)
        return F.conv2d(x, getattr(self, f"ones{layer}"))

    def _spatial_mean(self, x: torch.Tensor) -> torch.Tensor:
        # GlobalAveragePool in the portable form, ReduceMean in the natural one.
        return F.adaptive_avg_pool2d(x, 1) if self.portable else x.mean(dim=(2, 3), keepdim=True)

    def _normalise(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        norm = torch.sqrt(self._channel_sum(x * x, layer))
        return x / (norm + NORM_EPS)

    def layer_terms(self, feats0: list[torch.Tensor], feats1: list[torch.Tensor], out_hw=None) -> list[torch.Tensor]:
        """Each tap's share of the distance: [N,1,1,1] spatial means, or with ``out_hw`` maps [N,1,H,W]
        bilinearly upsampled to that size (the official ``retPerLayer`` list)."""
        terms = []
        for layer, (f0, f1) in enumerate(zip(feats0, feats1)):
            diff = f0 - f1
            diff = diff * diff
            if self.lins is not None and self.lin_dropout and self.training:
                diff = F.dropout(diff, self.lin_dropout, training=True)
            per_pixel = self.lins[layer](diff) if self.lins is not None else self._channel_sum(diff, layer)
            if out_hw is not None:
                terms.append(F.interpolate(per_pixel, size=out_hw, mode="bilinear", align_corners=False))
            else:
                terms.append(self._spatial_mean(per_pixel))
        return terms

    @staticmethod
    def sum_terms(terms: list[torch.Tensor]) -> torch.Tensor:
        """The layer terms added in tap order (the official ``val += res[l]`` order)."""
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def head(self, feats0: list[torch.Tensor], feats1: list[torch.Tensor], out_hw=None) -> torch.Tensor:
        """Two feature sets (as ``encode`` returns) -> distances [N] or, with ``out_hw``, a map [N,1,H,W]."""
        total = self.sum_terms(self.layer_terms(feats0, feats1, out_hw))
        return total if out_hw is not None else total.reshape(-1)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor):
        if self.frame_format is not None:
            # Each uint8 frame is cast (and laid out) before the two are joined: TensorRT's Concat takes
            # no uint8 input (onnx-tensorrt and TensorRT-RTX both refuse the graph), and casting first
            # computes exactly the same values.
            rgb = torch.cat([frames_to_rgb(img0, self.frame_format), frames_to_rgb(img1, self.frame_format)], dim=0)
            both = rgb
        else:
            both = torch.cat([img0, img1], dim=0)
            rgb = unit_range_to_rgb(both) if self.metrics else None  # 8-bit values, recovered from [-1,1]
        both = self.prepare(both, rgb)
        pairs = [split_pair(f) for f in self.encode(both)]
        out_hw = both.shape[2:] if self.spatial else None
        lpips = self.head([p[0] for p in pairs], [p[1] for p in pairs], out_hw)
        if not self.metrics:
            return lpips
        return (lpips, *self.pixel_metrics(*split_pair(rgb)))
