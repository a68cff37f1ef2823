"""Real photos: the train and eval pipelines over every raccoon image (VOC reader). Skipped without the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ssdlite.data.datamodule import DetectionDataModule
from ssdlite.data.transforms import eval_transforms, train_transforms
from ssdlite.data.voc import VOCDetection

RACCOON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raccoon"
IMAGE_SIZE = 320

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not RACCOON.is_dir(), reason=f"raccoon data not found at {RACCOON}"),
]


def _check_output(out: dict, sample: dict) -> None:
    where = sample["file_name"]
    assert out["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and out["image"].dtype == torch.float32, where
    assert torch.isfinite(out["image"]).all() and out["image"].min() >= -1 and out["image"].max() <= 1, where
    boxes, labels = out["boxes"], out["labels"]
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and boxes.shape == (len(labels), 4), (
        where
    )
    assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[:, 2:] > boxes[:, :2]).all(), where
    assert (labels == 1).all() and len(labels) <= len(sample["labels"]), where
    assert out["image_id"] == sample["image_id"] and out["orig_size"] == sample["orig_size"], where


@pytest.mark.parametrize("split", ["train", "val"])
def test_train_and_eval_pipelines_on_every_raccoon_image(split):
    dataset = VOCDetection(RACCOON, split, strict=True)
    assert dataset.class_names == ["raccoon"] and len(dataset) in (160, 40)
    train, evaluate = train_transforms(IMAGE_SIZE), eval_transforms(IMAGE_SIZE)
    train.set_random_seed(0)
    kept_boxes = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        assert len(sample["labels"]) >= 1
        out = train(sample)
        _check_output(out, sample)
        kept_boxes += len(out["labels"])
        evaluated = evaluate(sample)
        _check_output(evaluated, sample)
        height, width = sample["orig_size"]
        expected = sample["boxes"] / np.array([width, height, width, height], dtype=np.float32)
        np.testing.assert_allclose(
            evaluated["boxes"].numpy(), expected, atol=1e-6, err_msg=sample["file_name"]
        )
    # SSD's crop keeps at least one box unless it keeps the whole image: every output has a box.
    assert kept_boxes >= len(dataset)


def test_datamodule_on_raccoon():
    module = DetectionDataModule(
        format="voc",
        train_images=RACCOON,
        train_annotations="train",
        val_images=RACCOON,
        val_annotations="val",
        image_size=IMAGE_SIZE,
        batch_size=8,
        num_workers=0,
    )
    module.setup("fit")
    assert module.class_names == ["raccoon"] and module.category_ids == [1]
    batch = next(iter(module.train_dataloader()))
    assert batch["images"].shape == (8, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert ((batch["labels"] == 0) | (batch["labels"] == 1)).all() and (batch["labels"][:, 0] == 1).all()
    assert len(module.val_coco_gt()["images"]) == 40
