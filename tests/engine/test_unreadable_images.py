"""An unreadable validation image is scored once, as an image with no detections -- never as a second copy of
another image (issue 15, section 2).

The detector is a test double whose detections are derived from the ground truth (jittered boxes, misses and false
positives, looked up by the image's pixels), so AP is far from 0 and 1 and every change in what is scored shows.
The oracle is pycocotools' COCOeval on the detections of the intact images without the unreadable image's.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import io
import json
import logging
import math

import lightning as L
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn
from torchvision.ops import box_iou

from ssdlite.core.box_coder import encode
from ssdlite.data.annotations import DatasetWarning
from ssdlite.data.datamodule import DetectionDataModule
from ssdlite.data.synthetic import make_shapes
from ssdlite.engine.evaluate import batch_coco_results, evaluate
from ssdlite.engine.module import SSDLiteModule
from ssdlite.evaluation import CocoEvaluator
from ssdlite.models import build_model

IMAGE_SIZE = 96
NUM_CLASSES = 4
CATEGORY_IDS = [1, 2, 3, 4]
UNREADABLE_ID = 14  # 000014.jpg: 6 boxes, the most of the 20 images


def _pixels_key(image: Tensor) -> str:
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class GroundTruthDetector(nn.Module):
    """Stands in for a trained SSDLite: per known image (by its pixels), ``cls_logits`` [A, K+1] and ``box_deltas``
    [A, 4] that decode to most of its ground-truth boxes (jittered) plus false positives; for any other image (the
    black placeholder of an unreadable one) one confident false positive, which evaluation must drop."""

    image_size = IMAGE_SIZE
    num_classes = NUM_CLASSES

    def __init__(self, anchors: Tensor) -> None:
        super().__init__()
        self.register_buffer("anchors", anchors)
        self.outputs: dict[str, tuple[Tensor, Tensor]] = {}

    def remember(self, image: Tensor, boxes: Tensor, labels: Tensor, seed: int) -> None:
        """Precomputes the outputs for ``image`` (Tensor[3, S, S]) with boxes (Tensor[N, 4] xyxy in [0, 1])."""
        rng = np.random.default_rng(seed)
        logits = torch.full((len(self.anchors), NUM_CLASSES + 1), -30.0)
        logits[:, 0] = 0.0
        deltas = torch.zeros(len(self.anchors), 4)
        used: set[int] = set()
        corners = torch.cat([self.anchors[:, :2] - self.anchors[:, 2:] / 2, self.anchors[:, :2] + self.anchors[:, 2:] / 2], 1)
        for box, label in zip(boxes, labels.tolist()):
            if rng.random() < 0.2:
                continue  # a miss
            overlap = box_iou(box[None], corners)[0]
            anchor = next(int(index) for index in torch.argsort(overlap, descending=True) if int(index) not in used)
            used.add(anchor)
            jitter = torch.as_tensor(rng.normal(0.0, 0.3, 4), dtype=torch.float32)
            deltas[anchor] = encode(box[None], self.anchors[anchor][None])[0] + jitter
            logits[anchor, label] = _logit(rng.uniform(0.2, 0.99))
        for _ in range(2):  # false positives
            anchor = int(rng.integers(len(self.anchors)))
            if anchor not in used:
                used.add(anchor)
                logits[anchor, int(rng.integers(1, NUM_CLASSES + 1))] = _logit(rng.uniform(0.05, 0.9))
        self.outputs[_pixels_key(image)] = (logits, deltas)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        unknown_logits = torch.full((len(self.anchors), NUM_CLASSES + 1), -30.0)
        unknown_logits[:, 0] = 0.0
        unknown_logits[0, 1] = _logit(0.95)
        unknown = (unknown_logits, torch.zeros(len(self.anchors), 4))
        outputs = [self.outputs.get(_pixels_key(image), unknown) for image in images]
        return {
            "cls_logits": torch.stack([logits for logits, _ in outputs]).to(images.device),
            "box_deltas": torch.stack([deltas for _, deltas in outputs]).to(images.device),
        }


def _logit(score: float) -> float:
    return math.log(score / (1.0 - score))


@pytest.fixture(scope="module")
def val_shapes(tmp_path_factory):
    """20 shapes validation images (96 x 96) in a folder of its own, and a detector that knows them intact."""
    paths = make_shapes(tmp_path_factory.mktemp("unreadable"), num_train=0, num_val=20, size=IMAGE_SIZE, seed=0)
    datamodule = _datamodule(paths)
    anchors = build_model("ssdlite_mobilenet_v2", num_classes=NUM_CLASSES, width_mult=0.35,
                          image_size=IMAGE_SIZE).anchors
    detector = GroundTruthDetector(anchors).eval()
    for index in range(len(datamodule.val_dataset)):
        sample = datamodule.val_dataset[index]
        detector.remember(sample["image"], sample["boxes"], sample["labels"], seed=sample["image_id"])
    intact = _validation_results(detector, datamodule)
    return {**paths, "detector": detector, "intact_results": intact}


def _datamodule(paths) -> DetectionDataModule:
    datamodule = DetectionDataModule(format="coco", val_images=paths["val_images"],
                                     val_annotations=paths["val_annotations"], image_size=IMAGE_SIZE, batch_size=8,
                                     num_workers=0)
    datamodule.setup("validate")
    return datamodule


def _validation_results(detector, datamodule) -> list[dict]:
    """What validation_step collects: batch_coco_results over the DataModule's validation loader."""
    results = []
    for batch in datamodule.val_dataloader():
        results.extend(batch_coco_results(detector, batch, CATEGORY_IDS))
    return results


def _pycocotools_ap(annotation_file, results: list[dict]) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(copy.deepcopy(results)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def _by_image(results: list[dict]) -> dict[int, list[tuple]]:
    grouped = collections.defaultdict(list)
    for result in results:
        bbox = np.round(result["bbox"], 3).tolist()
        grouped[result["image_id"]].append((result["category_id"], *bbox, round(result["score"], 6)))
    return {image_id: sorted(detections) for image_id, detections in grouped.items()}


@pytest.fixture
def truncated(val_shapes, tmp_path):
    """A copy of the validation images in which 000014.jpg is a truncated JPEG; yields the DataModule's paths."""
    images = tmp_path / "val"
    images.mkdir()
    for path in val_shapes["val_images"].iterdir():
        (images / path.name).write_bytes(path.read_bytes())
    broken = images / f"{UNREADABLE_ID:06d}.jpg"
    broken.write_bytes(broken.read_bytes()[:400])
    return {"val_images": images, "val_annotations": val_shapes["val_annotations"]}


def _expected(val_shapes) -> tuple[list[dict], float, float]:
    """The intact detections without the unreadable image's, their pycocotools AP, and the intact AP."""
    kept = [result for result in val_shapes["intact_results"] if result["image_id"] != UNREADABLE_ID]
    annotations = val_shapes["val_annotations"]
    return kept, _pycocotools_ap(annotations, kept), _pycocotools_ap(annotations, val_shapes["intact_results"])


def _check_scored_once(results: list[dict], expected: list[dict]) -> None:
    found, wanted = _by_image(results), _by_image(expected)
    assert UNREADABLE_ID not in found
    for image_id, detections in found.items():  # a substituted image would show its detections twice
        repeated = [item for item, count in collections.Counter(detections).items() if count > 1]
        assert not repeated, f"image {image_id} has detections scored twice: {repeated[:3]}"
    assert found == wanted


def test_validation_scores_an_unreadable_image_once_with_no_detections(val_shapes, truncated):
    expected, expected_ap, intact_ap = _expected(val_shapes)
    assert 0.2 < expected_ap < intact_ap < 0.95  # a detector whose AP moves with what is scored
    datamodule = _datamodule(truncated)
    with pytest.warns(DatasetWarning) as caught:
        results = _validation_results(val_shapes["detector"], datamodule)
    _check_scored_once(results, expected)
    metrics = CocoEvaluator(truncated["val_annotations"], backend="pycocotools").evaluate(results)
    assert metrics["AP"] == pytest.approx(expected_ap, abs=1e-12)
    [message] = [str(warning.message) for warning in caught]
    assert f"{UNREADABLE_ID:06d}.jpg" in message and "evaluated as an image with no detections" in message


def test_validation_epoch_logs_the_oracle_ap_and_names_the_unreadable_file(val_shapes, truncated, caplog):
    _, expected_ap, _ = _expected(val_shapes)
    module = SSDLiteModule(num_classes=NUM_CLASSES, category_ids=CATEGORY_IDS, width_mult=0.35,
                           image_size=IMAGE_SIZE, ema=False, bn_calibration_batches=0, eval_backend="pycocotools")
    module.model = val_shapes["detector"]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    with caplog.at_level(logging.WARNING, logger="ssdlite"), pytest.warns(DatasetWarning):
        trainer.validate(module, datamodule=_datamodule(truncated), verbose=False)
    assert module.last_val_metrics["AP"] == pytest.approx(expected_ap, abs=1e-12)
    assert module.last_val_metrics["unreadable_images"] == [f"{UNREADABLE_ID:06d}.jpg"]
    assert f"1 image could not be read and was scored with no detections: {UNREADABLE_ID:06d}.jpg" in caplog.text


def test_evaluate_scores_an_unreadable_image_once(val_shapes, truncated, tmp_path, caplog):
    expected, expected_ap, _ = _expected(val_shapes)
    with caplog.at_level(logging.WARNING, logger="ssdlite"), pytest.warns(DatasetWarning):
        metrics = evaluate(val_shapes["detector"], category_ids=CATEGORY_IDS, annotations=truncated["val_annotations"],
                           images=truncated["val_images"], out_dir=tmp_path / "report")
    assert metrics["AP"] == pytest.approx(expected_ap, abs=1e-12)
    written = json.loads((tmp_path / "report" / "detections.json").read_text())
    _check_scored_once(written, expected)
    name = f"{UNREADABLE_ID:06d}.jpg"
    assert metrics["unreadable_images"] == [name]
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["unreadable_images"] == [name]
    assert f"could not be read and was scored with no detections: {name}" in caplog.text


def test_evaluate_of_a_real_checkpoint_drops_the_unreadable_image(val_shapes, truncated, tmp_path):
    """The same through a real checkpoint file (untrained weights: only which images are scored is checked)."""
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=NUM_CLASSES, width_mult=0.35, image_size=IMAGE_SIZE)
    checkpoint = tmp_path / "random.ckpt"
    torch.save({"model_config": model.config, "state_dict": model.state_dict(), "category_ids": CATEGORY_IDS,
                "class_names": ["circle", "square", "triangle", "star"]}, checkpoint)
    with pytest.warns(DatasetWarning):
        metrics = evaluate(checkpoint, annotations=truncated["val_annotations"], images=truncated["val_images"],
                           out_dir=tmp_path / "report")
    written = _by_image(json.loads((tmp_path / "report" / "detections.json").read_text()))
    assert UNREADABLE_ID not in written and len(written) == 19
    for detections in written.values():
        assert max(collections.Counter(detections).values()) == 1
    assert metrics["unreadable_images"] == [f"{UNREADABLE_ID:06d}.jpg"]


def test_deployed_model_evaluation_scores_an_unreadable_image_with_no_detections(val_shapes, truncated, tmp_path,
                                                                                caplog):
    """eval_coco.py --backend: the Predictor path skipped nothing and stopped at the unreadable image."""
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=NUM_CLASSES, width_mult=0.35, image_size=IMAGE_SIZE)
    checkpoint = tmp_path / "random.ckpt"
    torch.save({"model_config": model.config, "state_dict": model.state_dict(), "category_ids": CATEGORY_IDS,
                "class_names": ["circle", "square", "triangle", "star"]}, checkpoint)
    intact = evaluate(checkpoint, annotations=val_shapes["val_annotations"], images=val_shapes["val_images"],
                      out_dir=tmp_path / "intact", backend="eager")
    intact_results = json.loads((tmp_path / "intact" / "detections.json").read_text())
    expected = [result for result in intact_results if result["image_id"] != UNREADABLE_ID]
    with caplog.at_level(logging.WARNING, logger="ssdlite"):
        metrics = evaluate(checkpoint, annotations=truncated["val_annotations"], images=truncated["val_images"],
                           out_dir=tmp_path / "report", backend="eager")
    _check_scored_once(json.loads((tmp_path / "report" / "detections.json").read_text()), expected)
    assert metrics["AP"] == pytest.approx(_pycocotools_ap(truncated["val_annotations"], expected), abs=1e-12)
    name = f"{UNREADABLE_ID:06d}.jpg"
    assert metrics["unreadable_images"] == [name] and intact["unreadable_images"] == []
    assert f"could not be read and was scored with no detections: {name}" in caplog.text


def test_ranks_results_are_merged_each_image_once_with_every_ranks_unreadable_images(monkeypatch):
    """Under DDP each rank scores its share; rank 0 merges the results and the unreadable ids of all ranks."""
    from types import SimpleNamespace

    module = SSDLiteModule(num_classes=NUM_CLASSES, width_mult=0.35, image_size=IMAGE_SIZE, ema=False)
    module._trainer = SimpleNamespace(world_size=2, is_global_zero=True)
    ranks = [([1, 2, 3], [{"image_id": 1}, {"image_id": 3}], [2]),  # image 2 unreadable on rank 0
             ([4, 5, 1], [{"image_id": 4}, {"image_id": 1}], [5])]  # image 1 again: the sampler's padding

    def all_gather_object(gathered, mine):
        assert mine == (module._val_image_ids, module._val_results, module._val_unreadable_ids)
        gathered[:] = ranks

    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    results, unreadable = module._gather_results()
    assert results == [{"image_id": 1}, {"image_id": 3}, {"image_id": 4}] and unreadable == [2, 5]
