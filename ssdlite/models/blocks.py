"""Building blocks shared by the MobileNet backbones and the SSDLite head.

Every convolution is followed by BatchNorm with the hyper-parameters of the TensorFlow Object Detection API
configs the MobileNetV2 paper used (eps 1e-3, momentum 0.03 in PyTorch's convention, i.e. decay 0.97) and, unless
said otherwise, ReLU6. New convolutions are initialised from N(0, 0.03) with zero bias, as in those configs
(`truncated_normal_initializer(stddev=0.03)`) and in torchvision's SSDLite.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

BATCHNORM_EPS = 1e-3
TORCHVISION_BATCHNORM_EPS = 1e-5
"""The epsilon of torchvision's ImageNet-trained MobileNetV2 (``nn.BatchNorm2d``'s default), kept for its weights."""
BATCHNORM_MOMENTUM = 0.03
CONV_INIT_STD = 0.03

batch_norm = partial(nn.BatchNorm2d, eps=BATCHNORM_EPS, momentum=BATCHNORM_MOMENTUM)
"""BatchNorm2d factory with the detector's hyper-parameters: ``batch_norm(num_features)``."""


def normal_init(module: nn.Module, *, std: float = CONV_INIT_STD) -> nn.Module:
    """Initialises every Conv2d inside ``module`` from N(0, std) with zero bias, in place.

    Args:
        module: any module; its Conv2d sub-modules are re-initialised.
        std: standard deviation of the weights.

    Returns:
        The same module, for chaining.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: bool = True,
) -> nn.Sequential:
    """Conv2d (no bias, "same" padding) + BatchNorm2d(eps=1e-3, momentum=0.03) + optional ReLU6.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size; padding is ``(kernel_size - 1) // 2``.
        stride: convolution stride.
        groups: convolution groups (``groups == in_channels`` for a depthwise convolution).
        activation: append ReLU6 when True; a linear layer (conv + BN only) when False.

    Returns:
        ``nn.Sequential(conv, bn[, relu6])`` mapping Tensor[B, in_channels, H, W] to
        Tensor[B, out_channels, ceil(H / stride), ceil(W / stride)].
    """
    block = Conv2dNormActivation(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        stride=stride,
        groups=groups,
        norm_layer=batch_norm,
        activation_layer=nn.ReLU6 if activation else None,
    )
    return normal_init(block)


def depthwise_separable(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Sequential:
    """Depthwise separable convolution of MobileNets (Howard et al. 2017, Figure 3).

    A 3x3 depthwise conv + BN + ReLU6 followed by a 1x1 pointwise conv + BN + ReLU6.

    Args:
        in_channels: input channels.
        out_channels: output channels of the pointwise convolution.
        stride: stride of the depthwise convolution.

    Returns:
        ``nn.Sequential(depthwise, pointwise)`` mapping Tensor[B, in_channels, H, W] to
        Tensor[B, out_channels, ceil(H / stride), ceil(W / stride)].
    """
    return nn.Sequential(
        conv_bn_act(in_channels, in_channels, kernel_size=3, stride=stride, groups=in_channels),
        conv_bn_act(in_channels, out_channels, kernel_size=1),
    )


def extra_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """SSDLite extra feature layer (MobileNetV2 paper, section 6.2): halves the resolution.

    1x1 conv to ``out_channels // 2``, 3x3 depthwise conv with stride 2, 1x1 conv to ``out_channels``; each with
    BN + ReLU6. Same layout as torchvision's ``ssdlite._extra_block``.

    Args:
        in_channels: input channels.
        out_channels: output channels.

    Returns:
        Module mapping Tensor[B, in_channels, H, W] to Tensor[B, out_channels, ceil(H / 2), ceil(W / 2)].
    """
    intermediate_channels = out_channels // 2
    return nn.Sequential(
        conv_bn_act(in_channels, intermediate_channels, kernel_size=1),
        conv_bn_act(
            intermediate_channels,
            intermediate_channels,
            kernel_size=3,
            stride=2,
            groups=intermediate_channels,
        ),
        conv_bn_act(intermediate_channels, out_channels, kernel_size=1),
    )


def prediction_block(in_channels: int, out_channels: int, *, kernel_size: int = 3) -> nn.Sequential:
    """SSDLite prediction layer: depthwise conv + BN + ReLU6, then a 1x1 conv with bias (no BN, no activation).

    The "separable convolution" replacing SSD's regular prediction convolutions (MobileNetV2 paper, section 6.2);
    same layout as torchvision's ``ssdlite._prediction_block``.

    Args:
        in_channels: input channels.
        out_channels: predictions per location (boxes per location times values per box).
        kernel_size: kernel size of the depthwise convolution.

    Returns:
        Module mapping Tensor[B, in_channels, H, W] to Tensor[B, out_channels, H, W].
    """
    return nn.Sequential(
        conv_bn_act(in_channels, in_channels, kernel_size=kernel_size, groups=in_channels),
        normal_init(nn.Conv2d(in_channels, out_channels, kernel_size=1)),
    )
