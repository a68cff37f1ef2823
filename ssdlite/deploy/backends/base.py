"""What a Predictor backend is, and the registry that finds one: the protocol, the shared types, the registry.

A backend turns a preprocessed batch into raw network outputs (or, if it postprocesses itself, into detections).
Each runtime has its own module in this package that registers its loaders here when it is imported, and imports
this module only, never another backend::

    @register_backend("ort", suffixes=(".onnx",), packages=("onnxruntime",), extra="export",
                      file_kind="an ONNX file")
    def load_ort(model_or_path, *, device="cpu", **options) -> Backend: ...

The registry imports the modules of this package the first time it is asked (:func:`available_backends`,
:func:`backend_for_path`, :func:`load_backend`), so nothing imports a backend module up front. A backend module
therefore imports its runtime's optional package inside its functions, never at the top: every backend is then
listed on a machine that lacks some runtime, and :func:`load_backend` checks the declared ``packages`` first and
says which pip extra to install (:mod:`ssdlite.deploy.plugins`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ssdlite.deploy.plugins import ModuleDiscovery, require

if TYPE_CHECKING:
    from torch import Tensor

    from ssdlite.core.postprocess import PostprocessSettings

__all__ = [
    "FALLBACK_BACKEND",
    "Backend",
    "BackendLoader",
    "Detections",
    "ModelInfo",
    "RawOutputs",
    "available_backends",
    "backend_for_path",
    "file_kind",
    "load_backend",
    "register_backend",
]

Detections = dict[str, np.ndarray]
"""Per image: ``boxes`` float32 [D, 4] xyxy original pixels, ``scores`` float32 [D], ``labels`` int64 [D] (1..K),
sorted by score, highest first."""


class RawOutputs(NamedTuple):
    """What the network head returns, before decoding.

    Attributes:
        cls_logits: Tensor[B, A, K + 1], column 0 = background.
        box_deltas: Tensor[B, A, 4] (dx, dy, dw, dh) against the backend's anchors.
    """

    cls_logits: Tensor
    box_deltas: Tensor


@dataclass
class ModelInfo:
    """What a Predictor needs to know about the model behind a backend.

    Attributes:
        class_names: names of labels 1..K (``class_names[label - 1]``).
        category_ids: dataset category id of labels 1..K (written in COCO-style results).
        image_size: the network's square input side S in pixels.
        anchors: Tensor[A, 4] (cx, cy, w, h) normalised, for backends that return RawOutputs.
    """

    class_names: list[str]
    category_ids: list[int]
    image_size: int
    anchors: Tensor | None = None


class Backend(abc.ABC):
    """Runs the network on a preprocessed batch.

    Attributes:
        name: the registry name ("eager", "ort", "int8", ...).
        info: class names, category ids, input size and anchors of the loaded model.
        channels_last_input: True: ``run`` gets an NCHW view of NHWC memory (free for PyTorch channels_last);
            False: contiguous NCHW (ONNX Runtime), written directly by the preprocessing instead of transposed
            afterwards (which saves a strided copy of the whole batch).
    """

    name: str = ""
    channels_last_input: bool = True

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        """Forward a batch.

        Args:
            batch: float32 [B, 3, S, S] RGB in [-1, 1]: a channels-last view (NHWC memory), or contiguous NCHW
                if the backend sets ``channels_last_input = False``.

        Returns:
            RawOutputs for the Predictor to decode, or, if the backend postprocesses itself, one ``Detections``
            dict per image with boxes xyxy normalised to [0, 1]; the Predictor scales them to each image.
        """

    def configure_postprocess(self, settings: PostprocessSettings) -> None:
        """The Predictor's postprocessing settings, for backends that postprocess themselves (default: unused)."""
        return None

    def describe(self) -> str:
        """One line for logs, e.g. ``eager (cpu, BN folded, channels_last)``."""
        return self.name


BackendLoader = Callable[..., Backend]
"""``loader(model_or_path, *, device, **options) -> Backend``."""

FALLBACK_BACKEND = "eager"
"""The backend of a file that no backend claims by its suffix: training checkpoints have many names, and the eager
loader's error names the file and says what it is not."""


@dataclass(frozen=True)
class _Registration:
    """What ``register_backend`` was told besides the loader (see its arguments)."""

    packages: tuple[str, ...] = ()
    extra: str | None = None
    file_kind: str | None = None
    suffixes: tuple[str, ...] = ()


_BACKENDS: dict[str, BackendLoader] = {}
_REGISTRATIONS: dict[str, _Registration] = {}
_discover = ModuleDiscovery(__name__.rpartition(".")[0])
"""Imports every backend module of this package, once."""


def register_backend(
    name: str,
    *,
    suffixes: Sequence[str] = (),
    packages: Sequence[str] = (),
    extra: str | None = None,
    file_kind: str | None = None,
) -> Callable[[BackendLoader], BackendLoader]:
    """Register ``loader(model_or_path, *, device, **options) -> Backend`` under ``name``.

    Args:
        name: the registry name (``Predictor(..., backend=name)``, ``detect.py --backend``).
        suffixes: endings of the file names this backend reads (".onnx", ".ncnn.param"), matched case-blind,
            longest first, by :func:`backend_for_path`.
        packages: importable optional packages the loader needs, checked before it runs.
        extra: the pip extra that installs ``packages``.
        file_kind: what such a file is, for messages ("an ONNX file").
    """

    def decorator(loader: BackendLoader) -> BackendLoader:
        _BACKENDS[name] = loader
        _REGISTRATIONS[name] = _Registration(
            packages=tuple(packages),
            extra=extra,
            file_kind=file_kind,
            suffixes=tuple(suffix.lower() for suffix in suffixes),
        )
        return loader

    return decorator


def available_backends() -> list[str]:
    """Names of the registered backends."""
    _discover()
    return sorted(_BACKENDS)


def backend_for_path(path: str | Path) -> str:
    """The backend that reads a model file, from the end of its name: ``.onnx`` -> "ort", anything else ->
    :data:`FALLBACK_BACKEND` ("eager", a training checkpoint)."""
    _discover()
    name = Path(path).name.lower()
    claims = [(suffix, backend) for backend, entry in _REGISTRATIONS.items() for suffix in entry.suffixes]
    for suffix, backend in sorted(claims, key=lambda claim: -len(claim[0])):
        if name.endswith(suffix):
            return backend
    return FALLBACK_BACKEND


def file_kind(path: str | Path) -> tuple[str, str] | None:
    """(backend, what the file is, e.g. "an ONNX file") for a file a backend other than the fallback claims."""
    backend = backend_for_path(path)
    registration = _REGISTRATIONS.get(backend)
    if backend == FALLBACK_BACKEND or registration is None or registration.file_kind is None:
        return None
    return backend, registration.file_kind


def load_backend(name: str, model_or_path: Any, *, device: Any = "cpu", **options: Any) -> Backend:
    """The backend ``name`` loaded on ``model_or_path`` (a file, or what the loader accepts, e.g. a model).

    Raises:
        ValueError: unknown backend name (lists the registered ones).
        MissingPackageError: the backend's optional package is not installed (names the pip extra).
    """
    _discover()
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    registration = _REGISTRATIONS.get(name, _Registration())
    require(registration.packages, needed_by=f"backend {name!r}", extra=registration.extra)
    return _BACKENDS[name](model_or_path, device=device, **options)
