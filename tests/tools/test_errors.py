"""ssdlite_runtime/errors.py: every command reports errors the same way (one line, one prefix, the same exit codes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.fabric.utilities.exceptions import MisconfigurationException

import ssdlite.commands  # noqa: F401  (adds Lightning's MisconfigurationException to the expected errors)
from ssdlite_runtime.errors import DEBUG_ENV, command, run_command
from tests.commands_in_process import one_error_line, run_main

REPO_ROOT = Path(__file__).resolve().parents[2]

BAD_INPUTS = {
    # Lightning prints "Seed set to 0" (INFO, on stderr) when it seeds; no seed keeps stderr to the error alone.
    "tools/train.py": ["--config", str(REPO_ROOT / "configs" / "shapes.yaml"), "--seed_everything", "false",
                       "--data.train_annotations", "missing.json", "--runs_dir", "runs"],
    "tools/eval_coco.py": ["--ann", "missing.json", "--results", "results.json"],
    "tools/eval_mot.py": ["--gt", "missing.txt", "--results", "results.txt"],
    "tools/export.py": ["--checkpoint", "missing.ckpt", "--out", "model.onnx"],
    "tools/check_dataset.py": ["--format", "voc", "--images", "missing", "--annotations", "missing"],
    "tools/convert.py": ["yolo2coco", "--images", "missing", "--labels", "missing", "--classes", "names.txt",
                         "--out", "out.json"],
    "tools/make_shapes.py": ["--out", "shapes", "--size", "8"],
    "tools/summary.py": ["ssd_vgg16"],
    "tools/benchmark.py": ["--only", "no_such_measurement"],
    "tools/demo.py": ["--data", "a_file", "--runs-dir", "runs"],
    "tools/serve.py": ["missing.onnx", "--port", "0"],
    "detect.py": ["image", "photo.jpg", "--model", "missing.ckpt", "--no-show"],
    "data/download.py": ["coco", "--root", "data", "--only", "no_such_archive.zip", "--dry-run"],
}
"""Per command: arguments that parse but ask for something that cannot be done (run in an empty folder)."""


def test_every_command_is_covered():
    commands = {f"tools/{path.name}" for path in (REPO_ROOT / "tools").glob("*.py")} | {"detect.py", "data/download.py"}
    assert commands == set(BAD_INPUTS)


@pytest.mark.parametrize("script", list(BAD_INPUTS))
def test_bad_input_is_one_line_with_the_common_prefix_and_exit_2(script, tmp_path, capfd, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    completed = run_main(script, BAD_INPUTS[script], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch,
                         env={DEBUG_ENV: ""})
    line = one_error_line(completed)
    assert line.startswith(f"{Path(script).name}: error: ") and "unexpected" not in line


# ------------------------------------------------------------------------------------------------ run_command


def fail(error: BaseException):
    def main() -> None:
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value\n  over two lines"),
        FileNotFoundError("file 'x.ckpt' does not exist"),
        OSError(28, "No space left on device"),
        MisconfigurationException("no GPU   here"),
    ],
)
def test_expected_errors_are_one_line_and_exit_2(error, capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert run_command("tool.py", fail(error)) == 2
    captured = capsys.readouterr()
    assert captured.err == f"tool.py: error: {' '.join(str(error).split())}\n"


def test_unexpected_errors_name_their_type_and_exit_1(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert run_command("tool.py", fail(KeyError("boxes"))) == 1
    assert capsys.readouterr().err == (
        f"tool.py: error: KeyError: 'boxes' (unexpected; set {DEBUG_ENV}=1 for the traceback)\n"
    )


def test_debug_raises_with_the_traceback(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(KeyError):
        run_command("tool.py", fail(KeyError("boxes")))
    with pytest.raises(ValueError):
        run_command("tool.py", fail(ValueError("bad")))


def test_interrupt_exits_130_and_system_exit_passes_through(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert run_command("tool.py", fail(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "tool.py: interrupted\n"
    with pytest.raises(SystemExit) as exit_info:  # e.g. a training stopped by SIGTERM exits with its own status
        run_command("tool.py", fail(SystemExit(143)))
    assert exit_info.value.code == 143
    assert capsys.readouterr().err == ""


def test_the_decorator_returns_mains_status():
    @command("tool.py")
    def main(argv: list[str] | None = None) -> int | None:
        return None if argv is None else len(argv)

    assert main() == 0 and main(["a", "b", "c"]) == 3
