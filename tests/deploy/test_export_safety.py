"""ssdlite-export refuses, before any conversion, what it cannot or must not do: an --out whose files would overwrite
the checkpoint (same file by any name, or a companion such as OpenVINO's .bin), an --out under a file, in a folder it
cannot write or whose name is not the format's, a --calib-max below 1; and it calibrates on the readable images of
a folder, skipping an unreadable one with a warning.

"Before any conversion" is checked by replacing the exporters (or the first conversion step) with functions that
record being called: a refused export leaves the record empty (and, for the checkpoint checks, the checkpoint is
not even loaded).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ssdlite.commands import export as export_command
from ssdlite.deploy import model_files
from ssdlite.deploy.export import base
from ssdlite.deploy.export.int8 import ImageFolderCalibrationReader
from ssdlite.models import build_model

CLASS_NAMES = ["box", "disc"]
IMAGE_SIZE = 64


def small_model() -> torch.nn.Module:
    """An untrained SSDLite small enough to export in a second (what it detects does not matter here)."""
    torch.manual_seed(0)
    return build_model(
        "ssdlite_mobilenet_v2", num_classes=len(CLASS_NAMES), width_mult=0.35, image_size=IMAGE_SIZE
    ).eval()


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    """A checkpoint of :func:`small_model` as ``load_checkpoint_for_inference`` reads it, as bytes."""
    model = small_model()
    buffer = io.BytesIO()
    torch.save(
        {"model_config": model.config, "state_dict": model.state_dict(), "class_names": CLASS_NAMES,
         "category_ids": [5, 9]},
        buffer,
    )
    return buffer.getvalue()


@pytest.fixture
def conversions(monkeypatch) -> list[tuple[str, str, Path]]:
    """Every registered exporter replaced by one that records (format, precision, path) and writes a stand-in
    output; no converter package is needed."""
    calls = []
    base.available_formats()
    for key, exporter in list(base._EXPORTERS.items()):
        def export(model, path, options, key=key, folder=exporter.suffix == ".mlpackage"):
            calls.append((*key, path))
            path.parent.mkdir(parents=True, exist_ok=True)
            if folder:
                path.mkdir()
            else:
                path.write_bytes(b"exported")
            return path

        monkeypatch.setitem(base._EXPORTERS, key, dataclasses.replace(exporter, export=export, packages=()))
    return calls


@pytest.fixture
def loads(monkeypatch) -> list[Path]:
    """The checkpoints ``export_checkpoint`` loads, recorded (and still loaded)."""
    calls, load = [], model_files.load_checkpoint_for_inference

    def recorded(path, **kwargs):
        calls.append(Path(path))
        return load(path, **kwargs)

    monkeypatch.setattr(model_files, "load_checkpoint_for_inference", recorded)
    return calls


def run_export(capsys, *arguments: str | Path) -> tuple[int, str]:
    """``tools/export.py ARGUMENTS`` in this process: (exit status, stderr)."""
    code = export_command.main([str(argument) for argument in arguments], prog="export.py")
    return code, capsys.readouterr().err


def write_image(path: Path, seed: int) -> Path:
    image = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    encoded = cv2.imencode(".jpg", np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 90, dtype=np.uint8))[1].tobytes()
    path.write_bytes(encoded[: len(encoded) // 2])
    return path


def calibration_folder(folder: Path, *, good: int, bad: bool) -> tuple[Path, list[Path]]:
    """``good`` readable PNGs, and (``bad``) a truncated JPEG and a JPEG of garbage bytes: (folder, bad files)."""
    folder.mkdir()
    for index in range(good):
        write_image(folder / f"good{index}.png", index)
    if not bad:
        return folder, []
    garbage = folder / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    return folder, [garbage, write_truncated_jpeg(folder / "half.jpg")]


# ------------------------------------------------------------------------------------- the checkpoint is kept


def same_file(tmp_path: Path, checkpoint: Path) -> Path:
    return checkpoint


def another_path(tmp_path: Path, checkpoint: Path) -> Path:
    (tmp_path / "sub").mkdir()
    return tmp_path / "sub" / ".." / checkpoint.name


def hard_link(tmp_path: Path, checkpoint: Path) -> Path:
    os.link(checkpoint, tmp_path / "link.pt")
    return tmp_path / "link.pt"


def symlink(tmp_path: Path, checkpoint: Path) -> Path:
    (tmp_path / "link.pt").symlink_to(checkpoint)
    return tmp_path / "link.pt"


def beside(name: str):
    return lambda tmp_path, checkpoint: tmp_path / name


OVERWRITES = {
    # case: (checkpoint's name, --format and options, --out from (tmp_path, checkpoint))
    "the issue's copy.ckpt": ("copy.ckpt", ["--format", "torchscript"], same_file),
    "same name and suffix": ("model.pt", ["--format", "torchscript"], same_file),
    "same file by another path": ("model.pt", ["--format", "torchscript"], another_path),
    "hard link": ("copy.ckpt", ["--format", "torchscript"], hard_link),
    "symlink": ("copy.ckpt", ["--format", "torchscript"], symlink),
    "OpenVINO's .bin": ("model.bin", ["--format", "openvino", "--with-nms"], beside("model.xml")),
    "NCNN's .ncnn.json": ("m.ncnn.json", ["--format", "ncnn"], beside("m.ncnn.param")),
    "NCNN's .bin, capitals": ("M.NCNN.bin", ["--format", "ncnn"], beside("M.NCNN.PARAM")),
    "a Core ML package that holds it": ("out.mlpackage/copy.ckpt", ["--format", "coreml"], beside("out.mlpackage")),
}


@pytest.mark.parametrize("case", list(OVERWRITES))
def test_an_out_that_would_overwrite_the_checkpoint_is_refused_before_loading_it(
    case, tmp_path, capsys, checkpoint_bytes, conversions, loads
):
    name, options, out_of = OVERWRITES[case]
    checkpoint = tmp_path / name
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_bytes(checkpoint_bytes)
    out = out_of(tmp_path, checkpoint)
    code, error = run_export(capsys, "--checkpoint", checkpoint, "--out", out, *options)
    assert code == 2 and error.count("\n") == 1, error
    assert error.startswith(f"export.py: error: --out {out} would overwrite the checkpoint {checkpoint}"), error
    assert "pass another --out, e.g. --out " in error
    assert checkpoint.read_bytes() == checkpoint_bytes
    assert loads == [] and conversions == []


def test_the_suggested_out_leaves_the_checkpoint_alone(tmp_path, capsys, checkpoint_bytes, conversions):
    checkpoint = tmp_path / "model.bin"
    checkpoint.write_bytes(checkpoint_bytes)
    code, error = run_export(capsys, "--checkpoint", checkpoint, "--format", "openvino", "--out", tmp_path / "model.xml")
    suggested = error.rsplit("--out ", 1)[1].strip()
    assert code == 2 and suggested == str(tmp_path / "model_openvino.xml")
    assert run_export(capsys, "--checkpoint", checkpoint, "--format", "openvino", "--out", suggested)[0] == 0
    assert conversions == [("openvino", "float", Path(suggested))]
    assert checkpoint.read_bytes() == checkpoint_bytes


def test_a_torchscript_beside_the_checkpoint_is_written_and_the_checkpoint_kept(tmp_path, capsys, checkpoint_bytes):
    checkpoint = tmp_path / "copy.ckpt"
    checkpoint.write_bytes(checkpoint_bytes)
    code, error = run_export(capsys, "--checkpoint", checkpoint, "--format", "torchscript", "--out", tmp_path / "copy.pt")
    assert code == 0, error
    network = torch.jit.load(str(tmp_path / "copy.pt"))
    cls_logits, _ = network(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert cls_logits.shape[-1] == len(CLASS_NAMES) + 1
    assert checkpoint.read_bytes() == checkpoint_bytes


def test_exported_files_names_the_companions_as_the_exporter_and_runtime_do(tmp_path):
    from ssdlite.deploy.export.ncnn import ncnn_files
    from ssdlite_runtime.backends.ncnn import metadata_file, weights_file

    param = tmp_path / "M.NCNN.PARAM"
    written = ncnn_files(param)
    assert (weights_file(param), metadata_file(param)) == written[1:]
    for file in written:
        file.write_bytes(b"x")
    assert base.exported_files(param) == sorted(written, key=lambda file: file != param)


def test_a_core_ml_out_that_is_not_a_package_is_not_deleted(tmp_path, monkeypatch):
    from ssdlite.deploy.export import coreml

    def converted(*arguments, **options):
        raise AssertionError("the network was converted")

    monkeypatch.setattr(coreml, "inference_network", converted)
    out = tmp_path / "runs.mlpackage"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"runs\.mlpackage exists and is not a Core ML package") as error:
        coreml.export_coreml(small_model(), out)
    assert "\n" not in str(error.value) and (out / "notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- the output: folder and name


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("somefile.txt/model.onnx", "somefile.txt is a file, not a folder"),
        ("somefile.txt/sub/model.onnx", "somefile.txt is a file, not a folder"),
        ("a_folder.onnx", "a_folder.onnx is a folder, and --format onnx writes a .onnx file"),
        ("/proc/ssdlite_export_test/model.onnx", "cannot write in /proc"),
    ],
)
def test_an_out_that_cannot_be_written_is_refused_before_converting(
    out, message, tmp_path, capsys, checkpoint_bytes, conversions, monkeypatch
):
    if out.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "copy.ckpt").write_bytes(checkpoint_bytes)
    (tmp_path / "somefile.txt").write_text("a plain file")
    (tmp_path / "a_folder.onnx").mkdir()
    code, error = run_export(capsys, "--checkpoint", "copy.ckpt", "--format", "onnx", "--out", out)
    assert code == 2 and error.count("\n") == 1, error
    assert error.startswith(f"export.py: error: --out {out}") and message in error, error
    assert conversions == []
    assert (tmp_path / "somefile.txt").read_text() == "a plain file"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_folder.onnx", "copy.ckpt", "somefile.txt"]


@pytest.mark.parametrize(
    ("options", "out", "message"),
    [
        (["--format", "onnx"], "x.xml", "--format onnx writes a .onnx file (.xml is what --format openvino writes); "
                                        "pass --out ending in .onnx, e.g. --out x.onnx"),
        (["--format", "torchscript"], "model.onnx", "pass --out ending in .pt, e.g. --out model.pt"),
        (["--format", "ncnn"], "m.param", "pass --out ending in .ncnn.param, e.g. --out m.ncnn.param"),
        (["--format", "onnx"], ".onnx", "pass --out ending in .onnx, e.g. --out model.onnx"),
        (["--format", "coreml"], "model.mlmodel", "--format coreml writes a .mlpackage folder"),
        (["--format", "tflite", "--int8", "--calib", "calib"], "model_int8.onnx",
         "--format tflite --int8 writes a .tflite file (.onnx is what --format onnx writes); pass --out ending in "
         ".tflite, e.g. --out model_int8.tflite"),
    ],
)
def test_an_out_without_the_formats_suffix_is_refused_before_converting(
    options, out, message, tmp_path, capsys, checkpoint_bytes, conversions, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "copy.ckpt").write_bytes(checkpoint_bytes)
    calibration_folder(tmp_path / "calib", good=1, bad=False)
    code, error = run_export(capsys, "--checkpoint", "copy.ckpt", "--out", out, *options)
    assert code == 2 and error.count("\n") == 1, error
    assert error.startswith(f"export.py: error: --out {out}: ") and message in error, error
    assert conversions == [] and sorted(path.name for path in tmp_path.iterdir()) == ["calib", "copy.ckpt"]


@pytest.mark.parametrize(
    ("options", "out"),
    [
        (["--format", "onnx"], "Model.ONNX"),
        (["--format", "onnx", "--int8", "--calib", "calib"], "model.int8.onnx"),
        (["--format", "openvino", "--int8", "--calib", "calib"], "model_int8.xml"),
        (["--format", "ncnn"], "new/folder/m.NCNN.param"),
        (["--format", "coreml"], "model.mlpackage"),
    ],
)
def test_the_formats_suffix_is_taken_in_any_spelling_and_int8_name(
    options, out, tmp_path, capsys, checkpoint_bytes, conversions, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "copy.ckpt").write_bytes(checkpoint_bytes)
    calibration_folder(tmp_path / "calib", good=1, bad=False)
    code, error = run_export(capsys, "--checkpoint", "copy.ckpt", "--out", out, *options)
    assert code == 0, error
    [(format, precision, path)] = conversions
    assert (format, precision, path) == (options[1], "int8" if "--int8" in options else "float", Path(out))


def test_the_library_checks_the_output_before_converting(tmp_path, conversions):
    (tmp_path / "somefile.txt").write_text("a plain file")
    with pytest.raises(ValueError, match=r"--format torchscript writes a \.pt file"):
        base.export_model(small_model(), tmp_path / "model.onnx", format="torchscript")
    with pytest.raises(ValueError, match="somefile.txt is a file, not a folder"):
        base.export_model(small_model(), tmp_path / "somefile.txt" / "model.pt", format="torchscript")
    assert conversions == [] and sorted(path.name for path in tmp_path.iterdir()) == ["somefile.txt"]


def test_openvino_refuses_an_upper_case_xml_before_converting(tmp_path, monkeypatch):
    """OpenVINO's serializer takes only ".xml": "MODEL.XML" failed after the whole conversion."""
    pytest.importorskip("openvino")
    from ssdlite.deploy.export import openvino

    def converted(*arguments, **options):
        raise AssertionError("the network was converted")

    monkeypatch.setattr(openvino, "export_network_onnx", converted)
    with pytest.raises(ValueError, match=r"an OpenVINO IR is an \.xml file \(lower case.*--out .*MODEL\.xml"):
        openvino.export_openvino(small_model(), tmp_path / "MODEL.XML", base.ExportOptions())
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ calibration


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_calib_max_below_one_is_refused_before_loading(limit, tmp_path, capsys, checkpoint_bytes, conversions, loads):
    (tmp_path / "copy.ckpt").write_bytes(checkpoint_bytes)
    folder, _ = calibration_folder(tmp_path / "calib", good=2, bad=False)
    code, error = run_export(capsys, "--checkpoint", tmp_path / "copy.ckpt", "--format", "onnx", "--int8",
                             "--calib", folder, "--calib-max", limit, "--out", tmp_path / "m.onnx")
    assert code == 2 and error == (
        f"export.py: error: --calib-max {limit}: the number of calibration images must be a positive integer; "
        "pass e.g. --calib-max 200\n"
    )
    assert loads == [] and conversions == []


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_the_library_refuses_a_calibration_limit_below_one_before_converting(limit, tmp_path, conversions):
    folder, _ = calibration_folder(tmp_path / "calib", good=2, bad=False)
    with pytest.raises(ValueError, match="must be a positive integer"):
        base.export_model(small_model(), tmp_path / "m.onnx", int8=True, calibration_images=folder,
                          max_calibration_images=limit)
    with pytest.raises(ValueError, match="must be a positive integer"):
        ImageFolderCalibrationReader(folder, image_size=IMAGE_SIZE, max_images=limit)
    assert conversions == []


def test_every_int8_export_without_calibration_images_is_refused_once_before_converting(tmp_path, conversions):
    """``export_model`` makes the check for every format with an INT8 exporter; the exporters do not repeat it."""
    int8_exporters = [exporter for exporter in base.registered_exporters() if exporter.precision == "int8"]
    assert {"onnx", "openvino", "tflite"} <= {exporter.format for exporter in int8_exporters}
    for exporter in int8_exporters:
        with pytest.raises(ValueError, match=r"^INT8 export needs calibration images: pass --calib DIR \(a folder"):
            base.export_model(small_model(), tmp_path / f"m{exporter.suffix}", format=exporter.format, int8=True)
    assert conversions == [] and list(tmp_path.iterdir()) == []
    for path in Path(base.__file__).parent.glob("*.py"):
        if path.name != "base.py":
            assert "needs calibration images" not in path.read_text(), path.name


def test_unreadable_calibration_images_are_skipped_with_a_warning_naming_each(tmp_path, caplog):
    folder, bad = calibration_folder(tmp_path / "calib", good=2, bad=True)
    with caplog.at_level(logging.WARNING, logger="ssdlite"):
        reader = ImageFolderCalibrationReader(folder, image_size=IMAGE_SIZE)
    assert [path.name for path in reader.paths] == ["good0.png", "good1.png"] and len(reader) == 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    for file in bad:
        assert any(message.startswith(f"skipping calibration image {file}: ") for message in warnings), warnings
    feeds = []
    while (feed := reader.get_next()) is not None:
        feeds.append(feed)
    assert len(feeds) == 2


def test_an_int8_export_calibrates_on_the_readable_images_and_warns_about_the_other(
    tmp_path, capsys, checkpoint_bytes, monkeypatch
):
    """The ONNX INT8 path of the command with its conversions replaced: the quantizer is given a reader that yields
    the two readable images (ONNX Runtime's ``quantize_static`` drains ``get_next`` the same way)."""
    from ssdlite.deploy.export import int8

    calibrated = []

    def quantize(network, out_path, *, calibration):
        calibration.rewind()
        while (feed := calibration.get_next()) is not None:
            calibrated.append(feed[int8.INPUT_NAME].shape)
        return network

    monkeypatch.setattr(int8, "export_network_onnx", lambda model, path, **options: path)
    monkeypatch.setattr(int8, "quantize_network_onnx", quantize)
    monkeypatch.setattr(int8, "export_onnx", lambda model, path, **options: path.write_bytes(b"onnx") and path)
    (tmp_path / "copy.ckpt").write_bytes(checkpoint_bytes)
    folder, _ = calibration_folder(tmp_path / "calib", good=2, bad=False)
    write_truncated_jpeg(folder / "cut.jpg")
    code, error = run_export(capsys, "--checkpoint", tmp_path / "copy.ckpt", "--format", "onnx", "--int8",
                             "--calib", folder, "--out", tmp_path / "model_int8.onnx")
    assert code == 0, error
    assert error == f"warning: skipping calibration image {folder / 'cut.jpg'}: truncated JPEG (no end-of-image marker)\n"
    assert calibrated == [(1, 3, IMAGE_SIZE, IMAGE_SIZE)] * 2


def test_a_calibration_folder_without_a_readable_image_fails_before_converting(tmp_path, capsys, checkpoint_bytes,
                                                                               monkeypatch):
    from ssdlite.deploy.export import int8

    converted = []
    monkeypatch.setattr(int8, "export_network_onnx", lambda *arguments, **options: converted.append(1))
    (tmp_path / "copy.ckpt").write_bytes(checkpoint_bytes)
    folder, _ = calibration_folder(tmp_path / "calib", good=0, bad=True)
    code, error = run_export(capsys, "--checkpoint", tmp_path / "copy.ckpt", "--format", "onnx", "--int8",
                             "--calib", folder, "--out", tmp_path / "m.onnx")
    assert code == 2 and converted == []
    *warnings, line = error.splitlines()
    assert len(warnings) == 2 and all(warning.startswith("warning: skipping calibration image ") for warning in warnings)
    assert line.startswith(f"export.py: error: calibration folder {folder}: none of the 2 images picked from it can "
                           "be read (garbage.jpg: ")
    assert line.endswith("; pass a folder of readable images (jpg/png/...)")


def test_tflite_reads_the_calibration_images_before_converting(tmp_path, monkeypatch):
    from ssdlite.deploy.export import tflite

    def converted(*arguments, **options):
        raise AssertionError("the network was converted")

    monkeypatch.setattr(tflite, "convert_tflite", converted)
    folder, _ = calibration_folder(tmp_path / "calib", good=0, bad=True)
    with pytest.raises(ValueError, match="none of the 2 images picked from it can be read"):
        tflite.export_tflite(small_model(), tmp_path / "m.tflite", calibration_images=folder)
