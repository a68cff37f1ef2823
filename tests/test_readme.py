"""The README's commands run as written.

Shell blocks preceded by ``<!-- runnable -->`` run exactly as written; blocks preceded by
``<!-- runnable: tiny -->`` run with tiny settings appended to their long commands (fewer images, two training
steps at width 0.35 and 128 px, ``--smoke`` for the benchmark). All run in README order in one scratch workspace
that links the repository's code, configs and virtual environment, so later blocks use what earlier ones wrote,
as a reader would. Every other command the README shows (blocks not marked, inline spans) is checked statically:
the command exists and each ``--option`` it uses is one its ``--help`` lists.

A command of this repository, shown as its installed name (``ssdlite-train``) or as its checkout script
(``python tools/train.py``, ``python detect.py``), runs in this process through the ``main`` the installed script
or the checkout script calls (see the two pyprojects' ``[project.scripts]``), with what a command may change in
its process (working folder, environment, ``sys.argv``, signal handlers, logging, warning filters, torch's threads)
put back after it: a process for each would spend most of its time importing torch and Lightning again. Any other
program a runnable block shows runs as a process.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import tomllib
import torch
import yaml

from ssdlite.engine.callbacks import RUN_DIR_ENV
from ssdlite_runtime.logs import PACKAGE_LOGGERS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("readme")]

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
SHARED = REPO_ROOT.parent / "shared"
PYPROJECTS = (REPO_ROOT / "pyproject.toml", REPO_ROOT / "runtime" / "pyproject.toml")
CHECKOUT_SCRIPTS = ("tools/*.py", "detect.py", "data/download.py")
BLOCK = re.compile(r"(?:<!-- runnable(?P<tiny>: tiny)? -->\n)?```bash\n(?P<body>.*?)```", re.S)
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
TRAIN_TINY = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
    "--trainer.max_time", "null", "--model.width_mult", "0.35", "--model.image_size", "128",
    "--model.bn_calibration_batches", "1", "--data.batch_size", "4", "--data.num_workers", "0",
]
TINY = {
    "ssdlite-make-shapes": ["--num-train", "48", "--num-val", "8", "--size", "128"],
    "ssdlite-train": TRAIN_TINY,
    "ssdlite-benchmark": ["--smoke"],
}
"""Per command: the tiny settings appended to it in a ``runnable: tiny`` block."""
LINKED = (".venv", "tools", "configs", "ssdlite", "detect.py", "pyproject.toml", "data/download.py")
OTHER_PROGRAMS = ("make", "tensorboard", "curl")
"""Programs the README shows besides the commands of this repository."""


# ------------------------------------------------------------------------------------------------ the commands


@cache
def declared_commands() -> dict[str, str]:
    """``{"ssdlite-train": "ssdlite.commands.train:main", ...}``: the commands the two pyprojects declare."""
    scripts = {}
    for pyproject in PYPROJECTS:
        scripts.update(tomllib.loads(pyproject.read_text())["project"]["scripts"])
    return scripts


@cache
def checkout_scripts() -> dict[str, str]:
    """``{"tools/train.py": "ssdlite-train", ...}``: each checkout script and the command whose ``main`` it runs (the
    script imports the command's module)."""
    targets = {target: name for name, target in declared_commands().items()}
    scripts = {}
    for pattern in CHECKOUT_SCRIPTS:
        for script in REPO_ROOT.glob(pattern):
            for match in re.finditer(r"^from ([\w.]+) import (\w+)$", script.read_text(), re.MULTILINE):
                name = targets.get(f"{match[1]}.{match[2]}:main")
                if name is not None:
                    scripts[script.relative_to(REPO_ROOT).as_posix()] = name
    return scripts


@dataclass(frozen=True)
class Shown:
    """A command line of this repository as the README shows it.

    Attributes:
        name: the installed command (``ssdlite-train``), or the one whose ``main`` the shown script runs.
        arguments: what follows the command (or the script).
        script: the checkout script when shown as one (``tools/train.py``), else None.
    """

    name: str
    arguments: tuple[str, ...]
    script: str | None = None

    @property
    def program(self) -> str:
        """``sys.argv[0]`` of the command started from a shell in the repository root."""
        return self.script or str(Path(sys.executable).parent / self.name)

    def main(self) -> Callable[[list[str]], int | None]:
        """The ``main(argv)`` the command runs: the checkout script's own, or the installed command's target."""
        if self.script is not None:
            spec = importlib.util.spec_from_file_location(f"readme_{Path(self.script).stem}", REPO_ROOT / self.script)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.main
        module, _, attribute = declared_commands()[self.name].partition(":")
        return getattr(importlib.import_module(module), attribute)


def shown(tokens: list[str]) -> Shown | None:
    """The command of this repository that ``tokens`` runs (``ssdlite-train ...``, ``.venv/bin/python tools/train.py
    ...``); None for any other program."""
    if tokens and tokens[0] in declared_commands():
        return Shown(tokens[0], tuple(tokens[1:]))
    if len(tokens) >= 2 and Path(tokens[0]).name.startswith("python") and tokens[1] in checkout_scripts():
        return Shown(checkout_scripts()[tokens[1]], tuple(tokens[2:]), script=tokens[1])
    return None


def tiny_arguments(command: Shown) -> list[str]:
    subcommand = f"{command.name}-{command.arguments[0]}" if command.arguments else ""  # `ssdlite train`, if ever
    extra = list(TINY.get(command.name, TINY.get(subcommand, [])))
    if "--ckpt_path" in command.arguments:  # a resumed run goes one epoch further than the tiny run it resumes
        extra[extra.index("--trainer.max_epochs") + 1] = "2"
    return extra


@contextlib.contextmanager
def isolated(argv: list[str]) -> Iterator[None]:
    """Runs a command's ``main`` here as in a process of its own (``sys.argv`` = ``argv``, the environment a test
    process gives: one OpenMP thread, Matplotlib without a display, no inherited run folder), then puts back what it
    may have changed: the environment, ``sys.argv``, the SIGINT and SIGTERM handlers, the packages' loggers, the
    warning filters and torch's thread count."""
    environment, previous_argv, threads = dict(os.environ), sys.argv, torch.get_num_threads()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    loggers = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in PACKAGE_LOGGERS}
    os.environ.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    os.environ.pop(RUN_DIR_ENV, None)
    sys.argv = argv
    try:
        with warnings.catch_warnings():
            yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = previous_argv
        torch.set_num_threads(threads)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for name, (level, kept) in loggers.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers[:] = kept


def run_here(command: Shown, arguments: list[str]) -> int:
    """``main(arguments)`` of ``command`` in this process (see :func:`isolated`); its exit status."""
    with isolated([command.program, *arguments]):
        try:
            status = command.main()(arguments)
        except SystemExit as exit_:  # argparse's --help and usage errors
            status = exit_.code
    return 0 if status is None else status


# ------------------------------------------------------------------------------------------------ the README


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
    marked = [shlex.split(line, comments=True) for _, lines in RUNNABLE for line in lines]
    assert all(shown(tokens) for tokens in marked), "every runnable line is a command of this repository"
    runs = [(command.name, command.arguments) for command in map(shown, marked)]
    for name, argument in (("ssdlite-make-shapes", None), ("ssdlite-train", None), ("ssdlite-train", "--ckpt_path"),
                           ("ssdlite-train", "--model.init_from"), ("ssdlite-eval", None), ("ssdlite-eval", "--results"),
                           ("ssdlite-export", None), ("ssdlite-export", "--int8"), ("ssdlite-detect", "image"),
                           ("ssdlite-detect", "dir"), ("ssdlite-summary", None), ("ssdlite-check-dataset", None),
                           ("ssdlite-convert", None)):
        assert any(shown_name == name and argument in (None, *arguments) for shown_name, arguments in runs), (
            name, argument)


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


def test_runnable_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    """One test for all blocks: later blocks use what earlier ones wrote (pytest-xdist may split a module's tests
    between workers, so a shared fixture across tests would not see the earlier blocks' files)."""
    workspace = make_workspace(tmp_path)
    monkeypatch.chdir(workspace)
    skipped = []
    for mode, lines in RUNNABLE:
        if missing_shared_data(lines, workspace):
            skipped.append(lines)  # ../shared/data/raccoon is absent
            continue
        run_block(mode, lines, workspace, capsys)
    assert len(skipped) < len(RUNNABLE)


def run_block(mode: str, lines: list[str], workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for line in lines:
        tokens = shlex.split(line, comments=True)
        command = shown(tokens)
        extra = tiny_arguments(command) if mode == "tiny" and command is not None else []
        if command is None:
            environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
            completed = subprocess.run(tokens, cwd=workspace, env=environment, capture_output=True, text=True,
                                       timeout=600)
            status, out, err = completed.returncode, completed.stdout, completed.stderr
        else:
            capsys.readouterr()
            status = run_here(command, [*command.arguments, *extra])
            out, err = capsys.readouterr()
        assert status == 0, f"{shlex.join(tokens + extra)}\n{out[-2000:]}\n{err[-3000:]}"
    for line in lines:  # what the commands say they write is there
        tokens = shlex.split(line, comments=True)
        for option in ("--out", "--save", "--json", "--plot"):
            value = tokens[tokens.index(option) + 1:][:1] if option in tokens else []
            if value and not value[0].startswith("-"):  # summary.py's --json is a flag
                assert (workspace / value[0]).exists(), f"{line}: {value[0]} was not written"


# ------------------------------------------------------------------------------------------------ every command shown


@cache
def help_text(name: str, script: str | None, subcommand: str | None) -> str:
    """What ``COMMAND [SUBCOMMAND] --help`` prints (run here, see :func:`run_here`)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()) as errors:
        status = run_here(Shown(name, (), script), [*([subcommand] if subcommand else []), "--help"])
    assert status == 0, f"{script or name} {subcommand or ''} --help failed: {errors.getvalue()[-2000:]}"
    return printed.getvalue()


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


def every_shown_command() -> list[str]:
    """The command lines of every bash block, and the inline spans that start with a command of this repository
    (its installed name, or python and a checkout script)."""
    text = README.read_text(encoding="utf-8")
    shown_lines = [line for _, lines in readme_blocks() for line in lines]
    for span in INLINE.findall(FENCED.sub("", text)):
        span = " ".join(span.split())  # a span may break across lines
        try:
            tokens = shlex.split(span.replace("...", "X"), comments=True)
        except ValueError:
            continue
        if shown(tokens) is not None:
            shown_lines.append(span)
    return shown_lines


@pytest.mark.parametrize("line", every_shown_command())
def test_every_shown_command_uses_an_existing_script_and_options(line):
    tokens = shlex.split(line.replace("...", "X"), comments=True)
    if tokens[:2] == ["pip", "install"]:
        check_local_install(line, tokens[2:])
        return
    command = shown(tokens)
    if command is None:
        assert tokens[0] in OTHER_PROGRAMS, f"{line}: neither a command of this repository nor {OTHER_PROGRAMS}"
        return
    first = command.arguments[0] if command.arguments else None
    subcommand = first if first is not None and not first.startswith("-") else None  # or a positional argument
    text = help_text(command.name, command.script, subcommand)
    for token in command.arguments:
        option = token.split("=")[0]
        if option.startswith("--"):
            assert re.search(re.escape(option) + r"(?![\w.-])", text), f"{line}: {command.name} has no option {option}"
    for token in tokens:
        if token.startswith("configs/"):
            assert (REPO_ROOT / token).is_file(), f"{line}: no {token}"
