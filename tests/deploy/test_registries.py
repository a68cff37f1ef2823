"""The backend and exporter registries: how a runtime or a format registers itself, and what a user sees."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from ssdlite.deploy.export import base as export_registry
from ssdlite.deploy.metadata import INPUT_SCALING
from ssdlite.deploy.model_files import load_checkpoint_for_inference
from ssdlite_runtime.backends import base as backend_registry
from ssdlite_runtime.backends.base import Backend
from ssdlite_runtime.errors import error_line, is_expected
from ssdlite_runtime.metadata import ModelInfo
from ssdlite_runtime.plugins import MissingPackageError
from ssdlite_runtime.predictor import Predictor

ABSENT = "ssdlite_test_package_that_is_not_installed"
RUNTIME_PYPROJECT = (Path(__file__).parents[2] / "runtime" / "pyproject.toml").read_text()
RUNTIME_EXTRAS = set(re.findall(r"^([\w-]+) = \[", RUNTIME_PYPROJECT.split("[project.optional-dependencies]")[1]
                                .split("\n[")[0], re.MULTILINE))
"""The extras of ssdlite-runtime: the ``NAME = [...]`` lines of runtime/pyproject.toml's optional dependencies."""


@pytest.fixture
def scratch_registries(monkeypatch):
    """The registries as they are now; what a test registers is gone after it."""
    backend_registry.available_backends()  # the built-in ones discovered first
    export_registry.available_formats()
    for module, names in ((backend_registry, ("_BACKENDS", "_REGISTRATIONS")), (export_registry, ("_EXPORTERS",))):
        for name in names:
            monkeypatch.setattr(module, name, dict(getattr(module, name)))


class EmptyBackend(Backend):
    name = "empty"

    def run(self, batch):
        return [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}] * len(batch)


def test_the_builtin_backends_and_formats_are_the_tables():
    assert {"eager", "ort", "int8"} <= set(backend_registry.available_backends())
    assert export_registry.available_formats() == list(export_registry.EXPORTER_MODULES)
    assert backend_registry.backend_for_path("runs/x/MODEL.ONNX") == "ort"
    for name in ("best.ckpt", "model.pt", "weights.pth", "no_suffix"):
        assert backend_registry.backend_for_path(name) == "eager"


def test_the_backend_table_names_every_backend_module_and_its_loader():
    """Each row's module exists and defines its loader; each module of the package has a row."""
    package = Path(backend_registry.__file__).parent
    modules = {f"ssdlite_runtime.backends.{path.stem}" for path in package.glob("*.py")} - {
        "ssdlite_runtime.backends.__init__", "ssdlite_runtime.backends.base"}
    assert {spec.module for spec in backend_registry.BUILTIN_BACKENDS} == modules
    for spec in backend_registry.BUILTIN_BACKENDS:
        loader = getattr(importlib.import_module(spec.module), spec.loader)  # runtimes load inside: imports here
        assert callable(loader) and not spec.fallback, spec
        assert spec.extra in RUNTIME_EXTRAS, f"{spec.name}: extra {spec.extra!r} is not in runtime/pyproject.toml"


def test_the_exporter_table_names_every_exporter_module():
    """Each format of the table is registered by its modules; each module that registers an exporter is listed."""
    package = Path(export_registry.__file__).parent
    registering = {f"ssdlite.deploy.export.{path.stem}" for path in package.glob("*.py")
                   if re.search(r"^@register_exporter\(", path.read_text(encoding="utf-8"), re.MULTILINE)}
    assert {module for modules in export_registry.EXPORTER_MODULES.values() for module in modules} == registering
    registered = {exporter.format for exporter in export_registry.registered_exporters()}
    assert registered == set(export_registry.EXPORTER_MODULES)


def test_a_new_backend_is_one_decorated_loader(scratch_registries, tmp_path):
    @backend_registry.register_backend("empty", suffixes=(".empty.bin",), file_kind="an empty-model file")
    def load_empty(source, *, device="cpu"):
        return EmptyBackend(ModelInfo(["a"], [1], image_size=16, **INPUT_SCALING))

    assert "empty" in backend_registry.available_backends()
    assert backend_registry.backend_for_path("m.EMPTY.bin") == "empty"
    assert backend_registry.backend_for_path("m.bin") == "eager"
    predictor = Predictor("m.empty.bin", backend="auto")
    assert predictor.backend.name == "empty" and predictor.class_names == ["a"]
    [detections] = predictor.predict(np.zeros((20, 30, 3), np.uint8))
    assert detections["boxes"].shape == (0, 4)
    model_file = tmp_path / "m.empty.bin"
    model_file.write_bytes(b"")
    with pytest.raises(ValueError, match=r"m\.empty\.bin is an empty-model file; load it with backend='empty'"):
        load_checkpoint_for_inference(model_file)


def test_a_missing_runtime_package_is_a_one_line_error_naming_the_extra(scratch_registries):
    @backend_registry.register_backend("needy", packages=(ABSENT,), extra="needy")
    def load_needy(source, *, device="cpu"):
        raise AssertionError("the loader must not run without its package")

    assert importlib.util.find_spec(ABSENT) is None
    with pytest.raises(MissingPackageError) as raised:
        Predictor("model.needy", backend="needy")
    message = str(raised.value)
    # the file, its format (the backend) and the fix: the ssdlite-runtime extra
    assert message == (
        f"model.needy (backend 'needy') needs {ABSENT}, which is not installed here: "
        "pip install 'ssdlite-runtime[needy]'"
    )
    assert isinstance(raised.value, ImportError) and is_expected(raised.value)
    assert error_line("detect.py", raised.value) == f"detect.py: error: {message}"


def test_a_new_format_is_one_decorated_exporter(scratch_registries, tmp_path):
    written = []

    @export_registry.register_exporter("plain", title="Plain", suffix=".plain", note="plain files hold nothing")
    def export_plain(model, path, options):
        written.append((path, options.class_names))
        return path

    @export_registry.register_exporter("needy", title="Needy", suffix=".needy", packages=(ABSENT,), extra="needy")
    def export_needy(model, path, options):
        raise AssertionError("the exporter must not run without its package")

    assert export_registry.available_formats()[-2:] == ["plain", "needy"]
    out = export_registry.export_model(object(), tmp_path / "m.plain", format="plain", class_names=["a"])
    assert written == [(out, ["a"])]
    with pytest.raises(ValueError, match="--with-nms, --dynamic-batch and --int8 apply to ONNX.* only; plain files"):
        export_registry.export_model(object(), tmp_path / "m.plain", format="plain", with_nms=True)
    with pytest.raises(MissingPackageError, match=f"Needy export needs {ABSENT}.*pip install -e '.\\[needy\\]'"):
        export_registry.export_model(object(), tmp_path / "m.needy", format="needy")
    with pytest.raises(ValueError, match="unknown export format 'nosuch'; choose onnx, torchscript, .*plain or needy"):
        export_registry.export_model(object(), tmp_path / "m.nosuch", format="nosuch")


def test_export_py_offers_every_registered_format(scratch_registries):
    from ssdlite.commands import export as export_tool  # tools/export.py and ssdlite-export run its main

    @export_registry.register_exporter("plain", title="Plain", suffix=".plain")
    def export_plain(model, path, options):
        return path

    [format_option] = [action for action in export_tool.build_parser()._actions if action.dest == "format"]
    assert format_option.choices == export_registry.available_formats()
    assert format_option.choices[:2] == ["onnx", "torchscript"] and format_option.choices[-1] == "plain"


def test_exported_files_are_the_file_and_the_companions_its_format_declares(scratch_registries, tmp_path):
    @export_registry.register_exporter("paired", title="Paired", suffix=".pair.txt", companions=(".pair.bin",))
    def export_paired(model, path, options):
        path.write_text("graph")
        path.with_name(path.name.replace(".pair.txt", ".pair.bin")).write_bytes(b"weights")
        return path

    out = export_registry.export_model(object(), tmp_path / "m.pair.txt", format="paired")
    (tmp_path / "m.onnx").write_bytes(b"another export in the same folder")
    assert export_registry.exported_files(out) == [out, tmp_path / "m.pair.bin"]
    assert export_registry.exported_files(tmp_path / "m.onnx") == [tmp_path / "m.onnx"]
    package = tmp_path / "m.mlpackage" / "Data"
    package.mkdir(parents=True)
    (package / "model.mlmodel").write_bytes(b"spec")
    assert export_registry.exported_files(tmp_path / "m.mlpackage") == [package / "model.mlmodel"]


@pytest.mark.parametrize(
    ("backend", "package", "reads"),
    [("ort", "onnxruntime", ".onnx"), ("int8", "onnxruntime", ".onnx"), ("openvino", "openvino", ".xml"),
     ("tflite", "ai_edge_litert", ".tflite"), ("ncnn", "ncnn", ".ncnn.param")],
)
def test_a_file_backend_given_no_file_or_another_device_says_so_in_one_line(backend, package, reads):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    with pytest.raises(ValueError, match=rf"backend '{backend}' reads an? \{reads}") as error:
        backend_registry.load_backend(backend, np.zeros((1, 3, 8, 8), np.float32))
    assert "export the model first" in str(error.value) and "--format" in str(error.value)
    assert "got a ndarray" in str(error.value)
    with pytest.raises(ValueError, match=rf"backend '{backend}' runs on the CPU \(.+\); got device='cuda:0'"):
        backend_registry.load_backend(backend, "model" + reads, device="cuda:0")
