"""The command-line programs, one module per command, each with its argument parsing and ``main``.

Declared in pyproject's ``[project.scripts]`` (``ssdlite-detect``, which runs exported files without torch, in the
runtime's: runtime/pyproject.toml); from a checkout, the scripts ``tools/*.py``, ``detect.py`` and
``data/download.py`` run the same ``main`` (under their own names, e.g. ``export.py``):

=====================  ======================  =======================================================
command                checkout script         module
=====================  ======================  =======================================================
ssdlite-train          tools/train.py          train: LightningCLI training (ssdlite.engine.cli.train)
ssdlite-eval           tools/eval_coco.py      eval_coco: COCO evaluation of a results file or a model
ssdlite-detect         detect.py               ssdlite_runtime.detect: images, folders, video, cameras
ssdlite-export         tools/export.py         export: ONNX (INT8), TorchScript, ...
ssdlite-check-dataset  tools/check_dataset.py  check_dataset: counts, box sizes, every problem
ssdlite-convert        tools/convert.py        convert: VOC / YOLO -> COCO json
ssdlite-make-shapes    tools/make_shapes.py    make_shapes: the synthetic shapes dataset
ssdlite-summary        tools/summary.py        summary: parameters and multiply-adds, layer by layer
ssdlite-benchmark      tools/benchmark.py      benchmark: the measurements of ssdlite.benchmarks
ssdlite-demo           tools/demo.py           demo: what make demo runs
ssdlite-download       data/download.py        download: COCO 2017 / VOC 2007+2012, verified
=====================  ======================  =======================================================

A command parses its arguments and calls one library function; what it prints itself is its result (a table, a
JSON document, the files it wrote). Everything else the package reports through ``logging``. Every ``main`` runs
under :func:`ssdlite_runtime.errors.command`, which configures that logging (:mod:`ssdlite_runtime.logs`) and turns
errors into one line and an exit status; Lightning's ``MisconfigurationException`` (a trainer option that cannot be
met, e.g. a GPU where there is none) counts as bad input there, through :func:`lightning_misconfiguration`. The
modules of ``ssdlite-train`` and ``ssdlite-demo`` import torch only inside ``main``, after bounding OpenMP's
spin-wait (:mod:`ssdlite.openmp`), which must be set before torch loads.
"""

from __future__ import annotations

import sys

from ssdlite_runtime.argtypes import positive_int, unit_interval
from ssdlite_runtime.errors import expect_errors

__all__ = ["lightning_misconfiguration", "positive_int", "unit_interval"]

LIGHTNING_EXCEPTIONS = "lightning.fabric.utilities.exceptions"


@expect_errors
def lightning_misconfiguration(error: BaseException) -> bool:
    """Whether ``error`` is Lightning's ``MisconfigurationException``: bad input, exit status 2. Matched without
    importing Lightning (slow), which only the commands that train load: the exception exists only where it is."""
    exceptions = sys.modules.get(LIGHTNING_EXCEPTIONS)
    return exceptions is not None and isinstance(error, exceptions.MisconfigurationException)
