"""What the full package adds to ``ssdlite_runtime`` through entry points (root pyproject.toml): the "eager" backend
(``ssdlite_runtime.backends``) and the model ``ssdlite-detect`` runs without ``--model``
(``ssdlite_runtime.default_model``); and what the runtime does without them, or with one it cannot import."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points

import pytest

from ssdlite.deploy.backends import EAGER
from ssdlite.deploy.default_model import newest_checkpoint
from ssdlite_runtime import jobs
from ssdlite_runtime.backends import base as backend_registry
from ssdlite_runtime.errors import is_expected
from ssdlite_runtime.plugins import MissingPackageError

ABSENT = "ssdlite_test_package_that_is_not_installed"


@pytest.fixture
def registry_with(monkeypatch):
    """``registry_with(*entry_points)``: the backend registry from scratch, seeing only these entry points."""

    def install(*entries: EntryPoint) -> None:
        monkeypatch.setattr(backend_registry, "entry_points",
                            lambda group: [entry for entry in entries if entry.group == group])
        for name in ("_BACKENDS", "_REGISTRATIONS", "_UNLOADABLE"):
            monkeypatch.setattr(backend_registry, name, {})
        monkeypatch.setattr(backend_registry, "_discovered", False)

    return install


def test_the_full_package_declares_the_eager_backend_and_the_default_model():
    [eager] = entry_points(group=backend_registry.ENTRY_POINT_GROUP, name="eager")
    assert eager.value == "ssdlite.deploy.backends:EAGER" and eager.load() is EAGER
    assert EAGER.fallback and backend_registry.fallback_backend() == "eager"
    [provider] = entry_points(group=jobs.DEFAULT_MODEL_GROUP)
    assert provider.load() is newest_checkpoint


def test_choosing_a_backend_imports_no_backend_module_nor_torch(tmp_path):
    """The table and the entry points' specs are read without importing a backend's module: a file's runtime
    loads only when the file is opened."""
    code = (
        "import sys\n"
        "from ssdlite_runtime.backends.base import available_backends, backend_for_path\n"
        "print(sorted(available_backends()), backend_for_path('m.onnx'), backend_for_path('m.ckpt'))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ssdlite_runtime.backends.', 'ssdlite.deploy.backends.',"
        " 'torch', 'onnxruntime', 'openvino'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    names, loaded = result.stdout.splitlines()
    assert names == "['eager', 'int8', 'ncnn', 'openvino', 'ort', 'tflite'] ort eager"
    assert loaded == "['ssdlite_runtime.backends.base']"


def test_without_a_fallback_backend_a_file_no_backend_claims_is_a_one_line_error(registry_with):
    registry_with()  # the runtime alone
    assert backend_registry.backend_for_path("m.onnx") == "ort"
    assert backend_registry.fallback_backend() is None
    with pytest.raises(ValueError) as raised:
        backend_registry.backend_for_path("model.ckpt")
    assert str(raised.value).startswith(
        "no backend installed here reads model.ckpt: they read .onnx (ort), .xml (openvino), .tflite (tflite), "
        ".ncnn.param (ncnn) (choose one with --backend); other packages add backends"
    )
    with pytest.raises(ValueError, match="no backend installed here reads a object"):
        backend_registry.backend_for(object())


def test_an_entry_point_that_cannot_be_imported_names_its_package(registry_with):
    registry_with(EntryPoint("eager", f"{ABSENT}.backends:EAGER", backend_registry.ENTRY_POINT_GROUP))
    assert "eager" in backend_registry.available_backends()
    with pytest.raises(ValueError, match=rf"model\.ckpt: .*; it may be for backend 'eager' of the {ABSENT} package, "
                                         rf"which cannot be imported here \(.*\); \(re\)install it: pip install {ABSENT}"):
        backend_registry.backend_for_path("model.ckpt")
    with pytest.raises(MissingPackageError, match=rf"^model\.ckpt needs the backend 'eager' of the {ABSENT} package"
                       ) as raised:
        backend_registry.load_backend("eager", "model.ckpt")
    assert is_expected(raised.value)


def test_an_entry_point_names_a_backend_spec_of_its_own_name(registry_with):
    registry_with(EntryPoint("torch", "ssdlite.deploy.backends:EAGER", backend_registry.ENTRY_POINT_GROUP))
    with pytest.raises(TypeError, match="must name a BackendSpec called 'torch'"):
        backend_registry.available_backends()


def test_the_default_model_is_the_newest_checkpoint_under_the_runs_folder(tmp_path, caplog):
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match=rf"no --model given and no checkpoint \(\*\.ckpt\) under {runs}/; .*make demo"):
        jobs.resolve_model_path(None, runs)
    checkpoint = runs / "exp" / "checkpoints" / "best.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    with caplog.at_level("INFO"):
        assert jobs.resolve_model_path(None, runs) == checkpoint
    assert f"using the newest checkpoint under {runs}/: {checkpoint}" in caplog.text


def test_without_a_default_model_provider_model_is_required(monkeypatch):
    monkeypatch.setattr(jobs, "entry_points", lambda group: [])
    with pytest.raises(ValueError, match=r"^no --model given: pass --model FILE"):
        jobs.resolve_model_path(None)
    unimportable = EntryPoint("newest", f"{ABSENT}:newest", jobs.DEFAULT_MODEL_GROUP)
    monkeypatch.setattr(jobs, "entry_points", lambda group: [unimportable])
    with pytest.raises(ValueError, match=rf"provider \({ABSENT}:newest\) cannot be imported here .*; pass --model"):
        jobs.resolve_model_path(None)
