"""Checking the optional packages a backend, an export format or a feature declares, with a one-line
error that says what to install: shared by the backend registry (:mod:`ssdlite_runtime.backends.base`), tracking and
the full package's exporter registry.

A backend or an exporter imports its optional package (onnxruntime, openvino, ...) inside its functions, never at
the top of its module; its registry checks the package with :func:`require` first, so that a missing one is a
one-line error, e.g. ``model.onnx (an ONNX file) needs onnxruntime, which is not installed here: pip install
'ssdlite-runtime[onnx]'``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from ssdlite_runtime.errors import SSDLiteError

__all__ = ["MissingPackageError", "missing_package_message", "missing_packages", "require"]


class MissingPackageError(SSDLiteError, ImportError):
    """An optional package that a backend or an export format needs is not installed (reported as bad input)."""


def missing_packages(packages: Sequence[str]) -> list[str]:
    """The ones of ``packages`` (importable names, e.g. "onnxruntime") that cannot be imported here."""
    missing = []
    for package in packages:
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):  # an import hook that refuses the name (as tests do to hide torch)
            found = False
        if not found:
            missing.append(package)
    return missing


def missing_package_message(missing: Sequence[str], *, needed_by: str, install: str) -> str:
    """``{needed_by} needs a and b, which are not installed here: {install}``."""
    verb = "is" if len(missing) == 1 else "are"
    return f"{needed_by} needs {' and '.join(missing)}, which {verb} not installed here: {install}"


def require(packages: Sequence[str], *, needed_by: str, install: str) -> None:
    """Raise :class:`MissingPackageError` if one of ``packages`` is not installed.

    Args:
        packages: importable names.
        needed_by: what needs them, the subject of the message (e.g. "model.onnx (an ONNX file)", "ONNX export").
        install: what to do, e.g. ``pip install 'ssdlite-runtime[onnx]'``.
    """
    missing = missing_packages(packages)
    if missing:
        raise MissingPackageError(missing_package_message(missing, needed_by=needed_by, install=install))
