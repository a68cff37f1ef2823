"""MobileNetV1 (MobileNets paper, Table 1): structure, taps, shallow variant, local weights."""

import pytest
import torch
from torch import nn

from ssdlite.models.mobilenet_v1 import MobileNetV1, MobileNetV1Backbone


def _depthwise_convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]


def test_table1_layout():
    model = MobileNetV1()
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert (convs[0].in_channels, convs[0].out_channels, convs[0].stride) == (3, 32, (2, 2))
    assert len(_depthwise_convs(model)) == 13
    strides = [conv.stride[0] for conv in _depthwise_convs(model)]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert convs[-1].out_channels == 1024
    assert (model.classifier.in_features, model.classifier.out_features) == (1024, 1000)


@pytest.mark.parametrize("size", [224, 97])
def test_classifier_runs_at_any_resolution(size):
    model = MobileNetV1(width_mult=0.25, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_shallow_removes_the_five_14x14x512_blocks():
    deep, shallow = MobileNetV1(width_mult=0.25), MobileNetV1(width_mult=0.25, shallow=True)
    assert len(_depthwise_convs(deep)) - len(_depthwise_convs(shallow)) == 5
    removed = [c for c in _depthwise_convs(deep) if c.in_channels == 128 and c.stride == (1, 1)]
    kept = [c for c in _depthwise_convs(shallow) if c.in_channels == 128 and c.stride == (1, 1)]
    assert (len(removed), len(kept)) == (5, 0)  # 512 * 0.25 = 128 channels


@pytest.mark.parametrize("shallow", [False, True])
def test_backbone_taps_are_stride_16_512_and_stride_32_1024(shallow):
    backbone = MobileNetV1Backbone(width_mult=0.5, shallow=shallow).eval()
    assert backbone.out_channels == [256, 512]
    with torch.no_grad():
        stride16, stride32 = backbone(torch.randn(1, 3, 320, 320))
    assert stride16.shape == (1, 256, 20, 20)
    assert stride32.shape == (1, 512, 10, 10)


def test_backbone_taps_equal_classifier_features_with_same_weights():
    classifier = MobileNetV1(width_mult=0.25).eval()
    backbone = MobileNetV1Backbone(width_mult=0.25).eval()
    backbone.load_state_dict({k: v for k, v in classifier.state_dict().items() if k.startswith("features.")})
    images = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        stride16 = classifier.features[:12](images)
        stride32 = classifier.features(images)
        taps = backbone(images)
    torch.testing.assert_close(taps[0], stride16)
    torch.testing.assert_close(taps[1], stride32)


def test_backbone_loads_a_local_classifier_state_dict(tmp_path):
    classifier = MobileNetV1(width_mult=0.25)
    path = tmp_path / "mobilenet_v1.pth"
    torch.save(classifier.state_dict(), path)
    backbone = MobileNetV1Backbone(width_mult=0.25, pretrained=path)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, classifier.state_dict()[key]), key


def test_backbone_rejects_weights_of_another_width(tmp_path):
    path = tmp_path / "mobilenet_v1.pth"
    torch.save(MobileNetV1(width_mult=0.5).state_dict(), path)
    with pytest.raises(ValueError, match=r"width_mult=0\.25.*shape mismatches"):
        MobileNetV1Backbone(width_mult=0.25, pretrained=path)


def test_imagenet_is_refused_with_the_local_file_option():
    with pytest.raises(ValueError, match="pretrained=/path/to/weights.pth"):
        MobileNetV1Backbone(width_mult=0.25, pretrained="imagenet")


@pytest.mark.parametrize("width_mult", [0, -0.5, "1.0"])
def test_bad_width_is_a_value_error(width_mult):
    with pytest.raises(ValueError, match=rf"width_mult must be a number > 0.*got {width_mult!r}"):
        MobileNetV1(width_mult=width_mult)
