"""The README's commands run as written.

Shell blocks preceded by ``<!-- runnable -->`` run exactly as written; blocks preceded by
``<!-- runnable: tiny -->`` run with tiny settings appended to their long commands (fewer images, two training
steps at width 0.35 and 128 px, ``--smoke`` for the benchmark). All run in README order in one scratch workspace
that links the repository's code, configs and virtual environment, so later blocks use what earlier ones wrote,
as a reader would. Every other command the README shows (blocks not marked, inline ``.venv/bin/python ...``
spans) is checked statically: the script exists and each ``--option`` it uses is one the script's ``--help`` lists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import tomllib
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("readme")]

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
SHARED = REPO_ROOT.parent / "shared"
BLOCK = re.compile(r"(?:<!-- runnable(?P<tiny>: tiny)? -->\n)?```bash\n(?P<body>.*?)```", re.S)
INLINE = re.compile(r"`((?:\.venv/bin/)?python [^`]+)`")
TRAIN_TINY = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
    "--trainer.max_time", "null", "--model.width_mult", "0.35", "--model.image_size", "128",
    "--model.bn_calibration_batches", "1", "--data.batch_size", "4", "--data.num_workers", "0",
]
TINY = {
    "tools/make_shapes.py": ["--num-train", "48", "--num-val", "8", "--size", "128"],
    "tools/train.py": TRAIN_TINY,
    "tools/benchmark.py": ["--smoke"],
}
LINKED = (".venv", "tools", "configs", "ssdlite", "detect.py", "pyproject.toml", "data/download.py")


def commands(text: str) -> list[str]:
    """The command lines of a shell block (continuation lines joined, comments and blank lines dropped)."""
    lines = text.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def readme_blocks() -> list[tuple[str | None, list[str]]]:
    """(mode, commands) of every bash block: mode "as_written", "tiny" or None (not runnable)."""
    blocks = []
    for match in BLOCK.finditer(README.read_text(encoding="utf-8")):
        runnable = match.group(0).startswith("<!--")
        mode = ("tiny" if match.group("tiny") else "as_written") if runnable else None
        blocks.append((mode, commands(match.group("body"))))
    return blocks


RUNNABLE = [(mode, lines) for mode, lines in readme_blocks() if mode]


def script_of(tokens: list[str]) -> str | None:
    """``tools/train.py`` of ``[".venv/bin/python", "tools/train.py", ...]``; None for other programs."""
    if len(tokens) >= 2 and Path(tokens[0]).name == "python" and tokens[1].endswith(".py"):
        return tokens[1]
    return None


def tiny_arguments(tokens: list[str]) -> list[str]:
    extra = list(TINY.get(script_of(tokens) or "", []))
    if "--ckpt_path" in tokens:  # a resumed run goes one epoch further than the tiny run it resumes
        extra[extra.index("--trainer.max_epochs") + 1] = "2"
    return extra


def make_workspace(root: Path, *, shared: Path = SHARED) -> Path:
    """A scratch repository under ``root``: links to the code, configs and .venv; empty data/; ``shared`` linked
    as its ../shared when it exists."""
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    for name in LINKED:
        source = Path(sys.prefix) if name == ".venv" else REPO_ROOT / name
        (repo / name).symlink_to(source)
    if shared.is_dir():
        (root / "shared").symlink_to(shared)
    return repo


def shared_paths(lines: list[str]) -> list[str]:
    """The ``../shared/...`` paths a block's commands read: on their command lines and in the configs they load
    (``configs/raccoon.yaml`` reads ../shared/data/raccoon)."""
    paths = []
    for line in lines:
        tokens = shlex.split(line, comments=True)
        configs = [REPO_ROOT / value for option, value in zip(tokens, tokens[1:]) if option == "--config"]
        values = tokens + [value for config in configs for value in _strings(yaml.safe_load(config.read_text()))]
        paths += [value for value in values if value.startswith("../shared/")]
    return paths


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [value for child in node.values() for value in _strings(child)]
    if isinstance(node, list):
        return [value for child in node for value in _strings(child)]
    return [node] if isinstance(node, str) else []


def missing_shared_data(lines: list[str], workspace: Path) -> list[str]:
    """The ``../shared/...`` paths that a block reads and the workspace lacks (the block is skipped when there is
    any): the data decides, not whether ../shared exists (it may be there and empty)."""
    return [path for path in shared_paths(lines) if not (workspace / path).exists()]


def test_the_readme_marks_the_quick_guide_commands_as_runnable():
    marked = [line for _, lines in RUNNABLE for line in lines]
    for expected in ("tools/make_shapes.py", "tools/train.py", "--ckpt_path", "--model.init_from", "tools/eval_coco.py",
                     "--results", "tools/export.py", "--int8", "detect.py image", "detect.py dir", "tools/summary.py",
                     "tools/check_dataset.py", "tools/convert.py"):
        assert any(expected in line for line in marked), expected
    assert all(line.startswith(".venv/bin/python ") for line in marked)


def test_blocks_skip_when_the_shared_data_is_absent_even_if_shared_exists(tmp_path):
    reads_shared = [lines for _, lines in RUNNABLE if shared_paths(lines)]
    assert len(reads_shared) >= 2, "the README's raccoon blocks (the checker, and fine-tuning on raccoon.yaml)"
    empty = tmp_path / "empty_shared"
    empty.mkdir()
    workspace = make_workspace(tmp_path / "empty", shared=empty)
    assert all(missing_shared_data(lines, workspace) for lines in reads_shared)
    assert not any(missing_shared_data(lines, workspace) for _, lines in RUNNABLE if lines not in reads_shared)

    present = tmp_path / "present_shared"  # the paths the blocks name, as empty stand-ins
    for path in (path for lines in reads_shared for path in shared_paths(lines)):
        stand_in = present / path.removeprefix("../shared/")
        if Path(path).suffix:
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.touch()
        else:
            stand_in.mkdir(parents=True, exist_ok=True)
    workspace = make_workspace(tmp_path / "present", shared=present)
    assert not any(missing_shared_data(lines, workspace) for lines in reads_shared)


def test_runnable_blocks_run_in_order(tmp_path):
    """One test for all blocks: later blocks use what earlier ones wrote (pytest-xdist may split a module's tests
    between workers, so a shared fixture across tests would not see the earlier blocks' files)."""
    workspace = make_workspace(tmp_path)
    skipped = []
    for mode, lines in RUNNABLE:
        if missing_shared_data(lines, workspace):
            skipped.append(lines)  # ../shared/data/raccoon is absent
            continue
        run_block(mode, lines, workspace)
    assert len(skipped) < len(RUNNABLE)


def run_block(mode: str, lines: list[str], workspace: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    for line in lines:
        tokens = shlex.split(line, comments=True)
        if mode == "tiny":
            tokens += tiny_arguments(tokens)
        completed = subprocess.run(tokens, cwd=workspace, env=environment, capture_output=True, text=True,
                                   timeout=600)
        assert completed.returncode == 0, f"{shlex.join(tokens)}\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    for line in lines:  # what the commands say they write is there
        tokens = shlex.split(line, comments=True)
        for option in ("--out", "--save", "--json", "--plot"):
            value = tokens[tokens.index(option) + 1:][:1] if option in tokens else []
            if value and not value[0].startswith("-"):  # summary.py's --json is a flag
                assert (workspace / value[0]).exists(), f"{line}: {value[0]} was not written"


@cache
def help_text(script: str, subcommand: str | None) -> str:
    arguments = [sys.executable, str(REPO_ROOT / script), *([subcommand] if subcommand else []), "--help"]
    completed = subprocess.run(arguments, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, f"{script} {subcommand or ''} --help failed: {completed.stderr[-2000:]}"
    return completed.stdout


@cache
def installed_commands() -> dict[str, str]:
    """``{"ssdlite-detect": "detect.py", ...}``: each command the pyprojects declare, and the checkout script that runs
    the same main (the script imports the command's module)."""
    scripts = {}
    for pyproject in (REPO_ROOT / "pyproject.toml", REPO_ROOT / "runtime" / "pyproject.toml"):
        scripts.update(tomllib.loads(pyproject.read_text())["project"]["scripts"])
    checkouts = {}
    for script in [*REPO_ROOT.glob("tools/*.py"), REPO_ROOT / "detect.py", REPO_ROOT / "data" / "download.py"]:
        for match in re.finditer(r"^from ([\w.]+) import (\w+)$", script.read_text(), re.MULTILINE):
            checkouts[f"{match[1]}.{match[2]}:main"] = script.relative_to(REPO_ROOT).as_posix()
    return {name: checkouts[target] for name, target in scripts.items() if target in checkouts}


def check_local_install(line: str, arguments: list[str]) -> None:
    """``pip install './runtime[onnx]'``: the folder is a distribution of this repository with those extras."""
    for argument in arguments:
        if argument.startswith("-"):
            continue
        folder, _, extras = argument.partition("[")
        pyproject = REPO_ROOT / folder / "pyproject.toml"
        assert pyproject.is_file(), f"{line}: {folder} has no pyproject.toml"
        declared = tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {})
        for extra in filter(None, extras.rstrip("]").split(",")):
            assert extra in declared, f"{line}: {folder} declares no extra {extra!r}"


SUBCOMMANDS = {
    "detect.py": ("image", "dir", "video", "webcam"),
    "tools/convert.py": ("voc2coco", "yolo2coco"),
    "data/download.py": ("coco", "voc", "weights"),
}


def every_shown_command() -> list[str]:
    text = README.read_text(encoding="utf-8")
    shown = [line for _, lines in readme_blocks() for line in lines]
    shown += [span for span in INLINE.findall(text) if script_of(shlex.split(span))]
    return shown


@pytest.mark.parametrize("line", every_shown_command())
def test_every_shown_command_uses_an_existing_script_and_options(line):
    tokens = shlex.split(line.replace("...", "X"), comments=True)
    if tokens[:2] == ["pip", "install"]:
        check_local_install(line, tokens[2:])
        return
    if tokens[0] in installed_commands():  # an installed ssdlite-* command: check it as its checkout script
        tokens = [sys.executable, installed_commands()[tokens[0]], *tokens[1:]]
    script = script_of(tokens)
    if script is None:
        assert tokens[0] in ("make", "tensorboard"), line
        return
    assert (REPO_ROOT / script).is_file(), f"{line}: no {script}"
    subcommand = tokens[2] if script in SUBCOMMANDS and len(tokens) > 2 else None
    if subcommand is not None:
        assert subcommand in SUBCOMMANDS[script], line
    text = help_text(script, subcommand)
    for token in tokens[2:]:
        option = token.split("=")[0]
        if option.startswith("--"):
            assert re.search(re.escape(option) + r"(?![\w.-])", text), f"{line}: {script} has no option {option}"
    for token in tokens:
        if token.startswith("configs/"):
            assert (REPO_ROOT / token).is_file(), f"{line}: no {token}"
