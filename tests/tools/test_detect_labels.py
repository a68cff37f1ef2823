"""``detect.py ... --save-labels yolo|voc|coco OUT``: the predictions as a dataset that the project's own readers and
``ssdlite-check-dataset`` read back, box for box; ``--every`` on a video; a folder holding a dataset refused, and
replaced with ``--overwrite``; Ctrl+C keeps the labels made.

The tiny model of tests/tools/test_detect.py (not trained: its boxes are noise with image-dependent scores) runs
from a checkpoint; the threshold is set above every score of a plain grey image, so that image gets an empty label
and the scenes get a few boxes each. Both commands' ``main`` run in the test's process
(tests/commands_in_process.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite_runtime import jobs, stream
from ssdlite_runtime.image_io import read_image
from ssdlite_runtime.predictor import Predictor
from tests.commands_in_process import Completed, one_error_line, run_main
from tests.runtime.test_labels import read_back
from tests.tools.test_detect import (
    CATEGORY_IDS,
    CLASS_NAMES,
    assert_ok,
    draw_scene,
    read_video,
    run_detect,
    save_lightning_checkpoint,
    tiny_detector,
    write_video,
)

VIDEO_FRAMES = 10
CHECK_ARGUMENTS = {
    "yolo": ["--images", "images", "--annotations", "labels", "--classes", "data.yaml"],
    "voc": ["--images", ".", "--annotations", ".", "--classes", "labels.txt"],
    "coco": ["--images", "images", "--annotations", "annotations.json"],
}
"""``ssdlite-check-dataset`` arguments for each format, relative to OUT."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A checkpoint of the tiny model, three scenes and a grey image, a 10-frame clip, and the score threshold."""
    root = tmp_path_factory.mktemp("detect_labels")
    model = tiny_detector()
    checkpoint = save_lightning_checkpoint(model, root / "model.ckpt")
    images = root / "images"
    images.mkdir()
    for step, suffix in zip((0, 9, 18), (".jpg", ".png", ".jpg")):
        cv2.imwrite(str(images / f"scene{step:02d}{suffix}"), cv2.cvtColor(draw_scene(step), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(images / "grey.png"), np.full((200, 300, 3), 90, np.uint8))
    video = write_video(root / "clip.mp4", [draw_scene(step) for step in range(VIDEO_FRAMES)])
    predictor = Predictor(checkpoint, score_threshold=0.0)
    [grey, *scenes] = [predictor.predict(read_image(path))[0]["scores"] for path in sorted(images.iterdir())]
    threshold = round(float(grey.max()) + 0.01, 2)  # nothing on the grey image, a few boxes on each scene
    assert all(0 < int((scores > threshold).sum()) < 20 for scores in scenes)
    return {"root": root, "checkpoint": checkpoint, "images": images, "video": video, "threshold": threshold}


def detect(workspace, *args: object, capfd, monkeypatch) -> Completed:
    return run_detect(*args, "--model", workspace["checkpoint"], "--score-threshold", workspace["threshold"],
                      "--no-show", cwd=workspace["root"], capfd=capfd, monkeypatch=monkeypatch)


def check_dataset(label_format: str, out: Path, *, capfd, monkeypatch) -> Completed:
    return run_main("tools/check_dataset.py", ["--format", label_format, *CHECK_ARGUMENTS[label_format]], cwd=out,
                    capfd=capfd, monkeypatch=monkeypatch)


def json_detections(path: Path, file_names: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """File name -> (class names, boxes [N, 4] xyxy) of ``--json``'s records."""
    records = json.loads(path.read_text())
    found = {}
    for name in file_names:
        mine = [record for record in records if Path(record["file_name"]).name == name]
        boxes = np.array([record["bbox"] for record in mine], dtype=np.float64).reshape(-1, 4)
        found[name] = ([record["category_name"] for record in mine], np.hstack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]))
    return found


@pytest.mark.parametrize("label_format", ["yolo", "voc", "coco"])
def test_labels_read_back_as_the_json_detections_and_pass_the_check(workspace, label_format, capfd, monkeypatch):
    out = workspace["root"] / f"labels_{label_format}"
    result = detect(workspace, "dir", workspace["images"], "--save-labels", label_format, out,
                    "--json", out.with_suffix(".json"), capfd=capfd, monkeypatch=monkeypatch)
    assert_ok(result)
    assert f"as a {label_format} dataset in {out}" in result.stdout

    checked = check_dataset(label_format, out, capfd=capfd, monkeypatch=monkeypatch)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 images" in checked.stdout and "problems: 0 errors, 0 warnings" in checked.stdout

    inputs = sorted(workspace["images"].iterdir())
    parsed, read = read_back(label_format, out)
    assert dict(zip(parsed.category_ids, parsed.class_names)) == (
        dict(zip(CATEGORY_IDS, CLASS_NAMES)) if label_format == "coco" else dict(enumerate(CLASS_NAMES, 1))
    )
    expected = json_detections(out.with_suffix(".json"), [path.name for path in inputs])
    assert set(read) == set(expected)
    for name, (classes, boxes) in expected.items():
        assert read[name][0] == classes, name
        np.testing.assert_allclose(read[name][1], boxes, atol=1.0, err_msg=name)
    assert not read["grey.png"][0] and all(read[path.name][0] for path in inputs if path.name != "grey.png")
    images_dir = out / ("JPEGImages" if label_format == "voc" else "images")
    assert all((images_dir / path.name).read_bytes() == path.read_bytes() for path in inputs)  # copied as they are


def test_video_every_third_frame_is_labelled(workspace, capfd, monkeypatch):
    out = workspace["root"] / "labels_video"
    result = detect(workspace, "video", workspace["video"], "--save-labels", "coco", out, "--every", 3,
                    capfd=capfd, monkeypatch=monkeypatch)
    assert_ok(result)
    kept = range(0, VIDEO_FRAMES, 3)
    assert len(kept) == math.ceil(VIDEO_FRAMES / 3)
    names = [f"clip_{index:06d}.jpg" for index in kept]
    assert sorted(path.name for path in (out / "images").iterdir()) == names
    dataset = json.loads((out / "annotations.json").read_text())
    assert [image["file_name"] for image in dataset["images"]] == names
    assert all((image["height"], image["width"]) == (240, 320) for image in dataset["images"])
    frames = read_video(workspace["video"])
    for index, name in zip(kept, names):  # the frames as decoded, without the boxes and FPS drawn for the screen
        changed = np.abs(read_image(out / "images" / name).astype(np.int16) - frames[index]).max(axis=-1) > 60
        assert changed.mean() < 0.001, name
    checked = check_dataset("coco", out, capfd=capfd, monkeypatch=monkeypatch)
    assert checked.returncode == 0 and "problems: 0 errors" in checked.stdout, checked.stdout + checked.stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_folder_holding_a_dataset_is_refused_then_replaced_with_overwrite(workspace, tmp_path, capfd, monkeypatch):
    out = tmp_path / "labels"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "old.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (out / "images").mkdir()
    (out / "images" / "old.jpg").write_bytes(b"not really a jpeg")
    (out / "classes.txt").write_text("cat\n")
    (out / "notes.md").write_text("mine")
    before = snapshot(out)
    for model in (workspace["checkpoint"], tmp_path / "missing.onnx"):  # refused before the model is looked at
        result = run_detect("dir", workspace["images"], "--save-labels", "voc", out, "--model", model, "--no-show",
                            cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
        line = one_error_line(result)
        assert str(out) in line and "--overwrite" in line and "images, labels, classes.txt" in line
    assert snapshot(out) == before

    assert_ok(detect(workspace, "dir", workspace["images"], "--save-labels", "voc", out, "--overwrite",
                     capfd=capfd, monkeypatch=monkeypatch))
    assert sorted(path.name for path in out.iterdir()) == [
        "Annotations", "ImageSets", "JPEGImages", "labelmap.txt", "labels.txt", "notes.md"
    ]
    assert (out / "notes.md").read_text() == "mine"  # not a dataset's: left alone


def test_ctrl_c_keeps_the_labels_already_made(workspace, capfd, monkeypatch):
    """An image job stopped by Ctrl+C (raised while reading the third image) still finishes the COCO json."""
    out = workspace["root"] / "labels_interrupted"
    reads = []

    def read_then_interrupt(path):
        reads.append(path)
        if len(reads) == 3:
            raise KeyboardInterrupt
        return read_image(path)

    monkeypatch.setattr(jobs, "read_image", read_then_interrupt)
    result = detect(workspace, "dir", workspace["images"], "--save-labels", "coco", out,
                    capfd=capfd, monkeypatch=monkeypatch)
    assert result.returncode == 130, result.stderr
    dataset = json.loads((out / "annotations.json").read_text())
    assert [image["file_name"] for image in dataset["images"]] == [path.name for path in reads[:2]]


def test_a_stream_stopped_by_ctrl_c_keeps_its_labels(workspace, capfd, monkeypatch):
    """Ctrl+C while reading frame 5 of the clip: the frames labelled before it are in the finished COCO json."""
    out = workspace["root"] / "labels_stream_interrupted"
    read = stream.VideoFileSource.read

    def read_then_interrupt(source):
        if source._next_index == 5:
            raise KeyboardInterrupt
        return read(source)

    monkeypatch.setattr(stream.VideoFileSource, "read", read_then_interrupt)
    result = detect(workspace, "video", workspace["video"], "--save-labels", "coco", out, "--every", 2,
                    capfd=capfd, monkeypatch=monkeypatch)
    assert result.returncode == 130 and "stopped (Ctrl+C): 5 frames" in result.stdout, result.stdout + result.stderr
    dataset = json.loads((out / "annotations.json").read_text())
    assert [image["file_name"] for image in dataset["images"]] == [f"clip_{index:06d}.jpg" for index in (0, 2, 4)]
