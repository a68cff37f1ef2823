"""``ssdlite-train`` (``tools/train.py``): LightningCLI wiring of :class:`SSDLiteModule` and
:class:`DetectionDataModule`.

Usage::

    ssdlite-train --config configs/shapes.yaml [--trainer.max_epochs 3 --data.batch_size 16
                  --model.width_mult 0.5 --name myrun] [--ckpt_path runs/myrun/last.ckpt]

The config file and the command line map one to one onto the constructor arguments of the Trainer (``trainer.*``),
the module (``model.*``) and the data (``data.*``), plus ``name`` / ``runs_dir`` (outputs go to
``runs_dir/name/``, see :mod:`ssdlite.engine.callbacks`), ``ckpt_path`` (resume) and ``seed_everything``.
``ssdlite-train --help`` lists every key; ``--print_config`` prints the resolved config.

Links (set once, never twice): ``model.image_size`` -> ``data.image_size``; the data's ``num_classes``,
``class_names`` and ``category_ids`` -> ``model.*`` when the classes are instantiated (the data is read first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ssdlite.data.datamodule import DetectionDataModule
from ssdlite.engine.callbacks import (
    BEST_CHECKPOINT,
    RUN_DIR_ENV,
    ProgressBar,
    RandomStateCheckpoint,
    RunFolderLock,
    checkpoint_callbacks,
    lock_run_dir,
    resolve_run_dir,
    run_loggers,
)
from ssdlite.engine.checkpointing import (
    DEFAULT_CHECKPOINT_EVERY_MINUTES,
    AtomicCheckpointIO,
    LastCheckpoint,
    StopSignals,
    TrainingStopped,
)
from ssdlite.engine.model_card import RunFacts, write_model_card
from ssdlite.engine.module import SSDLiteModule
from ssdlite.engine.recipes import resolve_config_arguments
from ssdlite.engine.schedule import TimeBudget
from ssdlite.evaluation import analyse_errors, write_error_analysis
from ssdlite.models import CLASS_NAMES_KEY, MODEL_CONFIG_KEY, SSDLiteConfig, describe_config
from ssdlite.models.checkpoints import checkpoint_step, read_training_checkpoint

logger = logging.getLogger(__name__)

CallbackType = TypeVar("CallbackType")

DEFAULT_PROG = "train.py"
"""The program name of the parser's usage and error lines, unless the command gives its own (``ssdlite-train``)."""
INSTALLED_COMMAND = "ssdlite-train"

TRAINER_DEFAULTS: dict[str, Any] = {
    # SyncBatchNorm under DDP (a no-op on one device; switched off on CPU, where torch has no SyncBatchNorm).
    "sync_batchnorm": True,
    "log_every_n_steps": 10,
}


def data_num_classes(data: DetectionDataModule) -> int:
    return len(_read_classes(data).class_names)


def data_class_names(data: DetectionDataModule) -> list[str]:
    return list(_read_classes(data).class_names)


def data_category_ids(data: DetectionDataModule) -> list[int]:
    return [int(i) for i in _read_classes(data).category_ids]


def _read_classes(data: DetectionDataModule) -> DetectionDataModule:
    """Reads the datasets now (``setup("fit")``, done once) so the model can be built with the data's classes."""
    if not data.class_names:
        data.setup("fit")
    if not data.class_names:
        raise ValueError(
            "the training data has no classes (empty category list); check data.train_annotations "
            f"({data.train_annotations})"
        )
    return data


class SSDLiteCLI(LightningCLI):
    """LightningCLI without subcommands (``run=False``): parses, builds data, model and Trainer; :func:`train` fits.

    Attributes (after construction):
        run_dir (Path): the run folder.
        run_dir_lock (RunFolderLock | None): held on rank 0 while this run writes the folder; :func:`train`
            releases it.
        model (SSDLiteModule), datamodule (DetectionDataModule), trainer (Trainer).
    """

    def __init__(
        self, args: Sequence[str] | None = None, *, extra_callbacks: Sequence[Any] = (), prog: str = DEFAULT_PROG
    ) -> None:
        self.extra_callbacks = list(extra_callbacks)
        super().__init__(
            model_class=SSDLiteModule,
            datamodule_class=DetectionDataModule,
            save_config_kwargs={"overwrite": True},
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=0,
            # allow_abbrev=False: argparse would otherwise take --trainer.max_epoch for --trainer.max_epochs
            parser_kwargs={
                "prog": prog,
                "description": "Train an SSDLite detector (see configs/*.yaml).",
                "allow_abbrev": False,
            },
            args=list(args) if args is not None else None,
            run=False,
            auto_configure_optimizers=False,
            # hyper_parameters = the module's arguments, so SSDLiteModule.load_from_checkpoint(path) works as well
            load_from_checkpoint_support=False,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--name", type=str, default="ssdlite", help="run name: outputs go to RUNS_DIR/NAME/")
        parser.add_argument("--runs_dir", type=str, default="runs", help="parent folder of the run folders")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume training from this checkpoint (e.g. runs/NAME/last.ckpt) with the same config",
        )
        parser.add_argument(
            "--checkpoint_every_minutes",
            type=float,
            default=DEFAULT_CHECKPOINT_EVERY_MINUTES,
            help="also save RUNS_DIR/NAME/last.ckpt this often within an epoch (it is saved after every epoch and "
            "when SIGTERM or Ctrl+C stops the run); 0: only then",
        )
        parser.link_arguments("model.image_size", "data.image_size")
        parser.link_arguments("data", "model.num_classes", compute_fn=data_num_classes, apply_on="instantiate")
        parser.link_arguments("data", "model.class_names", compute_fn=data_class_names, apply_on="instantiate")
        parser.link_arguments("data", "model.category_ids", compute_fn=data_category_ids, apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config
        self.run_dir = resolve_run_dir(config.runs_dir, config.name, resume_from=config.ckpt_path)
        self.run_dir_lock: RunFolderLock | None = lock_run_dir(self.run_dir)
        trainer_config = self._get(self.config_init, "trainer", default={})
        kwargs["default_root_dir"] = str(self.run_dir)
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = run_loggers(self.run_dir, resume=config.ckpt_path is not None)
        user_callbacks = trainer_config.get("callbacks") or []
        callbacks = [*(user_callbacks if isinstance(user_callbacks, list) else [user_callbacks])]
        callbacks += [RandomStateCheckpoint(), *self.extra_callbacks]
        if not any(isinstance(callback, TimeBudget) for callback in callbacks):
            callbacks.append(TimeBudget())  # fits the decay to max_time (trainer.callbacks may give its own)
        if trainer_config.get("enable_checkpointing") is not False:
            callbacks += checkpoint_callbacks(self.run_dir, every_minutes=config.checkpoint_every_minutes)
        if trainer_config.get("enable_progress_bar") is not False:
            callbacks.append(ProgressBar())
        kwargs["callbacks"] = callbacks
        plugins = trainer_config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        on_gpu = _runs_on_gpu(trainer_config.get("accelerator", "auto"))
        if trainer_config.get("sync_batchnorm") and not on_gpu:
            kwargs["sync_batchnorm"] = False
        _warn_about_cpu_processes(trainer_config, on_gpu=on_gpu)
        return super().instantiate_trainer(**kwargs)


def _warn_about_cpu_processes(trainer_config: dict[str, Any], *, on_gpu: bool) -> None:
    """Warns when a config written for several GPUs (``devices: 8``) would start that many CPU processes here."""
    devices = trainer_config.get("devices", "auto")
    count = len(devices) if isinstance(devices, (list, tuple)) else devices
    if isinstance(count, str) and count.isdigit():
        count = int(count)
    accelerator = trainer_config.get("accelerator", "auto")
    if on_gpu or not isinstance(count, int) or count <= 1 or accelerator != "auto":
        return
    warnings.warn(
        f"trainer.devices is {devices} but this machine has no GPU: that starts {count} training processes on the "
        "CPU, each far slower than one; add --trainer.devices 1 --trainer.strategy auto to train in one process "
        "(or --trainer.accelerator cpu to keep the CPU processes and silence this)",
        UserWarning,
        stacklevel=2,
    )


def _runs_on_gpu(accelerator: Any) -> bool:
    if isinstance(accelerator, str):
        if accelerator == "auto":
            return torch.cuda.is_available()
        return accelerator in ("gpu", "cuda")
    return type(accelerator).__name__ == "CUDAAccelerator"


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        run_dir: the run folder.
        last_checkpoint: ``run_dir/last.ckpt`` (None if not written).
        best_checkpoint: ``run_dir/best.ckpt`` (None if no validation ran).
        metrics: validation metrics of the final weights (empty without validation).
        epochs: epochs completed; steps: optimizer steps done.
        wall_time_s: seconds spent in fit + final validation.
        model_card: path of MODEL_CARD.md (rank 0).
    """

    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    steps: int = 0
    wall_time_s: float = 0.0
    model_card: Path | None = None


def train(
    args: Sequence[str] | None = None, *, extra_callbacks: Sequence[Any] = (), prog: str = DEFAULT_PROG
) -> TrainResult:
    """Parses ``args`` (default: ``sys.argv[1:]``), trains, validates the final weights and writes the model card.

    Args:
        args: command-line arguments (see the module docstring).
        extra_callbacks: Lightning callbacks added to the Trainer's (for programmatic use).
        prog: the program name of the usage and error lines.

    Raises:
        FileNotFoundError: a data path or the resume checkpoint does not exist, or ``--config`` names neither a file
            nor a packaged recipe.
        ValueError: invalid settings, or a resume checkpoint of another model / other classes.
        SystemExit: invalid arguments or config keys (jsonargparse prints the error and usage).
        TrainingStopped: SIGTERM or Ctrl+C stopped training (a SystemExit with status 143 / 130; the message with
            the checkpoint and the resume command is logged first, as a warning).
    """
    argv = list(args) if args is not None else sys.argv[1:]  # as typed: the model card's and resume command
    _quiet_expected_warnings()
    cli = _build_cli(argv, extra_callbacks=extra_callbacks, prog=prog)
    try:
        return _fit(cli, argv)
    finally:
        if cli.run_dir_lock is not None:
            cli.run_dir_lock.release()


def _build_cli(argv: list[str], *, extra_callbacks: Sequence[Any], prog: str) -> SSDLiteCLI:
    """Parses ``argv`` (``--config shapes``: the packaged recipe, see :mod:`ssdlite.engine.recipes`) and builds the
    data, the model and the Trainer."""
    try:
        return SSDLiteCLI(resolve_config_arguments(argv), extra_callbacks=extra_callbacks, prog=prog)
    except ValueError as error:
        # jsonargparse wraps what reading the data raised ("Call to compute_fn of link ... failed: ..."): the
        # data's own FileNotFoundError / ValueError names the file and the fix.
        if str(error).startswith("Call to compute_fn of link") and isinstance(error.__cause__, (OSError, ValueError)):
            raise error.__cause__ from None
        raise


def _fit(cli: SSDLiteCLI, argv: list[str]) -> TrainResult:
    """Fits, validates the final weights, saves ``last.ckpt`` and writes the model card: :func:`train` after
    parsing."""
    if cli.datamodule.val_dataset is None:
        raise ValueError(
            "data.val_images and data.val_annotations are needed: validation computes the AP that picks best.ckpt"
        )
    if cli.config.ckpt_path is not None:
        check_resume_checkpoint(cli.config.ckpt_path, cli.model)
    if cli.trainer.is_global_zero:
        logger.info(f"run folder: {cli.run_dir}")
    start = time.perf_counter()
    with _run_dir_in_environment(cli.run_dir):
        _fit_to_the_end(cli, argv)
    result = _result(cli, time.perf_counter() - start)
    if cli.trainer.is_global_zero:
        result.model_card = write_model_card(_run_facts(cli, result, argv), cli.model.eval_model)
        _write_error_analysis(cli)
        _log_summary(result)
    return result


def _write_error_analysis(cli: SSDLiteCLI) -> None:
    """The confusion matrix and the error breakdown of the final weights' validation, in the run folder
    (confusion_matrix.csv, confusion_matrix.png, errors.png; ``ssdlite-eval`` writes the same and the gallery)."""
    module = cli.model
    evaluator = module.coco_evaluator()
    analysis = analyse_errors(evaluator, module.last_val_results)
    written = write_error_analysis(analysis, evaluator, cli.run_dir)
    logger.info(f"validation errors: {written['confusion_plot']} (confusion matrix, score >= "
                f"{analysis.confusion.score_threshold:g}), {written['errors_plot']} (AP50 lost per error type)")


@contextlib.contextmanager
def _run_dir_in_environment(run_dir: Path) -> Iterator[None]:
    """``RUN_DIR_ENV`` set to ``run_dir`` meanwhile (inherited by the processes a DDP launcher starts), then as
    before."""
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous


def _fit_to_the_end(cli: SSDLiteCLI, argv: list[str]) -> None:
    """``trainer.fit``, a validation of the final weights where the last epoch had none, and ``last.ckpt`` of the
    final state; a stop by SIGTERM or Ctrl+C is raised as :class:`TrainingStopped` (logged first, with the resume
    command)."""
    module, datamodule, trainer = cli.model, cli.datamodule, cli.trainer
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cli.config.ckpt_path)
        if module.last_val_step != trainer.global_step:
            # The last epoch was not validated (max_time ran out, or check_val_every_n_epoch skipped it):
            # validate the final weights (with the BatchNorm statistics calibrated anew).
            trainer.validate(module, datamodule=datamodule, verbose=False)
        last = _callback(trainer, LastCheckpoint)
        if last is not None:
            # The final state, as the run ended (epoch = epochs done; the full state, so it stays resumable).
            last.save(trainer)
    except SystemExit as exit_:
        stopped = _stopped_by_signal(cli, argv, exit_)
        if stopped is None:
            raise
        if trainer.is_global_zero:
            logger.warning(stopped.describe())
        raise stopped from None


def _stopped_by_signal(cli: SSDLiteCLI, argv: list[str], exit_: SystemExit) -> TrainingStopped | None:
    """What stopped training, when the exit came from SIGTERM or Ctrl+C: a SIGTERMException (SIGTERM or the first
    Ctrl+C, see :mod:`ssdlite.engine.checkpointing`) or Lightning's exit after a second Ctrl+C; None otherwise."""
    stop_signals = _callback(cli.trainer, StopSignals)
    received = stop_signals.received if stop_signals is not None else None
    if received is None and not isinstance(exit_, SIGTERMException):
        return None
    return _training_stopped(cli, argv, received or signal.SIGTERM)


def _training_stopped(cli: SSDLiteCLI, argv: list[str], signal_number: int) -> TrainingStopped:
    last = _callback(cli.trainer, LastCheckpoint)
    checkpoint = Path(last.last_model_path) if last is not None and last.last_model_path else None
    step = last.saved_step if last is not None else None
    if step is None and checkpoint is not None and checkpoint.is_file():
        # stopped before this process saved (a second Ctrl+C early in a resumed run): the file's own step
        step = checkpoint_step(checkpoint)
    return TrainingStopped(signal_number, checkpoint, step, resume_command(argv, cli.run_dir, checkpoint))


def resume_command(argv: Sequence[str], run_dir: Path, checkpoint: Path | None) -> str:
    """The command line that resumes a run: its own arguments with ``--name`` and ``--ckpt_path`` set to the run
    folder's name and ``checkpoint``."""
    kept: list[str] = []
    skip = False
    for argument in argv:
        if skip:
            skip = False
            continue
        option = argument.split("=", 1)[0]
        if option in ("--name", "--ckpt_path"):
            skip = "=" not in argument
            continue
        kept.append(argument)
    kept += ["--name", run_dir.name, "--ckpt_path", str(checkpoint if checkpoint is not None else run_dir / "last.ckpt")]
    return shlex.join([*_command_prefix(), *kept])


def _command_prefix() -> list[str]:
    """The training command of how this process was started: ``[ssdlite-train]`` under an installed command
    (``ssdlite-train`` itself, or another one that trains, such as ``ssdlite-demo``), else ``[python, script]``
    (the Python relative to the working folder when inside it)."""
    started = sys.argv[0] if sys.argv else ""
    if Path(started).name.startswith("ssdlite-"):
        # Its name when that is what the shell finds, else its path (ssdlite-train beside the command started).
        beside = Path(started).with_name(INSTALLED_COMMAND)
        found = shutil.which(INSTALLED_COMMAND)
        on_path = found is not None and Path(found).resolve() == beside.resolve()
        return [INSTALLED_COMMAND if on_path else str(beside)]
    script = Path(started) if started.endswith("train.py") else Path("tools/train.py")
    python = Path(sys.executable)
    try:
        python = python.absolute().relative_to(Path.cwd())
    except ValueError:
        pass
    return [str(python), str(script)]


def _quiet_expected_warnings() -> None:
    """Silences Lightning warnings that our run layout makes expected (they would only confuse)."""
    # The run folder holds config.yaml and the logs next to the checkpoints by design.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    # Small datasets have fewer batches per epoch than log_every_n_steps; the epoch means are still logged.
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # train(args) is meant to be called from Python (tests, the demo) whatever sys.argv holds.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
    # A mid-epoch last.ckpt resumes at its step; ssdlite.engine.checkpointing says so in one line.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    # The EMA copy stays in eval mode while training (it is evaluated, never trained).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def check_resume_checkpoint(path: str | Path, module: SSDLiteModule) -> None:
    """Fails early, with a clear message, when ``path`` cannot resume this run.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a training checkpoint, or one of another architecture or other classes.
    """
    hparams = read_training_checkpoint(path)
    held = SSDLiteConfig.from_dict({**hparams[MODEL_CONFIG_KEY], "pretrained_backbone": None}).to_dict()
    expected = SSDLiteConfig.from_dict({**module.model.config, "pretrained_backbone": None}).to_dict()
    if held != expected:
        raise ValueError(
            f"--ckpt_path {path} holds {describe_config(held)} (image_size {held['image_size']}) but this config "
            f"builds {describe_config(expected)} (image_size {expected['image_size']}); resume with the run's own "
            f"config ({Path(path).parent / 'config.yaml'}) or fine-tune with --model.init_from {path}"
        )
    if list(hparams.get(CLASS_NAMES_KEY) or []) != list(module.class_names):
        raise ValueError(
            f"--ckpt_path {path} was trained on classes {hparams.get(CLASS_NAMES_KEY)} but the data has "
            f"{module.class_names}; resume on the same data or fine-tune with --model.init_from {path}"
        )


def _best_checkpoint_callback(trainer: Trainer) -> ModelCheckpoint | None:
    return next((callback for callback in trainer.checkpoint_callbacks if callback.monitor is not None), None)


def _callback(trainer: Trainer, kind: type[CallbackType]) -> CallbackType | None:
    return next((callback for callback in trainer.callbacks if isinstance(callback, kind)), None)


def _result(cli: SSDLiteCLI, wall_time_s: float) -> TrainResult:
    trainer = cli.trainer
    best = _best_checkpoint_callback(trainer)
    last = _callback(trainer, LastCheckpoint)
    best_path = Path(best.best_model_path) if best is not None and best.best_model_path else None
    last_path = Path(last.last_model_path) if last is not None and last.last_model_path else None
    return TrainResult(
        run_dir=cli.run_dir,
        last_checkpoint=last_path,
        best_checkpoint=best_path,
        metrics=dict(cli.model.last_val_metrics),
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        wall_time_s=wall_time_s,
    )


def _run_facts(cli: SSDLiteCLI, result: TrainResult, argv: list[str]) -> RunFacts:
    module, trainer = cli.model, cli.trainer
    best = _best_checkpoint_callback(trainer)
    best_score = float(best.best_model_score) if best is not None and best.best_model_score is not None else None
    program = _command_prefix()  # the command that ran: ssdlite-train, or python tools/train.py in a checkout
    training = {
        **module.recipe_facts(),
        "epochs": result.epochs,
        "optimizer steps": result.steps,
        "devices": f"{trainer.num_devices} x {trainer.num_nodes} node(s), {type(trainer.accelerator).__name__}",
        "precision": trainer.precision,
        "wall time": f"{result.wall_time_s / 60:.1f} min",
        "seed": cli.config.seed_everything,
    }
    return RunFacts(
        name=cli.config.name,
        run_dir=cli.run_dir,
        model_config=module.model.config,
        class_names=module.class_names,
        category_ids=module.category_ids,
        data=_data_facts(cli.datamodule),
        training=training,
        metrics=result.metrics,
        best_checkpoint=str(result.best_checkpoint) if result.best_checkpoint else None,
        best_score=best_score,
        command=shlex.join([*program, *argv]),
        program=shlex.join(program),
    )


def _data_facts(datamodule: DetectionDataModule) -> dict[str, Any]:
    """The model card's data section: the format, each split's images, annotations and image count, the batch."""

    def split(images: Any, annotations: Any, dataset: Any) -> str:
        return f"{images} + {annotations} ({len(dataset) if dataset is not None else '?'} images)"

    return {
        "format": datamodule.format,
        "train": split(datamodule.train_images, datamodule.train_annotations, datamodule.train_dataset),
        "val": split(datamodule.val_images, datamodule.val_annotations, datamodule.val_dataset),
        "batch size (per device)": datamodule.batch_size,
    }


def _log_summary(result: TrainResult) -> None:
    metrics = result.metrics
    score = (
        f"val AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f} (final weights)" if metrics else "no validation"
    )
    lines = [
        f"trained {result.epochs} epochs / {result.steps} steps in {result.wall_time_s / 60:.1f} min; {score}",
        f"  run folder: {result.run_dir}",
    ]
    for label, path in (("best:      ", result.best_checkpoint), ("last:      ", result.last_checkpoint),
                        ("model card:", result.model_card)):
        if path:
            lines.append(f"  {label} {path}")
    logger.info("\n".join(lines))


__all__ = [
    "BEST_CHECKPOINT",
    "SSDLiteCLI",
    "TrainResult",
    "TrainingStopped",
    "check_resume_checkpoint",
    "resume_command",
    "train",
]
