"""Model configs and building: the frozen config, overrides of a preset, and the errors they raise."""

import dataclasses
import json

import pytest
import torch
import torchvision

from ssdlite.core.anchors import DefaultBoxConfig
from ssdlite.models import SSDLite, SSDLiteConfig, build_model, build_model_from_config, model_config
from tests.models.tiny_models import tiny_model


def test_unknown_override_lists_the_allowed_keys():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth'\].*allowed: .*num_classes"):
        build_model("ssdlite_mobilenet_v2", depth=3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width_mult": 0}, r"width_mult must be a number > 0.*got 0"),
        ({"width_mult": -0.35}, r"width_mult must be a number > 0.*got -0.35"),
        ({"image_size": 32}, r"image_size must be an integer >= 64.*got 32"),
        ({"image_size": 100000}, r"image_size 100000 is larger than 2048.*use a side from 64 to 2048"),
        ({"num_classes": 0}, r"num_classes must be an integer >= 1.*got 0"),
        ({"shallow": True}, r"shallow=True applies to MobileNetV1 only"),
        ({"default_boxes": "yolo"}, r"unknown default_boxes layout 'yolo'; available: paper, torchvision"),
        ({"pretrained_backbone": "imagenet"}, r"exists only for width_mult=1.0.*got width_mult=0.35"),
    ],
)
def test_bad_values_are_value_errors_naming_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**overrides)


def test_config_is_json_and_rebuilds_the_same_model():
    model = tiny_model("ssdlite_mobilenet_v1", shallow=True, num_classes=3)
    config = json.loads(json.dumps(model.config))
    rebuilt = build_model_from_config(config)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    torch.testing.assert_close(rebuilt.anchors, model.anchors)


def test_default_boxes_may_be_a_dict_of_fields():
    fields = json.loads(json.dumps(dataclasses.asdict(DefaultBoxConfig.torchvision())))
    custom = tiny_model(default_boxes=fields)
    torch.testing.assert_close(custom.anchors, tiny_model("ssdlite320_mobilenet_v2").anchors)


def test_shallow_v1_drops_five_blocks():
    deep, shallow = tiny_model("ssdlite_mobilenet_v1"), tiny_model("ssdlite_mobilenet_v1", shallow=True)
    assert len(deep.backbone.features) - len(shallow.backbone.features) == 5


def test_pretrained_backbone_path_loads_into_the_detector(tmp_path):
    reference = torchvision.models.mobilenet_v2(width_mult=0.35)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    model = tiny_model(pretrained_backbone=str(path))
    converted = {"features.0.0.weight", "features.0.1.running_mean"}  # to the detector's input scaling
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]) == (key not in converted), key
    assert model.config["pretrained_backbone"] == str(path)


def test_config_round_trips_through_its_dict_and_is_frozen():
    config = model_config("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.5)
    assert config.to_dict()["extra_channels"] == [256, 128, 128, 64]
    assert SSDLiteConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 4


def test_config_dict_with_an_unknown_or_a_missing_key_is_refused():
    config = model_config("ssdlite_mobilenet_v2").to_dict()
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['depth'\]; allowed: name, backbone"):
        SSDLiteConfig.from_dict({**config, "depth": 3})
    del config["num_classes"]
    with pytest.raises(ValueError, match=r"model config lacks key\(s\) \['num_classes'\]"):
        SSDLiteConfig.from_dict(config)


def test_the_detector_checks_num_classes_as_the_config_does():
    model = tiny_model()
    message = r"num_classes must be an integer >= 1.*got 0"
    with pytest.raises(ValueError, match=message):
        SSDLite(backbone=model.backbone, num_classes=0, image_size=64, box_config=model.box_config)
    with pytest.raises(ValueError, match=message):
        SSDLiteConfig(backbone="mobilenet_v2", num_classes=0)
