"""Real data: a few training steps on ../shared/data/raccoon (VOC layout) read, train and evaluate end to end."""

from __future__ import annotations

import json

import pytest

from ssdlite.data.voc import VOCDetection
from ssdlite.engine.cli import train
from ssdlite.engine.evaluate import evaluate

from .conftest import RACCOON

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(not (RACCOON / "ImageSets" / "Main" / "val.txt").is_file(),
                       reason=f"raccoon dataset not found at {RACCOON}"),
]


def test_short_run_on_raccoon_reads_trains_and_evaluates(config_factory, tmp_path, single_thread):
    config = config_factory(
        trainer={"max_epochs": 1, "limit_train_batches": 3},
        model={"bn_calibration_batches": 1},
        data={"format": "voc", "train_images": str(RACCOON), "train_annotations": "train",
              "val_images": str(RACCOON), "val_annotations": "val", "batch_size": 4},
    )
    result = train(["--config", str(config), "--name", "raccoon"])
    assert result.steps == 3 and result.last_checkpoint.is_file()
    assert set(result.metrics) >= {"AP", "AP50", "per_class_AP"} and list(result.metrics["per_class_AP"]) == ["raccoon"]
    card = (result.run_dir / "MODEL_CARD.md").read_text()
    assert "1. raccoon" in card and "voc" in card

    val = VOCDetection(RACCOON, "val")
    ground_truth = tmp_path / "raccoon_val.json"
    ground_truth.write_text(json.dumps(val.to_coco()))
    metrics = evaluate(result.last_checkpoint, annotations=ground_truth,
                       images=RACCOON / "JPEGImages", out_dir=tmp_path / "eval")
    assert metrics["AP"] == pytest.approx(result.metrics["AP"], abs=1e-9)
    assert (tmp_path / "eval" / "detections.json").is_file()
