"""The packaged training recipes (``ssdlite/configs/*.yaml``) and ``--config`` values that name them.

The recipes ship inside the package, so an installed ``ssdlite-train`` finds them from any folder::

    ssdlite-train --config shapes          # or shapes.yaml: the packaged recipe
    ssdlite-train --config my/recipe.yaml  # a file: always the file when it exists

In a checkout, ``configs/`` is a link to ``ssdlite/configs/``, so ``--config configs/shapes.yaml`` is the same
file; outside one, a missing ``configs/NAME.yaml`` (the README's spelling) is the packaged recipe NAME as well.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

RECIPE_SUFFIXES = (".yaml", ".yml")
CONFIG_OPTIONS = ("--config", "-c")
"""The options of ``ssdlite-train`` (LightningCLI) that take a config file."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def recipes_dir() -> Path:
    """The folder of the packaged recipes (``ssdlite/configs`` of the installed package)."""
    return Path(str(files("ssdlite") / "configs"))


def recipe_names() -> list[str]:
    """The names of the packaged recipes (``shapes``, ``raccoon``, ...), sorted."""
    return sorted(path.stem for path in recipes_dir().glob("*.yaml"))


def resolve_config(value: str) -> str:
    """What ``--config VALUE`` reads: ``value`` itself when it is an existing file (or not a recipe's name, e.g.
    inline YAML, left to the parser); the packaged recipe's path for a name (``shapes``, ``shapes.yaml``) or for a
    ``configs/NAME.yaml`` that does not exist here.

    Raises:
        FileNotFoundError: ``value`` is a bare name (no folder) that is neither a file here nor a packaged recipe;
            the message lists the packaged recipes.
    """
    path = Path(value)
    if path.is_file():
        return value
    bare = _NAME.fullmatch(value) is not None
    in_configs = len(path.parts) == 2 and path.parts[0] == "configs" and _NAME.fullmatch(path.name) is not None
    if not (bare or in_configs):
        return value
    stem = path.stem if path.suffix in RECIPE_SUFFIXES else path.name
    recipe = recipes_dir() / f"{stem}.yaml"
    if recipe.is_file():
        return str(recipe)
    names = ", ".join(recipe_names()) or "none"
    raise FileNotFoundError(
        f"--config {value}: no such file here, and not a packaged recipe (packaged: {names}); give the path of a "
        "YAML config or one of those names"
    )


def resolve_config_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every ``--config X`` / ``--config=X`` / ``-c X`` resolved by :func:`resolve_config`;
    everything else unchanged."""
    resolved: list[str] = []
    take_value = False
    for argument in argv:
        if take_value:
            resolved.append(resolve_config(argument))
            take_value = False
            continue
        option, equals, value = argument.partition("=")
        if option in CONFIG_OPTIONS and equals:
            resolved.append(f"{option}={resolve_config(value)}")
        else:
            resolved.append(argument)
            take_value = argument in CONFIG_OPTIONS
    return resolved


__all__ = ["recipe_names", "recipes_dir", "resolve_config", "resolve_config_arguments"]
