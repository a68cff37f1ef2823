"""``tools/train.py`` as a real process that the tests stop from outside: ``kill -9``, SIGTERM, or Ctrl+C sent to its
process group as a terminal does; and the same command run by its ``main`` in the test's own process, where no
signal is needed (no interpreter to start, torch and Lightning already imported).

The process prints every finished optimizer step (:class:`tests.engine.step_reporter.StepReporter`, added on its
command line), so a test can stop it at a chosen step and read how far it got.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ssdlite.engine.callbacks import RUN_DIR_ENV

from .conftest import ROOT
from .step_reporter import STEP_PREFIX

REPORTER = "--trainer.callbacks+=tests.engine.step_reporter.StepReporter"
STEP_LINE = re.compile(rf"^{STEP_PREFIX} (\d+) epoch (\d+)$")
STARTUP_TIMEOUT_S = 240


def environment() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    env.pop("SSDLITE_RUN_DIR", None)
    return env


class TrainingProcess:
    """``python tools/train.py ARGS`` (or any command line) in its own session, its output read line by line.

    Attributes:
        steps: the optimizer steps it reported, in order.
        lines: every stdout line.
    """

    def __init__(
        self,
        arguments: list[str],
        *,
        cwd: Path,
        command: list[str] | None = None,
        extra_environment: dict[str, str] | None = None,
    ) -> None:
        self.command = command or [sys.executable, str(ROOT / "tools" / "train.py"), *arguments]
        self.process = subprocess.Popen(
            self.command, cwd=cwd, env={**environment(), **(extra_environment or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group, as a shell job has
        )
        self.steps: list[int] = []
        self.lines: list[str] = []
        self._stderr: list[str] = []
        self._steps: queue.Queue[int | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = STEP_LINE.match(line.strip())
            if match:
                self.steps.append(int(match.group(1)))
                self._steps.put(int(match.group(1)))
        self._steps.put(None)

    def wait_for_step(self, step: int) -> None:
        """Blocks until the process reports optimizer step ``step`` (fails if it ends first)."""
        while True:
            try:
                reported = self._steps.get(timeout=STARTUP_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no step {step} within {STARTUP_TIMEOUT_S} s\n{self.output()}") from None
            if reported is None:
                raise AssertionError(f"the process ended before step {step}\n{self.output()}")
            if reported >= step:
                return

    def wait_for_line(self, line: str, *, after: int = 0, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Blocks until stdout has printed ``line`` more than ``after`` times (fails if the process ends first)."""
        deadline = time.monotonic() + timeout_s
        while self.lines.count(line) <= after:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no new {line!r}\n{self.output()}")
            time.sleep(0.01)

    def kill(self, signum: int, *, group: bool = False) -> int:
        """Sends ``signum`` to the process (or to its process group, as Ctrl+C in a terminal does); returns its exit
        status once it has ended (negative: ended by a signal)."""
        if group:
            os.killpg(self.process.pid, signum)
        else:
            os.kill(self.process.pid, signum)
        return self.wait()

    def wait(self, timeout: float = 600) -> int:
        status = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=30)  # all output read
        return status

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def output(self) -> str:
        return "\n".join(self.lines[-20:]) + "\n" + self.stderr[-3000:]

    def resume_command(self) -> list[str]:
        """The command the stopped process printed after "resume with:"."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("resume with: ")]
        assert len(lines) == 1, self.output()
        return shlex.split(lines[0].removeprefix("resume with: "))


@cache
def train_script() -> ModuleType:
    """``tools/train.py`` as a module: its ``main(argv)`` is the command's."""
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_here(arguments: list[str], *, cwd: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> list[int]:
    """``python tools/train.py ARGS`` run by the script's ``main`` in this process, in ``cwd`` and without an
    inherited run folder (as :class:`TrainingProcess` starts it); returns the steps that :data:`REPORTER` (among
    ``arguments``) printed. Fails unless the command ends with status 0."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "tools" / "train.py"), *arguments])  # its model card's command
    capsys.readouterr()
    status = train_script().main(arguments)
    out, err = capsys.readouterr()
    assert status == 0, f"{out[-2000:]}\n{err[-3000:]}"
    return [int(match.group(1)) for line in out.splitlines() if (match := STEP_LINE.match(line.strip()))]


class RunFolderCopy(Callback):
    """Copies the run folder, as it is on disk after optimizer step ``step`` (what a ``kill -9`` then would leave),
    to ``destination``; a callback of an uninterrupted run.

    It runs before the run's own saves of that step (the callbacks a test adds come first), the moment a kill would
    lose the most."""

    def __init__(self, step: int, destination: Path) -> None:
        self.step, self.destination = step, destination

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            shutil.copytree(trainer.default_root_dir, self.destination)


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def kill_steps(seed: int, *, first: int, last: int, count: int) -> list[int]:
    """``count`` increasing steps in [first, last], drawn with ``seed`` (the kill points of a test)."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.randperm(last - first + 1, generator=generator)[:count] + first
    return sorted(int(point) for point in points)


__all__ = ["REPORTER", "RunFolderCopy", "TrainingProcess", "checkpoint_step", "kill_steps", "load", "signal",
           "train_here"]
