"""COCO table text, report files and plots."""

import contextlib
import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from ssdlite.evaluation import (
    COCO_METRIC_NAMES,
    VOC_METRIC_NAMES,
    CocoEvaluator,
    PrecisionRecallCurves,
    format_coco_table,
    plot_per_class_ap,
    plot_precision_recall,
    write_report,
)

from .coco_eval_fixtures import make_coco_fixture


def assert_png(path, *, min_size=(200, 100)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]


def test_table_is_exactly_what_pycocotools_prints(coco_reference):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        coco_reference.summarize()
    metrics = dict(zip(COCO_METRIC_NAMES, coco_reference.stats))
    assert format_coco_table(metrics) == printed.getvalue().rstrip("\n")
    assert len(format_coco_table(metrics).splitlines()) == 12


def test_write_report_writes_every_file(coco_fixture, tmp_path):
    ground_truth, detections = coco_fixture
    evaluation = CocoEvaluator(ground_truth, backend="faster").run(detections)
    written = write_report(evaluation.metrics, tmp_path / "report", coco_eval=evaluation.coco_eval,
                           detections=detections)

    assert set(written) == {"metrics", "per_class_csv", "per_class_plot", "pr_curve", "detections"}
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(saved) == {*COCO_METRIC_NAMES, *VOC_METRIC_NAMES, "per_class_AP"}
    assert saved == evaluation.metrics
    with (tmp_path / "report" / "per_class_ap.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["class", "AP"]
    assert {name: float(ap) for name, ap in rows[1:]} == pytest.approx(evaluation.metrics["per_class_AP"], abs=1e-6)
    assert json.loads((tmp_path / "report" / "detections.json").read_text()) == detections
    assert_png(tmp_path / "report" / "pr_curve.png")
    assert_png(tmp_path / "report" / "per_class_ap.png")


def test_write_report_without_coco_eval_or_detections(coco_fixture, tmp_path):
    metrics = CocoEvaluator(coco_fixture[0]).evaluate([])
    written = write_report(metrics, tmp_path)
    assert set(written) == {"metrics", "per_class_csv", "per_class_plot"}
    assert not (tmp_path / "pr_curve.png").exists() and not (tmp_path / "detections.json").exists()


def test_precision_recall_curves_read_from_both_backends(coco_fixture):
    ground_truth, detections = coco_fixture
    curves = [PrecisionRecallCurves.from_coco_eval(CocoEvaluator(ground_truth, backend=backend).run(detections).coco_eval)
              for backend in ("pycocotools", "faster")]
    np.testing.assert_allclose(curves[0].precision, curves[1].precision, atol=1e-12)
    assert curves[0].class_names == [c["name"] for c in ground_truth["categories"]]
    assert curves[0].precision.shape == (10, 101, len(ground_truth["categories"]))
    with pytest.raises(ValueError, match="IoU 0.3"):
        curves[0].at_iou(0.3)


def test_plots_with_many_classes_and_without_classes(tmp_path):
    ground_truth, detections = make_coco_fixture(num_images=30, num_classes=14, seed=4)
    evaluation = CocoEvaluator(ground_truth, backend="faster").run(detections)
    plot_precision_recall(PrecisionRecallCurves.from_coco_eval(evaluation.coco_eval), tmp_path / "pr.png")
    plot_per_class_ap(evaluation.metrics["per_class_AP"], tmp_path / "bars.png")
    plot_per_class_ap({}, tmp_path / "empty.png")
    for name in ("pr.png", "bars.png", "empty.png"):
        assert_png(tmp_path / name)
    with Image.open(tmp_path / "bars.png") as bars, Image.open(tmp_path / "empty.png") as empty:
        assert bars.size[1] > empty.size[1]  # one bar row per class
