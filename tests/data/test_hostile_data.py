"""Hostile data gives one clear line, not a crash: numbers too large for int64 / float64 in YOLO, VOC and COCO
annotations, images over Pillow's decompression-bomb limit, and a COCO set whose hundreds of images are all missing
(a summary with the count and the first few, not a warning per image)."""

from __future__ import annotations

import json
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import ssdlite.engine.cli  # noqa: F401  (Lightning's log handlers then bind to the session's stderr, not a test's)
from ssdlite.commands import check_dataset as check_command
from ssdlite.commands import convert as convert_command
from ssdlite.commands import train as train_command
from ssdlite.data.annotations import DatasetWarning
from ssdlite.data.checks import check_dataset
from ssdlite.data.coco import CocoDetection
from ssdlite.data.detection_dataset import LISTED_IMAGE_PROBLEMS, NoReadableImageError
from ssdlite.data.image_io import TOO_LARGE, read_image_size
from ssdlite.data.voc import VOCDetection
from ssdlite.data.yolo import YOLODetection
from ssdlite_runtime.image_io import ImageReadError

from .scene import SCENE, voc_xml


def error_line(capsys, prog: str) -> str:
    """The one line a command printed on stderr (asserting there is exactly one)."""
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"{prog}: error: ") and "unexpected" not in line, line
    return line


def forged_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels, in about 60 bytes (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


# --- numbers that overflow ---------------------------------------------------------------------------------------


def test_a_yolo_class_of_1e30_is_a_line_error_in_convert_and_a_problem_in_the_checker(make_scene, tmp_path, capsys):
    paths = make_scene("yolo")
    label = paths["labels"] / "000002.txt"
    label.write_text("1 0.5 0.5 0.2 0.2\n1e30 0.5 0.5 0.2 0.2\n")
    arguments = ["--images", str(paths["images"]), "--labels", str(paths["labels"]), "--classes",
                 str(paths["classes"]), "--out", str(tmp_path / "out.json")]
    assert convert_command.main(["yolo2coco", *arguments], prog="convert.py") == 2
    line = error_line(capsys, "convert.py")
    assert f"{label}:2: class 1e30 is not a class index" in line and "'class cx cy w h'" in line

    assert check_command.main(["--format", "yolo", "--images", str(paths["images"]), "--annotations",
                               str(paths["labels"]), "--classes", str(paths["classes"])], prog="check_dataset.py") == 1
    printed = capsys.readouterr().out
    assert f"ERROR [malformed_annotation] {label}: line 2: class 1e30 is not a class index" in printed
    # An unknown class index that int64 holds is still an unknown class (dropped with a warning), not an error.
    label.write_text("1 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    report = check_dataset("yolo", paths["images"], paths["labels"], classes=paths["classes"])
    assert [problem.kind for problem in report.problems] == ["unknown_class"]


def test_yolo_coordinates_beyond_float64_are_degenerate_boxes(make_scene):
    paths = make_scene("yolo")
    (paths["labels"] / "000002.txt").write_text("1 0.5 0.5 1e308 0.2\n1 1e400 0.5 0.2 0.2\n1 0.5 0.5 1 1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no numpy overflow warning either
        report = check_dataset("yolo", paths["images"], paths["labels"], classes=paths["classes"])
    assert [problem.kind for problem in report.errors] == ["degenerate_box", "degenerate_box"]
    assert report.class_counts["dog"] == 2  # the third line of 000002.txt and 000003's dog


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", 10**30), ("image_id", 10**30), ("category_id", -(10**30))],
)
def test_coco_ids_beyond_int64_are_a_malformed_file(make_scene, tmp_path, capsys, field, value):
    paths = make_scene("coco")
    data = json.loads(paths["annotations"].read_text())
    data["annotations"][0][field] = value
    paths["annotations"].write_text(json.dumps(data))
    report = check_dataset("coco", paths["images"], paths["annotations"])
    [error] = report.errors
    assert error.kind == "malformed_annotation" and error.file == str(paths["annotations"])
    assert f"annotations[0] has ['{field}'] [{value}] outside the 64-bit integers" in error.message

    with pytest.raises(ValueError, match=re.escape(f"{paths['annotations']}: annotations[0] has ['{field}']")):
        CocoDetection(paths["images"], paths["annotations"])


def test_coco_numbers_beyond_float64_neither_crash_the_checker_nor_the_reader(make_scene):
    paths = make_scene("coco")
    data = json.loads(paths["annotations"].read_text())
    data["images"][1]["height"] = 10**400  # not a size: the header's (64) is used instead
    data["images"][2]["width"] = 1e300
    data["annotations"][1]["area"] = 10**400  # not a number a float holds: box areas are used
    data["annotations"][2]["bbox"] = [10**400, 1, 5, 5]
    paths["annotations"].write_text(json.dumps(data))
    report = check_dataset("coco", paths["images"], paths["annotations"])
    [error] = report.errors
    assert error.kind == "malformed_annotation" and "annotation id 3 has bbox [1000" in error.message
    del data["annotations"][2]
    paths["annotations"].write_text(json.dumps(data))
    dataset = CocoDetection(paths["images"], paths["annotations"])
    sizes = {record.file_name: (record.height, record.width) for record in dataset.records}
    assert sizes["000002.jpg"] == SCENE["000002"][0] and sizes["000003.jpg"] == SCENE["000003"][0]
    assert dataset.to_coco()["annotations"][1]["area"] == 30 * 44  # the box area, not 1e400


def test_voc_numbers_beyond_float64(make_scene, tmp_path, capsys):
    paths = make_scene("voc")
    xml = paths["annotations"] / "000002.xml"
    (height, width), objects = SCENE["000002"]
    text = voc_xml("000002", height, width, objects)
    # A <size> of 1e400 (infinite) or 1e30 is no size: the image header gives it, as for a missing <size>.
    xml.write_text(text.replace(f"<width>{width}</width>", "<width>1e400</width>")
                   .replace(f"<height>{height}</height>", "<height>1e30</height>"))
    dataset = VOCDetection(paths["root"])
    assert {record.file_name: (record.height, record.width) for record in dataset.records}["000002.jpg"] == (64, 40)
    assert check_dataset("voc", paths["images"], paths["annotations"]).problems == []

    xml.write_text(text.replace("<difficult>0</difficult>", "<difficult>1e400</difficult>"))
    out = tmp_path / "voc.json"
    assert convert_command.main(["voc2coco", "--images", str(paths["images"]), "--annotations",
                                 str(paths["annotations"]), "--out", str(out)], prog="convert.py") == 2
    line = error_line(capsys, "convert.py")
    assert f"{xml}:3: object 0 has <difficult>1e400</difficult>; expected 0 or 1" in line
    report = check_dataset("voc", paths["images"], paths["annotations"])
    assert [(problem.kind, Path(problem.file).name) for problem in report.errors] == [
        ("malformed_annotation", "000002.xml")]


# --- decompression bombs -----------------------------------------------------------------------------------------


def test_a_forged_huge_png_is_named_with_what_to_do_by_convert_and_the_checker(make_scene, tmp_path, capsys):
    paths = make_scene("yolo")
    bomb = forged_png(paths["images"] / "000005.png", 100_000, 100_000)
    (paths["labels"] / "000005.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ImageReadError) as caught:
        read_image_size(bomb)
    assert caught.value.kind == TOO_LARGE

    assert convert_command.main(["yolo2coco", "--images", str(paths["images"]), "--labels", str(paths["labels"]),
                                 "--classes", str(paths["classes"]), "--out", str(tmp_path / "o.json")],
                                prog="convert.py") == 2
    line = error_line(capsys, "convert.py")
    assert line.startswith(f"convert.py: error: {bomb}: the image is 10,000,000,000 pixels, more than the "
                           f"{2 * Image.MAX_IMAGE_PIXELS:,} that Pillow opens")
    assert "resize the image or remove it from the set" in line
    assert not (tmp_path / "o.json").exists()

    assert check_command.main(["--format", "yolo", "--images", str(paths["images"]), "--annotations",
                               str(paths["labels"]), "--classes", str(paths["classes"])], prog="check_dataset.py") == 1
    printed = capsys.readouterr().out
    assert f"ERROR [image_too_large] {bomb}: the image is 10,000,000,000 pixels" in printed
    assert "problems: 1 errors" in printed  # the other four images are checked as usual


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_a_real_image_over_a_lowered_limit_stops_every_reader_that_reads_its_size(make_scene, monkeypatch, format):
    paths = make_scene(format)
    images = paths["images"]
    Image.new("L", (100, 90), 200).save(images / "000002.jpg")  # grey, 9,000 pixels: over twice 4,000 (the scene's
    # other images, of at most 3,072 pixels, are not even over 4,000, where Pillow warns)
    if format == "coco":  # COCO and VOC read the header only where the annotation states no size
        data = json.loads(paths["annotations"].read_text())
        del data["images"][1]["height"]
        paths["annotations"].write_text(json.dumps(data))
    elif format == "voc":
        xml = paths["annotations"] / "000002.xml"
        xml.write_text(re.sub(r"<size>.*?</size>", "", xml.read_text()))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)
    build = {
        "coco": lambda: CocoDetection(images, paths["annotations"]),
        "voc": lambda: VOCDetection(paths["root"]),
        "yolo": lambda: YOLODetection(images, paths["labels"], classes=paths["classes"]),
    }[format]
    with pytest.raises(ValueError, match=re.escape(f"{images / '000002.jpg'}: the image is 9,000 pixels, more than "
                                                   "the 8,000 that Pillow opens")):
        build()
    annotations = paths["labels"] if format == "yolo" else paths["annotations"]
    report = check_dataset(format, images, annotations, classes=paths.get("classes"))
    assert [(problem.kind, problem.file) for problem in report.errors] == [
        ("image_too_large", str(images / "000002.jpg"))]


def test_an_image_over_opencvs_limit_whose_size_the_annotation_states_is_an_unreadable_image(make_scene):
    """COCO (and VOC) with sizes never read the header: the pixels are decoded by OpenCV, which refuses the image
    with a cv2.error (the checker exited 1 on it)."""
    paths = make_scene("coco")
    forged_png(paths["images"] / "000002.jpg", 100_000, 100_000)  # the annotation says 40x64
    report = check_dataset("coco", paths["images"], paths["annotations"])
    [error] = report.errors
    assert (error.kind, error.file) == ("image_too_large", str(paths["images"] / "000002.jpg"))
    assert error.message.startswith(f"the image has more than {2**30} pixels, the most OpenCV decodes here (the "
                                    "environment variable OPENCV_IO_MAX_IMAGE_PIXELS sets it); resize the image")
    dataset = CocoDetection(paths["images"], paths["annotations"])
    with pytest.warns(DatasetWarning, match="000002.jpg.*the most OpenCV decodes here.*no detections"):
        assert dataset[1]["unreadable"] and dataset[1]["image"].shape == (64, 40, 3)


def write_train_config(tmp_path: Path, data: dict) -> Path:
    """A training config of the tiny model (it never gets to train: the data stops it)."""
    config = {
        "name": "hostile",
        "runs_dir": str(tmp_path / "runs"),
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "num_sanity_val_steps": 0,
                    "enable_progress_bar": False, "enable_model_summary": False},
        "model": {"arch": "ssdlite_mobilenet_v2", "width_mult": 0.35, "image_size": 128},
        "data": {"batch_size": 4, "num_workers": 0, **data},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_names_an_image_over_the_limit(make_scene, tmp_path, capfd):
    paths = make_scene("yolo")
    bomb = forged_png(paths["images"] / "000005.png", 100_000, 100_000)
    folders = {"train_images": str(paths["images"]), "train_annotations": str(paths["labels"]),
               "val_images": str(paths["images"]), "val_annotations": str(paths["labels"])}
    config = write_train_config(tmp_path, {"format": "yolo", "class_names": str(paths["classes"]), **folders})
    assert train_command.main(["--config", str(config)], prog="train.py") == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"train.py: error: {bomb}: the image is 10,000,000,000 pixels")
    assert "Call to compute_fn" not in lines[-1]


# --- a set of missing images -------------------------------------------------------------------------------------

MISSING = 300


def missing_images_set(tmp_path: Path, count: int = MISSING, *, empty_files: bool = False) -> tuple[Path, Path]:
    """An images folder and a COCO json of ``count`` images, none of which exists (or each an empty file)."""
    images = tmp_path / "images"
    images.mkdir()
    coco = {
        "images": [{"id": i, "file_name": f"photo_{i:04d}.jpg", "height": 64, "width": 64}
                   for i in range(1, count + 1)],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 20, 20], "area": 400, "iscrowd": 0}
                        for i in range(1, count + 1)],
        "categories": [{"id": 1, "name": "thing"}],
    }
    for image in coco["images"] if empty_files else []:
        (images / image["file_name"]).touch()
    annotations = tmp_path / "missing.json"
    annotations.write_text(json.dumps(coco))
    return images, annotations


def test_training_on_a_set_of_missing_images_prints_a_summary_not_a_warning_per_image(tmp_path, capfd):
    images, annotations = missing_images_set(tmp_path)
    files = {"train_images": str(images), "train_annotations": str(annotations), "val_images": str(images),
             "val_annotations": str(annotations)}
    config = write_train_config(tmp_path, {"format": "coco", **files})
    assert train_command.main(["--config", str(config)], prog="train.py") == 2
    captured = capfd.readouterr()
    output = (captured.out + captured.err).strip().splitlines()
    assert len(output) < 15, output  # was 2 lines per image (606 here, 100,005 for 50,000 images)
    assert not [line for line in output if "photo_0011.jpg" in line]
    error = output[-1]  # with or without DataLoader workers: the training set is refused before they start
    assert error.startswith(f"train.py: error: CocoDetection({annotations}): none of its {MISSING} image files exists "
                            f"(the first 10: {images / 'photo_0001.jpg'}, ")
    assert f"{images / 'photo_0010.jpg'}); check the images folder, or restore the images. ssdlite-check-dataset " \
           f"--format coco --images {images} --annotations {annotations} lists every problem of the set" in error


def test_missing_images_are_warned_about_one_by_one_only_up_to_a_limit(tmp_path):
    images, annotations = missing_images_set(tmp_path)
    dataset = CocoDetection(images, annotations)  # "placeholder", as in validation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two epochs
            assert all(dataset[index]["unreadable"] for index in range(len(dataset)))
    reports = [str(warning.message) for warning in caught if issubclass(warning.category, DatasetWarning)]
    assert len(reports) == LISTED_IMAGE_PROBLEMS + 1
    assert all("photo_" in report and "no detections" in report for report in reports[:-1])
    assert reports[-1] == (f"CocoDetection({annotations}): more than {LISTED_IMAGE_PROBLEMS} images are unreadable; "
                           f"the others are not reported one by one. ssdlite-check-dataset --format coco --images "
                           f"{images} --annotations {annotations} lists them all.")

    with pytest.raises(FileNotFoundError, match=f"none of its {MISSING} image files exists"):
        CocoDetection(images, annotations, unreadable="substitute")


def test_training_on_a_set_none_of_whose_images_decodes_stops_with_a_summary(tmp_path):
    images, annotations = missing_images_set(tmp_path, 12, empty_files=True)
    dataset = CocoDetection(images, annotations, unreadable="substitute")
    with warnings.catch_warnings(record=True) as caught, pytest.raises(NoReadableImageError) as error:
        warnings.simplefilter("always")
        dataset[5]
    assert not caught  # the summary, not twelve warnings
    assert isinstance(error.value, ImageReadError)  # what the DataLoader and the error handler expect
    first = ", ".join(str(images / f"photo_{i:04d}.jpg") for i in range(1, 11))
    assert str(error.value) == (f"CocoDetection({annotations}): none of its 12 images can be read (12 x the file is "
                                f"empty; the first 10: {first}); ssdlite-check-dataset --format coco --images {images} "
                                f"--annotations {annotations} lists them all. Check the images folder, or restore the "
                                "images")


def test_substitute_skips_the_images_it_already_found_unreadable(make_scene):
    paths = make_scene("coco")
    for stem in ("000001", "000002"):
        (paths["images"] / f"{stem}.jpg").unlink()
    dataset = CocoDetection(paths["images"], paths["annotations"], unreadable="substitute")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [dataset[index]["file_name"] for index in (0, 1, 0, 1)]
    assert names == ["000003.jpg"] * 4
    assert dataset._unreadable_indices == {0, 1}
    reports = [str(warning.message) for warning in caught if issubclass(warning.category, DatasetWarning)]
    assert len(reports) == 2 and "000001.jpg" in reports[0] and "000002.jpg" in reports[1]
    assert np.array_equal(dataset[2]["image"], dataset[0]["image"])
