"""tools/summary.py: the paper's figures through the command line, JSON output and clean errors.

The command's ``main`` runs in the test's process (tests/commands_in_process.py), as its script calls it.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from tests.commands_in_process import Completed, run_main

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "summary.py"


@pytest.fixture
def run_summary(tmp_path, capfd, monkeypatch):
    """Runs tools/summary.py's main with the given arguments, in an empty folder: its status, stdout and stderr."""

    def run(*args: str) -> Completed:
        return run_main("tools/summary.py", list(args), cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)

    return run


@pytest.fixture(scope="module")
def summary_cli():
    spec = importlib.util.spec_from_file_location("summary_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_json_for_the_paper_preset_at_320(run_summary):
    completed = run_summary("ssdlite_mobilenet_v2", "--size", "320", "--num-classes", "90", "--json")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert isinstance(result["params"], int) and isinstance(result["macs"], int)
    assert abs(result["params"] - 4.5e6) <= 0.05 * 4.5e6
    assert abs(result["macs"] - 0.80e9) <= 0.05 * 0.80e9
    assert (result["num_anchors"], result["outputs_per_box"], result["image_size"]) == (2034, 91, 320)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("ssdlite_mobilenet_v2", "summary.py: error: image_size 100000 is larger than 2048"),
        ("mobilenet_v1", "summary.py: error: image_size of a classifier must be an integer from 1 to 2048"),
    ],
)
def test_a_huge_size_is_refused_in_one_line_before_any_allocation(run_summary, model, message):
    completed = run_summary(model, "--size", "100000")
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith(message) and "100000" in line


def test_unknown_model_is_one_line_error_without_traceback(run_summary):
    completed = run_summary("ssd_vgg16")
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'ssd_vgg16'" in lines[0] and "ssdlite_mobilenet_v2" in lines[0]
    assert completed.stdout == ""


def test_folded_mobilenet_v1_json(summary_cli, capsys):
    summary_cli.main(["mobilenet_v1", "--fold-bn", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == 4_221_032 and result["batchnorm_params"] == 0
    assert abs(result["macs"] - 569e6) <= 0.01 * 569e6


def test_table_for_mobilenet_v1_shallow_at_width_half(summary_cli, capsys):
    summary_cli.main(["mobilenet_v1", "--width", "0.5", "--size", "160", "--shallow"])
    table = capsys.readouterr().out
    assert "Conv / s2" in table and "3x3x3x16" in table and "160x160x3" in table and "Conv dw / s1" in table
    assert "Total params:" in table and "Total MACs:" in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mobilenet_v2", "--shallow"], "shallow=True applies to MobileNetV1 only"),
        (["ssdlite_mobilenet_v2", "--width", "0"], "width_mult must be a number > 0"),
        (["ssdlite_mobilenet_v2", "--size", "32"], "image_size must be an integer >= 64"),
    ],
)
def test_bad_options_exit_with_the_message(summary_cli, argv, message, capsys):
    assert summary_cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("summary.py: error: ") and message in error
