"""What a Predictor backend is, and the registry that finds one: the protocol, the shared types, the registry.

A backend turns a preprocessed batch into raw network outputs or, if its file decodes and runs NMS itself, into
detections. Each runtime has its own module in this package, which imports this module only, never another
backend, and its runtime's package inside its loader.

The registry is a table, read before any backend module is imported, so that choosing a backend for a file costs
nothing and a runtime's package loads only when a file of its kind is opened:

* :data:`BUILTIN_BACKENDS`, this package's backends, one :class:`BackendSpec` each (name, module and loader, the
  file suffixes it reads, the packages it needs and the ``ssdlite-runtime`` extra that installs them);
* the specs other installed distributions declare in the entry-point group :data:`ENTRY_POINT_GROUP`
  (``importlib.metadata``), e.g. the full ``ssdlite`` package's "eager" backend, which needs torch;
* loaders registered in this process with :func:`register_backend` (an application's own backend, a test's).

:func:`load_backend` checks the spec's ``packages`` first and says which extra installs a missing one, then imports
the module and calls the loader.
"""

from __future__ import annotations

import abc
import importlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ssdlite_runtime.errors import one_line
from ssdlite_runtime.metadata import ModelInfo
from ssdlite_runtime.plugins import MissingPackageError, missing_package_message, missing_packages
from ssdlite_runtime.postprocess import PostprocessSettings

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendLoader",
    "BackendSpec",
    "Detections",
    "RawOutputs",
    "available_backends",
    "backend_for",
    "backend_for_path",
    "check_file_on_cpu",
    "check_regular_file",
    "fallback_backend",
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
        loader: the loader's name in ``module``: ``loader(model_or_path, *, device, **options) -> Backend``.
        suffixes: endings of the file names it reads (".onnx", ".ncnn.param"), lower case; matched case-blind,
            longest first, by :func:`backend_for_path`.
        packages: importable optional packages the loader needs, checked before the module is imported.
        extra: the ``ssdlite-runtime`` extra that installs ``packages``.
        file_kind: what such a file is, for messages ("an ONNX file").
        install: what to do when ``packages`` are missing, if not ``pip install 'ssdlite-runtime[extra]'``.
        fallback: it also reads the files no backend claims by their suffix, and in-memory models (the full
            package's "eager": its files have many names); the first such backend is :func:`fallback_backend`.
    """

    name: str
    module: str
    loader: str
    suffixes: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    extra: str | None = None
    file_kind: str | None = None
    install: str | None = None
    fallback: bool = False

    def install_hint(self) -> str:
        if self.install is not None:
            return self.install
        return RUNTIME_INSTALL.format(extra=self.extra) if self.extra else "pip install ssdlite-runtime"


BUILTIN_BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec("ort", "ssdlite_runtime.backends.onnx_runtime", "load_ort", suffixes=(".onnx",),
                packages=("onnxruntime",), extra="onnx", file_kind="an ONNX file"),
    BackendSpec("int8", "ssdlite_runtime.backends.onnx_runtime", "load_int8",
                packages=("onnxruntime",), extra="onnx"),
    BackendSpec("openvino", "ssdlite_runtime.backends.openvino", "load_openvino", suffixes=(".xml",),
                packages=("openvino",), extra="openvino", file_kind="an OpenVINO IR file"),
    BackendSpec("tflite", "ssdlite_runtime.backends.tflite", "load_tflite", suffixes=(".tflite",),
                packages=("ai_edge_litert",), extra="tflite", file_kind="a TFLite file"),
    BackendSpec("ncnn", "ssdlite_runtime.backends.ncnn", "load_ncnn", suffixes=(".ncnn.param",),
                packages=("ncnn",), extra="ncnn", file_kind="an ncnn model"),
)
"""This package's backends, one module each in ``ssdlite_runtime/backends/`` (``extra``: runtime/pyproject.toml)."""

ENTRY_POINT_GROUP = "ssdlite_runtime.backends"
"""The entry-point group through which another installed distribution adds backends. Each entry point, named as
its backend, points at a :class:`BackendSpec` in a module cheap to import (the spec names the loader's module,
imported only when the backend is used)::

    [project.entry-points."ssdlite_runtime.backends"]
    eager = "ssdlite.deploy.backends:EAGER"
"""

APPLE_ONLY_SUFFIXES = (".mlpackage", ".mlmodel")
"""Core ML files (``ssdlite-export --format coreml``): no backend runs them here, they run on Apple platforms only;
:func:`load_backend` refuses them with a one-line error instead of handing them to another backend."""

_BACKENDS: dict[str, BackendLoader] = {}
"""The loaders imported so far, by name."""
_REGISTRATIONS: dict[str, BackendSpec] = {}
"""Every backend known, by name: :data:`BUILTIN_BACKENDS`, the entry points', and :func:`register_backend`'s."""
_UNLOADABLE: dict[str, str] = {}
"""Backends whose entry point cannot be imported here, by name: why, and what to install."""
_discovered = False


def register_backend(
    name: str,
    *,
    suffixes: Sequence[str] = (),
    packages: Sequence[str] = (),
    extra: str | None = None,
    file_kind: str | None = None,
) -> Callable[[BackendLoader], BackendLoader]:
    """Register ``loader(model_or_path, *, device, **options) -> Backend`` under ``name`` in this process (see
    :class:`BackendSpec` for the arguments). A backend that ships with a distribution goes in
    :data:`BUILTIN_BACKENDS` or the distribution's :data:`ENTRY_POINT_GROUP` instead, so that it is known before
    its module is imported."""

    def decorator(loader: BackendLoader) -> BackendLoader:
        _discover()
        _BACKENDS[name] = loader
        _REGISTRATIONS[name] = BackendSpec(
            name,
            loader.__module__,
            loader.__name__,
            suffixes=tuple(suffix.lower() for suffix in suffixes),
            packages=tuple(packages),
            extra=extra,
            file_kind=file_kind,
        )
        return loader

    return decorator


def _discover() -> None:
    """Learn the built-in backends and those of the installed distributions' entry points, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for spec in (*BUILTIN_BACKENDS, *_entry_point_backends()):
        _REGISTRATIONS.setdefault(spec.name, spec)


def _entry_point_backends() -> list[BackendSpec]:
    """The specs of :data:`ENTRY_POINT_GROUP`; one that cannot be imported is noted in :data:`_UNLOADABLE`.

    Raises:
        TypeError: an entry point names something else than a :class:`BackendSpec` of its own name.
    """
    specs = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        package = entry.dist.name if entry.dist is not None else entry.module.partition(".")[0]
        try:
            spec = entry.load()
        except ImportError as error:
            _UNLOADABLE[entry.name] = (
                f"backend {entry.name!r} of the {package} package, which cannot be imported here "
                f"({one_line(error)}); (re)install it: pip install {package}"
            )
            continue
        if not isinstance(spec, BackendSpec) or spec.name != entry.name:
            raise TypeError(
                f"entry point {entry.name} = {entry.value} of {package} ({ENTRY_POINT_GROUP}) must name a "
                f"BackendSpec called {entry.name!r}, got {spec!r}"
            )
        specs.append(spec)
    return specs


def available_backends() -> list[str]:
    """Names of the known backends (their packages may be missing here)."""
    _discover()
    return sorted(set(_REGISTRATIONS) | set(_BACKENDS) | set(_UNLOADABLE))


def fallback_backend() -> str | None:
    """The backend of a file no backend claims by its suffix, and of an in-memory model (see
    :attr:`BackendSpec.fallback`); None where no installed distribution declares one."""
    spec = _fallback_spec()
    return spec.name if spec is not None else None


def _fallback_spec() -> BackendSpec | None:
    _discover()
    return next((spec for spec in _REGISTRATIONS.values() if spec.fallback), None)


def backend_for_path(path: str | os.PathLike) -> str:
    """The backend that reads a model file, from the end of its name (``.onnx`` -> "ort"), else the
    :func:`fallback_backend` (with the full ssdlite package, "eager").

    Raises:
        ValueError: a Core ML file (it runs on Apple platforms only); no backend claims the name and none is the
            fallback (says what the installed backends read).
    """
    _refuse_apple_only(path)
    claimant = _claimant(path)
    if claimant is not None:
        return claimant.name
    fallback = fallback_backend()
    if fallback is None:
        raise ValueError(_no_backend_reads(str(path)))
    return fallback


def _claimant(path: str | os.PathLike) -> BackendSpec | None:
    """The backend with the longest suffix that the file's name ends in (case-blind), if any."""
    _discover()
    name = Path(path).name.lower()
    claims = [(suffix, spec) for spec in _REGISTRATIONS.values() for suffix in spec.suffixes if name.endswith(suffix)]
    return max(claims, key=lambda claim: len(claim[0]))[1] if claims else None


def backend_for(model_or_path: Any) -> str:
    """The backend ``Predictor(model_or_path)`` uses when none is chosen: a file's is :func:`backend_for_path`'s,
    anything else (an in-memory model) goes to the :func:`fallback_backend`.

    Raises:
        ValueError: no backend takes it (says what the installed backends read).
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        return backend_for_path(model_or_path)
    fallback = fallback_backend()
    if fallback is None:
        raise ValueError(_no_backend_reads(f"a {type(model_or_path).__name__}"))
    return fallback


def _no_backend_reads(what: str) -> str:
    """One line: nothing installed here reads ``what``, what the backends do read, and the entry points that failed."""
    _discover()
    reads = ", ".join(
        f"{suffix} ({spec.name})" for spec in _REGISTRATIONS.values() for suffix in spec.suffixes
    )
    message = f"no backend installed here reads {what}: they read {reads} (choose one with --backend)"
    if _UNLOADABLE:
        return f"{message}; it may be for {'; or for '.join(_UNLOADABLE.values())}"
    return f"{message}; other packages add backends (e.g. the full ssdlite package, for its checkpoints)"


def file_kind(path: str | os.PathLike) -> tuple[str, str] | None:
    """(backend, what the file is, e.g. "an ONNX file") for a file that a backend other than the fallback claims
    by its suffix; None otherwise."""
    spec = _claimant(path)
    if spec is None or spec.fallback or spec.file_kind is None:
        return None
    return spec.name, spec.file_kind


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
    """For a file handed to the :func:`fallback_backend` (no backend claims its name, or it was chosen) whose bytes
    are a format another backend reads: one line saying which format it looks like and which suffix or backend to
    give it; None otherwise."""
    suffix = sniffed_suffix(path)
    if suffix is None:
        return None
    spec = _claimant(f"model{suffix}")
    if spec is None:  # no backend of that format installed here: the fallback's own error says what it is not
        return None
    kind = spec.file_kind or f"a {suffix} file"
    evidence = "its bytes 4..8 are the TFLite identifier TFL3" if suffix == ".tflite" else (
        "it starts as an ONNX ModelProto does"
    )
    fallback = _fallback_spec()
    not_fallback = f", not {fallback.file_kind}" if fallback is not None and fallback.file_kind else ""
    name = Path(path)
    if name.name.lower().endswith(suffix):
        reads = f", which is all the {fallback.name} backend reads" if not_fallback else ""
        return (
            f"{path} is {kind} ({evidence}){not_fallback}{reads}; leave --backend out or pass --backend {spec.name} "
            f"(Predictor(..., backend={spec.name!r}))"
        )
    renamed = name.with_name(name.stem + suffix) if name.suffix else name.with_name(name.name + suffix)
    return (
        f"{path} looks like {kind} ({evidence}){not_fallback}, but its name does not end in {suffix}; "
        f"give it that suffix (e.g. mv {path} {renamed}) or choose its backend (--backend {spec.name}, "
        f"Predictor(..., backend={spec.name!r}))"
    )


def _refuse_apple_only(path: str | os.PathLike) -> None:
    """A ValueError for a Core ML file (:data:`APPLE_ONLY_SUFFIXES`), which no backend here runs."""
    if Path(path).name.lower().endswith(APPLE_ONLY_SUFFIXES):
        raise ValueError(
            f"{path} is a Core ML model: Core ML files run on Apple platforms only (Core ML / Vision on macOS, iOS), "
            "no backend here runs them; on this machine export the model to another format "
            "(e.g. --format onnx --with-nms) and run that file"
        )


def load_backend(name: str, model_or_path: Any, *, device: Any = "cpu", **options: Any) -> Backend:
    """The backend ``name`` loaded on ``model_or_path`` (a file, or what the loader accepts, e.g. a model).

    Raises:
        ValueError: unknown backend name (lists the known ones); a Core ML file (it runs on Apple platforms only); a
            path that is not a regular file (a FIFO, a device); for the fallback backend, a file whose bytes are an
            ONNX or TFLite model under another name (says which suffix to give it).
        MissingPackageError: the backend's package is not installed (names the file, the format and the extra),
            or its distribution's entry point cannot be imported (names the distribution).
    """
    _discover()
    is_path = isinstance(model_or_path, (str, os.PathLike))
    if is_path:
        _refuse_apple_only(model_or_path)
    if name not in _BACKENDS and name not in _REGISTRATIONS:
        if name in _UNLOADABLE:
            what = model_or_path if is_path else f"a {type(model_or_path).__name__}"
            raise MissingPackageError(f"{what} needs the {_UNLOADABLE[name]}")
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    spec = _REGISTRATIONS.get(name)
    if is_path:
        check_regular_file(model_or_path)
        misnamed = misnamed_model_file(model_or_path) if spec is not None and spec.fallback else None
        if misnamed is not None:
            raise ValueError(misnamed)
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
    elif spec.fallback and not Path(model_or_path).name.lower().endswith(spec.suffixes):
        others = sorted({suffix for other in _REGISTRATIONS.values() if other is not spec for suffix in other.suffixes})
        needed_by = f"{model_or_path} (not {' / '.join(others)}, so read as {kind})"
    else:
        needed_by = f"{model_or_path} ({kind})"
    raise MissingPackageError(missing_package_message(missing, needed_by=needed_by, install=spec.install_hint()))
