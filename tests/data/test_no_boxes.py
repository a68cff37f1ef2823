"""A set with no box at all is refused, and one where most images have none is warned about, in every format: by
the DataModule when it sets up and by the dataset checker (issue 15, section 3).

Without a box there is nothing to learn from: training ran at loss 0.000 without a word, and the checker said
"0 errors", when a YOLO labels path pointed at a folder without the images' label files.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from ssdlite.data.annotations import DatasetWarning
from ssdlite.data.checks import check_dataset
from ssdlite.data.datamodule import DetectionDataModule

from .scene import SCENE, load_script, voc_xml

FORMATS = ("coco", "voc", "yolo")


def remove_boxes(format: str, paths: dict[str, Path], stems) -> Path:
    """Takes every box of the images ``stems`` out of the scene's annotations; returns where the labels are."""
    if format == "coco":
        data = json.loads(paths["annotations"].read_text())
        image_ids = {image["id"] for image in data["images"] if Path(image["file_name"]).stem in stems}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in image_ids]
        paths["annotations"].write_text(json.dumps(data))
        return paths["annotations"]
    if format == "voc":
        for stem in stems:
            (height, width), _ = SCENE[stem]
            (paths["annotations"] / f"{stem}.xml").write_text(voc_xml(stem, height, width, []))
        return paths["annotations"]
    for stem in stems:  # YOLO: the label file is missing, as with a wrong labels path
        (paths["labels"] / f"{stem}.txt").unlink(missing_ok=True)
    return paths["labels"]


def datamodule(format: str, paths: dict[str, Path], **overrides) -> DetectionDataModule:
    """Both splits on the scene (VOC: the dataset root and its trainval split)."""
    if format == "coco":
        images, annotations, classes = paths["images"], paths["annotations"], None
    elif format == "voc":
        images, annotations, classes = paths["root"], "trainval", None
    else:
        images, annotations, classes = paths["images"], paths["labels"], paths["classes"]
    config = dict(format=format, train_images=images, train_annotations=annotations, val_images=images,
                  val_annotations=annotations, class_names=classes, image_size=64, batch_size=2, num_workers=0)
    return DetectionDataModule(**(config | overrides))


def checker_report(format: str, paths: dict[str, Path]):
    labels = paths["labels"] if format == "yolo" else paths["annotations"]
    return check_dataset(format, paths["images"], labels, classes=paths.get("classes"))


EXPECTED_ERROR = {
    "coco": r"none of the 4 images of .*annotations\.json has a box: its 'annotations' list holds no usable one",
    "voc": r"none of the 4 images has a box: no XML in .*Annotations holds an <object>",
    "yolo": r"0 of 4 images have a label file in .*labels; YOLO labels are IMAGE_STEM\.txt \(e\.g\. .*000001\.txt",
}


@pytest.mark.parametrize("format", FORMATS)
def test_datamodule_refuses_a_training_set_without_boxes(make_scene, format):
    paths = make_scene(format)
    remove_boxes(format, paths, list(SCENE))
    module = datamodule(format, paths)
    with pytest.raises(ValueError, match=EXPECTED_ERROR[format]) as error:
        module.setup("fit")
    assert str(error.value).startswith("train set: ")


def test_datamodule_refuses_a_validation_set_without_boxes(make_scene, tmp_path):
    paths = make_scene("yolo")
    empty_labels = tmp_path / "wrong_labels"
    empty_labels.mkdir()
    module = datamodule("yolo", paths, val_annotations=empty_labels)
    with pytest.raises(ValueError, match=rf"^val set: 0 of 4 images have a label file in {re.escape(str(empty_labels))}"):
        module.setup("fit")


@pytest.mark.parametrize("format", FORMATS)
def test_datamodule_warns_when_most_images_have_no_box(make_scene, format):
    paths = make_scene(format)
    remove_boxes(format, paths, ["000001", "000002"])  # with the negative 000004: 3 of 4 without a box
    module = datamodule(format, paths)
    with pytest.warns(DatasetWarning, match=r"set: 3 of 4 images have no box") as caught:
        module.setup("fit")
    messages = [str(warning.message) for warning in caught if "have no box" in str(warning.message)]
    assert [message.split(":")[0] for message in messages] == ["train set", "val set"]
    if format == "yolo":
        assert "(3 without a label file; YOLO labels are IMAGE_STEM.txt)" in messages[0]


@pytest.mark.parametrize("format", FORMATS)
def test_datamodule_is_silent_when_half_or_more_images_have_boxes(make_scene, format):
    paths = make_scene(format)
    remove_boxes(format, paths, ["000001"])  # 2 of 4 without a box: not most of them
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        datamodule(format, paths).setup("fit")


@pytest.mark.parametrize("format", FORMATS)
def test_checker_reports_a_set_without_boxes_as_an_error(make_scene, format):
    paths = make_scene(format)
    labels = remove_boxes(format, paths, list(SCENE))
    report = checker_report(format, paths)
    [error] = report.errors
    assert error.kind == "no_boxes" and error.file == str(labels)
    assert re.search(EXPECTED_ERROR[format], error.message)


@pytest.mark.parametrize("format", FORMATS)
def test_checker_warns_when_most_images_have_no_box(make_scene, format):
    paths = make_scene(format)
    labels = remove_boxes(format, paths, ["000001", "000002"])
    report = checker_report(format, paths)
    assert report.errors == []
    [warning] = report.warnings
    assert warning.kind == "images_without_boxes" and warning.file == str(labels)
    assert warning.message.startswith("3 of 4 images have no box")


def test_check_dataset_tool_exits_non_zero_for_a_yolo_labels_folder_without_label_files(make_scene, tmp_path,
                                                                                        capsys):
    paths = make_scene("yolo")
    wrong_labels = tmp_path / "labels_elsewhere"
    wrong_labels.mkdir()
    tool = load_script("tools/check_dataset.py")
    status = tool.main(["--format", "yolo", "--images", str(paths["images"]), "--annotations", str(wrong_labels),
                        "--classes", str(paths["classes"])])
    printed = capsys.readouterr().out
    assert status == 1
    assert f"ERROR [no_boxes] {wrong_labels}: 0 of 4 images have a label file in {wrong_labels}" in printed
    assert "problems: 1 errors" in printed
