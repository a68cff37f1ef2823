"""tools/benchmark.py in smoke mode: every measurement runs and the report has every key as a number.

No timing is asserted (the numbers of a smoke run on a shared machine mean nothing). The script's ``main`` runs in
the test's process: torch, ONNX Runtime and the converters are imported once, not once per run.
"""

from __future__ import annotations

import importlib.util
import json
import math
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy import tiny_detector as tiny

pytestmark = pytest.mark.slow  # measures every model and format

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = REPO_ROOT / "tools" / "benchmark.py"

REQUIRED = {
    "latency_ms": [
        "ours_eager", "ours_ort", "ours_int8", "tv_ssdlite_v3", "tv_ssd_same_net", "ort_raw_net",
        "classifier_mobilenet_v1_w0.25_64_eager", "classifier_mobilenet_v1_w0.25_64_ort",
        "classifier_mobilenet_v2_w0.25_64_eager", "classifier_mobilenet_v2_w0.25_64_ort",
    ],
    "ratios": [
        "ort_vs_tv_v3",
        "eager_vs_tv_v3",
        "int8_vs_tv_v3",
        "ort_vs_raw_net",
        "train_vs_tv_ssd",
        "postprocess_vs_tv",
        "faster_eval_vs_pycocotools",
    ],
}


@cache
def benchmark_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_script", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmark(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    """``python tools/benchmark.py --smoke ARGS`` from the repository root, by the script's ``main`` in this
    process; what it printed on stdout. Fails unless it ends with status 0."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr("sys.argv", [str(BENCHMARK), "--smoke", *arguments])
    capsys.readouterr()
    status = benchmark_script().main(["--smoke", *arguments])
    out, err = capsys.readouterr()
    assert status == 0, err[-3000:]
    return out


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_smoke_report_has_every_key_as_a_number(tmp_path, monkeypatch, capsys):
    report_path = tmp_path / "report.json"
    printed = run_benchmark(monkeypatch, capsys, "--json", str(report_path), "--markdown")
    report = json.loads(report_path.read_text())
    for section, keys in REQUIRED.items():
        for key in keys:
            assert is_number(report[section].get(key)), f"{section}.{key} = {report[section].get(key)!r}"
    for section in ("latency_ms", "throughput", "ratios"):
        assert all(is_number(value) for value in report[section].values()), section
    assert report["info"]["int8_accuracy"].startswith("not measured")
    assert report["info"]["machine"]["load_average_1_5_15_min_before"]
    # the readable table names every required number
    for keys in REQUIRED.values():
        for key in keys:
            assert key in printed
    assert "machine:" in printed and "load average" in printed
    # the README's tables: complexity counted by ssdlite.models.complexity, latency from the report
    variants = report["info"]["classifiers"]["variants"]
    assert variants["mobilenet_v1_w0.25_64"]["params"] < variants["mobilenet_v2_w0.25_64"]["params"]
    complexity = report["info"]["latency"]["complexity"]
    assert 3.3e6 < complexity["tv_ssdlite_v3"]["params"] < 3.6e6  # torchvision's documented 3.4M
    assert "| mobilenet_v1 | 0.25 | 64 |" in printed
    assert "| torchvision ssdlite320_mobilenet_v3_large | 320 | 3.44M |" in printed


def test_int8_accuracy_is_measured_with_a_checkpoint_and_a_validation_set(tmp_path, monkeypatch, capsys):
    images_dir, _ = tiny.scenes_coco_dataset()
    report_path = tmp_path / "report.json"
    run_benchmark(
        monkeypatch, capsys, "--only", "int8_accuracy", "--checkpoint", str(tiny.checkpoint_file()), "--val", str(images_dir),
        "--calib", str(tiny.calibration_folder()), "--json", str(report_path),
    )
    accuracy = json.loads(report_path.read_text())["accuracy"]
    for key in ("ap_eager", "ap_ort", "ap_int8", "int8_ap_drop_points"):
        assert is_number(accuracy[key]), key
    assert accuracy["ap_eager"] > 50 and abs(accuracy["ap_ort"] - accuracy["ap_eager"]) < 0.5  # overfit model


FORMATS_MEASURED = ("onnx", "ncnn")
"""The formats the benchmark test converts to (their own tests check every format; TFLite's conversion alone takes
a minute)."""


def test_formats_measures_each_format_against_eager(tmp_path, monkeypatch, capsys):
    from ssdlite.deploy.export.base import registered_exporters

    images_dir, _ = tiny.scenes_coco_dataset()
    report_path = tmp_path / "report.json"
    printed = run_benchmark(
        monkeypatch, capsys, "--only", "formats", "--checkpoint", str(tiny.checkpoint_file()), "--val", str(images_dir),
        "--calib", str(tiny.calibration_folder()), "--json", str(report_path), "--markdown",
        "--formats", *FORMATS_MEASURED,
    )
    report = json.loads(report_path.read_text())
    info, latency, accuracy = report["info"]["formats"], report["latency_ms"], report["accuracy"]
    exported = set(info["size_mb"])
    expected = {exporter.format if exporter.precision == "float" else f"{exporter.format}_int8"
                for exporter in registered_exporters() if exporter.format in FORMATS_MEASURED}
    assert exported | set(info["not_measured"]) == expected  # every format exported, or said why not
    assert {"onnx", "onnx_int8"} <= exported
    for key in exported:
        assert info["size_mb"][key] > 0.1, key
        if key in info["not_measured"]:  # exported but not runnable here (Core ML)
            continue
        assert is_number(latency[f"formats_{key}"]) and is_number(report["ratios"][f"formats_{key}_vs_tv_v3"])
        if not key.endswith("_int8"):  # the overfit model: every float format finds eager's objects exactly
            assert info["parity_vs_eager"][key]["max_box_difference_px"] <= 1.0, key
            assert abs(accuracy[f"formats_ap_{key}"] - accuracy["formats_ap_eager"]) < 0.5, key
    assert "| onnx |" in printed and "| torchvision ssdlite320_mobilenet_v3_large |" in printed


def test_slicing_measures_the_full_frame_and_tiles(tmp_path, monkeypatch, capsys):
    """Smoke: a random shapes model (eager) on one generated 480 x 270 frame, the full frame and 128 px tiles."""
    report_path = tmp_path / "report.json"
    printed = run_benchmark(monkeypatch, capsys, "--only", "slicing", "--json", str(report_path), "--markdown")
    report = json.loads(report_path.read_text())
    info = report["info"]["slicing"]
    assert info["tiles_per_image"] == {"full_frame": 0, "tiles_128": 15}  # 5 x 3 tiles of 128 px in 480 x 270
    assert info["objects"] > 0 and info["small_objects"] > 0.8 * info["objects"]
    for key in ("full_frame", "tiles_128"):
        for metric in ("ap", "ap50", "ap_small"):
            assert 0 <= report["accuracy"][f"slicing_{metric}_{key}"] <= 100
        assert is_number(report["latency_ms"][f"slicing_{key}_per_image"])
    assert "| 128 px tiles + full frame | 15 |" in printed


def test_serve_load_test_reports_every_level_without_errors(tmp_path, monkeypatch, capsys):
    """``--only serve`` on the tiny detector's ONNX file (served as it is, no export): a server process, 8 requests
    at each concurrency level; the report's shape and no failed request, not the speed."""
    report_path = tmp_path / "report.json"
    model = tiny.exported_for_predictor("ort")[1]
    printed = run_benchmark(monkeypatch, capsys, "--only", "serve", "--checkpoint", str(model), "--json", str(report_path))
    report = json.loads(report_path.read_text())
    levels = (1, 4, 16)
    for clients in levels:
        assert is_number(report["throughput"][f"serve_c{clients}"])
        for percentile in ("p50", "p99"):
            assert is_number(report["latency_ms"][f"serve_c{clients}_{percentile}"])
    for batch in (1, 4, 8):
        assert is_number(report["throughput"][f"serve_predictor_b{batch}"])
    assert report["throughput"]["serve_predictor_best"] == max(report["throughput"][f"serve_predictor_b{batch}"]
                                                               for batch in (1, 4, 8))
    assert is_number(report["ratios"]["serve_c16_vs_predictor_best"])
    info = report["info"]["serve"]
    assert info["errors"] == 0 and info["requests_per_level"] == 8 and info["server"]["exit_status"] == 0
    assert set(info["levels"]) == {f"c{clients}" for clients in levels}
    assert "serve_c16_vs_predictor_best" in printed
