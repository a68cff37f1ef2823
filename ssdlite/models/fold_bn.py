"""Folding BatchNorm into the preceding convolution for inference (MobileNets, section 3.1 counts it this way)."""

from __future__ import annotations

import copy
from typing import TypeVar

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def fold_batchnorm(model: ModuleT) -> ModuleT:
    """Returns an eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair folded into one Conv2d with bias.

    A pair is folded when the BatchNorm2d directly follows the Conv2d inside an ``nn.Sequential`` (where module
    order is execution order) -- the case for every block of this package and of torchvision's MobileNets. The
    BatchNorm is replaced by ``nn.Identity``. The folded model computes the same outputs as ``model.eval()``
    (to float rounding) with the running statistics baked into the convolution weights.

    Args:
        model: any module; it is not modified.

    Returns:
        The folded copy, in eval mode.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            _fold_in_sequential(module)
    return folded


def _fold_in_sequential(sequential: nn.Sequential) -> None:
    names = list(sequential._modules)
    for conv_name, bn_name in zip(names, names[1:]):
        conv, bn = sequential._modules[conv_name], sequential._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            if conv.out_channels != bn.num_features:
                continue
            sequential._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
            sequential._modules[bn_name] = nn.Identity()
