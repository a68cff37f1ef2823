"""The wheels are not the checkout: both distributions built as wheels (``pip wheel ./runtime .``), installed into a
fresh virtual environment, work from a folder that is not the checkout -- the demo (whose recipe is package data),
``ssdlite-train --config shapes`` (the packaged recipe by its name), ``ssdlite-export``, ``ssdlite-detect`` and
``ssdlite-serve``; and
runtime/README.md, what a device's user reads, explains every extra ssdlite-runtime declares.

The fresh environment gets the wheels' own files only; their dependencies (torch, Lightning, onnxruntime, ...) come
from this environment through a folder of links to its site-packages that leaves out the editable installs of
``ssdlite`` and ``ssdlite_runtime``, so nothing of the checkout can be imported by accident (asserted).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.xdist_group("wheels")

REPO_ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {"ssdlite": REPO_ROOT, "ssdlite_runtime": REPO_ROOT / "runtime"}
"""Import package -> the folder of its pyproject.toml."""
LEFT_OUT = ("ssdlite", "__editable__", "__pycache__")
"""Names in this environment's site-packages that the fresh one must not see (besides .pth files)."""
TINY_DEMO = ["--num-train", "32", "--num-val", "4", "--size", "128", "--steps", "2"]


def copy_sources(destination: Path) -> Path:
    """The distributions' files (top-level files, ssdlite/, runtime/) without build leftovers: building a wheel
    writes build/ and *.egg-info beside the sources, which must not happen in the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    destination.mkdir()
    for path in REPO_ROOT.iterdir():
        if path.is_file() and not path.is_symlink():
            shutil.copy2(path, destination / path.name)
    for folder in ("ssdlite", "runtime"):
        shutil.copytree(REPO_ROOT / folder, destination / folder, ignore=ignore, symlinks=True)
    return destination


def run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, (command, completed.stdout[-3000:], completed.stderr[-3000:])
    return completed.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(bin folder, environment) of a fresh venv holding the two wheels, not editable."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("wheels")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    sources = copy_sources(root / "src")
    wheels = root / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--wheel-dir", str(wheels), str(sources / "runtime"), str(sources)], cwd=root, env=env)
    built = sorted(path.name for path in wheels.glob("*.whl"))
    assert [name.split("-")[0] for name in built] == ["ssdlite", "ssdlite_runtime"], built

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=env)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
         *map(str, sorted(wheels.glob("*.whl")))], cwd=root, env=env)
    site_packages = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             cwd=root, env=env).strip())

    # This environment's packages, less ssdlite's editable installs and the .pth files that would load them.
    dependencies = root / "dependencies"
    dependencies.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.startswith(LEFT_OUT) and entry.suffix != ".pth":
            (dependencies / entry.name).symlink_to(entry)
    (site_packages / "dependencies.pth").write_text(f"{dependencies}\n")

    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    where = json.loads(run(
        [str(python), "-c", "import json, ssdlite, ssdlite_runtime; "
         "print(json.dumps([ssdlite.__file__, ssdlite_runtime.__file__]))"], cwd=root, env=env))
    for file in where:
        assert Path(file).is_relative_to(site_packages), where  # the wheel's copy, not the checkout's
    assert (site_packages / "ssdlite" / "configs" / "shapes.yaml").is_file()
    assert (site_packages / "ssdlite_runtime" / "stream" / "webview.html").is_file()  # the web view's page
    assert (site_packages / "ssdlite" / "evaluation" / "gallery.html").is_file()  # the galleries' page
    return venv / "bin", env


@pytest.mark.slow
def test_the_installed_wheels_demo_train_export_and_detect_outside_the_checkout(installed, tmp_path):
    bin_dir, env = installed
    work = tmp_path / "elsewhere"  # an empty folder: no configs/, tools/ or ssdlite/ here
    work.mkdir()

    # the demo, on a tiny budget: its recipe comes from the package
    out = run([str(bin_dir / "ssdlite-demo"), *TINY_DEMO], cwd=work, env=env)
    assert "[demo] trained 2 steps" in out, out[-2000:]
    assert "try it:           ssdlite-detect image" in out
    assert (work / "runs" / "demo" / "last.ckpt").is_file()
    assert json.loads((work / "runs" / "demo" / "metrics.json").read_text())["AP50"] >= 0
    assert "[demo] error gallery:    runs/demo/errors.html" in out  # the page's template came from the wheel
    for name in ("errors.html", "confusion_matrix.csv", "confusion_matrix.png", "errors.png"):
        assert (work / "runs" / "demo" / name).is_file(), name

    # ssdlite-train with the packaged recipe by its name, on the demo's images, as an installed user types it
    shapes = work / "data" / "shapes"
    arguments = [
        "--config", "shapes", "--name", "wheel", "--trainer.max_steps", "2", "--model.image_size", "128",
        "--trainer.enable_progress_bar", "false",
        "--data.train_images", "data/shapes/train", "--data.train_annotations", "data/shapes/annotations/train.json",
        "--data.val_images", "data/shapes/val", "--data.val_annotations", "data/shapes/annotations/val.json",
    ]
    run(["ssdlite-train", *arguments], cwd=work, env=env)
    run_dir = work / "runs" / "wheel"
    assert (run_dir / "last.ckpt").is_file()
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert " by `ssdlite-train`.\n" in card
    assert f"\nssdlite-train {' '.join(arguments)}\n" in card
    assert "tools/" not in card and "detect.py" not in card

    # export to ONNX and detect with the torch-free runtime's command
    run(["ssdlite-export", "--checkpoint", str(run_dir / "last.ckpt"), "--format", "onnx", "--out", "model.onnx",
         "--with-nms"], cwd=work, env=env)
    run(["ssdlite-detect", "image", str(shapes / "val" / "000001.jpg"), "--model", "model.onnx", "--save",
         "boxes.jpg", "--json", "boxes.json", "--no-show", "--score-threshold", "0"], cwd=work, env=env)
    assert (work / "boxes.jpg").is_file()
    assert json.loads((work / "boxes.json").read_text())

    # ... and serve it over HTTP with the installed ssdlite-serve, stopped as a scheduler stops it
    server = subprocess.Popen(["ssdlite-serve", "model.onnx", "--port", "0", "--score-threshold", "0"], cwd=work,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = next(line.split(" on ", 1)[1].split()[0] for line in server.stdout if line.startswith("serving "))
        request = urllib.request.Request(f"{url}/v1/detect", data=(shapes / "val" / "000001.jpg").read_bytes(),
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert json.loads(answer.read())["detections"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_the_runtime_readme_explains_every_extra():
    extras = tomllib.loads((REPO_ROOT / "runtime" / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (REPO_ROOT / "runtime" / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([\w-]+)` \| (.+) \|$", readme, re.M))
    assert set(rows) == set(extras), rows.keys()
    for extra, requirements in extras.items():
        if extra != "all":  # the row names the package each extra installs
            packages = [re.split(r"[<>=\[ ]", requirement)[0] for requirement in requirements]
            assert all(package in rows[extra] for package in packages), (extra, packages, rows[extra])
