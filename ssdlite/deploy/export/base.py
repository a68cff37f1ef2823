"""What an exporter is, the registry of export formats, and :func:`export_model`, the one entry point.

Each format has its own module in this package, listed in :data:`EXPORTER_MODULES`, that registers its exporters
here when it is imported, one per precision ("float", "int8")::

    @register_exporter("onnx", title="ONNX", suffix=".onnx", flags=("with_nms", "dynamic_batch"),
                       packages=("onnx", "onnxscript"), extra="export")
    def _export(model, path, options: ExportOptions) -> Path: ...

The registry imports the modules of the table the first time it is asked (:func:`available_formats`,
:func:`export_model`, ...); an exporter module imports its converter's optional package inside its functions, so
every format is listed where a converter is missing, and :func:`export_model` says which pip extra installs it.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from ssdlite.core.postprocess import PostprocessSettings
from ssdlite_runtime.plugins import require

__all__ = [
    "DEFAULT_MAX_CALIBRATION_IMAGES",
    "ExportOptions",
    "Exporter",
    "available_formats",
    "check_calibration_limit",
    "check_not_overwriting",
    "check_output",
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
        folder: the export is a folder (a Core ML ``.mlpackage``), not a file.
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
    folder: bool = False


EXPORTER_MODULES: dict[str, tuple[str, ...]] = {
    "onnx": ("ssdlite.deploy.export.onnx", "ssdlite.deploy.export.int8"),
    "torchscript": ("ssdlite.deploy.export.torchscript",),
    "openvino": ("ssdlite.deploy.export.openvino",),
    "tflite": ("ssdlite.deploy.export.tflite",),
    "ncnn": ("ssdlite.deploy.export.ncnn",),
    "coreml": ("ssdlite.deploy.export.coreml",),
}
"""The export formats, in the order they are offered (``ssdlite-export --format``), and the modules whose
``@register_exporter`` functions write each (ONNX's INT8 exporter has a module of its own)."""

_EXPORTERS: dict[tuple[str, str], Exporter] = {}
_loaded = False


def _discover() -> None:
    """Import the modules of :data:`EXPORTER_MODULES` once (each registers its exporters as it is imported)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # before importing: a module that asks the registry while it is imported gets no recursion
    for modules in EXPORTER_MODULES.values():
        for module in modules:
            importlib.import_module(module)


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
    folder: bool = False,
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
            folder=folder,
        )
        return export

    return decorator


def available_formats() -> list[str]:
    """Names of the registered export formats: :data:`EXPORTER_MODULES`' order, then any registered otherwise."""
    _discover()
    registered = dict.fromkeys(format for format, _ in _EXPORTERS)
    return [format for format in EXPORTER_MODULES if format in registered] + [
        format for format in registered if format not in EXPORTER_MODULES
    ]


def exported_files(path: str | Path) -> list[Path]:
    """Every file an export to ``path`` wrote: the file itself (every file inside, for a folder such as a Core ML
    package) and the companions its format declares (e.g. OpenVINO's weights beside the ``.xml``), those that exist."""
    path = Path(path)
    if path.is_dir():
        return sorted(file for file in path.rglob("*") if file.is_file())
    name = path.name.lower()
    claims = [exporter for exporter in registered_exporters() if name.endswith(exporter.suffix.lower())]
    suffix = max((exporter.suffix for exporter in claims), key=len, default="")
    companions = {companion for exporter in claims for companion in exporter.companions}
    files = [path, *(companion_path(path, suffix, companion) for companion in sorted(companions))]
    return [file for file in files if file.is_file()]


def companion_path(path: Path, suffix: str, companion: str) -> Path:
    """The file an export to ``path`` (ending in ``suffix``, any case) writes for ``companion``: the ending replaced
    after the part the two share, kept as written ("M.NCNN.PARAM", ".ncnn.param", ".ncnn.bin" -> "M.NCNN.bin"),
    as the exporters and ``ssdlite_runtime``'s backends name them."""
    shared = len(os.path.commonprefix([suffix.lower(), companion.lower()]))
    return path.with_name(path.name[: len(path.name) - len(suffix) + shared] + companion[shared:])


def registered_exporters() -> list[Exporter]:
    """Every registered exporter (one per format and precision), in :func:`available_formats`' order."""
    return [exporter for format in available_formats() for exporter in _exporters_of(format)]


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


def check_calibration_limit(max_images: object) -> None:
    """Refuse a calibration image limit that is not a positive integer (``--calib-max``), before any export work.

    Raises:
        ValueError: ``max_images`` is 0, negative or not an integer; the message names the fix.
    """
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(
            f"--calib-max {max_images}: the number of calibration images must be a positive integer; pass e.g. "
            f"--calib-max {DEFAULT_MAX_CALIBRATION_IMAGES}"
        )


def _exporter(format: str, int8: bool) -> Exporter:
    """The exporter of ``format`` at the asked precision (its float one where it has no INT8 exporter)."""
    formats = available_formats()
    if format not in formats:
        raise ValueError(f"unknown export format {format!r}; choose {_listing(formats, 'or')}")
    return _EXPORTERS.get((format, "int8" if int8 else "float")) or _exporters_of(format)[0]


def _stem(name: str) -> str:
    """``name`` without the longest registered suffix it ends in ("m.ncnn.param" -> "m"), else without its last
    ("x.ckpt" -> "x"); "model" where nothing is left (".onnx")."""
    endings = [exporter.suffix for exporter in _EXPORTERS.values() if name.lower().endswith(exporter.suffix.lower())]
    ending = max(endings, key=len, default="")
    return (name[: len(name) - len(ending)] if ending else Path(name).stem) or "model"


def _written_paths(path: Path, exporter: Exporter) -> list[Path]:
    """What an export to ``path`` writes: ``path`` and, when it ends in the suffix, its companions beside it."""
    if not path.name.lower().endswith(exporter.suffix.lower()):
        return [path]
    return [path, *(companion_path(path, exporter.suffix, companion) for companion in exporter.companions)]


def _overwrites(target: Path, source: Path, exporter: Exporter) -> bool:
    """Whether writing ``target`` replaces ``source``: the same file (any name: hard link, symlink), or, for a
    format whose export is a folder (replaced whole), a folder that holds it."""
    if not (target.exists() and source.exists()):
        return False
    if os.path.samefile(target, source):
        return True
    return exporter.folder and target.is_dir() and source.resolve().is_relative_to(target.resolve())


def check_not_overwriting(
    path: str | Path, sources: Iterable[str | Path], *, format: str = "onnx", int8: bool = False
) -> None:
    """Refuse an export to ``path`` that would overwrite one of ``sources`` (the checkpoint it is made from).

    Every file the export writes counts, the companions its format declares included (OpenVINO's ``.bin``, NCNN's
    ``.ncnn.bin`` and ``.ncnn.json``), and files are compared by identity (``os.path.samefile``), so another name
    for the same file (a hard link, a symlink, ``./x``) is caught too.

    Raises:
        ValueError: an output file is one of ``sources``; the message names both and a name to use instead.
    """
    path = Path(path)
    exporter = _exporter(format, int8)
    for source in map(Path, sources):
        for target in _written_paths(path, exporter):
            if _overwrites(target, source, exporter):
                writes = "" if target == path else f" (the export writes {target} beside it)"
                raise ValueError(
                    f"--out {path} would overwrite the checkpoint {source}{writes}; pass another --out, e.g. "
                    f"--out {_another_name(path, exporter, int8, source)}"
                )


def _another_name(path: Path, exporter: Exporter, int8: bool, source: Path) -> Path:
    """A name in ``path``'s folder, ending in the format's suffix, whose export leaves ``source`` alone."""
    stem = _stem(path.name)
    names = [f"{stem}{exporter.suffix}", f"{stem}_{exporter.format}{'_int8' if int8 else ''}{exporter.suffix}"]
    for name in names:
        written = _written_paths(path.with_name(name), exporter)
        if not any(_overwrites(target, source, exporter) for target in written):
            return path.with_name(name)
    return path.with_name(f"exported_{names[-1]}")


def check_output(path: str | Path, *, format: str = "onnx", int8: bool = False) -> None:
    """Refuse, before any conversion, an output the export cannot write where asked.

    The name must end in the format's suffix (``.onnx``, ``.ncnn.param``, ...; any case; INT8 files take the
    format's suffix too, e.g. ``model_int8.onnx``), so a file's ending says what it holds; the output must not be
    a folder (a file format) or a file (a folder format); and its folder must be a folder this process can write
    in, or one it can create. Nothing is left behind by the check.

    Raises:
        ValueError: the message names the path, what is wrong and the fix.
    """
    path = Path(path)
    exporter = _exporter(format, int8)
    _check_suffix(path, exporter, int8)
    if path.exists() and path.is_dir() != exporter.folder:
        instead = path.with_name(f"{_stem(path.name)}_{format}{exporter.suffix}") if exporter.folder else (
            path / f"model{exporter.suffix}"
        )
        raise ValueError(
            f"--out {path} is {'a file' if exporter.folder else 'a folder'}, and {_writes(exporter, int8)}; pass a "
            f"new name, e.g. --out {instead}"
        )
    _check_folder(path)


def _writes(exporter: Exporter, int8: bool) -> str:
    """"--format onnx --int8 writes a .onnx file": what the export is, for messages."""
    return (
        f"--format {exporter.format}{' --int8' if int8 else ''} writes a {exporter.suffix} "
        f"{'folder' if exporter.folder else 'file'}"
    )


def _check_suffix(path: Path, exporter: Exporter, int8: bool) -> None:
    """Refuse a name that does not end in ``exporter.suffix`` (or is nothing but it)."""
    name, suffix = path.name, exporter.suffix
    if name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
        return
    claims = [other for other in _EXPORTERS.values() if name.lower().endswith(other.suffix.lower())]
    owner = max(claims, key=lambda other: len(other.suffix), default=None)
    whose = ""
    if owner is not None and owner.format != exporter.format:
        whose = f" ({owner.suffix} is what --format {owner.format} writes)"
    raise ValueError(
        f"--out {path}: {_writes(exporter, int8)}{whose}; pass --out ending in {suffix}, e.g. "
        f"--out {path.with_name(_stem(name) + suffix)}"
    )


def _check_folder(path: Path) -> None:
    """Refuse an output whose folder is a file, or a folder this process cannot write in (e.g. under /proc).

    The nearest folder that exists is probed with a temporary file (removed at once): permission bits do not say
    whether root may write there, nor whether the file system takes new files."""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"--out {path}: {existing} is a file, not a folder, so nothing can be written under it; pass --out in "
            "a folder (one that does not exist yet is created)"
        )
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".ssdlite_export_check_", dir=existing)
    except OSError as error:
        raise ValueError(
            f"--out {path}: cannot write in {existing} ({error.strerror or error}); pass --out in a folder you can "
            "write to"
        ) from None
    os.close(descriptor)
    os.unlink(probe)


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

    Everything that can be checked without converting is checked first (format, options, calibration limit,
    output name and folder), so a wrong argument fails at once rather than after the conversion.

    Raises:
        ValueError: unknown format, an option that does not apply to it, INT8 without calibration images, a
            calibration limit below 1, an output name without the format's suffix, or an output folder that
            cannot be written (see :func:`check_output`).
        MissingPackageError: the format's converter is not installed (names the pip extra).
    """
    formats = available_formats()
    if format not in formats:
        raise ValueError(f"unknown export format {format!r}; choose {_listing(formats, 'or')}")
    _check_flags(format, {"with_nms": with_nms, "dynamic_batch": dynamic_batch, "int8": int8})
    if int8 and calibration_images is None:
        raise ValueError("INT8 export needs calibration images: pass --calib DIR (a folder of images)")
    check_calibration_limit(max_calibration_images)
    check_output(path, format=format, int8=int8)
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
