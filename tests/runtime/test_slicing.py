"""Sliced inference (ssdlite_runtime.slicing, ``Predictor(slice_size=...)``, ``ssdlite-detect --slice``): the tile
grid on known sizes, the merge of the tiles' detections with a detector whose answers are known exactly, the tiny
exported model on real photos, and the command.

The exact checks use a backend registered for the test that finds the white squares of a black image in its input
(connected components of bright pixels), scored as a network would: less sure of a blob that is small in its input
or touches the input's border. With tiles of the input's own size, a tile reaches it unresized, so its boxes are
known to the pixel.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite_runtime.backends import base as backend_registry
from ssdlite_runtime.backends.base import Backend
from ssdlite_runtime.image_io import read_image
from ssdlite_runtime.metadata import ModelInfo
from ssdlite_runtime.predictor import Predictor
from ssdlite_runtime.slicing import check_slicing, merge_sliced_detections, slice_windows
from tests.commands_in_process import one_error_line, run_main
from tests.deploy import tiny_detector as tiny

RACCOON_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "raccoon" / "JPEGImages"
BLOB_INPUT = 64
"""The blob detector's input side: tiles of this side reach it unresized."""


# ------------------------------------------------------------------------------------------------- the grid


def starts(windows: np.ndarray, axis: int) -> list[int]:
    return sorted(set(windows[:, axis].tolist()))


@pytest.mark.parametrize(
    ("height", "width", "size", "overlap"),
    [(1080, 1920, 320, 0.2), (500, 700, 256, 0.25), (100, 1000, 64, 0.0), (300, 200, 256, 0.5), (257, 257, 256, 0.2)],
)
def test_tiles_cover_the_image_overlapping_as_asked_with_the_last_at_the_edge(height, width, size, overlap):
    windows = slice_windows(height, width, size, overlap)
    covered = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in windows:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert (x2 - x1, y2 - y1) == (min(size, width), min(size, height))  # never larger than the image
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    for axis, length in ((0, width), (1, height)):
        tile = min(size, length)
        first = starts(windows, axis)
        assert first[0] == 0 and first[-1] + tile == length  # the last row / column ends at the image's edge
        gaps = np.diff(first)
        assert (gaps[:-1] == tile - round(overlap * tile)).all()  # neighbours overlap by F of a tile...
        assert (gaps <= tile - round(overlap * tile)).all()  # ...the last pair by at least that
    rows, columns = len(starts(windows, 1)), len(starts(windows, 0))
    assert len(windows) == rows * columns


def test_tiles_of_a_full_hd_frame():
    windows = slice_windows(1080, 1920, 320, 0.2)
    assert starts(windows, 0) == [0, 256, 512, 768, 1024, 1280, 1536, 1600]
    assert starts(windows, 1) == [0, 256, 512, 760]
    assert windows[:2].tolist() == [[0, 0, 320, 320], [256, 0, 576, 320]]  # row by row


@pytest.mark.parametrize(("height", "width"), [(320, 320), (200, 100), (1, 320)])
def test_an_image_no_larger_than_a_tile_has_no_tiles(height, width):
    assert slice_windows(height, width, 320, 0.2).shape == (0, 4)


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [
        (31, 0.2, "slice_size must be a whole number of pixels >= 32, got 31"),
        (True, 0.2, "slice_size must be"),
        (64.5, 0.2, "slice_size must be"),
        (64, 1.0, r"slice_overlap must be a fraction of the tile in \[0, 1\), got 1.0"),
        (64, -0.1, "slice_overlap must be"),
    ],
)
def test_slicing_options_out_of_range_are_one_line_errors(size, overlap, message):
    with pytest.raises(ValueError, match=message) as raised:
        check_slicing(size, overlap)
    assert "\n" not in str(raised.value)
    assert check_slicing(None, 0.2) == (None, 0.2) and check_slicing(64.0, 0) == (64, 0.0)


# ------------------------------------------------------------------------------------------------ the merge


class BlobBackend(Backend):
    """Finds bright blobs in each input: one box per connected component of pixels above 128, label 1, scored 0.9
    times min(1, its longer side / 8 px), halved when it touches the input's border."""

    name = "blobs"

    def run(self, batch):
        results = []
        for image in batch:
            mask = (np.asarray(image).max(axis=0) > 128).astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            x, y, w, h = (stats[1:, i].astype(np.float32) for i in range(4))
            boxes = np.stack([x, y, x + w, y + h], axis=1) / BLOB_INPUT
            scores = 0.9 * np.minimum(1.0, np.maximum(w, h) / 8)
            scores[(x == 0) | (y == 0) | (x + w == BLOB_INPUT) | (y + h == BLOB_INPUT)] *= 0.5
            order = np.argsort(-scores, kind="stable")
            results.append({"boxes": boxes[order], "scores": scores[order].astype(np.float32),
                             "labels": np.ones(len(order), np.int64)})
        return results


@pytest.fixture
def blob_predictor(monkeypatch):
    """``make(**options)``: a Predictor over :class:`BlobBackend` (the registry is put back after the test)."""
    backend_registry.available_backends()
    for name in ("_BACKENDS", "_REGISTRATIONS"):
        monkeypatch.setattr(backend_registry, name, dict(getattr(backend_registry, name)))

    @backend_registry.register_backend("blobs")
    def load_blobs(source, *, device="cpu"):
        info = ModelInfo(["blob"], [1], image_size=BLOB_INPUT, mean=(0.0,) * 3, scale=(1.0,) * 3, with_nms=True)
        return BlobBackend(info)

    def make(**options) -> Predictor:
        return Predictor("blobs", backend="blobs", score_threshold=0.01, **options)

    return make


def squares_image(boxes: list[tuple[int, int, int, int]], size: int = 256) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        image[y1:y2, x1:x2] = 255
    return image


SQUARES = [
    (50, 100, 60, 110),  # whole in four tiles (x 0-64 and 48-112, y 48-112 and 96-160) and the full frame
    (58, 20, 70, 32),  # cut by the first tile's right edge (x 64), whole in the second tile
    (0, 200, 8, 208),  # at the image's left border: a border cuts nothing
    (150, 150, 250, 250),  # larger than a tile: every tile cuts it, the full frame sees it whole
]


def test_each_object_comes_out_once_with_the_box_of_a_tile_that_saw_it_whole(blob_predictor):
    """Tiles of 64 px overlapping 16 px (steps of 48) on a 256 x 256 image: 5 x 5 tiles and the full frame."""
    predictor = blob_predictor(slice_size=BLOB_INPUT, slice_overlap=0.25)
    image = squares_image(SQUARES)
    [detections] = predictor.predict(image)
    boxes = {tuple(box): score for box, score in zip(detections["boxes"].tolist(), detections["scores"].tolist())}
    assert len(boxes) == len(SQUARES)
    for square in SQUARES[:3]:
        assert square in boxes  # exact pixels, once each
    [large] = [box for box in boxes if box not in SQUARES[:3]]  # the full frame's: 256 -> 64 px and back
    assert np.abs(np.array(large) - np.array(SQUARES[3])).max() <= 4
    assert (np.diff(detections["scores"]) <= 0).all()
    assert detections["labels"].tolist() == [1] * 4
    # the small squares reach the blob detector whole and unresized; in the full frame alone they shrink to a
    # quarter (2-3 px) and score less
    assert boxes[SQUARES[0]] == boxes[SQUARES[1]] == pytest.approx(0.9)
    [unsliced] = blob_predictor().predict(image)
    small_in_full_frame = unsliced["scores"][(unsliced["boxes"][:, 2] - unsliced["boxes"][:, 0]) < 20]
    assert len(small_in_full_frame) == 3 and small_in_full_frame.max() < 0.5


def detections(*boxes_and_scores: tuple[tuple[float, float, float, float], float]) -> dict[str, np.ndarray]:
    return {"boxes": np.array([box for box, _ in boxes_and_scores], np.float32).reshape(-1, 4),
            "scores": np.array([score for _, score in boxes_and_scores], np.float32),
            "labels": np.ones(len(boxes_and_scores), np.int64)}


def test_cut_detections_give_way_to_a_view_that_saw_more():
    """The first two tiles of a 256 px image in 64 px tiles overlapping 16 px: x 0-64 and 48-112."""
    windows = slice_windows(256, 256, BLOB_INPUT, 0.25)
    assert windows[:2].tolist() == [[0, 0, 64, 64], [48, 0, 112, 64]]

    def merged(full_frame, first_tile, second_tile):  # boxes in each view's pixels
        tiles = [first_tile, second_tile] + [detections()] * (len(windows) - 2)
        return merge_sliced_detections(full_frame, tiles, windows, image_size=(256, 256), iou_threshold=0.55,
                                       max_detections=100)

    # x 58-70: the first tile cuts it (IoU 0.5 with the whole box: NMS alone would keep both), the second holds it
    result = merged(detections(), detections(((58, 20, 64, 32), 0.9)), detections(((10, 20, 22, 32), 0.8)))
    assert result["boxes"].tolist() == [[58, 20, 70, 32]] and result["scores"].tolist() == [pytest.approx(0.8)]
    # x 40-70, wider than the overlap: each tile cuts it; the better part stays, the part it covers goes
    first_part, second_part = ((40, 20, 64, 32), 0.7), ((0, 20, 22, 32), 0.6)
    result = merged(detections(), detections(first_part), detections(second_part))
    assert result["boxes"].tolist() == [[40, 20, 64, 32]]
    # ... unless a better detection saw it whole: the full frame's
    result = merged(detections(((41, 19, 69, 33), 0.8)), detections(first_part), detections(second_part))
    assert result["boxes"].tolist() == [[41, 19, 69, 33]]
    # an object that is no part of another is kept, cut or not
    result = merged(detections(((100, 100, 140, 140), 0.8)), detections(first_part), detections())
    assert result["boxes"].tolist() == [[100, 100, 140, 140], [40, 20, 64, 32]]


def test_an_image_no_larger_than_a_tile_gets_what_the_full_frame_gets(blob_predictor):
    images = [squares_image(SQUARES[:2], size=120), squares_image(SQUARES[:3])]
    sliced = blob_predictor(slice_size=128, batch_size=3).predict(images)
    plain = blob_predictor().predict(images)
    assert len(plain[0]["scores"]) == 2
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(sliced[0][key], plain[0][key])
    assert len(sliced[1]["scores"]) == 3  # the second, 256 px, was sliced: its small squares all found


def test_the_predictor_refuses_bad_slicing_options(blob_predictor):
    with pytest.raises(ValueError, match="slice_size must be a whole number of pixels >= 32, got 16"):
        blob_predictor(slice_size=16)
    assert "sliced into 64 px tiles overlapping 0.2" in blob_predictor(slice_size=64).describe()


# --------------------------------------------------------------------------------------- real photos, the command


@pytest.fixture
def tiny_onnx() -> Path:
    """The tiny detector exported for ONNX Runtime (NMS in the graph), shared with the other tests of the run."""
    return tiny.exported_for_predictor("ort")[1]


def test_sliced_predictor_on_real_photos(tiny_onnx):
    """A coco128-style sanity check: photos of another world than the model's, sliced; sane output."""
    paths = sorted(RACCOON_IMAGES.glob("*.jpg"))[:4] if RACCOON_IMAGES.is_dir() else []
    if not paths:
        pytest.skip(f"no raccoon photos in {RACCOON_IMAGES}")
    predictor = Predictor(tiny_onnx, score_threshold=0.05, slice_size=160, batch_size=4)
    images = [read_image(path) for path in paths]
    assert any(len(slice_windows(*image.shape[:2], 160, 0.2)) for image in images)
    for image, detections in zip(images, predictor.predict(images)):
        height, width = image.shape[:2]
        boxes = detections["boxes"]
        assert boxes.dtype == np.float32 and boxes.shape == (len(detections["scores"]), 4)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
        assert (np.diff(detections["scores"]) <= 0).all() and (detections["scores"] > 0.05).all()
        assert len(detections["scores"]) <= predictor.postprocess.max_detections
        assert set(detections["labels"].tolist()) <= {1, 2}


def test_detect_image_with_slice_writes_boxes_inside_the_image(tiny_onnx, tmp_path, capfd, monkeypatch):
    """Six of the model's scenes (128 px each) in a 352 x 480 image: with 160 px tiles each reaches the model near
    the size it learnt, so the sliced command finds more of their objects than the full frame does."""
    scenes = tiny.scene_images()
    canvas = np.full((352, 480, 3), 200, np.uint8)
    for index in range(6):
        row, column = divmod(index, 3)
        canvas[16 + 176 * row : 144 + 176 * row, 16 + 160 * column : 144 + 160 * column] = scenes[index % 2]
    path = tmp_path / "scenes.png"
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))

    def detect(*options: str) -> list[dict]:
        json_path = tmp_path / f"detections{len(options)}.json"
        result = run_main("detect.py", ["image", str(path), "--model", str(tiny_onnx), "--no-show", "--json",
                                        str(json_path), *options], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
        assert result.returncode == 0, result.stderr
        return json.loads(json_path.read_text())

    sliced = detect("--slice", "160", "--slice-overlap", "0.25", "--save", str(tmp_path / "boxes.png"))
    assert (tmp_path / "boxes.png").is_file()
    for record in sliced:
        x, y, w, h = record["bbox"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 480 and y + h <= 352
    assert len(sliced) >= 12  # the six scenes hold 15 objects
    assert len(sliced) > len(detect())
    # the option ranges are argparse's (tests/runtime/test_detect_signals.py); an overlap alone is a one-line error
    result = run_main("detect.py", ["image", str(path), "--model", str(tiny_onnx), "--slice-overlap", "0.3"],
                      cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert one_error_line(result).endswith("error: --slice-overlap goes with --slice SIZE, which is not given")
