"""What an exporter is, the registry of export formats, and :func:`export_model`, the one entry point.

Each format has its own module in this package that registers its exporters here when it is imported, one per
precision ("float", "int8")::

    @register_exporter("onnx", title="ONNX", suffix=".onnx", flags=("with_nms", "dynamic_batch"),
                       packages=("onnx", "onnxscript"), extra="export")
    def _export(model, path, options: ExportOptions) -> Path: ...

The registry imports the modules of this package the first time it is asked (:func:`available_formats`,
:func:`export_model`); an exporter module imports its converter's optional package inside its functions, so every
format is listed where a converter is missing, and :func:`export_model` says which pip extra installs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from ssdlite.core.postprocess import PostprocessSettings
from ssdlite_runtime.plugins import ModuleDiscovery, require

__all__ = [
    "DEFAULT_MAX_CALIBRATION_IMAGES",
    "ExportOptions",
    "Exporter",
    "available_formats",
    "export_model",
    "inference_network",
    "register_exporter",
]

DEFAULT_MAX_CALIBRATION_IMAGES = 200
"""INT8 calibration uses at most this many images of the calibration folder (evenly spread)."""

FLAGS = {"with_nms": "--with-nms", "dynamic_batch": "--dynamic-batch", "int8": "--int8"}
"""The export options a format may not take, with the tools/export.py option that sets each. A format takes "int8"
when it has an INT8 exporter, the others when an exporter lists them in its ``flags``."""

PRECISIONS = ("float", "int8")


@dataclass(frozen=True)
class ExportOptions:
    """Everything an exporter may use besides the model and the output path.

    Attributes:
        class_names: names of labels 1..K stored in the file (None: ``class_1..class_K``).
        category_ids: dataset category ids of labels 1..K stored in the file (None: 1..K).
        with_nms: decoding + NMS inside the exported graph (formats whose ``flags`` have it).
        dynamic_batch: a symbolic batch dimension (formats whose ``flags`` have it; otherwise the batch is 1).
        postprocess: the in-graph postprocessing defaults (``with_nms`` only; None: ``EVALUATION_POSTPROCESS``).
        calibration_images: folder of representative images (INT8 only).
        max_calibration_images: use at most this many of them.
    """

    class_names: Sequence[str] | None = None
    category_ids: Sequence[int] | None = None
    with_nms: bool = False
    dynamic_batch: bool = False
    postprocess: PostprocessSettings | None = None
    calibration_images: str | Path | None = None
    max_calibration_images: int = DEFAULT_MAX_CALIBRATION_IMAGES


ExportFunction = Callable[[nn.Module, Path, ExportOptions], Path]


@dataclass(frozen=True)
class Exporter:
    """A registered exporter: one format at one precision.

    Attributes:
        format: the format name (``export_model(format=...)``, ``tools/export.py --format``).
        precision: "float" or "int8".
        export: ``export(model, path, options) -> written path``.
        title: the format's name in messages ("ONNX").
        suffix: the usual file ending (".onnx").
        flags: the options of :data:`FLAGS` besides "int8" that it takes ("with_nms", "dynamic_batch").
        packages: importable optional packages it needs, checked before it runs.
        extra: the pip extra that installs ``packages``.
        note: what to say when an option does not apply to the format.
        companions: the endings of the files written beside the main one, replacing ``suffix`` (OpenVINO's
            ".bin" beside the ".xml"); see :func:`exported_files`.
    """

    format: str
    precision: str
    export: ExportFunction
    title: str
    suffix: str
    flags: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    extra: str | None = None
    note: str = ""
    companions: tuple[str, ...] = ()


_EXPORTERS: dict[tuple[str, str], Exporter] = {}
_discover = ModuleDiscovery(__name__.rpartition(".")[0])
"""Imports every exporter module of this package, once."""


def register_exporter(
    format: str,
    *,
    title: str,
    suffix: str,
    precision: str = "float",
    flags: Sequence[str] = (),
    packages: Sequence[str] = (),
    extra: str | None = None,
    note: str = "",
    companions: Sequence[str] = (),
) -> Callable[[ExportFunction], ExportFunction]:
    """Register ``export(model, path, options) -> Path`` for ``format`` at ``precision`` (see :class:`Exporter`)."""
    if precision not in PRECISIONS or not set(flags) <= {"with_nms", "dynamic_batch"}:
        raise ValueError(
            f"register_exporter({format!r}): precision must be float or int8 (got {precision!r}) and flags among "
            f"with_nms, dynamic_batch (got {list(flags)})"
        )

    def decorator(export: ExportFunction) -> ExportFunction:
        _EXPORTERS[format, precision] = Exporter(
            format=format,
            precision=precision,
            export=export,
            title=title,
            suffix=suffix,
            flags=tuple(flags),
            packages=tuple(packages),
            extra=extra,
            note=note,
            companions=tuple(companions),
        )
        return export

    return decorator


def available_formats() -> list[str]:
    """Names of the registered export formats, in registration order (ONNX first)."""
    _discover()
    return list(dict.fromkeys(format for format, _ in _EXPORTERS))


def exported_files(path: str | Path) -> list[Path]:
    """Every file an export to ``path`` wrote: the file itself (every file inside, for a folder such as a Core ML
    package) and the companions its format declares (e.g. OpenVINO's weights beside the ``.xml``), those that exist."""
    path = Path(path)
    if path.is_dir():
        return sorted(file for file in path.rglob("*") if file.is_file())
    name = path.name.lower()
    claims = [exporter for exporter in registered_exporters() if name.endswith(exporter.suffix.lower())]
    companions = {companion for exporter in claims for companion in exporter.companions}
    suffix = max((exporter.suffix for exporter in claims), key=len, default="")
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.stem
    files = [path, *(path.with_name(stem + companion) for companion in sorted(companions))]
    return [file for file in files if file.is_file()]


def registered_exporters() -> list[Exporter]:
    """Every registered exporter (one per format and precision), in registration order."""
    _discover()
    return list(_EXPORTERS.values())


def _exporters_of(format: str) -> list[Exporter]:
    return [exporter for exporter in _EXPORTERS.values() if exporter.format == format]


def _takes(format: str, flag: str) -> bool:
    if flag == "int8":
        return (format, "int8") in _EXPORTERS
    return any(flag in exporter.flags for exporter in _exporters_of(format))


def _listing(words: Sequence[str], conjunction: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _check_flags(format: str, given: dict[str, bool]) -> None:
    """A one-line error for an option of :data:`FLAGS` that ``format`` does not take."""
    refused = [flag for flag in FLAGS if not _takes(format, flag)]
    if not any(given[flag] for flag in refused):
        return
    others = [
        _exporters_of(other)[0].title
        for other in available_formats()
        if any(_takes(other, flag) for flag in refused)
    ]
    note = _exporters_of(format)[0].note
    where = f"to {_listing(others, 'and')} only" if others else "to no installed export format"
    raise ValueError(
        f"{_listing([FLAGS[flag] for flag in refused], 'and')} apply {where}" + (f"; {note}" if note else "")
    )


def export_model(
    model: nn.Module,
    path: str | Path,
    *,
    format: str = "onnx",
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    with_nms: bool = False,
    dynamic_batch: bool = False,
    int8: bool = False,
    calibration_images: str | Path | None = None,
    postprocess: PostprocessSettings | None = None,
    max_calibration_images: int = DEFAULT_MAX_CALIBRATION_IMAGES,
) -> Path:
    """What ``tools/export.py`` does: ``model`` written as ``format`` by its registered exporter.

    Args:
        model: an SSDLite (left unchanged).
        path: output file.
        format: a registered format, see :func:`available_formats` ("onnx", "torchscript", ...).
        class_names, category_ids: stored in the file.
        with_nms: decoding + NMS in the graph (formats that take it, e.g. ONNX).
        dynamic_batch: symbolic batch dimension (formats that take it, e.g. ONNX).
        int8: the format's INT8 exporter, calibrated on ``calibration_images`` (ONNX: post-training static
            quantization of the network, QDQ, per-channel weights).
        calibration_images: folder of calibration images (required with ``int8``).
        postprocess: default in-graph postprocessing settings (default: ``EVALUATION_POSTPROCESS``).
        max_calibration_images: at most this many calibration images are used.

    Returns:
        The written path.

    Raises:
        ValueError: unknown format, or an option that does not apply to it.
        MissingPackageError: the format's converter is not installed (names the pip extra).
    """
    formats = available_formats()
    if format not in formats:
        raise ValueError(f"unknown export format {format!r}; choose {_listing(formats, 'or')}")
    _check_flags(format, {"with_nms": with_nms, "dynamic_batch": dynamic_batch, "int8": int8})
    exporter = _EXPORTERS[format, "int8" if int8 else "float"]
    what = f"{exporter.title}{' INT8' if int8 else ''} export"
    install = f"pip install -e '.[{exporter.extra}]'" if exporter.extra else "pip install -e ."
    require(exporter.packages, needed_by=what, install=install)
    options = ExportOptions(
        class_names=class_names,
        category_ids=category_ids,
        with_nms=with_nms,
        dynamic_batch=dynamic_batch,
        postprocess=postprocess,
        calibration_images=calibration_images,
        max_calibration_images=max_calibration_images,
    )
    return exporter.export(model, Path(path), options)


class _RawOutputs(nn.Module):
    """The model with a tuple output ``(cls_logits, box_deltas)`` (exporters and TorchScript want tensors)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self.model(images)
        return outputs["cls_logits"], outputs["box_deltas"]


def inference_network(model: nn.Module) -> nn.Module:
    """What every exporter traces: an eval-mode, BatchNorm-folded, float32, CPU copy of ``model`` (left as it was)
    whose output is the tuple ``(cls_logits, box_deltas)``."""
    from ssdlite.models.fold_bn import fold_batchnorm

    return _RawOutputs(fold_batchnorm(model).float().cpu().eval())
