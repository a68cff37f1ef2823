"""Building blocks: layer layout, BatchNorm hyper-parameters, initialisation, output shapes."""

import torch
from torch import nn

from ssdlite.models.blocks import conv_bn_act, depthwise_separable, extra_block, prediction_block


def _modules_of(block: nn.Module, kind: type) -> list[nn.Module]:
    return [module for module in block.modules() if isinstance(module, kind)]


def test_conv_bn_act_layout_and_batchnorm_hyper_parameters():
    block = conv_bn_act(8, 16, kernel_size=3, stride=2)
    conv, bn, act = block
    assert (
        isinstance(conv, nn.Conv2d) and conv.bias is None and conv.padding == (1, 1) and conv.stride == (2, 2)
    )
    assert isinstance(bn, nn.BatchNorm2d) and bn.eps == 1e-3 and bn.momentum == 0.03
    assert isinstance(act, nn.ReLU6)
    assert block(torch.randn(2, 8, 15, 15)).shape == (2, 16, 8, 8)


def test_conv_bn_act_without_activation_is_linear():
    block = conv_bn_act(4, 4, kernel_size=1, activation=False)
    assert not _modules_of(block, nn.ReLU6)
    nn.init.ones_(block[0].weight)
    with_relu6 = conv_bn_act(4, 4, kernel_size=1)
    nn.init.ones_(with_relu6[0].weight)
    images = torch.full((1, 4, 2, 2), -5.0)
    with torch.no_grad():
        assert torch.all(block.eval()(images) < -19)  # 4 * -5, BatchNorm at its identity initialisation
        assert torch.all(with_relu6.eval()(images) == 0)


def test_convolutions_are_initialised_from_normal_003():
    weights = conv_bn_act(256, 256, kernel_size=3)[0].weight
    assert abs(weights.std().item() - 0.03) < 0.002
    assert abs(weights.mean().item()) < 0.002
    final_conv = prediction_block(64, 24)[1]
    assert torch.count_nonzero(final_conv.bias) == 0


def test_depthwise_separable_is_depthwise_then_pointwise():
    block = depthwise_separable(32, 64, stride=2)
    depthwise, pointwise = _modules_of(block, nn.Conv2d)
    assert depthwise.groups == 32 and depthwise.kernel_size == (3, 3) and depthwise.stride == (2, 2)
    assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == 64
    assert block(torch.randn(1, 32, 14, 14)).shape == (1, 64, 7, 7)


def test_extra_block_halves_then_restores_channels_and_halves_resolution():
    block = extra_block(1280, 512)
    convs = _modules_of(block, nn.Conv2d)
    assert [(c.in_channels, c.out_channels, c.groups, c.stride[0]) for c in convs] == [
        (1280, 256, 1, 1),
        (256, 256, 256, 2),
        (256, 512, 1, 1),
    ]
    assert len(_modules_of(block, nn.BatchNorm2d)) == 3 and len(_modules_of(block, nn.ReLU6)) == 3
    assert block(torch.randn(1, 1280, 5, 5)).shape == (1, 512, 3, 3)


def test_prediction_block_is_depthwise_bn_relu6_then_1x1_with_bias():
    block = prediction_block(96, 6 * 91)
    depthwise, projection = _modules_of(block, nn.Conv2d)
    assert depthwise.groups == 96 and depthwise.bias is None
    assert projection.kernel_size == (1, 1) and projection.bias is not None
    assert len(_modules_of(block, nn.BatchNorm2d)) == 1
    assert block(torch.randn(2, 96, 10, 10)).shape == (2, 546, 10, 10)
