"""Frozen backbone BatchNorm statistics (``freeze_backbone_bn``, ``freeze_backbone`` and the first blocks of
``freeze_backbone_stride``): kept while training and by the BatchNorm recalibration before validation.

The oracle for the recalibration is ``torch.optim.swa_utils.update_bn``: alone when nothing is frozen, and on a copy
whose frozen layers are torchvision's ``FrozenBatchNorm2d`` (not a ``_BatchNorm``, so ``update_bn`` leaves it be)
with the same statistics and affine parameters.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torchvision.ops.misc import FrozenBatchNorm2d

from ssdlite.engine.module import SSDLiteModule, recompute_batchnorm_statistics
from ssdlite.models import build_model


def tiny_detector() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=96)
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # statistics unlike a fresh layer's, so that a reset would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def batches(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(4, 3, 96, 96, generator=generator) * 2 - 1 for _ in range(count)]


def statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items() if "running_" in name}


def with_frozen_batchnorm(model: nn.Module, prefix: str) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers under ``prefix`` are FrozenBatchNorm2d with the same numbers."""
    copied = copy.deepcopy(model)
    for name, module in list(copied.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d) and f"{name}.{child_name}".startswith(prefix):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                frozen.load_state_dict({k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"})
                setattr(module, child_name, frozen)
    return copied


def test_with_nothing_frozen_it_is_update_bn():
    model, oracle = tiny_detector(), tiny_detector()
    recompute_batchnorm_statistics(batches(), model)
    update_bn(batches(), oracle)
    assert not model.training
    for name, value in statistics(oracle).items():
        torch.testing.assert_close(statistics(model)[name], value, msg=name)


def test_frozen_layers_keep_their_statistics_and_normalise_with_them():
    model = tiny_detector()
    before = statistics(model)
    oracle = with_frozen_batchnorm(model, "backbone.")
    frozen = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    recompute_batchnorm_statistics(batches(), model, frozen=frozen)
    update_bn(batches(), oracle)
    after, expected = statistics(model), statistics(oracle)
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert changed and all(not name.startswith("backbone.") for name in changed)
    for name in changed:  # FrozenBatchNorm2d computes eval-mode BatchNorm in another order: rounding differs
        torch.testing.assert_close(after[name], expected[name], rtol=1e-3, atol=1e-3)
    # update_bn itself, which resets the backbone too, gives the later layers other statistics
    plain = tiny_detector()
    update_bn(batches(), plain)
    assert max((statistics(plain)[name] - after[name]).abs().max().item() for name in changed) > 1e-2


FROZEN_FIRST_BLOCKS = 7  # MobileNetV2's blocks up to stride 8: the stem, then 1, 2 and 3 inverted residuals


@pytest.mark.parametrize(("option", "value", "frozen_prefix"), [
    ("freeze_backbone_bn", True, "backbone."),
    ("freeze_backbone", True, "backbone."),
    ("freeze_backbone_stride", 8, tuple(f"backbone.features.{i}." for i in range(FROZEN_FIRST_BLOCKS))),
])
def test_training_keeps_the_frozen_statistics(option, value, frozen_prefix):
    module = SSDLiteModule(arch="ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=96,
                           **{option: value})
    module.train()
    frozen_norms = [m for n, m in module.model.named_modules()
                    if isinstance(m, nn.BatchNorm2d) and f"{n}.".startswith(frozen_prefix)]
    other_norms = [m for n, m in module.model.named_modules()
                   if isinstance(m, nn.BatchNorm2d) and not f"{n}.".startswith(frozen_prefix)]
    assert frozen_norms and not any(m.training for m in frozen_norms)
    assert other_norms and all(m.training for m in other_norms)
    # the recalibration before validation leaves the same layers of the EMA copy alone
    ema_frozen = {id(m) for m in module._frozen_batchnorm(module.ema_model.module)}
    ema_expected = {id(m) for n, m in module.ema_model.module.named_modules()
                    if isinstance(m, nn.BatchNorm2d) and f"{n}.".startswith(frozen_prefix)}
    assert ema_frozen == ema_expected
    before = statistics(module.model)
    images = batches(1)[0]
    boxes = torch.tensor([[[0.2, 0.2, 0.7, 0.8]]]).repeat(4, 1, 1)
    labels = torch.ones(4, 1, dtype=torch.long)
    outputs = module.model(images)
    loss = module.criterion(outputs["cls_logits"], outputs["box_deltas"], module.model.anchors, boxes, labels)["loss"]
    loss.backward()
    after = statistics(module.model)
    for name in after:
        assert torch.equal(after[name], before[name]) == name.startswith(frozen_prefix), name
    for name, parameter in module.model.named_parameters():
        learns = option == "freeze_backbone_bn" or not name.startswith(frozen_prefix)
        assert (parameter.grad is not None) == learns, name
