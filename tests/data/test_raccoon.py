"""Real photos: the raccoon dataset (../shared/data/raccoon, VOC layout) read image by image, box by box."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ssdlite.data.annotations import DatasetWarning
from ssdlite.data.checks import check_dataset
from ssdlite.data.voc import VOCDetection, read_split_file

from .scene import REPO_ROOT

RACCOON_ROOT = REPO_ROOT.parent / "shared" / "data" / "raccoon"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not RACCOON_ROOT.is_dir(), reason=f"real data not found at {RACCOON_ROOT}"),
]


def xml_truth(image_id: str) -> tuple[tuple[int, int], np.ndarray]:
    """Independent parse: ((height, width), boxes 0-based xyxy) straight from the XML."""
    root = ET.parse(RACCOON_ROOT / "Annotations" / f"{image_id}.xml").getroot()
    size = int(root.findtext("size/height")), int(root.findtext("size/width"))
    boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for o in root.iter("object")]
    return size, np.array(boxes, dtype=np.float32).reshape(-1, 4) - [1, 1, 0, 0]


def test_splits_partition_the_dataset():
    train = read_split_file(RACCOON_ROOT / "ImageSets" / "Main" / "train.txt")
    val = read_split_file(RACCOON_ROOT / "ImageSets" / "Main" / "val.txt")
    every_xml = {path.stem for path in (RACCOON_ROOT / "Annotations").glob("*.xml")}
    assert (len(train), len(val), len(every_xml)) == (160, 40, 200)
    assert not set(train) & set(val) and set(train) | set(val) == every_xml
    with pytest.warns(DatasetWarning, match="trainval.txt not found"):
        assert len(VOCDetection(RACCOON_ROOT, "trainval")) == 200


@pytest.mark.parametrize("split, images, boxes", [("train", 160, 173), ("val", 40, 44)])
def test_every_image_and_box_reads(split, images, boxes):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # a clean dataset: nothing dropped, clipped or skipped
        dataset = VOCDetection(RACCOON_ROOT, split, strict=True)
        samples = [dataset[index] for index in range(len(dataset))]
    assert dataset.class_names == ["raccoon"] and dataset.category_ids == [1]
    assert len(samples) == images and sum(len(s["boxes"]) for s in samples) == boxes
    for sample, image_id in zip(samples, read_split_file(RACCOON_ROOT / "ImageSets" / "Main" / f"{split}.txt")):
        (height, width), truth = xml_truth(image_id)
        assert sample["file_name"] == f"{image_id}.jpg" and sample["image_id"] == int(image_id.split("-")[1])
        assert sample["image"].dtype == np.uint8 and sample["image"].shape == (height, width, 3)
        assert sample["orig_size"] == (height, width)
        np.testing.assert_array_equal(sample["boxes"], truth)
        assert (sample["labels"] == 1).all() and not sample["difficult"].any()
        assert (sample["boxes"][:, 2:] > sample["boxes"][:, :2]).all()
        assert (sample["boxes"] >= 0).all() and (sample["boxes"][:, [2, 3]] <= [width, height]).all()


def test_checker_finds_no_problem_in_the_real_data():
    report = check_dataset("voc", RACCOON_ROOT / "JPEGImages", RACCOON_ROOT / "Annotations")
    assert report.problems == []
    assert report.num_images == 200 and report.class_counts == {"raccoon": 217}
    assert report.images_without_objects == []
