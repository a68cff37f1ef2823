"""Bad input: unknown config keys, missing data, and checkpoints of another model each give one clear line."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from ssdlite.engine.cli import train

from .conftest import ROOT

pytestmark = pytest.mark.xdist_group("bad_input")  # one worker trains other_model_checkpoint once


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_cli", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_cli():
    return load_tool("train")


def one_line_error(capsys, prefix: str) -> str:
    error = capsys.readouterr().err.strip()
    assert "Traceback" not in error
    lines = [line for line in error.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, error
    return lines[0]


@pytest.mark.parametrize("key", ["--model.widht_mult", "--trainer.max_epoch", "--data.batchsize"])
def test_unknown_config_key_is_a_usage_error(train_cli, config_factory, capsys, key):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--config", str(config_factory()), key, "1"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and key.lstrip("-").split(".")[-1] in error


def test_unknown_key_inside_a_config_file(train_cli, config_factory, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--config", str(config_factory(model={"learning_rate": 0.1}))])
    assert exit_info.value.code == 2
    assert "learning_rate" in capsys.readouterr().err


def test_missing_dataset_path(train_cli, config_factory, capsys, tmp_path):
    missing = tmp_path / "nowhere" / "train.json"
    status = train_cli.main(["--config", str(config_factory()), "--data.train_annotations", str(missing)])
    assert status == 2
    line = one_line_error(capsys, "train.py: error:")
    assert str(missing) in line and "train_annotations" in line


def test_offline_imagenet_backbone_says_what_failed_and_what_to_do(train_cli, config_factory, capsys, monkeypatch,
                                                                   tmp_path):
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached download to fall back on

    def no_network(url, *args, **kwargs):
        raise URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    config = config_factory(model={"width_mult": 1.0, "pretrained_backbone": "imagenet"})
    assert train_cli.main(["--config", str(config)]) == 2
    line = one_line_error(capsys, "train.py: error:")
    assert line.startswith("train.py: error: downloading torchvision's MobileNetV2 ImageNet weights")
    assert "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth" in line and "Name or service" in line
    assert "--model.pretrained_backbone PATH" in line and "--model.pretrained_backbone null" in line


def test_missing_resume_checkpoint(train_cli, config_factory, capsys, tmp_path):
    status = train_cli.main(["--config", str(config_factory()), "--ckpt_path", str(tmp_path / "last.ckpt")])
    assert status == 2
    assert "last.ckpt" in one_line_error(capsys, "train.py: error:")


@pytest.fixture(scope="module")
def other_model_checkpoint(shapes, tmp_path_factory):
    """A one-step checkpoint of width 0.5 (the base config trains width 0.35)."""
    from .conftest import write_config

    folder = tmp_path_factory.mktemp("other")
    config = write_config(folder / "config.yaml", shapes, folder / "runs",
                          trainer={"max_epochs": 1, "limit_train_batches": 1}, model={"width_mult": 0.5})
    return train(["--config", str(config), "--name", "wide"]).last_checkpoint


@pytest.mark.slow  # trains a one-step model first (other_model_checkpoint)
def test_resume_from_a_checkpoint_of_another_model(train_cli, config_factory, other_model_checkpoint, capsys):
    status = train_cli.main(["--config", str(config_factory()), "--ckpt_path", str(other_model_checkpoint)])
    assert status == 2
    line = one_line_error(capsys, "train.py: error:")
    assert "width_mult=0.5" in line and "width_mult=0.35" in line and "init_from" in line


def test_resume_from_a_file_that_is_not_a_training_checkpoint(train_cli, config_factory, capsys, tmp_path):
    weights = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, weights)
    status = train_cli.main(["--config", str(config_factory()), "--ckpt_path", str(weights)])
    assert status == 2
    assert "not a training checkpoint" in one_line_error(capsys, "train.py: error:")


@pytest.mark.slow  # trains a one-step model first (other_model_checkpoint)
def test_eval_coco_with_bad_checkpoints(shapes, other_model_checkpoint, capsys, tmp_path):
    eval_coco = load_tool("eval_coco")
    not_a_model = tmp_path / "notes.ckpt"
    not_a_model.write_text("hello")
    arguments = ["--ann", str(shapes["val_annotations"]), "--images", str(shapes["val_images"]),
                 "--out", str(tmp_path / "report")]
    assert eval_coco.main(["--model", str(not_a_model), *arguments]) == 2
    assert "notes.ckpt" in one_line_error(capsys, "eval_coco.py: error:")

    # A checkpoint whose category ids (10..40) are not those of the ground truth (1..4).
    plain = tmp_path / "plain.json"
    plain.write_text(_with_category_ids(shapes["val_annotations"], [1, 2, 3, 4]))
    assert eval_coco.main(["--model", str(other_model_checkpoint), "--ann", str(plain),
                           "--images", str(shapes["val_images"]), "--out", str(tmp_path / "report")]) == 2
    line = one_line_error(capsys, "eval_coco.py: error:")
    assert "category ids [10, 20, 30, 40]" in line
    assert not (tmp_path / "report").exists()


def _with_category_ids(annotation_file, ids):
    import json

    coco = json.loads(annotation_file.read_text())
    mapping = {category["id"]: new for category, new in zip(coco["categories"], ids)}
    for category in coco["categories"]:
        category["id"] = mapping[category["id"]]
    for annotation in coco["annotations"]:
        annotation["category_id"] = mapping[annotation["category_id"]]
    return json.dumps(coco)
