"""MODEL_CARD.md of a training run: what the model is, what it was trained on, how well it does, how it was made."""

from __future__ import annotations

import datetime
import shlex
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssdlite.models import describe_config
from ssdlite.models.complexity import human, profile
from ssdlite.models.fold_bn import fold_batchnorm

CARD_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "VOC07_AP50")


@dataclass
class RunFacts:
    """What a model card states about one run (plain values, gathered by the training entry point).

    Attributes:
        name: run name.
        run_dir: the run folder.
        model_config: ``model.config`` of the trained network.
        class_names: names of labels 1..K.
        category_ids: dataset category id of labels 1..K.
        command: the command line that trained the model, as it was run (``ssdlite-train ...`` or
            ``python tools/train.py ...``).
        program: the program of that command line (``ssdlite-train``, ``python tools/train.py``): the card says it
            wrote it, and names the installed commands (``ssdlite-detect``, ...) for using the model when it is an
            installed command, the checkout's scripts otherwise.
        data: data settings (format, paths, batch size) and image counts.
        training: optimizer, lr, epochs, steps, devices, precision, wall time ...
        metrics: validation metrics of the final weights (keys of ``CocoEvaluator.evaluate``), may be empty.
        best_checkpoint: path of best.ckpt, or None.
        best_score: its val/AP, or None.
    """

    name: str
    run_dir: Path
    model_config: Mapping[str, Any]
    class_names: Sequence[str]
    category_ids: Sequence[int]
    command: str
    program: str
    data: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    best_checkpoint: str | None = None
    best_score: float | None = None


def write_model_card(facts: RunFacts, model: Any, *, path: str | Path | None = None) -> Path:
    """Writes ``MODEL_CARD.md`` (default: ``facts.run_dir / "MODEL_CARD.md"``) and returns its path.

    Args:
        facts: the run's facts.
        model: the trained SSDLite (for parameter and multiply-add counts at its input size).
        path: where to write.
    """
    path = Path(path) if path is not None else Path(facts.run_dir) / "MODEL_CARD.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card_text(facts, model), encoding="utf-8")
    return path


@torch.inference_mode()
def network_latency_ms(model: torch.nn.Module, image_size: int, *, calls: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of one batch-1 forward pass of the network on the CPU (BatchNorm folded, channels-last,
    the current ``torch.get_num_threads()``); no pre- or postprocessing. ``model`` is not modified."""
    network = fold_batchnorm(model).cpu().to(memory_format=torch.channels_last)
    image = torch.zeros(1, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    timings = []
    for index in range(warmup + calls):
        started = time.perf_counter()
        network(image)
        if index >= warmup:
            timings.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(timings)


def model_card_text(facts: RunFacts, model: Any) -> str:
    """The Markdown of the model card (see :func:`write_model_card`)."""
    config = facts.model_config
    size = int(config["image_size"])
    complexity = profile(model, size)
    latency = network_latency_ms(model, size)
    commands = use_commands(facts.program)
    lines = [
        f"# {facts.name}: {config.get('name')} ({config.get('backbone')} x{config.get('width_mult')}, {size}x{size})",
        "",
        f"Written {datetime.datetime.now().astimezone().isoformat(timespec='seconds')} by `{facts.program}`.",
        "",
        "## Model",
        "",
        f"- Architecture: {describe_config(config)}",
        f"- Input: {size}x{size} RGB, resized without keeping the aspect ratio, scaled to [-1, 1]",
        f"- Default boxes: {int(model.anchors.shape[0])} ({_boxes_name(config.get('default_boxes'))})",
        f"- Parameters: {complexity.params:,} ({human(complexity.params)})",
        f"- Multiply-adds: {complexity.macs:,} ({human(complexity.macs)}) per image at {size}x{size} "
        "(ssdlite.models.complexity)",
        f"- CPU latency of the network: {latency:.1f} ms per image (batch 1, {torch.get_num_threads()} threads, "
        "BatchNorm folded, no pre/postprocessing; measured when this card was written, on the training machine; "
        f"end to end by backend: `{commands['benchmark']} --only latency --checkpoint CKPT`)",
        "",
        "## Data",
        "",
        *[f"- {key}: {value}" for key, value in facts.data.items()],
        "",
        f"Classes ({len(facts.class_names)}; label: name (dataset category id)):",
        "",
        *[
            f"{label}. {name} ({category_id})"
            for label, (name, category_id) in enumerate(zip(facts.class_names, facts.category_ids), start=1)
        ],
        "",
        "## Training",
        "",
        *[f"- {key}: {value}" for key, value in facts.training.items()],
        "",
        "Command:",
        "",
        "```",
        facts.command,
        "```",
        "",
        f"The resolved config is `{Path(facts.run_dir) / 'config.yaml'}`.",
        "",
        "## Validation",
        "",
        *_metrics_lines(facts),
        "",
        "## Files and use",
        "",
        f"- `{Path(facts.run_dir) / 'last.ckpt'}`: the final weights (EMA when enabled); resume with "
        f"`--ckpt_path` and the same config",
        *(
            [f"- `{Path(facts.run_dir) / Path(facts.best_checkpoint).name}`: highest val/AP ({facts.best_score:.4f})"]
            if facts.best_checkpoint and facts.best_score is not None
            else []
        ),
        f"- `{Path(facts.run_dir) / 'metrics.csv'}`, `{Path(facts.run_dir) / 'tensorboard'}`: training curves",
        "",
        "```",
        f"{commands['detect']} image PHOTO.jpg --model {Path(facts.run_dir) / 'last.ckpt'} --save out.jpg",
        f"{commands['eval']} --model {Path(facts.run_dir) / 'last.ckpt'} --ann GT.json --images DIR "
        f"--out {Path(facts.run_dir) / 'eval'}",
        "```",
        "",
    ]
    return "\n".join(lines)


INSTALLED_COMMANDS = {"detect": "ssdlite-detect", "eval": "ssdlite-eval", "benchmark": "ssdlite-benchmark"}
CHECKOUT_COMMANDS = {
    "detect": "python detect.py", "eval": "python tools/eval_coco.py", "benchmark": "python tools/benchmark.py"
}


def use_commands(program: str) -> dict[str, str]:
    """The commands the card suggests for using the model: the installed ``ssdlite-*`` commands when ``program``
    (the one that trained it) is an installed command, the checkout's scripts otherwise."""
    tokens = shlex.split(program)
    first = tokens[0] if tokens else ""
    return INSTALLED_COMMANDS if Path(first).name.startswith("ssdlite-") else CHECKOUT_COMMANDS


def _metrics_lines(facts: RunFacts) -> list[str]:
    if not facts.metrics:
        return ["No validation was run."]
    lines = [
        "COCO metrics of the final weights on the validation set (score threshold 0.001, up to 100 detections per "
        "image):",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {float(facts.metrics[name]):.4f} |" for name in CARD_METRICS if name in facts.metrics],
    ]
    per_class = facts.metrics.get("per_class_AP") or {}
    if per_class:
        lines += ["", "| class | AP |", "|---|---|", *[f"| {name} | {ap:.4f} |" for name, ap in per_class.items()]]
    return lines


def _boxes_name(default_boxes: Any) -> str:
    return default_boxes if isinstance(default_boxes, str) else "custom layout"
