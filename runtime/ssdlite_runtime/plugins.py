"""What the backend registry (here) and the full package's exporter registry share: checking the optional packages
each backend or format declares, with a one-line error that says what to install, and importing a package's
modules on first use.

A backend or an exporter imports its optional package (onnxruntime, openvino, ...) inside its functions, never at
the top of its module; its registry checks the package with :func:`require` first, so that a missing one is a
one-line error, e.g. ``model.onnx (an ONNX file) needs onnxruntime, which is not installed here: pip install
'ssdlite-runtime[onnx]'``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Sequence

from ssdlite_runtime.errors import SSDLiteError

__all__ = ["MissingPackageError", "ModuleDiscovery", "missing_packages", "require"]


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


class ModuleDiscovery:
    """Imports every module of a package once, on the first call (each registers itself as it is imported).

    Args:
        package: the dotted package name.
        skip: module names not to import (the registry's own module); names starting with "_" are skipped too.
    """

    def __init__(self, package: str, *, skip: Sequence[str] = ("base",)) -> None:
        self.package = package
        self.skip = tuple(skip)
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True  # before importing: a module that asks the registry while it is imported gets no recursion
        for module in pkgutil.iter_modules(importlib.import_module(self.package).__path__):
            if module.name not in self.skip and not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
