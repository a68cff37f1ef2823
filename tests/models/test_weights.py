"""Reading checkpoint files (ssdlite.models.checkpoints): a file that torch.save did not write is named as such, with
what a checkpoint is; every other file that is not ours is one line naming it."""

from __future__ import annotations

import zipfile

import pytest
import torch

from ssdlite.deploy.model_files import load_checkpoint_for_inference
from ssdlite.models import build_model, load_checkpoint
from ssdlite.models.checkpoints import (
    NotACheckpointError,
    checkpoint_step,
    read_state_dict,
    read_training_checkpoint,
)


def write_checkpoint(path):
    model = build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=64)
    torch.save({"model_config": model.config, "state_dict": model.state_dict()}, path)
    return path


def write_bad_file(kind: str, folder):
    """A file named best.ckpt that is not a checkpoint: empty, text, cut short, another zip, random bytes."""
    path = folder / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch,loss\n1,0.5\n")
    elif kind == "truncated":
        data = write_checkpoint(folder / "whole.ckpt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "other_zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("images/0001.jpg", b"\xff\xd8")
    else:
        path.write_bytes(bytes(range(7, 107)))
    return path


REASONS = {
    "empty": "the file is empty (0 bytes)",
    "text": "it holds text ('epoch,loss')",
    "truncated": "it is a zip archive cut short or damaged",
    "other_zip": "it is a zip archive without the data.pkl torch.save writes (it holds images/0001.jpg)",
    "bytes": "it starts with the bytes 07 08 09 0a 0b 0c 0d 0e",
}


@pytest.mark.parametrize("kind", list(REASONS))
@pytest.mark.parametrize("reader", [read_state_dict, load_checkpoint, load_checkpoint_for_inference])
def test_a_file_torch_save_did_not_write_is_not_a_checkpoint(reader, kind, tmp_path):
    path = write_bad_file(kind, tmp_path)
    with pytest.raises(NotACheckpointError) as error:
        reader(path)
    message = str(error.value)
    assert message.startswith(f"{path} is not a checkpoint: {REASONS[kind]}")
    assert "A checkpoint is the file torch.save writes" in message and "tools/train.py" in message
    assert "\n" not in message


def test_real_checkpoints_still_load(tmp_path):
    path = write_checkpoint(tmp_path / "best.ckpt")
    assert set(read_state_dict(path)) == {"model_config", "state_dict"}
    model, meta = load_checkpoint(path)
    assert meta["image_size"] == 64 and model.num_classes == 2
    legacy = tmp_path / "legacy.pth"  # torch.save's pre-1.6 format: a pickle, not a zip archive
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    assert set(read_state_dict(legacy)) == set(model.state_dict())


def test_a_state_dict_of_something_else_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"cannot load {path}: the weights are not those of an SSDLite model")
    assert message.endswith("pass a checkpoint written by tools/train.py") and "\n" not in message


def test_a_file_of_pickled_objects_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "objects.ckpt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # weights_only refuses a module: a page-long message
    with pytest.raises(ValueError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"cannot read {path} with torch.load(weights_only=True) (") and "\n" not in message


def test_a_training_checkpoint_is_told_from_a_weights_file(tmp_path):
    weights = write_checkpoint(tmp_path / "weights.ckpt")
    with pytest.raises(ValueError, match=r"weights\.ckpt is not a training checkpoint .*--model.init_from"):
        read_training_checkpoint(weights)
    model = build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=64)
    training = tmp_path / "last.ckpt"
    torch.save({"hyper_parameters": {"model_config": model.config, "class_names": ["a", "b"]},
                "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
                "optimizer_states": [{}], "global_step": 7}, training)
    assert read_training_checkpoint(training)["class_names"] == ["a", "b"]
    assert checkpoint_step(training) == 7
    with pytest.raises(ValueError, match="has no global_step"):
        checkpoint_step(weights)
