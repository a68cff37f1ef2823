"""A --checkpoint / --model that is not a checkpoint is one line that says so, in every command that reads one.

Each command meets each kind of bad file once (a Latin square: three runs instead of nine); every kind goes
through both loaders (``load_checkpoint`` and the Predictor's) in tests/models/test_weights.py. Each command's
``main`` runs in the test's process (tests/commands_in_process.py): its exit status and stderr are what decide.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ssdlite.models import build_model
from tests.commands_in_process import run_main
from tests.deploy import tiny_detector as tiny
from tests.models.test_weights import write_bad_file

CASES = {
    "empty": ("detect.py", "the file is empty (0 bytes)"),
    "text": ("tools/eval_coco.py", "it holds text ('epoch,loss')"),
    "truncated": ("tools/export.py", "it is a zip archive cut short or damaged"),
}


def arguments(script: str, checkpoint: Path, tmp_path: Path) -> list[str]:
    if script == "detect.py":
        images, _ = tiny.scenes_coco_dataset()
        return ["image", str(next(images.iterdir())), "--model", str(checkpoint), "--no-show"]
    if script == "tools/eval_coco.py":
        images, annotations = tiny.scenes_coco_dataset()
        return ["--model", str(checkpoint), "--images", str(images), "--ann", str(annotations),
                "--out", str(tmp_path / "report")]
    return ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "model.onnx")]


@pytest.mark.parametrize("kind", list(CASES))
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(kind, tmp_path, capfd, monkeypatch):
    script, reason = CASES[kind]
    checkpoint = write_bad_file(kind, tmp_path)
    completed = run_main(script, arguments(script, checkpoint, tmp_path), cwd=tmp_path, capfd=capfd,
                         monkeypatch=monkeypatch)
    assert completed.returncode == 2, completed.stderr[-3000:]
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"{Path(script).name}: error: {checkpoint} is not a checkpoint: {reason}")
    assert "A checkpoint is the file torch.save writes" in line
    assert not (tmp_path / "report").exists() and not (tmp_path / "model.onnx").exists()


def test_a_checkpoint_whose_image_size_is_absurd_is_one_line_naming_it(tmp_path, capfd, monkeypatch):
    model = build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=64)
    checkpoint = tmp_path / "huge.ckpt"
    torch.save({"model_config": {**model.config, "image_size": 100000}, "state_dict": model.state_dict(),
                "class_names": tiny.CLASS_NAMES, "category_ids": tiny.CATEGORY_IDS}, checkpoint)
    script = "tools/eval_coco.py"
    completed = run_main(script, arguments(script, checkpoint, tmp_path), cwd=tmp_path, capfd=capfd,
                         monkeypatch=monkeypatch)
    assert completed.returncode == 2, completed.stderr[-3000:]
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"eval_coco.py: error: checkpoint '{checkpoint}' holds a model config this package "
                           "cannot build: image_size 100000 is larger than 2048")


# -- an exported file without its suffix, and a path that is not a regular file (issue 21, item 7)


WITHIN_A_MINUTE = pytest.mark.timeout(60)
"""The tests of :func:`run_script` fail after a minute (pytest-timeout), as its process's timeout failed them."""


def run_script(script: str, arguments_: list[str], cwd: Path, capfd, monkeypatch) -> str:
    """The one stderr line of ``script``'s ``main`` run with ``arguments_``, which must exit 2 (within a minute: the
    tests that call this are marked :data:`WITHIN_A_MINUTE`)."""
    completed = run_main(script, arguments_, cwd=cwd, capfd=capfd, monkeypatch=monkeypatch)
    assert completed.returncode == 2, completed.stderr[-3000:]
    [line] = completed.stderr.splitlines()
    return line


def detect_arguments(model: Path) -> list[str]:
    images, _ = tiny.scenes_coco_dataset()
    return ["image", str(next(images.iterdir())), "--model", str(model), "--no-show"]


def onnx_file(path: Path) -> Path:
    """A real (if trivial) ONNX model, saved by the onnx package, under whatever name ``path`` has."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def tflite_file(path: Path) -> Path:
    """A real (if empty) TFLite flatbuffer, built with the schema LiteRT ships, under whatever name ``path`` has."""
    pytest.importorskip("ai_edge_litert")
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version, model.subgraphs, model.buffers = 3, [schema.SubGraphT()], [schema.BufferT()]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


@WITHIN_A_MINUTE
@pytest.mark.parametrize("name", ["model.bin", "model"])
def test_an_onnx_file_without_its_suffix_is_named_as_onnx_with_the_suffix_to_give_it(name, tmp_path, capfd,
                                                                                      monkeypatch):
    model = onnx_file(tmp_path / name)
    line = run_script("detect.py", detect_arguments(model), tmp_path, capfd, monkeypatch)
    assert line.startswith(f"detect.py: error: {model} looks like an ONNX file (it starts as an ONNX ModelProto "
                           "does), not a training checkpoint, but its name does not end in .onnx; give it that "
                           f"suffix (e.g. mv {model} {tmp_path / 'model.onnx'}) or choose its backend (--backend ort"), line
    assert "not a checkpoint" not in line


def test_an_onnx_file_with_its_suffix_given_to_the_eager_backend_is_told_to_use_its_own(tmp_path):
    from ssdlite_runtime.backends.base import load_backend

    model = onnx_file(tmp_path / "model.onnx")
    with pytest.raises(ValueError) as error:
        load_backend("eager", model)
    assert str(error.value) == (
        f"{model} is an ONNX file (it starts as an ONNX ModelProto does), not a training checkpoint, which is all "
        "the eager backend reads; leave --backend out or pass --backend ort (Predictor(..., backend='ort'))"
    )


@WITHIN_A_MINUTE
def test_a_tflite_file_without_its_suffix_is_named_as_tflite_also_by_export(tmp_path, capfd, monkeypatch):
    model = tflite_file(tmp_path / "model.bin")
    line = run_script("detect.py", detect_arguments(model), tmp_path, capfd, monkeypatch)
    assert line.startswith(f"detect.py: error: {model} looks like a TFLite file (its bytes 4..8 are the TFLite "
                           "identifier TFL3), not a training checkpoint, but its name does not end in .tflite; give "
                           f"it that suffix (e.g. mv {model} {tmp_path / 'model.tflite'}) or choose its backend "
                           "(--backend tflite"), line
    line = run_script("tools/export.py", ["--checkpoint", str(model), "--out", str(tmp_path / "out.onnx")], tmp_path,
                      capfd, monkeypatch)
    assert line.startswith(f"export.py: error: {model} looks like a TFLite file"), line
    assert not (tmp_path / "out.onnx").exists()


@WITHIN_A_MINUTE
def test_a_fifo_or_a_device_named_onnx_is_not_a_regular_file_and_is_never_opened(tmp_path, capfd, monkeypatch):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)  # opening it would wait for a writer: the test's 60 s timeout (WITHIN_A_MINUTE) would fail it
    line = run_script("detect.py", detect_arguments(fifo), tmp_path, capfd, monkeypatch)
    assert line == (f"detect.py: error: {fifo} is not a regular file but a named pipe (FIFO); pass the model file "
                    "itself"), line
    device = tmp_path / "random.onnx"
    device.symlink_to("/dev/urandom")
    line = run_script("detect.py", detect_arguments(device), tmp_path, capfd, monkeypatch)
    assert line == (f"detect.py: error: {device} is not a regular file but a character device; pass the model file "
                    "itself"), line
