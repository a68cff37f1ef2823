"""What the backend and the exporter registries share: importing their modules on first use, and checking the
optional packages each one declares, with a one-line error naming the pip extra that installs a missing one.

A backend (``ssdlite.deploy.backends``) or an exporter (``ssdlite.deploy.export``) is a module of its package that
registers itself when imported. The registry imports every module of its package the first time it is asked
(:class:`ModuleDiscovery`), so nothing imports them up front; such a module therefore imports its optional package
inside its functions, and the registry checks the package (:func:`require`) before calling them:
``backend 'ort' needs onnxruntime, which is not installed here: pip install -e '.[export]'``.
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
    return [package for package in packages if importlib.util.find_spec(package) is None]


def require(packages: Sequence[str], *, needed_by: str, extra: str | None) -> None:
    """Raise :class:`MissingPackageError` if one of ``packages`` is not installed.

    Args:
        packages: importable names.
        needed_by: what needs them, the subject of the message (e.g. "backend 'ort'", "ONNX export").
        extra: the pip extra of this project that installs them (None: the base install does).
    """
    missing = missing_packages(packages)
    if missing:
        install = f"pip install -e '.[{extra}]'" if extra else "pip install -e ."
        raise MissingPackageError(
            f"{needed_by} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed "
            f"here: {install}"
        )


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
