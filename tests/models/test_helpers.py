"""Loading checkpoints, and the errors that say which architecture a file holds."""

import pytest
import torch
import torchvision

from ssdlite.models import SSDLite, load_checkpoint, load_state_dict_checked
from tests.models.tiny_models import perturbed_state_dict, tiny_model


def _lightning_checkpoint(model: SSDLite, weights: dict, **hyper_parameters) -> dict:
    return {
        "epoch": 3,
        "state_dict": weights,
        "hyper_parameters": {"model_config": model.config, **hyper_parameters},
    }


def test_load_lightning_checkpoint_prefers_ema_weights(tmp_path):
    model = tiny_model(num_classes=2)
    raw, ema = perturbed_state_dict(model, 1), perturbed_state_dict(model, 2)
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
    model = tiny_model(num_classes=2)
    raw = perturbed_state_dict(model, 3)
    path = tmp_path / "plain.ckpt"
    torch.save(_lightning_checkpoint(model, {f"model.{k}": v for k, v in raw.items()}), path)
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded.state_dict()["regression_head.0.1.weight"], raw["regression_head.0.1.weight"])
    assert meta["class_names"] == ["1", "2"] and meta["category_ids"] == [1, 2]

    ema = {f"ema_model.module.{k}": v for k, v in perturbed_state_dict(model, 4).items()}
    ema["ema_model.n_averaged"] = torch.tensor(10)
    torch.save(_lightning_checkpoint(model, {**{f"model.{k}": v for k, v in raw.items()}, **ema}), path)
    loaded, _ = load_checkpoint(path)
    assert torch.equal(
        loaded.state_dict()["extras.0.0.0.weight"], ema["ema_model.module.extras.0.0.0.weight"]
    )


def test_load_config_and_state_dict_file_and_bare_state_dict(tmp_path):
    model = tiny_model("ssdlite_mobilenet_v1", num_classes=7).eval()
    weights = perturbed_state_dict(model, 5)
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
    expected = tiny_model("ssdlite_mobilenet_v2")
    other = tiny_model("ssdlite_mobilenet_v1")
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
    model = tiny_model(num_classes=5)
    weights = tiny_model(**{"num_classes": 5, **other}).state_dict()
    with pytest.raises(ValueError, match=rf"run\.pth holds .*{held}.* but the model is .*{wanted}"):
        load_state_dict_checked(model, weights, source="run.pth")


def test_state_dict_of_a_classifier_is_an_unknown_architecture():
    with pytest.raises(
        ValueError, match=r"holds weights of an unknown architecture.*not those of an SSDLite"
    ):
        load_state_dict_checked(
            tiny_model(), torchvision.models.mobilenet_v2(width_mult=0.35).state_dict(), source="x"
        )


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.ckpt"):
        load_checkpoint(tmp_path / "gone.ckpt")


def test_class_names_must_match_num_classes(tmp_path):
    model = tiny_model(num_classes=2)
    path = tmp_path / "c.pth"
    torch.save({"model_config": model.config, "state_dict": model.state_dict(), "class_names": ["a"]}, path)
    with pytest.raises(ValueError, match=r"1 class_names .* num_classes=2"):
        load_checkpoint(path)


def test_checkpoint_with_an_unbuildable_config_names_the_file(tmp_path):
    model = tiny_model()
    path = tmp_path / "huge.ckpt"
    torch.save({"model_config": {**model.config, "image_size": 100000}, "state_dict": model.state_dict()}, path)
    with pytest.raises(ValueError, match=r"huge.ckpt' holds a model config this package cannot build: image_size "
                                         r"100000 is larger than 2048"):
        load_checkpoint(path)
