"""BatchNorm folding: same outputs, no BatchNorm left, MobileNetV1's folded parameter count."""

import torch
from torch import nn

from ssdlite.models import build_model
from ssdlite.models.complexity import count_parameters
from ssdlite.models.fold_bn import fold_batchnorm
from ssdlite.models.mobilenet_v1 import MobileNetV1


def _train_batchnorm_statistics(model: nn.Module, image_size: int) -> None:
    """Non-trivial running statistics and affine parameters, as after training."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.5
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0.0, 0.2, generator=generator)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, image_size, image_size, generator=generator) * 2)


def test_folded_detector_gives_the_same_outputs():
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=96, num_classes=3)
    _train_batchnorm_statistics(model, 96)
    running_var = model.backbone.features[3].conv[1][1].running_var
    assert not torch.allclose(running_var, torch.ones_like(running_var))
    folded = fold_batchnorm(model)
    assert model.training  # the original is untouched
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, actual = model.eval()(images), folded(images)
    for key in ("cls_logits", "box_deltas"):
        assert expected[key].abs().max() > 0.1  # outputs are not trivially small
        torch.testing.assert_close(actual[key], expected[key], atol=1e-4, rtol=0)


def test_folded_mobilenet_v1_has_4221032_parameters_and_same_logits():
    model = MobileNetV1()
    assert count_parameters(model) == 4_231_976
    assert count_parameters(fold_batchnorm(model)) == 4_221_032
    small = MobileNetV1(width_mult=0.25)
    _train_batchnorm_statistics(small, 64)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(small)(images), small.eval()(images), atol=1e-4, rtol=0)
