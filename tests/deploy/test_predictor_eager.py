"""Predictor with the eager backend: preprocessing, decoding to original pixels, checkpoints, input checks."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from ssdlite.core.postprocess import postprocess_detections
from ssdlite.deploy.default_model import find_latest_checkpoint
from ssdlite.deploy.metadata import INPUT_SCALING
from ssdlite.models import build_model
from ssdlite_runtime.backends import base as backend_registry
from ssdlite_runtime.backends.base import Backend
from ssdlite_runtime.metadata import ModelInfo
from ssdlite_runtime.predictor import Predictor

CLASS_NAMES = ["square", "disc", "triangle"]
CATEGORY_IDS = [5, 9, 11]
IMAGE_SIZE = 160
THRESHOLD = 0.5


def random_scene(seed: int, height: int, width: int) -> np.ndarray:
    """uint8 RGB: a noisy background with a few filled shapes."""
    rng = np.random.default_rng(seed)
    image = rng.integers(30, 90, size=(height, width, 3), dtype=np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        size = int(rng.integers(20, 60))
        color = tuple(int(c) for c in rng.integers(100, 255, size=3))
        cv2.rectangle(image, (x, y), (x + size, y + size), color, cv2.FILLED)
    return image


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """Tiny SSDLite with BatchNorm statistics estimated on random scenes (eval-mode init scores every box 1/(K+1))."""
    torch.manual_seed(0)
    net = build_model("ssdlite_mobilenet_v2", num_classes=len(CLASS_NAMES), width_mult=0.35, image_size=IMAGE_SIZE)
    scenes = np.stack([cv2.resize(random_scene(seed, 200, 260), (IMAGE_SIZE, IMAGE_SIZE)) for seed in range(8)])
    batch = torch.from_numpy(scenes).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        net.train()(batch)
    return net.eval()


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    return Predictor.from_model(model, class_names=CLASS_NAMES, category_ids=CATEGORY_IDS, score_threshold=THRESHOLD)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [random_scene(10, 240, 320), random_scene(11, 123, 457), random_scene(12, 300, 200)]


def reference_detections(model, images, *, score_threshold=THRESHOLD) -> list[dict[str, np.ndarray]]:
    """The pipeline written out by hand: cv2 resize, [-1, 1], unfolded NCHW model, postprocess to original sizes."""
    batch = torch.stack(
        [
            torch.from_numpy(cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR))
            .permute(2, 0, 1)
            .float()
            / 127.5
            - 1.0
            for image in images
        ]
    )
    with torch.no_grad():
        outputs = model.eval()(batch)
    sizes = torch.tensor([image.shape[:2] for image in images])
    results = postprocess_detections(
        outputs["cls_logits"], outputs["box_deltas"], model.anchors, sizes,
        score_threshold=score_threshold, topk_per_class=100, nms_iou=0.55, max_detections=100,
    )
    return [{key: value.numpy() for key, value in result.items()} for result in results]


def assert_same_detections(actual, expected, *, box_atol=1e-2, score_atol=1e-4):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
        assert got["labels"].dtype == np.int64
        np.testing.assert_array_equal(got["labels"], want["labels"])
        np.testing.assert_allclose(got["scores"], want["scores"], atol=score_atol)
        np.testing.assert_allclose(got["boxes"], want["boxes"], atol=box_atol)


def test_matches_the_pipeline_written_out_by_hand(predictor, model, images):
    detections = predictor.predict(images)
    assert_same_detections(detections, reference_detections(model, images))
    assert sum(len(d["scores"]) for d in detections) > 0, "the test model should find something"
    for image, result in zip(images, detections):
        height, width = image.shape[:2]
        assert (result["boxes"] >= 0).all()
        assert (result["boxes"][:, [0, 2]] <= width).all() and (result["boxes"][:, [1, 3]] <= height).all()
        assert (result["scores"] >= THRESHOLD).all() and (np.diff(result["scores"]) <= 0).all()
        assert set(result["labels"].tolist()) <= {1, 2, 3}


def test_one_image_a_list_a_batch_array_and_small_batches_agree(model, images, predictor):
    single = [predictor.predict(image)[0] for image in images]
    assert_same_detections(predictor.predict(images), single)
    same_size = [images[0], images[0][::-1].copy()]
    assert_same_detections(predictor.predict(np.stack(same_size)), predictor.predict(same_size))
    in_pairs = Predictor.from_model(model, class_names=CLASS_NAMES, score_threshold=THRESHOLD, batch_size=2)
    assert_same_detections(in_pairs.predict(images), single)


def test_bn_folding_and_channels_last_leave_results_and_the_callers_model_alone(model, images, predictor):
    state_before = {key: value.clone() for key, value in model.state_dict().items()}
    plain = Predictor.from_model(model, class_names=CLASS_NAMES, score_threshold=THRESHOLD, fold_bn=False,
                                 channels_last=False)
    assert_same_detections(predictor.predict(images), plain.predict(images))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.backend.model.modules())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state_before[key], rtol=0, atol=0)
    assert "BN folded" in predictor.describe() and "channels_last" in predictor.describe()


def test_score_threshold_and_class_filter(model, images, predictor):
    low = Predictor.from_model(model, class_names=CLASS_NAMES, score_threshold=0.2)
    for strict, loose in zip(predictor.predict(images), low.predict(images)):
        assert len(loose["scores"]) >= len(strict["scores"])
        assert (loose["scores"] >= 0.2).all()
    only_disc = Predictor.from_model(model, class_names=CLASS_NAMES, score_threshold=THRESHOLD, classes=["disc"])
    for filtered, full in zip(only_disc.predict(images), predictor.predict(images)):
        keep = full["labels"] == 2
        assert_same_detections([filtered], [{key: value[keep] for key, value in full.items()}])
    with pytest.raises(ValueError, match=r"unknown class name\(s\) 'cat'.*square, disc, triangle"):
        Predictor.from_model(model, class_names=CLASS_NAMES, classes=["cat"])
    with pytest.raises(ValueError, match="score_threshold must be in"):
        Predictor.from_model(model, class_names=CLASS_NAMES, score_threshold=1.5)


def test_records_carry_dataset_category_ids_names_and_xywh_boxes(predictor, images):
    [detections] = predictor.predict(images[0])
    records = predictor.to_records(detections, image_id=42, file_name="a.jpg")
    assert len(records) == len(detections["scores"]) > 0
    for record, box, score, label in zip(records, detections["boxes"], detections["scores"], detections["labels"]):
        assert record["image_id"] == 42 and record["file_name"] == "a.jpg"
        assert record["category_id"] == CATEGORY_IDS[label - 1]
        assert record["category_name"] == CLASS_NAMES[label - 1]
        x1, y1, x2, y2 = box
        np.testing.assert_allclose(record["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.01)
        assert record["score"] == pytest.approx(float(score), abs=1e-5)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((50, 60, 3), np.float32), "dtype float32; expected uint8 RGB"),
        (np.zeros((50, 60), np.uint8), r"grayscale, no channel axis.*COLOR_GRAY2RGB"),
        (np.zeros((3, 50, 60), np.uint8), r"channels first\? use image.transpose\(1, 2, 0\)"),
        (np.zeros((50, 60, 4), np.uint8), r"RGBA\? drop alpha"),
        (np.zeros((0, 60, 3), np.uint8), "is empty"),
        ([[1, 2, 3]], "is a list; expected a numpy uint8 RGB array"),
    ],
    ids=["float", "hw", "chw", "rgba", "empty", "nested-list"],
)
def test_rejects_images_that_are_not_uint8_rgb(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(image)
    with pytest.raises(ValueError, match="image 1"):
        predictor.predict([np.zeros((20, 20, 3), np.uint8), np.asarray(image, dtype=np.float64)])


def test_rejects_an_empty_list(predictor):
    with pytest.raises(ValueError, match="no images"):
        predictor.predict([])


def save_lightning_checkpoint(model, path):
    torch.save(
        {
            "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
            "hyper_parameters": {
                "model_config": model.config, "class_names": CLASS_NAMES, "category_ids": CATEGORY_IDS,
            },
        },
        path,
    )
    return path


def test_loads_a_lightning_checkpoint(model, predictor, images, tmp_path):
    path = save_lightning_checkpoint(model, tmp_path / "best.ckpt")
    loaded = Predictor(path, score_threshold=THRESHOLD)
    assert loaded.class_names == CLASS_NAMES and loaded.category_ids == CATEGORY_IDS
    assert loaded.image_size == IMAGE_SIZE
    assert_same_detections(loaded.predict(images), predictor.predict(images))


def test_model_files_that_are_not_ours_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.ckpt"):
        Predictor(tmp_path / "missing.ckpt")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes.ckpt is not a checkpoint: it holds text .*tools/train.py"):
        Predictor(tmp_path / "notes.ckpt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match=r"cannot load .*other.ckpt"):
        Predictor(tmp_path / "other.ckpt")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(ValueError, match="is an ONNX file; load it with backend='ort'"):
        Predictor(tmp_path / "model.onnx", backend="eager")
    with pytest.raises(ValueError, match=r"model\.onnx is not a valid ONNX model"):
        Predictor(tmp_path / "model.onnx")  # backend="auto", the default, picks ONNX Runtime from the name
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; available: eager, int8, .*ort"):
        Predictor(tmp_path / "model.onnx", backend="tensorrt")


def test_a_backend_that_postprocesses_itself_gets_boxes_scaled_thresholded_and_filtered(monkeypatch):
    class FixedBackend(Backend):
        """Returns the same two normalised detections for every image."""

        name = "fixed"

        def run(self, batch):
            assert batch.shape[1:] == (3, 32, 32) and batch.dtype == np.float32
            assert -1.0 <= batch.min() and batch.max() <= 1.0
            detections = {
                "boxes": np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.2, 1.0]], np.float32),
                "scores": np.array([0.9, 0.3], np.float32),
                "labels": np.array([2, 1]),
            }
            return [detections] * len(batch)

    monkeypatch.setitem(
        backend_registry._BACKENDS,
        "fixed",
        lambda source, *, device: FixedBackend(ModelInfo(["a", "b"], [1, 2], image_size=32, **INPUT_SCALING)),
    )
    fixed = Predictor("anything", backend="fixed", score_threshold=0.5)
    [result] = fixed.predict(np.zeros((100, 200, 3), np.uint8))
    np.testing.assert_allclose(result["boxes"], [[20, 20, 100, 60]])
    np.testing.assert_array_equal(result["labels"], [2])
    low = Predictor("anything", backend="fixed", score_threshold=0.1, classes=["a"])
    [result] = low.predict(np.zeros((100, 200, 3), np.uint8))
    np.testing.assert_allclose(result["boxes"], [[0, 0, 200, 100]])  # clipped to the image


def test_newest_checkpoint_prefers_best(tmp_path):
    assert find_latest_checkpoint(tmp_path / "runs") is None
    runs = tmp_path / "runs"
    for name, mtime in [("a/last.ckpt", 300), ("a/best.ckpt", 100), ("b/best-epoch3.ckpt", 200)]:
        (runs / name).parent.mkdir(parents=True, exist_ok=True)
        (runs / name).write_bytes(b"")
        os.utime(runs / name, (mtime, mtime))
    assert find_latest_checkpoint(runs) == runs / "b/best-epoch3.ckpt"
    (runs / "b/best-epoch3.ckpt").unlink()
    (runs / "a/best.ckpt").unlink()
    assert find_latest_checkpoint(runs) == runs / "a/last.ckpt"
