"""tools/eval_coco.py, results-file mode, with the arguments a user gives it; its flags and their deprecated aliases.

The command's ``main`` runs in the test's process (tests/commands_in_process.py), as its script calls it.
"""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from ssdlite.evaluation import COCO_METRIC_NAMES, VOC_METRIC_NAMES, CocoEvaluator
from tests.commands_in_process import run_main
from tests.evaluation.coco_eval_fixtures import make_coco_fixture

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "eval_coco.py"


@pytest.fixture(scope="module")
def coco_fixture() -> tuple[dict, list[dict]]:
    """(ground truth, detections) of the evaluation tests' synthetic fixture; tests must not modify them."""
    return make_coco_fixture()


@pytest.fixture()
def run_cli(capfd, monkeypatch):
    """Runs tools/eval_coco.py's main with the given arguments in folder ``cwd``: its status, stdout and stderr."""

    def run(*arguments, cwd):
        return run_main("tools/eval_coco.py", [str(argument) for argument in arguments], cwd=cwd, capfd=capfd,
                        monkeypatch=monkeypatch)

    return run


@pytest.fixture()
def files(coco_fixture, tmp_path):
    ground_truth, detections = coco_fixture
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    return tmp_path


def test_results_mode_writes_the_report_and_prints_the_table(files, coco_fixture, run_cli):
    completed = run_cli("--ann", "gt.json", "--results", "dt.json", "--evaluator", "faster", "--out", "report",
                        cwd=files)
    assert completed.returncode == 0, completed.stderr
    report = files / "report"
    assert sorted(p.name for p in report.iterdir()) == [
        "confusion_matrix.csv", "confusion_matrix.png", "errors.png", "metrics.json", "per_class_ap.csv",
        "per_class_ap.png", "pr_curve.png",
    ]  # the results file is not copied; without --images, no error gallery
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics) == {*COCO_METRIC_NAMES, *VOC_METRIC_NAMES, "per_class_AP", "errors", "AP_by_objects_per_image",
                            "confusion_matrix"}
    expected = CocoEvaluator(coco_fixture[0], backend="faster").evaluate(coco_fixture[1])
    assert {key: metrics[key] for key in expected} == expected
    lines = completed.stdout.splitlines()
    assert lines[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = ")
    assert lines[0].endswith(f"{metrics['AP']:0.3f}")
    assert sum("Average Recall" in line for line in lines) == 6
    assert any("VOC07" in line for line in lines)
    for name in ("pr_curve.png", "per_class_ap.png"):
        with Image.open(report / name) as image:
            image.verify()
            assert image.format == "PNG"


def load_cli():
    """tools/eval_coco.py as a module, to call main(argv) in-process."""
    specification = importlib.util.spec_from_file_location("eval_coco_cli", SCRIPT)
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


def test_bad_results_file_gives_one_line_error_and_no_traceback(files, run_cli):
    (files / "bad.json").write_text(json.dumps({"not": "a list"}))
    completed = run_cli("--ann", "gt.json", "--results", "bad.json", "--out", "report", cwd=files)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
    assert completed.stderr.startswith("eval_coco.py: error: results file 'bad.json' must be a JSON list")
    assert not (files / "report").exists()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--results", "bad.json"], "'bad.json': detection [0] has 'bbox' 7"),
        (["--results", "unknown.json"], "unknown.json' names 1 image id(s) that are not in the ground truth"),
        (["--results", "missing.json"], "results file 'missing.json' does not exist"),
        (["--model", "model.ckpt", "--images", "images"], "checkpoint not found: model.ckpt"),
    ],
)
def test_errors_are_one_line_with_exit_code_two(arguments, expected, files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    (files / "bad.json").write_text(json.dumps([{"image_id": 1000, "category_id": 3, "bbox": 7, "score": 0.5}]))
    (files / "unknown.json").write_text(json.dumps([{"image_id": 5, "category_id": 3, "bbox": [1, 2, 3, 4],
                                                     "score": 0.5}]))
    assert load_cli().main(["--ann", "gt.json", *arguments, "--out", "report"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("eval_coco.py: error: ") and expected in captured.err


def test_argument_errors(files, capsys):
    cli = load_cli()
    for arguments in (["--results", "dt.json", "--model", "model.ckpt"], ["--model", "model.ckpt"],
                      ["--results", "dt.json", "--evaluator", "fast"], ["--model", "a.ckpt", "--checkpoint", "b.ckpt"],
                      ["--results", "dt.json", "--evaluator", "faster", "--backend", "pycocotools"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--ann", "gt.json", *arguments])
        assert exit_info.value.code == 2
    errors = capsys.readouterr().err
    assert "--model needs --images" in errors and "invalid choice: 'fast'" in errors
    assert "argument --checkpoint: not allowed with argument --model" in errors
    assert "--evaluator faster and --backend pycocotools (its old name) disagree" in errors


def test_the_flags_of_the_previous_release_warn_in_one_line_and_still_work(files, monkeypatch, capsys):
    """--checkpoint is --model, --backend pycocotools|faster is --evaluator, --model-backend is --backend."""
    cli = load_cli()
    parser = cli.eval_coco.build_parser("eval_coco.py")
    old = cli.eval_coco.parse_arguments(parser, ["--ann", "gt.json", "--checkpoint", "m.onnx", "--images", "i",
                                                 "--backend", "faster", "--model-backend", "ort"])
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        "eval_coco.py: warning: --checkpoint m.onnx is deprecated and goes in the next release; use --model m.onnx",
        "eval_coco.py: warning: --backend faster is deprecated and goes in the next release; use --evaluator faster",
        "eval_coco.py: warning: --model-backend ort is deprecated and goes in the next release; use --backend ort",
    ]
    new = cli.eval_coco.parse_arguments(parser, ["--ann", "gt.json", "--model", "m.onnx", "--images", "i",
                                                 "--evaluator", "faster", "--backend", "ort"])
    assert capsys.readouterr().err == ""
    assert (old.model, old.evaluator, old.backend) == (new.model, new.evaluator, new.backend) == ("m.onnx", "faster",
                                                                                                  "ort")
    monkeypatch.chdir(files)  # and a whole run: the old results-file command gives the new one's report
    assert cli.main(["--ann", "gt.json", "--results", "dt.json", "--backend", "faster", "--out", "old"]) == 0
    assert cli.main(["--ann", "gt.json", "--results", "dt.json", "--evaluator", "faster", "--out", "new"]) == 0
    assert capsys.readouterr().err.count("\n") == 1
    assert (files / "old" / "metrics.json").read_text() == (files / "new" / "metrics.json").read_text()
