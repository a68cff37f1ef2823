"""tools/export.py: checkpoint -> ONNX (with NMS, INT8) / TorchScript, and the files work in detect.py.

The commands' ``main`` runs in the test's process (tests/commands_in_process.py), as their scripts call it.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ssdlite_runtime.predictor import Predictor
from tests.commands_in_process import run_main
from tests.deploy import tiny_detector as tiny

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("deploy_export")]  # exports a model

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_cli", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_tool = load_tool("export")


def test_onnx_with_nms_from_a_checkpoint_matches_eager(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code = export_tool.main(
        ["--checkpoint", str(tiny.checkpoint_file()), "--format", "onnx", "--out", str(out), "--with-nms",
         "--dynamic-batch"]
    )
    assert code == 0 and out.is_file()
    assert f"wrote {out}" in capsys.readouterr().out
    exported = Predictor(out, backend="ort", score_threshold=0.05)
    assert exported.class_names == tiny.CLASS_NAMES and exported.category_ids == tiny.CATEGORY_IDS
    eager = Predictor(tiny.checkpoint_file(), score_threshold=0.05)
    for ours, theirs in zip(exported.predict(tiny.scene_images()), eager.predict(tiny.scene_images())):
        np.testing.assert_array_equal(ours["labels"], theirs["labels"])
        np.testing.assert_allclose(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-3)


def test_int8_onnx_runs_in_detect_py(tmp_path, capfd, monkeypatch):
    """tools/export.py --int8 --calib, then detect.py --backend int8 on a scene finds its objects."""
    model = tmp_path / "model_int8.onnx"
    code = export_tool.main(
        ["--checkpoint", str(tiny.checkpoint_file()), "--format", "onnx", "--out", str(model), "--with-nms",
         "--int8", "--calib", str(tiny.calibration_folder())]
    )
    assert code == 0
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), cv2.cvtColor(tiny.scene_images()[0], cv2.COLOR_RGB2BGR))
    records_path = tmp_path / "detections.json"
    completed = run_main(
        "detect.py", ["image", str(image), "--model", str(model), "--backend", "int8", "--score-threshold", "0.5",
                      "--json", str(records_path), "--no-show"],
        cwd=REPO_ROOT, capfd=capfd, monkeypatch=monkeypatch,
    )
    assert completed.returncode == 0, completed.stderr
    assert "int8 (INT8 ONNX Runtime" in completed.stdout
    records = json.loads(records_path.read_text())
    names = sorted(record["category_name"] for record in records)
    assert names == ["box", "box", "disc"]
    assert {record["category_id"] for record in records} == set(tiny.CATEGORY_IDS)


def test_torchscript_export_runs_as_a_script(tmp_path, capfd, monkeypatch):
    """tools/export.py --format torchscript exits 0, and the file it writes loads with torch.jit.load and runs."""
    out = tmp_path / "model.pt"
    completed = run_main(
        "tools/export.py", ["--checkpoint", str(tiny.checkpoint_file()), "--format", "torchscript", "--out", str(out)],
        cwd=REPO_ROOT, capfd=capfd, monkeypatch=monkeypatch,
    )
    assert completed.returncode == 0, completed.stderr
    with warnings.catch_warnings():  # torch.jit is deprecated in torch 2.x (Future- or DeprecationWarning)
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        network = torch.jit.load(str(out))
    cls_logits, box_deltas = network(torch.zeros(2, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE))
    anchors = tiny.overfit_tiny_detector().anchors.shape[0]
    assert cls_logits.shape == (2, anchors, 3) and box_deltas.shape == (2, anchors, 4)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "onnx", "--int8"], "--int8 needs --calib DIR"),
        (["--format", "onnx", "--int8", "--calib", "/nonexistent/calib"], "calibration folder not found"),
        (["--format", "torchscript", "--with-nms"], "--int8 apply to ONNX, OpenVINO and TFLite only; TorchScript"),
        (["--format", "onnx", "--max-detections", "0"], "max_detections must be an integer >= 1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, arguments, message):
    code = export_tool.main(["--checkpoint", str(tiny.checkpoint_file()), "--out", str(tmp_path / "m"), *arguments])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("export.py: error: ") and message in error and error.count("\n") == 1


def test_checkpoint_that_is_missing_or_not_ours_is_a_clear_error(tmp_path, capsys):
    assert export_tool.main(["--checkpoint", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "text.ckpt").write_text("hello")
    assert export_tool.main(["--checkpoint", str(tmp_path / "text.ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "text.ckpt" in capsys.readouterr().err


def test_eval_coco_evaluates_the_exported_model_with_the_predictor(tmp_path, capsys):
    """tools/eval_coco.py --model MODEL.onnx (--backend ort implied): the same AP as eager."""
    images_dir, annotation_file = tiny.scenes_coco_dataset()
    eval_tool = load_tool("eval_coco")
    metrics = {}
    for name, model, extra in (
        ("ort", tiny.exported_file("onnx_nms"), []),
        ("eager", tiny.checkpoint_file(), ["--backend", "eager"]),
    ):
        out = tmp_path / name
        arguments = ["--ann", str(annotation_file), "--images", str(images_dir), "--model", str(model)]
        assert eval_tool.main([*arguments, "--evaluator", "faster", "--out", str(out), *extra]) == 0
        metrics[name] = json.loads((out / "metrics.json").read_text())
        assert (out / "detections.json").is_file()
    assert metrics["eager"]["AP"] > 0.5
    assert abs(metrics["ort"]["AP"] - metrics["eager"]["AP"]) < 1e-3
    assert "report written to" in capsys.readouterr().out
