"""MobileNetV1 (Howard et al. 2017, "MobileNets", Table 1): classifier and SSDLite feature taps.

Table 1 body: a full 3x3 convolution with stride 2 and 32 filters, 13 depthwise separable blocks, global average
pooling and a fully connected layer. The width multiplier alpha thins every layer (section 3.3); the resolution
multiplier is simply the input size, any size works. ``shallow=True`` removes the five 14x14x512 separable blocks
("Shallow MobileNet", Table 4).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from .blocks import conv_bn_act, depthwise_separable
from .checkpoints import read_state_dict
from .weights import check_width_mult, load_weights, strip_prefix

STEM_CHANNELS = 32
"""Filters of the first full convolution (Table 1: Conv / s2, 3x3x3x32)."""

SEPARABLE_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
"""(pointwise output channels, depthwise stride) of the 13 depthwise separable blocks of Table 1.

Table 1 prints "Conv dw / s2" for the last block but its input and output are both 7x7; the reference
implementations (TF-slim's mobilenet_v1.py) use stride 1 there, as here.
"""

SHALLOW_REMOVED_BLOCKS = range(6, 11)
"""Indices into SEPARABLE_BLOCKS of the five 14x14x512 blocks that Shallow MobileNet removes."""

MIN_DEPTH = 8
"""Smallest number of channels a layer keeps under a width multiplier (TF-slim's ``min_depth``)."""


def scaled_channels(channels: int, width_mult: float) -> int:
    """Channels of a layer under width multiplier alpha: ``max(8, int(channels * alpha))`` as in TF-slim."""
    return max(MIN_DEPTH, int(channels * width_mult))


def separable_blocks(*, shallow: bool) -> list[tuple[int, int]]:
    """The (channels, stride) list of the separable blocks, without the five 14x14x512 ones when ``shallow``."""
    return [
        block
        for index, block in enumerate(SEPARABLE_BLOCKS)
        if not (shallow and index in SHALLOW_REMOVED_BLOCKS)
    ]


def mobilenet_v1_features(*, width_mult: float = 1.0, shallow: bool = False) -> nn.Sequential:
    """The convolutional body of Table 1: full conv + depthwise separable blocks, stride 32.

    Args:
        width_mult: width multiplier alpha (> 0).
        shallow: drop the five 14x14x512 separable blocks.

    Returns:
        ``nn.Sequential`` whose element 0 is the stem and element i >= 1 the i-th separable block; it maps
        Tensor[B, 3, H, W] to Tensor[B, 1024 * alpha, ceil(H / 32), ceil(W / 32)].
    """
    width_mult = check_width_mult(width_mult)
    in_channels = scaled_channels(STEM_CHANNELS, width_mult)
    layers: list[nn.Module] = [conv_bn_act(3, in_channels, kernel_size=3, stride=2)]
    for channels, stride in separable_blocks(shallow=shallow):
        out_channels = scaled_channels(channels, width_mult)
        layers.append(depthwise_separable(in_channels, out_channels, stride=stride))
        in_channels = out_channels
    return nn.Sequential(*layers)


class MobileNetV1(nn.Module):
    """MobileNetV1 classifier (Table 1): features, global average pooling, fully connected layer.

    At 224x224 with alpha 1 it has 4,231,976 parameters (BatchNorm scale and shift included; 4,221,032 with
    BatchNorm folded into the convolutions) and 569M multiply-adds.

    Args:
        width_mult: width multiplier alpha (> 0).
        num_classes: outputs of the fully connected layer.
        shallow: drop the five 14x14x512 separable blocks.
    """

    def __init__(self, *, width_mult: float = 1.0, num_classes: int = 1000, shallow: bool = False) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.features = mobilenet_v1_features(width_mult=width_mult, shallow=shallow)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.features[-1][-1].out_channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Maps images Tensor[B, 3, H, W] to logits Tensor[B, num_classes]."""
        features = self.avgpool(self.features(images))
        return self.classifier(features.flatten(1))


class MobileNetV1Backbone(nn.Module):
    """MobileNetV1 feature taps for SSDLite, as TF's ``ssd_mobilenet_v1`` feature extractor.

    Stride 16: output of the last 14x14x512 separable block (TF-slim ``Conv2d_11_pointwise``; with ``shallow``
    the block that first reaches 512 channels). Stride 32: output of the final 1024-channel pointwise conv
    (``Conv2d_13_pointwise``). Parameter names equal those of :class:`MobileNetV1`'s ``features``, so a
    classifier's state dict loads into it.

    Args:
        width_mult: width multiplier alpha (> 0).
        shallow: drop the five 14x14x512 separable blocks.
        pretrained: None (initialise from N(0, 0.03)) or a path to a local ``.pth`` holding a
            :class:`MobileNetV1` (classifier) or MobileNetV1Backbone state dict. There are no published
            ImageNet weights in this layout, so "imagenet" is not accepted.

    Attributes:
        out_channels (list[int]): channels of the two taps, [512 * alpha, 1024 * alpha].
    """

    def __init__(
        self, *, width_mult: float = 1.0, shallow: bool = False, pretrained: str | Path | None = None
    ) -> None:
        super().__init__()
        self.width_mult = check_width_mult(width_mult)
        self.shallow = bool(shallow)
        self.features = mobilenet_v1_features(width_mult=width_mult, shallow=shallow)
        # the last two blocks (1024 channels, stride 2 then 1) run at stride 32; the ones before end at stride 16
        self.stride32_start = len(self.features) - 2
        self.out_channels = [
            self.features[self.stride32_start - 1][-1].out_channels,
            self.features[-1][-1].out_channels,
        ]
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str | Path) -> None:
        """Loads a local MobileNetV1 classifier or backbone state dict (``weights_only``); ``classifier.*`` is dropped."""
        if str(path) == "imagenet":
            raise ValueError(
                "pretrained='imagenet' is not available for MobileNetV1 (torchvision publishes no MobileNetV1 "
                "weights); pass a local file pretrained=/path/to/weights.pth holding a MobileNetV1 state dict, "
                "or None"
            )
        state_dict = read_state_dict(path)
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("classifier.")}
        if not any(key.startswith("features.") for key in state_dict) and any(
            key.startswith("backbone.") for key in state_dict
        ):
            state_dict = strip_prefix(state_dict, "backbone.")
        load_weights(
            self,
            state_dict,
            source=f"file {str(path)!r}",
            expected=f"MobileNetV1 backbone (width_mult={self.width_mult}, shallow={self.shallow})",
        )

    def forward(self, images: Tensor) -> list[Tensor]:
        """Maps images Tensor[B, 3, H, W] to [Tensor[B, 512a, H/16, W/16], Tensor[B, 1024a, H/32, W/32]].

        Sizes are rounded up (``ceil``), as "same" padding does.
        """
        stride16 = self.features[: self.stride32_start](images)
        stride32 = self.features[self.stride32_start :](stride16)
        return [stride16, stride32]
