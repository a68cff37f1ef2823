"""How a run writes its checkpoints and chooses its folder: atomic writes that survive ``kill -9``, the run folder
an environment variable may not redirect, the warning for GPU configs on a CPU machine, and SLURM's requeue signal
left to Lightning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

from ssdlite.engine.callbacks import RUN_DIR_ENV, resolve_run_dir
from ssdlite.engine.checkpointing import remove_stale_temporaries, write_atomically
from ssdlite.engine.cli import SSDLiteCLI, resume_command

from .conftest import ROOT
from .training_process import REPORTER, TrainingProcess, load

SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from ssdlite.engine.checkpointing import write_atomically

    def write(file):
        for _ in range(200):
            file.write(b"new" * 1000)
            file.flush()
            print("chunk", flush=True)
            time.sleep(0.05)

    write_atomically(sys.argv[1], write)
    """
)


@pytest.mark.slow  # kills a writing process
def test_a_write_killed_half_way_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old checkpoint")
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    for _ in range(3):
        assert writer.stdout.readline() == "chunk\n"
    writer.kill()
    assert writer.wait() == -signal.SIGKILL
    assert target.read_bytes() == b"old checkpoint"
    [temporary] = tmp_path.glob(".last.ckpt.*.tmp")  # in the same folder, never in $TMPDIR
    assert temporary.stat().st_size >= 3000
    assert remove_stale_temporaries(tmp_path) == [temporary]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")

    def failing(file):
        file.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, failing)
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    write_atomically(target, lambda file: torch.save({"step": 3}, file))
    assert torch.load(target, weights_only=True) == {"step": 3}
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_live_writers_temporary_file_is_not_removed(tmp_path):
    live = tmp_path / f".last.ckpt.{os.getpid()}.tmp"
    live.write_bytes(b"being written")
    assert remove_stale_temporaries(tmp_path) == [] and live.exists()


def test_the_run_folder_environment_variable_cannot_override_the_name_or_reuse_another_runs_files(
    tmp_path, monkeypatch
):
    runs = tmp_path / "runs"
    other = runs / "other"
    other.mkdir(parents=True)
    (other / "last.ckpt").write_bytes(b"another run's checkpoint")
    monkeypatch.setenv(RUN_DIR_ENV, str(other))
    assert resolve_run_dir(runs, "mine") == runs / "mine"  # --name wins over a stale variable
    assert resolve_run_dir(runs, "other") == runs / "other-2"  # never into a folder holding checkpoints
    chosen = runs / "mine-2"  # what rank 0 chose for a DDP run of --name mine: the launched ranks follow it
    chosen.mkdir()
    monkeypatch.setenv(RUN_DIR_ENV, str(chosen))
    assert resolve_run_dir(runs, "mine") == chosen
    assert resolve_run_dir(runs, "mine", resume_from=other / "last.ckpt") == chosen
    monkeypatch.delenv(RUN_DIR_ENV)
    # Resuming continues in the checkpoint's own run folder, whatever --name says.
    assert resolve_run_dir(runs, "other", resume_from=other / "last.ckpt") == other
    assert resolve_run_dir(runs, "mine", resume_from=tmp_path / "elsewhere" / "last.ckpt") == runs / "mine"


def test_the_resume_command_keeps_the_runs_arguments_and_points_at_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tools/train.py"])
    command = resume_command(
        ["--config", "c.yaml", "--name", "x", "--ckpt_path=old.ckpt", "--data.batch_size", "4"],
        tmp_path / "x-2",
        tmp_path / "x-2" / "last.ckpt",
    )
    assert command.endswith(
        f"tools/train.py --config c.yaml --data.batch_size 4 --name x-2 --ckpt_path {tmp_path / 'x-2' / 'last.ckpt'}"
    )


def test_the_resume_command_of_the_installed_command_is_that_command(tmp_path, monkeypatch):
    script = Path(sys.executable).parent / "ssdlite-train"
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.setenv("PATH", str(script.parent))
    assert resume_command(["--config", "c.yaml"], tmp_path / "x", tmp_path / "x" / "last.ckpt") == (
        f"ssdlite-train --config c.yaml --name x --ckpt_path {tmp_path / 'x' / 'last.ckpt'}"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # not found by its name: its path, as it was started
    assert resume_command([], tmp_path / "x", None).startswith(f"{script} --name x")
    # Another installed command that trains (the demo): ssdlite-train resumes its run.
    monkeypatch.setattr(sys, "argv", [str(script.with_name("ssdlite-demo"))])
    monkeypatch.setenv("PATH", str(script.parent))
    assert resume_command([], tmp_path / "x", None).startswith("ssdlite-train --name x")


def test_a_config_for_several_gpus_warns_on_a_machine_without_one(config_factory, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = config_factory(trainer={"accelerator": "auto", "devices": 8})
    with pytest.warns(UserWarning, match=r"trainer.devices is 8 but this machine has no GPU.*"
                                          r"--trainer.devices 1 --trainer.strategy auto"):
        cli = SSDLiteCLI(["--config", str(config)])
    assert cli.trainer.num_devices == 8  # a warning, not a change: the user may mean it
    cli.run_dir_lock.release()  # train() would, at its end
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SSDLiteCLI(["--config", str(config), "--trainer.accelerator", "cpu", "--trainer.devices", "2"])
    assert not [warning for warning in caught if "no GPU" in str(warning.message)]  # CPU processes asked for


@pytest.mark.slow
def test_slurm_requeue_signal_is_still_lightnings(config_factory, tmp_path):
    """Under SLURM with auto-requeue, SIGUSR1 makes Lightning save its HPC checkpoint and ask scontrol to requeue
    (absent here: a logged failure), and training goes on to its end."""
    config = config_factory(trainer={"max_epochs": 2, "check_val_every_n_epoch": 2}, data={"batch_size": 2})
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "ssdlite-test", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "n1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    process = TrainingProcess(["--config", str(config), "--name", "slurm", REPORTER], cwd=tmp_path,
                              extra_environment=slurm)
    process.wait_for_step(3)
    os.kill(process.process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    run_dir = tmp_path / "runs" / "slurm"
    while not list(run_dir.glob("hpc_ckpt_*.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.wait() == 0, process.output()
    [hpc] = run_dir.glob("hpc_ckpt_*.ckpt")
    assert load(hpc)["global_step"] >= 3
    assert process.steps[-1] == 16 and load(run_dir / "last.ckpt")["global_step"] == 16

