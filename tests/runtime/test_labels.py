"""The ``--save-labels`` writers (``ssdlite_runtime.labels``) read back by the project's own readers, without a
model: each format to its own precision (YOLO's 6 decimals, COCO's hundredths, VOC's whole pixels), boxes clipped
to the image, boxes under a pixel left out, two images of one name both kept, an image without detections labelled
empty, files copied byte for byte. The command around them is tested in tests/tools/test_detect_labels.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite.data.annotations import ParsedDataset, ProblemLog
from ssdlite.data.coco import load_coco_records
from ssdlite.data.voc import load_voc_records, read_split_file
from ssdlite.data.yolo import load_yolo_records
from ssdlite_runtime.labels import LABEL_FORMATS, open_label_writer

CLASS_NAMES = ["cat", "dog"]
CATEGORY_IDS = [4, 2]  # not sorted: COCO must keep the model's ids with their names
BOXES = [[2.3, 4.6, 20.5, 25.2], [-5.0, 10.0, 45.0, 35.0], [10.0, 10.0, 10.6, 20.0]]
"""In a 40 x 30 image: one inside, one to clip to (0, 10, 40, 30), one 0.6 px wide that is left out."""
KEPT = np.array([[2.3, 4.6, 20.5, 25.2], [0.0, 10.0, 40.0, 30.0]])
PRECISION = {"yolo": 1e-4, "coco": 0.005 + 1e-9, "voc": 0.0}
"""How far a corner read back may be from the box written, in pixels (VOC: from the box rounded to whole pixels)."""


def read_back(label_format: str, out: Path) -> tuple[ParsedDataset, dict[str, tuple[list[str], np.ndarray]]]:
    """What the project's reader of the format reads from OUT (with no problem reported), and per image file name
    its (class names, boxes [N, 4] xyxy pixels)."""
    log = ProblemLog(raise_malformed=True)
    if label_format == "yolo":
        parsed = load_yolo_records(out / "images", out / "labels", classes=out / "data.yaml", log=log)
    elif label_format == "voc":
        ids = read_split_file(out / "ImageSets" / "Main" / "trainval.txt")
        parsed = load_voc_records(out / "JPEGImages", out / "Annotations", ids=ids, class_names=out / "labels.txt",
                                  log=log)
    else:
        parsed = load_coco_records(out / "images", out / "annotations.json", log=log)
    assert not log.problems, log.problems
    return parsed, {
        Path(record.path).name: ([parsed.class_names[label - 1] for label in record.labels], record.boxes)
        for record in parsed.records
    }


def detections(boxes: list[list[float]], labels: list[int]) -> dict[str, np.ndarray]:
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.full(len(labels), 0.9, np.float32),
            "labels": np.array(labels, np.int64)}


def write_png(path: Path, height: int, width: int, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


@pytest.mark.parametrize("label_format", LABEL_FORMATS)
def test_each_format_reads_back_what_was_written(label_format, tmp_path):
    first = write_png(tmp_path / "a" / "photo.png", 30, 40, 100)
    second = write_png(tmp_path / "b" / "photo.png", 20, 50, 150)  # the same name, from another folder
    frame = np.zeros((24, 32, 3), np.uint8)
    out = tmp_path / "out"
    with open_label_writer(label_format, out, class_names=CLASS_NAMES, category_ids=CATEGORY_IDS) as writer:
        names = [
            writer.add_file(first, detections(BOXES, [1, 2, 1]), height=30, width=40),
            writer.add_file(second, detections([], []), height=20, width=50),
            writer.add_frame("clip_000003.jpg", frame, detections([[1.0, 2.0, 9.0, 12.0]], [2])),
        ]
    assert names == ["photo.png", "photo_2.png", "clip_000003.jpg"]
    assert (writer.images, writer.boxes) == (3, 3)

    parsed, read = read_back(label_format, out)
    expected = np.floor(KEPT + 0.5) if label_format == "voc" else KEPT  # VOC: halves round up
    assert read["photo.png"][0] == ["cat", "dog"]
    np.testing.assert_allclose(read["photo.png"][1], expected, rtol=0, atol=PRECISION[label_format])
    assert read["photo_2.png"][0] == []  # an image without detections: there, with an empty label
    assert read["clip_000003.jpg"][0] == ["dog"]
    np.testing.assert_allclose(read["clip_000003.jpg"][1], [[1, 2, 9, 12]], rtol=0, atol=PRECISION[label_format])
    sizes = {Path(record.path).name: (record.height, record.width) for record in parsed.records}
    assert sizes == {"photo.png": (30, 40), "photo_2.png": (20, 50), "clip_000003.jpg": (24, 32)}
    images_dir = first.parent.parent / "out" / ("JPEGImages" if label_format == "voc" else "images")
    assert (images_dir / "photo.png").read_bytes() == first.read_bytes()
    assert (images_dir / "photo_2.png").read_bytes() == second.read_bytes()
    if label_format == "coco":
        assert dict(zip(parsed.category_ids, parsed.class_names)) == dict(zip(CATEGORY_IDS, CLASS_NAMES))
    else:
        assert parsed.class_names == CLASS_NAMES
