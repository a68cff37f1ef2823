"""An ncnn export runs where torch cannot be imported: ``detect.py image --model model.ncnn.param`` in a subprocess
whose imports of torch and ssdlite fail matches the eager model's detections (boxes within 1 px, same count at
score >= 0.3); a truncated ``.ncnn.bin`` is one line on stderr (ncnn's own messages folded into it) that names the
file; ncnn's OpenMP threads wait passively unless the user says otherwise."""

from __future__ import annotations

import shutil

import pytest

from ssdlite.deploy.export import export_model
from ssdlite_runtime.predictor import Predictor
from tests.runtime.test_without_torch import (
    REPO_ROOT,
    assert_records_match_eager,
    detect_without_torch,
    run_without_torch,
    write_scenes,
)
from tests.tools.test_detect import CATEGORY_IDS, CLASS_NAMES, tiny_detector

pytest.importorskip("pnnx")
pytest.importorskip("ncnn")

pytestmark = pytest.mark.slow  # exports a model and starts a process without torch


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ncnn_without_torch")
    model = tiny_detector()
    param = export_model(model, folder / "model.ncnn.param", format="ncnn", class_names=CLASS_NAMES,
                         category_ids=CATEGORY_IDS)
    return model, param, write_scenes(folder)


def test_detect_runs_an_ncnn_file_without_torch_and_matches_the_eager_model(exported, tmp_path):
    model, param, images = exported
    result, records = detect_without_torch(param, images, tmp_path, "--save", str(tmp_path / "drawn"))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "drawn").iterdir())) == len(images)
    eager = Predictor(model, backend="eager", class_names=CLASS_NAMES, category_ids=CATEGORY_IDS,
                      score_threshold=0.3)
    assert_records_match_eager(records, images, eager)


def test_a_truncated_bin_is_one_line_on_stderr_naming_it(exported, tmp_path):
    _, param, images = exported
    for suffix in (".param", ".bin", ".json"):
        shutil.copy(param.with_name(f"model.ncnn{suffix}"), tmp_path / f"model.ncnn{suffix}")
    weights = tmp_path / "model.ncnn.bin"
    weights.write_bytes(weights.read_bytes()[:-1000])
    result = run_without_torch([str(REPO_ROOT / "detect.py"), "image", str(images[0]), "--model",
                                str(tmp_path / "model.ncnn.param"), "--no-show"], tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "Traceback" not in line and str(weights) in line and "truncated" in line and "ncnn:" in line, line


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_ncnn_threads_wait_passively_unless_the_user_chose(exported, tmp_path, monkeypatch, preset):
    _, param, _ = exported
    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", preset)
    script = ("import os, sys; from ssdlite_runtime.predictor import Predictor; "
              "p = Predictor(sys.argv[1], threads=1); print(os.environ['OMP_WAIT_POLICY'], p.backend.net.opt.num_threads)")
    result = run_without_torch(["-c", script, str(param)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [preset or "PASSIVE", "1"]
