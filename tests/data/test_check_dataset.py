"""check_dataset finds every planted problem, with its file, in each format; the CLI exits non-zero on errors."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssdlite.data.checks import check_dataset, plot_box_sizes
from tests.browser import page_elements
from tests.commands_in_process import run_main

from .scene import SCENE, load_script, voc_xml


def found(report) -> set[tuple[str, str]]:
    """{(kind, file name)} of the report's errors."""
    return {(problem.kind, Path(problem.file.split(" (")[0]).name) for problem in report.errors}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def snapshot(folder: Path) -> dict:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_clean_scene_has_no_problem_and_right_counts(make_scene, format):
    paths = make_scene(format)
    annotations = {"coco": "annotations", "voc": "annotations", "yolo": "labels"}[format]
    report = check_dataset(format, paths["images"], paths[annotations], classes=paths.get("classes"))
    assert report.problems == []
    assert report.class_counts == {"cat": 3, "dog": 2, "person": 1}
    assert report.images_without_objects == ["000004.jpg"]
    assert report.num_images == 4 and report.num_boxes == 6
    assert report.size_counts() == {"small": 4, "medium": 2, "large": 0}


def test_coco_planted_problems(make_scene):
    paths = make_scene("coco")
    data = json.loads(paths["annotations"].read_text())
    extra = [(1, 3, [5, 5, 0, 10]), (1, 3, [50, 40, 30, 20]), (3, 99, [1, 1, 5, 5]), (77, 3, [1, 1, 5, 5])]
    for image_id, category_id, bbox in extra:
        data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id,
                                    "category_id": category_id, "bbox": bbox, "area": 1, "iscrowd": 0})
    data["images"][2]["height"] = 60  # 000003.jpg is 50x50
    paths["annotations"].write_text(json.dumps(data))
    (paths["images"] / "000004.jpg").unlink()
    truncate(paths["images"] / "000002.jpg")
    before = snapshot(paths["images"].parent)

    report = check_dataset("coco", paths["images"], paths["annotations"])
    assert found(report) == {
        ("missing_image", "000004.jpg"),
        ("truncated_image", "000002.jpg"),
        ("size_mismatch", "000003.jpg"),
        ("degenerate_box", "annotations.json"),
        ("out_of_image_box", "annotations.json"),
        ("unknown_class", "annotations.json"),
        ("label_without_image", "annotations.json"),
    }
    messages = "\n".join(str(problem) for problem in report.errors)
    assert "000001.jpg" in messages and "category_id 99" in messages and "image_id 77" in messages
    assert snapshot(paths["images"].parent) == before


def test_voc_planted_problems_and_malformed_file_does_not_stop_the_check(make_scene, tmp_path):
    paths = make_scene("voc")
    (paths["annotations"] / "000002.xml").write_text("<annotation><size>")
    objects = [("cat", 4, 6, 30, 40), ("horse", 1, 1, 9, 9), ("cat", 20, 10, 10, 30), ("dog", 40, 20, 80, 47)]
    (paths["annotations"] / "000001.xml").write_text(voc_xml("000001", 48, 64, objects))
    (paths["images"] / "000003.jpg").unlink()
    split = tmp_path / "split.txt"
    split.write_text("000001\n000002\n000003\n000004\n000009\n")
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nperson\n")

    report = check_dataset("voc", paths["images"], paths["annotations"], classes=names, split_file=split)
    assert found(report) == {
        ("malformed_annotation", "000002.xml"),
        ("missing_annotation", "000009.xml"),
        ("unknown_class", "000001.xml"),
        ("degenerate_box", "000001.xml"),
        ("out_of_image_box", "000001.xml"),
        ("missing_image", "000003.jpg"),
    }
    assert report.num_images == 3  # 000001, 000003 (missing jpg) and 000004 still counted
    assert report.class_counts == {"cat": 3, "dog": 2, "person": 0}


def test_voc_root_and_split_name_as_the_readers_take_them(make_scene, tmp_path):
    paths = make_scene("voc")
    root = tmp_path / "VOC"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "JPEGImages").symlink_to(paths["images"])
    (root / "Annotations").symlink_to(paths["annotations"])
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000004\n")
    report = check_dataset("voc", root, root, split_file="train")
    assert report.num_images == 2 and report.problems == []
    assert check_dataset("voc", root, root).num_images == 4
    with pytest.raises(FileNotFoundError, match=r"split 'tain'.*ImageSets/Main/tain.txt does not exist"):
        check_dataset("voc", root, root, split_file="tain")


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_a_dataset_with_no_annotated_image_is_an_error_not_an_empty_report(tmp_path, format):
    empty = tmp_path / "empty"
    empty.mkdir()
    annotations = empty
    if format == "coco":
        annotations = tmp_path / "empty.json"
        annotations.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(ValueError, match="no annotated images found"):
        check_dataset(format, empty, annotations, classes=["a"])


def test_yolo_planted_problems(make_scene):
    paths = make_scene("yolo")
    (paths["labels"] / "000001.txt").write_text(
        "0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.2 0.2\n1 0.5 0.5 0 0.3\n2 1.0 0.5 0.5 0.5\nbroken line\n"
    )
    (paths["labels"] / "lonely.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    truncate(paths["images"] / "000002.jpg")
    (paths["images"] / "000003.jpg").write_bytes(b"definitely not a jpeg" * 20)

    report = check_dataset("yolo", paths["images"], paths["labels"], classes=paths["yaml"])
    assert found(report) == {
        ("malformed_annotation", "000001.txt"),
        ("unknown_class", "000001.txt"),
        ("degenerate_box", "000001.txt"),
        ("out_of_image_box", "000001.txt"),
        ("label_without_image", "lonely.txt"),
        ("truncated_image", "000002.jpg"),
        ("unreadable_image", "000003.jpg"),
    }
    malformed = next(p for p in report.errors if p.kind == "malformed_annotation")
    assert "line 5" in malformed.message
    with pytest.raises(ValueError, match="class names"):
        check_dataset("yolo", paths["images"], paths["labels"])


def test_small_overshoot_is_only_a_warning(make_scene):
    paths = make_scene("coco")
    data = json.loads(paths["annotations"].read_text())
    data["annotations"][0]["bbox"] = [4, 6, 26.5, 42.6]  # y2 = 48.6 on a 48 px image
    paths["annotations"].write_text(json.dumps(data))
    report = check_dataset("coco", paths["images"], paths["annotations"])
    assert report.errors == [] and [p.kind for p in report.warnings] == ["out_of_image_box"]


@pytest.fixture(scope="module")
def check_tool():
    return load_script("tools/check_dataset.py")


def test_cli_exit_codes_report_and_plot(make_scene, tmp_path, check_tool, capsys):
    paths = make_scene("yolo")
    arguments = ["--format", "yolo", "--images", str(paths["images"]), "--annotations", str(paths["labels"]),
                 "--classes", str(paths["classes"])]
    assert check_tool.main(arguments) == 0
    assert "cat     3" in capsys.readouterr().out

    (paths["labels"] / "000003.txt").write_text("0 0.5 0.5 0 0.1\n")
    report_file, plot_file = tmp_path / "out" / "report.json", tmp_path / "out" / "boxes.png"
    code = check_tool.main(arguments + ["--fix-report", str(report_file), "--plot", str(plot_file)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "ERROR [degenerate_box]" in printed and "000003.txt" in printed
    report = json.loads(report_file.read_text())
    assert report["num_errors"] == 1 and report["errors"][0]["kind"] == "degenerate_box"
    assert report["errors"][0]["file"].endswith("000003.txt")
    assert report["images_without_objects"] == ["000003.jpg", "000004.jpg"]  # 000003's only box was dropped
    with Image.open(plot_file) as plot:
        assert plot.format == "PNG" and plot.width > 500
        assert np.asarray(plot.convert("L")).std() > 10  # something was drawn

    assert check_tool.main(["--format", "voc", "--images", str(tmp_path / "none"),
                            "--annotations", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("check_dataset.py: error: ") and error.count("\n") == 1


def test_plot_of_a_dataset_without_boxes(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 24)).save(images / "background.jpg")
    annotations = tmp_path / "no_boxes.json"
    annotations.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "background.jpg", "width": 32, "height": 24}],
        "annotations": [], "categories": [{"id": 1, "name": "x"}],
    }))
    report = check_dataset("coco", images, annotations)
    assert report.num_images == 1 and report.num_boxes == 0
    assert [problem.kind for problem in report.problems] == ["no_boxes"]  # nothing to train on: an error
    assert plot_box_sizes(report, tmp_path / "empty.png").stat().st_size > 0
    assert len(SCENE) == 4


_GOOD_IMAGE = {"id": 1, "file_name": "000001.jpg", "height": 48, "width": 64}
_CATEGORIES = [{"id": 1, "name": "cat"}]
UNPARSABLE_COCO = {
    "malformed": (
        b'{\n  "images": [\n    {"id": 1, "file_name": "000001.jpg",}\n  ],\n  "categories": []\n}',
        r"line 3: invalid JSON at column 41: Expecting property name enclosed in double quotes",
    ),
    "not_utf8": (b'\xff\xfe{\x00"\x00i\x00', r"not a UTF-8 text file \(invalid start byte\)"),
    "empty": (b"", r"the file is empty; expected a COCO json"),
    "duplicate_ids": (
        json.dumps({"images": [_GOOD_IMAGE, {**_GOOD_IMAGE, "file_name": "000002.jpg"}, {**_GOOD_IMAGE, "id": 7},
                               {**_GOOD_IMAGE, "id": 7}], "annotations": [], "categories": _CATEGORIES}).encode(),
        r"'images' repeats ids \(\[1, 7\]\); every image needs a unique id",
    ),
    "string_ids": (
        json.dumps({"images": [{**_GOOD_IMAGE, "id": "000001"}], "annotations": [],
                    "categories": _CATEGORIES}).encode(),
        r"images\[0\] has non-integer \['id'\]: \['000001'\]; COCO ids are integers",
    ),
    "top_level_list": (
        json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]).encode(),
        r"holds a JSON list of 1 entries \(a results file of detections\?\), expected an object with 'images'",
    ),
}


@pytest.mark.parametrize("case", list(UNPARSABLE_COCO))
def test_an_unparsable_coco_file_is_reported_with_its_precise_reason(make_scene, check_tool, capsys, case):
    paths = make_scene("coco")
    content, reason = UNPARSABLE_COCO[case]
    paths["annotations"].write_bytes(content)
    report = check_dataset("coco", paths["images"], paths["annotations"])
    [error] = report.errors
    assert error.kind == "malformed_annotation" and error.file == str(paths["annotations"])
    assert re.search(reason, error.message), error.message
    assert report.num_images == 0

    status = check_tool.main(["--format", "coco", "--images", str(paths["images"]),
                              "--annotations", str(paths["annotations"])])
    captured = capsys.readouterr()
    assert status == 1
    assert re.search(reason, captured.out) and "no annotated images found" not in captured.out + captured.err


def test_sample_per_class_is_evenly_spaced_and_counts_shared_images_once(make_scene):
    paths = make_scene("coco")
    report = check_dataset("coco", paths["images"], paths["annotations"])
    names = [[record.file_name for record in report.sample_per_class(n)] for n in (1, 2, 8)]
    # cat: 000001, 000003; dog: 000002, 000003; person: 000001 (already in for cat); no objects: 000004
    assert names == [["000001.jpg", "000002.jpg", "000004.jpg"],
                     *[["000001.jpg", "000003.jpg", "000002.jpg", "000004.jpg"]] * 2]
    many = [dataclasses.replace(report.records[0], file_name=f"{index:02d}.jpg") for index in range(10)]
    spread = dataclasses.replace(report, records=many).sample_per_class(3)
    assert [record.file_name for record in spread] == ["00.jpg", "04.jpg", "09.jpg"]  # first, middle, last
    with pytest.raises(ValueError, match="at least 1"):
        report.sample_per_class(0)


def test_cli_gallery_shows_the_ground_truth_of_the_per_class_sample(make_scene, tmp_path, capfd, monkeypatch):
    paths = make_scene("coco")
    gallery = tmp_path / "out" / "preview.html"
    result = run_main("tools/check_dataset.py", [
        "--format", "coco", "--images", str(paths["images"]), "--annotations", str(paths["annotations"]),
        "--gallery", str(gallery), "--gallery-per-class", "1",
    ], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert result.returncode == 0, result.stderr
    assert f"wrote {gallery}" in result.stdout.splitlines()
    page = gallery.read_text(encoding="utf-8")
    # one per class (000001 for two), then one without objects, where missing labels hide
    assert [figure["title"] for figure in page_elements(page, "figure")] == \
        [str(paths["images"] / name) for name in ("000001.jpg", "000002.jpg", "000004.jpg")]
    assert "000004.jpg: no objects" in page
    assert sorted(path.name for path in (tmp_path / "out" / "preview_files").iterdir()) == [
        "0001.jpg", "0002.jpg", "0003.jpg"]
    drawn = [(group["data-class"], group["data-kind"]) for group in page_elements(page, "g")]
    assert drawn == [("cat", "cat"), ("person", "person"), ("dog", "dog")]
    rects = [(rect["x"], rect["y"], rect["width"], rect["height"]) for rect in page_elements(page, "rect")]
    assert rects == [("4", "6", "26", "34"), ("30", "2", "30", "44"), ("0", "0", "40", "64")]  # scene.py's boxes
    colours = {rect["stroke"] for rect in page_elements(page, "rect")}
    assert len(colours) == 3 and ">person</text>" in page

    assert run_main("tools/check_dataset.py", ["--format", "coco", "--images", str(paths["images"]),
                                               "--annotations", str(paths["annotations"]), "--gallery", "x.html",
                                               "--gallery-per-class", "0"],
                    cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch).returncode == 2
