"""``ssdlite.engine.evaluate.evaluate``, the one evaluation of a checkpoint, a model, an exported file or a Predictor:
each is scored on the same dataset with the same settings, and a model that does not fit the data is one error."""

from __future__ import annotations

import json

import pytest

from ssdlite.deploy.evaluate import EVALUATION_SETTINGS
from ssdlite.engine.evaluate import evaluate
from ssdlite_runtime.predictor import Predictor
from tests.deploy import tiny_detector as tiny

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("deploy_export")]  # exports a model


@pytest.fixture(scope="module")
def dataset() -> dict:
    images, annotations = tiny.scenes_coco_dataset()
    return {"images": images, "annotations": annotations}


def test_every_kind_of_model_gives_the_same_ap(dataset, tmp_path):
    validation = evaluate(tiny.checkpoint_file(), **dataset, out_dir=tmp_path / "report")
    assert validation["AP"] > 0.5 and validation["unreadable_images"] == []
    assert {path.name for path in (tmp_path / "report").iterdir()} >= {"metrics.json", "detections.json"}
    detections = json.loads((tmp_path / "report" / "detections.json").read_text())
    assert {result["category_id"] for result in detections} <= set(tiny.CATEGORY_IDS)

    model = evaluate(tiny.overfit_tiny_detector(), category_ids=tiny.CATEGORY_IDS, **dataset)
    assert model == {key: validation[key] for key in model}  # the same network through the same code path
    assert validation["errors"]["AP50"] == pytest.approx(validation["AP50"], abs=0.02)  # the report's analysis
    deployed = {
        "eager": evaluate(tiny.checkpoint_file(), backend="eager", **dataset),
        "ort exported here": evaluate(tiny.checkpoint_file(), backend="ort", **dataset),
        "onnx file": evaluate(tiny.exported_file("onnx_nms"), **dataset),
        "predictor": evaluate(Predictor(tiny.exported_file("onnx_nms"), **EVALUATION_SETTINGS), **dataset),
    }
    for name, metrics in deployed.items():
        assert metrics["AP"] == pytest.approx(validation["AP"], abs=1e-3), name


def test_a_predictor_with_display_settings_is_refused(dataset):
    with pytest.raises(ValueError, match="not the evaluation settings; build it with .*EVALUATION_SETTINGS"):
        evaluate(Predictor(tiny.exported_file("onnx_nms")), **dataset)


def test_a_model_for_other_categories_is_named(dataset, tmp_path):
    other = json.loads(dataset["annotations"].read_text())
    for category in other["categories"]:
        category["id"] += 100
    for annotation in other["annotations"]:
        annotation["category_id"] += 100
    annotations = tmp_path / "other.json"
    annotations.write_text(json.dumps(other))
    model_file = tiny.exported_file("onnx_nms")
    with pytest.raises(ValueError, match=rf"model '{model_file}' predicts category ids \[5, 9\] that"):
        evaluate(model_file, annotations=annotations, images=dataset["images"], out_dir=tmp_path / "report")
    with pytest.raises(ValueError, match=r"checkpoint '.*tiny.ckpt' predicts category ids \[5, 9\] that"):
        evaluate(tiny.checkpoint_file(), annotations=annotations, images=dataset["images"])
    assert not (tmp_path / "report").exists()
