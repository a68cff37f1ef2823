"""The model registry: one name per model variant, the name of the function that describes it (as timm's).

A preset registers itself with :func:`register_model`; the function's name is the model's name, so it is written
once::

    @register_model
    def ssdlite_mobilenet_v2() -> SSDLiteConfig:
        return SSDLiteConfig(backbone="mobilenet_v2", default_boxes="paper")

    list_models("ssdlite*")        # names matching a shell-style pattern, sorted
    model_entrypoint("ssdlite_mobilenet_v2")()   # the preset's default config
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TypeVar

Entrypoint = TypeVar("Entrypoint", bound=Callable)

_model_entrypoints: dict[str, Callable] = {}


def register_model(entrypoint: Entrypoint) -> Entrypoint:
    """Decorator: registers ``entrypoint`` under its function name and returns it unchanged.

    Raises:
        ValueError: the name is already registered.
    """
    name = entrypoint.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model name {name!r} is already registered; give the function another name")
    _model_entrypoints[name] = entrypoint
    return entrypoint


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (``fnmatch``: ``*``, ``?``, ``[seq]``), sorted.

    Example:
        >>> list_models("ssdlite*mobilenet_v2")
        ['ssdlite320_mobilenet_v2', 'ssdlite_mobilenet_v2']
    """
    return sorted(name for name in _model_entrypoints if fnmatch.fnmatchcase(name, pattern))


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _model_entrypoints


def model_entrypoint(name: str) -> Callable:
    """The function registered under ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered ones.
    """
    if name not in _model_entrypoints:
        raise ValueError(f"unknown model name {name!r}; available: {', '.join(list_models())}")
    return _model_entrypoints[name]
