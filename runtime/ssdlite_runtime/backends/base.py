"""What a Predictor backend is, and the registry that finds one: the protocol, the shared types, the registry.

A backend turns a preprocessed batch into raw network outputs or, if its file decodes and runs NMS itself, into
detections. Each runtime has its own module in this package, which registers its loaders with
:func:`register_backend` and imports this module only, never another backend::

    @register_backend("ort", suffixes=(".onnx",), packages=("onnxruntime",), extra="onnx", file_kind="an ONNX file")
    def load_ort(path, *, device="cpu", threads=None) -> Backend: ...

The registry reads those decorator lines from each module's source without importing the module (``ast``), so a
backend module, and its runtime's package, is imported only when a file of its kind is opened; the arguments of
``register_backend`` are therefore literals (strings and tuples of strings). :func:`load_backend` checks the
declared ``packages`` first and says which extra of ``ssdlite-runtime`` installs a missing one, then imports the
module and calls the loader. (Where a module's source is not available, as in a frozen application, it is simply
imported: its decorator registers it.)

One backend lives outside this package: "eager", PyTorch on a training checkpoint, in the full ``ssdlite`` package
(it needs torch). The registry knows it by module path (:data:`EAGER`); without that package a checkpoint is a
one-line error that says how to get it.
"""

from __future__ import annotations

import abc
import ast
import importlib
import importlib.util
import os
import pkgutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ssdlite_runtime.metadata import ModelInfo
from ssdlite_runtime.plugins import MissingPackageError, missing_package_message, missing_packages
from ssdlite_runtime.postprocess import PostprocessSettings

__all__ = [
    "EAGER",
    "FALLBACK_BACKEND",
    "Backend",
    "BackendLoader",
    "BackendSpec",
    "Detections",
    "RawOutputs",
    "available_backends",
    "backend_for_path",
    "check_file_on_cpu",
    "check_regular_file",
    "file_kind",
    "load_backend",
    "misnamed_model_file",
    "register_backend",
    "sniffed_suffix",
]

Detections = dict[str, np.ndarray]
"""Per image: ``boxes`` float32 [D, 4] xyxy, ``scores`` float32 [D], ``labels`` int64 [D] (1..K), sorted by score,
highest first. From a backend, boxes are normalised to [0, 1]; from the Predictor, in the image's pixels."""


class RawOutputs(NamedTuple):
    """What the network head returns, before decoding (numpy arrays).

    Attributes:
        cls_logits: float32 [B, A, K + 1], column 0 = background.
        box_deltas: float32 [B, A, 4] (dx, dy, dw, dh) against ``ModelInfo.default_boxes``.
    """

    cls_logits: np.ndarray
    box_deltas: np.ndarray


class Backend(abc.ABC):
    """Runs the network on a preprocessed batch.

    Attributes:
        name: the registry name ("eager", "ort", "int8", ...).
        info: class names, category ids, input size and scaling, default boxes, ... of the loaded model.
        channels_last_input: True: ``run`` gets an NCHW view of NHWC memory (free for PyTorch channels_last, and
            ``batch.transpose(0, 2, 3, 1)`` is then contiguous NHWC for runtimes that take that layout); False:
            contiguous NCHW (ONNX Runtime), written directly by the preprocessing instead of transposed afterwards
            (which saves a strided copy of the whole batch).
    """

    name: str = ""
    channels_last_input: bool = True

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        """Forward a batch.

        Args:
            batch: float32 [B, 3, S, S], RGB scaled as ``info.mean`` / ``info.scale`` say: a channels-last view
                (NHWC memory), or contiguous NCHW if the backend sets ``channels_last_input = False``.

        Returns:
            RawOutputs for the Predictor to decode (with ``info.default_boxes`` and ``info.variances``), or, if the
            backend's file postprocesses itself, one ``Detections`` dict per image with boxes xyxy normalised to
            [0, 1], best first; the Predictor scales them to each image and applies its score threshold.
        """

    def configure_postprocess(self, settings: PostprocessSettings) -> None:
        """The Predictor's postprocessing settings, for backends that postprocess themselves (default: unused)."""
        return None

    def describe(self) -> str:
        """One line for logs, e.g. ``ort (ONNX Runtime, NMS in graph, model.onnx)``."""
        return self.name


BackendLoader = Callable[..., Backend]
"""``loader(model_or_path, *, device, **options) -> Backend``."""

FALLBACK_BACKEND = "eager"
"""The backend of a file that no backend claims by its suffix: training checkpoints have many names, and the eager
loader's error names the file and says what it is not."""

RUNTIME_INSTALL = "pip install 'ssdlite-runtime[{extra}]'"
"""How to install the package of a backend of this distribution: its extra (runtime/pyproject.toml)."""


def run_in_fixed_batches(
    run: Callable[[np.ndarray], RawOutputs | list[Detections]], batch: np.ndarray, fixed_batch: int | None,
    *, with_nms: bool,
) -> RawOutputs | list[Detections]:
    """``run`` over ``batch`` in slices of ``fixed_batch`` images (a file exported for one batch size), the results
    joined as one call's: detections listed per image, or raw outputs concatenated. None: one call."""
    if fixed_batch is None or batch.shape[0] == fixed_batch:
        return run(batch)
    parts = [run(batch[i : i + fixed_batch]) for i in range(0, batch.shape[0], fixed_batch)]
    if with_nms:
        return [detections for part in parts for detections in part]
    return RawOutputs(*(np.concatenate(arrays) for arrays in zip(*parts)))


def check_file_on_cpu(path: Any, device: Any, *, backend: str, reads: str, runtime: str, export_command: str,
                      hint: str = "") -> None:
    """The checks every file backend makes before loading: ``path`` is a file path (not an in-memory model) and
    ``device`` is the CPU; ValueError naming the backend, what it reads and how to make it otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            f"backend {backend!r} reads {reads}, got a {type(path).__name__}; export the model first "
            f"(`{export_command}`){hint}"
        )
    if str(device).partition(":")[0] != "cpu":
        raise ValueError(f"backend {backend!r} runs on the CPU ({runtime}); got device={device!r}")


def padded_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, counts: np.ndarray
                      ) -> list[Detections]:
    """Per image, the first ``counts[i]`` rows of a graph's padded NMS outputs ([B, D, 4], [B, D], [B, D], [B])."""
    return [
        {"boxes": boxes[i, :count], "scores": scores[i, :count], "labels": labels[i, :count]}
        for i, count in enumerate(counts.tolist())
    ]


@dataclass(frozen=True)
class BackendSpec:
    """What the registry knows about a backend before importing it.

    Attributes:
        name: the registry name (``Predictor(..., backend=name)``, ``ssdlite-detect --backend``).
        module: the module that defines the loader (imported when the backend is first loaded).
        loader: the loader's name in ``module``.
        suffixes: endings of the file names it reads (".onnx", ".ncnn.param"), lower case; matched case-blind,
            longest first, by :func:`backend_for_path`.
        packages: importable optional packages the loader needs, checked before the module is imported.
        extra: the ``ssdlite-runtime`` extra that installs ``packages``.
        file_kind: what such a file is, for messages ("an ONNX file").
        install: what to do when ``packages`` are missing, if not ``pip install 'ssdlite-runtime[extra]'``.
    """

    name: str
    module: str
    loader: str
    suffixes: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    extra: str | None = None
    file_kind: str | None = None
    install: str | None = None

    def install_hint(self) -> str:
        if self.install is not None:
            return self.install
        return RUNTIME_INSTALL.format(extra=self.extra) if self.extra else "pip install ssdlite-runtime"


EAGER = BackendSpec(
    "eager",
    module="ssdlite.deploy.backends.eager",
    loader="load_eager",
    suffixes=(".ckpt", ".pt", ".pth"),
    packages=("ssdlite", "torch"),
    file_kind="a training checkpoint",
    install=(
        "checkpoints run with the full ssdlite package (in the ssdlite clone: pip install -e ./runtime -e .); "
        "or export this one to ONNX where it is installed "
        "(tools/export.py --checkpoint FILE --format onnx --with-nms --out model.onnx) and run the .onnx file"
    ),
)
"""PyTorch on a training checkpoint or an in-memory SSDLite: the one backend of the full package (it needs torch)."""

APPLE_ONLY_SUFFIXES = (".mlpackage", ".mlmodel")
"""Core ML files (``ssdlite-export --format coreml``): no backend runs them here, they run on Apple platforms only;
:func:`load_backend` refuses them with a one-line error instead of reading them as a checkpoint."""

_BACKENDS: dict[str, BackendLoader] = {}
"""The loaders imported so far, by name."""
_REGISTRATIONS: dict[str, BackendSpec] = {}
"""Every backend known, by name: declared in a module's source, registered by an import, or :data:`EAGER`."""
_PACKAGE = __name__.rpartition(".")[0]
_discovered = False


def register_backend(
    name: str,
    *,
    suffixes: Sequence[str] = (),
    packages: Sequence[str] = (),
    extra: str | None = None,
    file_kind: str | None = None,
) -> Callable[[BackendLoader], BackendLoader]:
    """Register ``loader(model_or_path, *, device, **options) -> Backend`` under ``name`` (see :class:`BackendSpec`
    for the arguments). In this package's modules the arguments must be literals: the registry reads them from the
    source before the module is imported."""

    def decorator(loader: BackendLoader) -> BackendLoader:
        _BACKENDS[name] = loader
        _REGISTRATIONS[name] = BackendSpec(
            name,
            module=loader.__module__,
            loader=loader.__name__,
            suffixes=tuple(suffix.lower() for suffix in suffixes),
            packages=tuple(packages),
            extra=extra,
            file_kind=file_kind,
        )
        return loader

    return decorator


def _discover() -> None:
    """Learn this package's backends from their modules' source (imported only where there is none), and EAGER."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    _REGISTRATIONS.setdefault(EAGER.name, EAGER)
    for module in pkgutil.iter_modules(importlib.import_module(_PACKAGE).__path__):
        if module.name != "base" and not module.name.startswith("_"):
            for spec in _declared_backends(f"{_PACKAGE}.{module.name}"):
                _REGISTRATIONS.setdefault(spec.name, spec)


def _declared_backends(module: str) -> list[BackendSpec]:
    """The ``@register_backend(...)`` loaders of a module, read from its source (the module is not imported)."""
    found = importlib.util.find_spec(module)
    source = found.loader.get_source(module) if found is not None and found.loader is not None else None
    if source is None:  # no source to read: import it, its decorators register it
        importlib.import_module(module)
        return []
    declared = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("register_backend"):
                try:
                    name = ast.literal_eval(decorator.args[0])
                    options = {keyword.arg: ast.literal_eval(keyword.value) for keyword in decorator.keywords}
                except (ValueError, IndexError):
                    raise ValueError(
                        f"{module}: register_backend(...) on {node.name} takes literal arguments only (a name, then "
                        "strings and tuples of strings), which the registry reads without importing the module"
                    ) from None
                options["suffixes"] = tuple(suffix.lower() for suffix in options.get("suffixes", ()))
                options["packages"] = tuple(options.get("packages", ()))
                declared.append(BackendSpec(name, module=module, loader=node.name, **options))
    return declared


def available_backends() -> list[str]:
    """Names of the known backends (their packages may be missing here)."""
    _discover()
    return sorted(set(_REGISTRATIONS) | set(_BACKENDS))


def backend_for_path(path: str | os.PathLike) -> str:
    """The backend that reads a model file, from the end of its name: ``.onnx`` -> "ort", ``.ckpt`` -> "eager",
    anything else -> :data:`FALLBACK_BACKEND` ("eager": training checkpoints have many names)."""
    _discover()
    name = Path(path).name.lower()
    claims = [(suffix, spec.name) for spec in _REGISTRATIONS.values() for suffix in spec.suffixes]
    for suffix, backend in sorted(claims, key=lambda claim: -len(claim[0])):
        if name.endswith(suffix):
            return backend
    return FALLBACK_BACKEND


def file_kind(path: str | os.PathLike) -> tuple[str, str] | None:
    """(backend, what the file is, e.g. "an ONNX file") for a file a backend other than the fallback claims."""
    backend = backend_for_path(path)
    spec = _REGISTRATIONS.get(backend)
    if backend == FALLBACK_BACKEND or spec is None or spec.file_kind is None:
        return None
    return backend, spec.file_kind


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: str | os.PathLike) -> None:
    """A ValueError if ``path`` (links followed) is a FIFO, a device or a socket: not a model file, and opening a
    FIFO would wait for a writer. Checked with ``os.stat``, which never opens it. A missing path or a folder passes:
    the loaders say "not found" and what a folder is not, in their own words."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable folder above it, a NUL in the name: the loader says so
        return
    for test, kind in _SPECIAL_FILES:
        if test(mode):
            raise ValueError(f"{path} is not a regular file but {kind}; pass the model file itself")


_ONNX_FIELDS_AFTER_IR_VERSION = frozenset((0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72))
"""Tags of the ModelProto fields serialised after ``ir_version`` (field 1, tag 0x08): producer_name (2),
producer_version (3), domain (4), model_version (5), doc_string (6), graph (7), opset_import (8), metadata_props (14).
Protobuf writers emit fields in number order, so a saved ONNX file starts ``08 <ir_version> <one of these>``."""


def sniffed_suffix(path: str | os.PathLike) -> str | None:
    """The suffix of the model format that ``path``'s first bytes show, whatever its name says, or None.

    Conservative: ".tflite" for a flatbuffer with the TFLite identifier ``TFL3`` at bytes 4..8; ".onnx" for a file
    that starts as a serialised ONNX ModelProto does (``ir_version``, a one-byte varint from 1 to 127, then a tag of
    a field that follows it). A training checkpoint (a zip archive, ``PK``, or a pickle, ``0x80``) matches neither.
    Only a regular file is read (call :func:`check_regular_file` first for a message about the others).
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as file:
            head = file.read(8)
    except (OSError, ValueError):
        return None
    if len(head) == 8 and head[4:8] == b"TFL3":
        return ".tflite"
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 0x7F and head[2] in _ONNX_FIELDS_AFTER_IR_VERSION:
        return ".onnx"
    return None


def misnamed_model_file(path: str | os.PathLike) -> str | None:
    """For a file read as a training checkpoint (no backend claims its name) whose bytes are another model format:
    one line saying which format it looks like and which suffix or backend to give it; None otherwise."""
    suffix = sniffed_suffix(path)
    if suffix is None:
        return None
    _discover()
    backend = backend_for_path(f"model{suffix}")
    spec = _REGISTRATIONS.get(backend)
    kind = spec.file_kind if spec is not None and spec.file_kind else f"a {suffix} file"
    if suffix == ".tflite":
        evidence = "its bytes 4..8 are the TFLite identifier TFL3"
    else:
        evidence = "it starts as an ONNX ModelProto does"
    name = Path(path)
    if name.name.lower().endswith(suffix):
        return (
            f"{path} is {kind} ({evidence}), not a training checkpoint, which is all the {EAGER.name} backend reads; "
            f"leave --backend out or pass --backend {backend} (Predictor(..., backend={backend!r}))"
        )
    renamed = name.with_name(name.stem + suffix) if name.suffix else name.with_name(name.name + suffix)
    return (
        f"{path} looks like {kind} ({evidence}), not a training checkpoint, but its name does not end in {suffix}; "
        f"give it that suffix (e.g. mv {path} {renamed}) or choose its backend (--backend {backend}, "
        f"Predictor(..., backend={backend!r}))"
    )


def load_backend(name: str, model_or_path: Any, *, device: Any = "cpu", **options: Any) -> Backend:
    """The backend ``name`` loaded on ``model_or_path`` (a file, or what the loader accepts, e.g. a model).

    Raises:
        ValueError: unknown backend name (lists the known ones); a Core ML file (it runs on Apple platforms only); a
            path that is not a regular file (a FIFO, a device); for "eager", a file whose bytes are an ONNX or
            TFLite model under another name (says which suffix to give it).
        MissingPackageError: the backend's package is not installed (names the file, the format and the extra).
    """
    _discover()
    is_path = isinstance(model_or_path, (str, os.PathLike))
    if is_path and Path(model_or_path).name.lower().endswith(APPLE_ONLY_SUFFIXES):
        raise ValueError(
            f"{model_or_path} is a Core ML model: Core ML files run on Apple platforms only (Core ML / Vision on "
            "macOS, iOS), no backend here runs them; on this machine export the checkpoint to another format "
            "(e.g. --format onnx --with-nms) and run that file"
        )
    if name not in _BACKENDS and name not in _REGISTRATIONS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    if is_path:
        check_regular_file(model_or_path)
        misnamed = misnamed_model_file(model_or_path) if name == EAGER.name else None
        if misnamed is not None:
            raise ValueError(misnamed)
    spec = _REGISTRATIONS.get(name)
    if spec is not None:
        _require(spec, model_or_path, missing_packages(spec.packages))
    loader = _BACKENDS.get(name) or _import_loader(spec, model_or_path)
    return loader(model_or_path, device=device, **options)


def _import_loader(spec: BackendSpec, model_or_path: Any) -> BackendLoader:
    """Import the backend's module (its packages are there) and return its loader."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as error:  # found, yet a package of the list cannot be imported after all
        if (error.name or "").partition(".")[0] not in spec.packages:
            raise
        _require(spec, model_or_path, [error.name.partition(".")[0]])
    return _BACKENDS.setdefault(spec.name, getattr(module, spec.loader))


def _require(spec: BackendSpec, model_or_path: Any, missing: Sequence[str]) -> None:
    """A :class:`MissingPackageError` naming the file, its format and what to install, if anything is missing."""
    if not missing:
        return
    kind = spec.file_kind or f"backend {spec.name!r}"
    if not isinstance(model_or_path, (str, os.PathLike)):
        needed_by = f"backend {spec.name!r}"
    elif spec.name == FALLBACK_BACKEND and not Path(model_or_path).name.lower().endswith(spec.suffixes):
        others = sorted({suffix for other in _REGISTRATIONS.values() if other is not spec for suffix in other.suffixes})
        needed_by = f"{model_or_path} (not {' / '.join(others)}, so read as {kind})"
    else:
        needed_by = f"{model_or_path} ({kind})"
    raise MissingPackageError(missing_package_message(missing, needed_by=needed_by, install=spec.install_hint()))
