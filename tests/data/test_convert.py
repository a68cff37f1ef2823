"""VOC / YOLO -> COCO conversion, as a library call and through tools/convert.py (its ``main`` in the test's
process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ssdlite.data.convert import voc_to_coco, yolo_to_coco
from tests.commands_in_process import run_main

from .scene import SCENE, SCENE_CLASSES, load_script


def boxes_by_file(coco: dict) -> dict[str, list[tuple[str, list[float]]]]:
    """{file_name: sorted [(class name, bbox xywh)]}."""
    names = {category["id"]: category["name"] for category in coco["categories"]}
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    result = {name: [] for name in files.values()}
    for annotation in coco["annotations"]:
        result[files[annotation["image_id"]]].append((names[annotation["category_id"]], annotation["bbox"]))
    return {name: sorted(boxes) for name, boxes in result.items()}


def assert_same_annotations(actual: dict, expected: dict, *, atol: float) -> None:
    actual_boxes, expected_boxes = boxes_by_file(actual), boxes_by_file(expected)
    assert actual_boxes.keys() == expected_boxes.keys()
    for file_name, expected_list in expected_boxes.items():
        assert [name for name, _ in actual_boxes[file_name]] == [name for name, _ in expected_list], file_name
        np.testing.assert_allclose(
            np.array([box for _, box in actual_boxes[file_name]]).reshape(-1, 4),
            np.array([box for _, box in expected_list]).reshape(-1, 4),
            atol=atol,
            err_msg=file_name,
        )


def test_voc_to_coco_reproduces_the_coco_annotations_exactly(make_scene, tmp_path):
    coco, voc = make_scene("coco"), make_scene("voc")
    out_file = tmp_path / "out" / "voc.json"
    converted = voc_to_coco(voc["images"], voc["annotations"], split_file=voc["split"], out_file=out_file)
    assert json.loads(out_file.read_text()) == converted
    assert [c["name"] for c in converted["categories"]] == list(SCENE_CLASSES)
    assert [c["id"] for c in converted["categories"]] == [1, 2, 3]
    assert_same_annotations(converted, json.loads(coco["annotations"].read_text()), atol=0)
    assert {image["file_name"]: (image["height"], image["width"]) for image in converted["images"]} == {
        f"{stem}.jpg": size for stem, (size, _) in SCENE.items()
    }
    train_only = voc_to_coco(voc["images"], voc["annotations"], split_file=voc["split"].with_name("train.txt"))
    assert [image["file_name"] for image in train_only["images"]] == ["000001.jpg", "000002.jpg"]
    assert not list(out_file.parent.glob(".*tmp"))  # atomic write leaves no temporary file


def test_yolo_to_coco_reproduces_the_coco_annotations_of_the_same_images(make_scene):
    coco, yolo = make_scene("coco"), make_scene("yolo")
    converted = yolo_to_coco(yolo["images"], yolo["labels"], classes=yolo["yaml"])
    assert_same_annotations(converted, json.loads(coco["annotations"].read_text()), atol=1.0)
    assert [image["id"] for image in converted["images"]] == [1, 2, 3, 4]


def test_yolo_from_random_coco_boxes_within_a_pixel_including_an_exif_rotated_image(tmp_path):
    """COCO annotations (float boxes, random sizes) written as YOLO the way exporters do; back within a pixel."""
    rng = np.random.default_rng(0)
    images_dir, labels_dir = tmp_path / "images", tmp_path / "labels"
    images_dir.mkdir()
    labels_dir.mkdir()
    classes = ["a", "b", "c", "d"]
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)]}
    for image_id in range(1, 7):
        stored_height, stored_width = (int(v) for v in rng.integers(40, 400, size=2))
        pil = Image.fromarray(rng.integers(0, 255, (stored_height, stored_width, 3), dtype=np.uint8))
        exif = pil.getexif()
        rotated = image_id == 3  # displayed turned by 90 degrees: YOLO and COCO both use the displayed size
        if rotated:
            exif[0x0112] = 6
        pil.save(images_dir / f"{image_id:012d}.jpg", exif=exif.tobytes())
        height, width = (stored_width, stored_height) if rotated else (stored_height, stored_width)
        coco["images"].append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": height, "width": width})
        lines = []
        for _ in range(int(rng.integers(0, 5))):
            x1, x2 = np.sort(rng.uniform(0, width, 2))
            y1, y2 = np.sort(rng.uniform(0, height, 2))
            category = int(rng.integers(1, 5))
            bbox = [round(float(v), 2) for v in (x1, y1, x2 - x1 + 1, y2 - y1 + 1)]
            bbox[2], bbox[3] = min(bbox[2], width - bbox[0]), min(bbox[3], height - bbox[1])
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": category, "bbox": bbox, "area": bbox[2] * bbox[3],
                                        "iscrowd": 0})
            cx, cy = (bbox[0] + bbox[2] / 2) / width, (bbox[1] + bbox[3] / 2) / height
            lines.append(f"{category - 1} {cx:.6f} {cy:.6f} {bbox[2] / width:.6f} {bbox[3] / height:.6f}")
        if lines:
            (labels_dir / f"{image_id:012d}.txt").write_text("\n".join(lines) + "\n")
    converted = yolo_to_coco(images_dir, labels_dir, classes=classes)
    assert len(converted["annotations"]) == len(coco["annotations"]) > 5
    assert_same_annotations(converted, coco, atol=1.0)
    assert [image["id"] for image in converted["images"]] == list(range(1, 7))  # ids from COCO-style names
    assert [(image["height"], image["width"]) for image in converted["images"]] == [
        (image["height"], image["width"]) for image in coco["images"]
    ]


@pytest.fixture(scope="module")
def convert_tool():
    return load_script("tools/convert.py")


def test_cli_voc2coco_and_yolo2coco(make_scene, tmp_path, convert_tool, capsys):
    voc, yolo = make_scene("voc"), make_scene("yolo")
    out = tmp_path / "voc.json"
    assert convert_tool.main(["voc2coco", "--images", str(voc["images"]), "--annotations", str(voc["annotations"]),
                              "--split", str(voc["split"]), "--out", str(out)]) == 0
    assert "4 images, 6 boxes, 3 classes" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["annotations"]) == 6
    out = tmp_path / "yolo.json"
    assert convert_tool.main(["yolo2coco", "--images", str(yolo["images"]), "--labels", str(yolo["labels"]),
                              "--classes", str(yolo["classes"]), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["categories"][2]["name"] == "person"


def test_cli_errors_are_one_line_and_non_zero(make_scene, tmp_path, convert_tool, capsys):
    voc = make_scene("voc")
    (voc["annotations"] / "000002.xml").write_text("<annotation><object></annotation>")
    out = tmp_path / "never.json"
    code = convert_tool.main(["voc2coco", "--images", str(voc["images"]), "--annotations", str(voc["annotations"]),
                              "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert error.count("\n") == 1 and error.startswith("convert.py: error: ") and "000002.xml:1: malformed XML" in error
    code = convert_tool.main(["yolo2coco", "--images", str(tmp_path / "nowhere"), "--labels", str(tmp_path),
                              "--classes", "x.txt", "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "nowhere does not exist" in error


def test_cli_script_prints_one_line_and_no_traceback(make_scene, tmp_path, capfd, monkeypatch):
    yolo = make_scene("yolo")
    (yolo["labels"] / "000001.txt").write_text("0 0.5 0.5\n")
    result = run_main(
        "tools/convert.py", ["yolo2coco", "--images", str(yolo["images"]), "--labels", str(yolo["labels"]),
                             "--classes", str(yolo["classes"]), "--out", str(tmp_path / "x.json")],
        cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "000001.txt:1: expected 'class cx cy w h'" in result.stderr
