"""Synthetic shapes: deterministic, valid COCO, tight boxes that match the pixels, varied scenes, CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from ssdlite.data.synthetic import SHAPE_CLASSES, make_shapes, render_shapes_image

from .scene import load_script


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()
    }


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    first = _files(Path(make_shapes(tmp_path / "a", num_train=6, num_val=3, size=96, seed=1)["root"]))
    second = _files(Path(make_shapes(tmp_path / "b", num_train=6, num_val=3, size=96, seed=1)["root"]))
    other = _files(Path(make_shapes(tmp_path / "c", num_train=6, num_val=3, size=96, seed=2)["root"]))
    assert len(first) == 6 + 3 + 2
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_layout_and_coco_validity(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the working directory would show up here
    paths = make_shapes(tmp_path / "out", num_train=8, num_val=4, size=128, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["annotations", "train", "val"]
    for split, count in (("train", 8), ("val", 4)):
        assert paths[f"{split}_images"] == tmp_path / "out" / split
        assert paths[f"{split}_annotations"] == tmp_path / "out" / "annotations" / f"{split}.json"
        coco = COCO(str(paths[f"{split}_annotations"]))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
        assert len(coco.getImgIds()) == count
        for image_info in coco.loadImgs(coco.getImgIds()):
            image = cv2.imread(str(paths[f"{split}_images"] / image_info["file_name"]))
            assert image.shape == (image_info["height"], image_info["width"], 3) == (128, 128, 3)
        for annotation in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = annotation["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
            assert 0 < annotation["area"] <= w * h and annotation["iscrowd"] == 0
        ids = [a["id"] for a in coco.dataset["annotations"]]
        assert len(set(ids)) == len(ids)
    # The json holds each rendered object's tight box, converted to COCO's [x, y, w, h].
    coco = COCO(str(paths["train_annotations"]))
    for image_id in (1, 2, 3):
        _, objects, _ = render_shapes_image(np.random.default_rng([0, 0, image_id]), size=128)
        expected = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (shape.box for shape in objects)]
        assert [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))] == expected


def test_boxes_are_tight_around_the_drawn_pixels():
    for index in range(40):
        image, objects, instances = render_shapes_image(np.random.default_rng([9, index]), size=160)
        assert image.dtype == np.uint8 and image.shape == (160, 160, 3)
        assert instances.max() == len(objects) - 1
        for number, shape in enumerate(objects):
            mask = instances == number
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            assert shape.box == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert shape.area == mask.sum()
            # The mask is what was painted: uniform-ish inside, clearly different just outside.
            pixels = image[mask].astype(np.float64)
            colour = np.median(pixels, axis=0)
            assert np.linalg.norm(pixels - colour, axis=1).mean() < 30
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            ring = grown & (instances == -1)
            if ring.sum() >= 10:
                outside = image[ring].astype(np.float64)
                assert np.linalg.norm(outside - colour, axis=1).mean() > 35


def test_scenes_are_varied(tmp_path):
    paths = make_shapes(tmp_path, num_train=60, num_val=0, size=320, seed=4)
    dataset = json.loads(paths["train_annotations"].read_text())
    annotations = dataset["annotations"]
    per_image = np.bincount([a["image_id"] for a in annotations], minlength=61)[1:]
    assert (per_image == 0).sum() >= 1 and per_image.max() >= 4, "want negatives and crowded images"
    assert {a["category_id"] for a in annotations} == {1, 2, 3, 4}
    sides = np.array([max(a["bbox"][2], a["bbox"][3]) for a in annotations])
    assert sides.min() < 0.08 * 320 and sides.max() > 0.35 * 320, "want small and large objects"
    overlapping = 0
    for image_id in range(1, 61):
        boxes = [a["bbox"] for a in annotations if a["image_id"] == image_id]
        for i, (x1, y1, w1, h1) in enumerate(boxes):
            for x2, y2, w2, h2 in boxes[i + 1 :]:
                overlapping += (min(x1 + w1, x2 + w2) > max(x1, x2)) and (min(y1 + h1, y2 + h2) > max(y1, y2))
    assert overlapping >= 3, "want overlapping objects"


def test_generation_is_fast(tmp_path):
    start = time.perf_counter()
    make_shapes(tmp_path, num_train=50, num_val=0, size=320, seed=0)
    assert time.perf_counter() - start < 10.0  # about 0.5 s on an idle core


def test_cli_writes_the_dataset(tmp_path, capsys):
    cli = load_script("tools/make_shapes.py")
    out = tmp_path / "shapes"
    assert cli.main(["--out", str(out), "--num-train", "3", "--num-val", "2", "--size", "64"]) == 0
    assert len(list((out / "train").glob("*.jpg"))) == 3 and len(list((out / "val").glob("*.jpg"))) == 2
    assert "val_annotations" in capsys.readouterr().out
    assert cli.main(["--out", str(tmp_path / "bad"), "--size", "8"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("make_shapes.py: error: ") and "size must be >= 32" in error


def test_object_sizes_bound_the_shapes_and_are_recorded(tmp_path):
    size = 160
    paths = make_shapes(tmp_path, num_train=30, num_val=0, size=size, seed=3, object_sizes=(0.2, 0.3))
    coco = json.loads(paths["train_annotations"].read_text())
    assert coco["info"]["ssdlite_shapes"] == {
        "split": "train", "count": 30, "size": size, "seed": 3, "object_sizes": [0.2, 0.3]
    }
    sides = [max(a["bbox"][2], a["bbox"][3]) for a in coco["annotations"]]
    assert len(sides) > 30
    # A shape's box is at most its extent (a circle's diameter, a rotated square's diagonal is within 1.42 extent)
    # and at least 60 % visible, so no box is far outside the asked range; the default range gives much smaller ones.
    assert min(sides) >= 0.2 * size * 0.3 and max(sides) <= 0.3 * size * 1.5
    default = json.loads(make_shapes(tmp_path / "d", num_train=30, num_val=0, size=size, seed=3)["train_annotations"]
                         .read_text())
    assert min(max(a["bbox"][2], a["bbox"][3]) for a in default["annotations"]) < 0.2 * size * 0.3
    for bad in ((0.0, 0.5), (0.4, 0.2), (0.1, 1.5)):
        with pytest.raises(ValueError, match="object_sizes"):
            make_shapes(tmp_path / "bad", num_train=1, num_val=0, size=64, object_sizes=bad)


def test_large_frames_with_small_shapes_in_pixels(tmp_path, capsys):
    """--width/--height/--object-pixels/--max-shapes: the set sliced inference is measured on, here at 640 x 360."""
    cli = load_script("tools/make_shapes.py")
    out = tmp_path / "small"
    arguments = ["--out", str(out), "--num-train", "0", "--num-val", "6", "--width", "640", "--height", "360",
                 "--object-pixels", "12", "40", "--max-shapes", "20"]
    assert cli.main(arguments) == 0
    assert "(640x360)" in capsys.readouterr().out
    coco = json.loads((out / "annotations" / "val.json").read_text())
    assert {(image["width"], image["height"]) for image in coco["images"]} == {(640, 360)}
    assert coco["info"]["ssdlite_shapes"]["size"] == [640, 360]
    assert coco["info"]["ssdlite_shapes"]["max_shapes"] == 20
    assert cv2.imread(str(out / "val" / "000001.jpg")).shape == (360, 640, 3)
    boxes = np.array([annotation["bbox"] for annotation in coco["annotations"]])
    per_image = np.bincount([annotation["image_id"] for annotation in coco["annotations"]])
    assert per_image.max() > 6  # more than the default's six shapes
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 640).all()
    assert (boxes[:, 1] + boxes[:, 3] <= 360).all()
    # extents of 12-40 px: boxes within a rotated square's diagonal (1.42 x 40) and at least 60 % visible
    sides = boxes[:, 2:].max(axis=1)
    assert sides.min() >= 12 * 0.3 and sides.max() <= 40 * 1.5
    with pytest.raises(SystemExit) as usage_error:
        cli.main(["--out", str(tmp_path / "v"), "--video", "--width", "640"])
    assert usage_error.value.code == 2 and "--width is for still images" in capsys.readouterr().err
    with pytest.raises(ValueError, match="object_pixels"):
        make_shapes(tmp_path / "bad", num_train=1, num_val=0, width=640, height=360, object_pixels=(12, 400))
