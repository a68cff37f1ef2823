"""Registry, configs, checkpoints and the errors they raise."""

import dataclasses
import json

import pytest
import torch
import torchvision

from ssdlite.core.anchors import DefaultBoxConfig
from ssdlite.models import factory
from ssdlite.models.factory import (
    build_model,
    build_model_from_config,
    list_models,
    load_checkpoint,
    load_state_dict_checked,
    model_config,
    register_model,
)
from ssdlite.models.ssdlite import SSDLite

TINY = {"width_mult": 0.35, "image_size": 64}


def _tiny(name="ssdlite_mobilenet_v2", **overrides) -> SSDLite:
    return build_model(name, **{**TINY, **overrides})


def _perturbed_state_dict(model: SSDLite, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        key: (value + torch.randn(value.shape, generator=generator)) if value.is_floating_point() else value
        for key, value in model.state_dict().items()
    }


def test_presets_are_registered():
    assert {"ssdlite_mobilenet_v2", "ssdlite320_mobilenet_v2", "ssdlite_mobilenet_v1"} <= set(list_models())
    assert build_model.__defaults__ == ("ssdlite_mobilenet_v2",)


def test_register_model_adds_a_name_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(factory, "_MODEL_REGISTRY", dict(factory._MODEL_REGISTRY))  # undone after the test

    @register_model("ssdlite_mobilenet_v2_test_tiny")
    def tiny() -> dict:
        return {**model_config("ssdlite_mobilenet_v2"), "name": "ssdlite_mobilenet_v2_test_tiny", **TINY}

    assert "ssdlite_mobilenet_v2_test_tiny" in list_models()
    assert build_model("ssdlite_mobilenet_v2_test_tiny").image_size == 64
    with pytest.raises(ValueError, match="already registered"):
        register_model("ssdlite_mobilenet_v2_test_tiny")(tiny)


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(
        ValueError, match=r"unknown model name 'ssd_resnet'; available: .*ssdlite_mobilenet_v2"
    ):
        build_model("ssd_resnet")


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
        _tiny(**overrides)


def test_config_is_json_and_rebuilds_the_same_model():
    model = _tiny("ssdlite_mobilenet_v1", shallow=True, num_classes=3)
    config = json.loads(json.dumps(model.config))
    rebuilt = build_model_from_config(config)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    torch.testing.assert_close(rebuilt.anchors, model.anchors)


def test_default_boxes_may_be_a_dict_of_fields():
    fields = json.loads(json.dumps(dataclasses.asdict(DefaultBoxConfig.torchvision())))
    custom = _tiny(default_boxes=fields)
    torch.testing.assert_close(custom.anchors, _tiny("ssdlite320_mobilenet_v2").anchors)


def test_shallow_v1_drops_five_blocks():
    deep, shallow = _tiny("ssdlite_mobilenet_v1"), _tiny("ssdlite_mobilenet_v1", shallow=True)
    assert len(deep.backbone.features) - len(shallow.backbone.features) == 5


def test_pretrained_backbone_path_loads_into_the_detector(tmp_path):
    reference = torchvision.models.mobilenet_v2(width_mult=0.35)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    model = _tiny(pretrained_backbone=str(path))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
    assert model.config["pretrained_backbone"] == str(path)


def _lightning_checkpoint(model: SSDLite, weights: dict, **hyper_parameters) -> dict:
    return {
        "epoch": 3,
        "state_dict": weights,
        "hyper_parameters": {"model_config": model.config, **hyper_parameters},
    }


def test_load_lightning_checkpoint_prefers_ema_weights(tmp_path):
    model = _tiny(num_classes=2)
    raw, ema = _perturbed_state_dict(model, 1), _perturbed_state_dict(model, 2)
    weights = {**{f"model.{k}": v for k, v in raw.items()}, **{f"ema_model.{k}": v for k, v in ema.items()}}
    path = tmp_path / "last.ckpt"
    torch.save(_lightning_checkpoint(model, weights, class_names=["cat", "dog"], category_ids=[17, 18]), path)
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    assert meta == {
        "class_names": ["cat", "dog"],
        "category_ids": [17, 18],
        "image_size": 64,
        "model_config": model.config,
    }
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, ema[key]), key


def test_load_lightning_checkpoint_without_ema_and_with_averaged_model_ema(tmp_path):
    model = _tiny(num_classes=2)
    raw = _perturbed_state_dict(model, 3)
    path = tmp_path / "plain.ckpt"
    torch.save(_lightning_checkpoint(model, {f"model.{k}": v for k, v in raw.items()}), path)
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded.state_dict()["regression_head.0.1.weight"], raw["regression_head.0.1.weight"])
    assert meta["class_names"] == ["1", "2"] and meta["category_ids"] == [1, 2]

    ema = {f"ema_model.module.{k}": v for k, v in _perturbed_state_dict(model, 4).items()}
    ema["ema_model.n_averaged"] = torch.tensor(10)
    torch.save(_lightning_checkpoint(model, {**{f"model.{k}": v for k, v in raw.items()}, **ema}), path)
    loaded, _ = load_checkpoint(path)
    assert torch.equal(
        loaded.state_dict()["extras.0.0.0.weight"], ema["ema_model.module.extras.0.0.0.weight"]
    )


def test_load_config_and_state_dict_file_and_bare_state_dict(tmp_path):
    model = _tiny("ssdlite_mobilenet_v1", num_classes=7).eval()
    weights = _perturbed_state_dict(model, 5)
    torch.save(
        {"model_config": model.config, "state_dict": weights, "class_names": list("abcdefg")},
        tmp_path / "a.pth",
    )
    loaded, meta = load_checkpoint(tmp_path / "a.pth")
    assert meta["class_names"] == list("abcdefg") and meta["model_config"] == model.config
    assert torch.equal(
        loaded.state_dict()["backbone.features.0.0.weight"], weights["backbone.features.0.0.weight"]
    )

    torch.save(weights, tmp_path / "b.pth")
    loaded, meta = load_checkpoint(tmp_path / "b.pth")
    inferred = meta["model_config"]
    assert (inferred["name"], inferred["width_mult"], inferred["num_classes"]) == (
        "ssdlite_mobilenet_v1",
        0.35,
        7,
    )
    assert inferred["image_size"] == 320 and loaded.anchors.shape == (2034, 4)


def test_checkpoint_of_another_architecture_says_which(tmp_path):
    expected = _tiny("ssdlite_mobilenet_v2")
    other = _tiny("ssdlite_mobilenet_v1")
    path = tmp_path / "mixed.ckpt"
    torch.save(
        _lightning_checkpoint(expected, {f"model.{k}": v for k, v in other.state_dict().items()}), path
    )
    with pytest.raises(
        ValueError, match=r"mixed\.ckpt.*holds ssdlite_mobilenet_v1 .*but the model is ssdlite_mobilenet_v2"
    ):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("other", "held", "wanted"),
    [
        ({"num_classes": 3}, "num_classes=3", "num_classes=5"),
        ({"width_mult": 0.5}, "width_mult=0.5", "width_mult=0.35"),
        ({"default_boxes": "torchvision"}, "ssdlite320_mobilenet_v2", "ssdlite_mobilenet_v2"),
    ],
)
def test_load_state_dict_checked_names_both_sides(other, held, wanted):
    model = _tiny(num_classes=5)
    weights = _tiny(**{"num_classes": 5, **other}).state_dict()
    with pytest.raises(ValueError, match=rf"run\.pth holds .*{held}.* but the model is .*{wanted}"):
        load_state_dict_checked(model, weights, source="run.pth")


def test_state_dict_of_a_classifier_is_an_unknown_architecture():
    with pytest.raises(
        ValueError, match=r"holds weights of an unknown architecture.*not those of an SSDLite"
    ):
        load_state_dict_checked(
            _tiny(), torchvision.models.mobilenet_v2(width_mult=0.35).state_dict(), source="x"
        )


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.ckpt"):
        load_checkpoint(tmp_path / "gone.ckpt")


def test_class_names_must_match_num_classes(tmp_path):
    model = _tiny(num_classes=2)
    path = tmp_path / "c.pth"
    torch.save({"model_config": model.config, "state_dict": model.state_dict(), "class_names": ["a"]}, path)
    with pytest.raises(ValueError, match=r"1 class_names .* num_classes=2"):
        load_checkpoint(path)


def test_checkpoint_with_an_unbuildable_config_names_the_file(tmp_path):
    model = _tiny()
    path = tmp_path / "huge.ckpt"
    torch.save({"model_config": {**model.config, "image_size": 100000}, "state_dict": model.state_dict()}, path)
    with pytest.raises(ValueError, match=r"huge.ckpt' holds a model config this package cannot build: image_size "
                                         r"100000 is larger than 2048"):
        load_checkpoint(path)
