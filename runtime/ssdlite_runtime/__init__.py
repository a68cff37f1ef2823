"""Running an exported SSDLite file without PyTorch: the ``ssdlite-runtime`` distribution (runtime/ in the ssdlite
repository; numpy and OpenCV, plus one runtime per extra).

Example::

    from ssdlite_runtime import Predictor

    predictor = Predictor("model.onnx")                  # the backend comes from the file's name
    [detections] = predictor.predict(image_rgb)          # uint8 RGB (H, W, 3)
    names = [predictor.class_names[label - 1] for label in detections["labels"]]

Modules:
    predictor     ``Predictor``: input checks, preprocessing, the backend, decoding + NMS where the file has none,
                  boxes in image pixels, class names, COCO-style records
    backends/     one module per runtime: ONNX Runtime (float and INT8 ``.onnx``), OpenVINO (``.xml``), LiteRT
                  (``.tflite``) and NCNN (``.ncnn.param``), each imported only when its kind of file is opened;
                  ``backends.base``: the ``Backend`` protocol, ``RawOutputs``, the registry
    metadata      ``ModelInfo`` and the metadata keys every exported file carries (the exporters of the full
                  package write them, the backends read them)
    preprocess    resize to S x S and the file's input scaling (numpy, cv2)
    postprocess   ``PostprocessSettings``; decoding, class-wise NMS and the best detections per image, in numpy
    slicing       sliced inference for small objects: the tiles of an image and the merge of their detections
    records       COCO-style result records (``--json``)
    image_io      reading images (EXIF orientation, truncated files) and listing a folder's
    visualize     drawing boxes, labels and the FPS read-out
    tracking      ByteTrack (supervision) over the Predictor's detections: persistent ids, trails
    counting      tracks crossing lines and inside zones, per class (supervision's LineZone, PolygonZone)
    stream/       live detection: frame sources, the OpenCV window, the MJPEG web view, the loop
    signals       holding off stop signals while a frame's outputs or a checkpoint are written
    jobs          what ``ssdlite-detect`` does for images, a folder, a video, a camera
    detect        the ``ssdlite-detect`` command (argument parsing and ``main``)
    serve/        ``ssdlite-serve``: the HTTP inference server (FastAPI, dynamic batching, Prometheus metrics)
    errors, logs  the one-line errors and the console logging of every command (the full package's too)
    plugins       checking the optional packages of a backend, an export format or a feature

This package never imports torch, torchvision, lightning or ``ssdlite`` (tests/deploy/test_import_graph.py; the
tests under tests/runtime run ``ssdlite-detect`` where importing torch fails). A training checkpoint (``.ckpt``) runs
through the "eager" backend, which the full ``ssdlite`` package adds through the ``ssdlite_runtime.backends``
entry-point group. Core ML files run on Apple platforms only, through Apple's own frameworks, so no backend here
reads them.

Adding a backend (TensorRT, ...) is one module in ``backends/`` and one entry in the registry; then add its extra to
runtime/pyproject.toml. The Predictor, ``ssdlite-detect --model`` and the webcam loop take the new files from
there. :mod:`ssdlite_runtime.backends` spells out an example and the rules.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ModelInfo", "PostprocessSettings", "Predictor", "available_backends", "register_backend"]

_EXPORTS = {
    "Predictor": "ssdlite_runtime.predictor",
    "ModelInfo": "ssdlite_runtime.metadata",
    "PostprocessSettings": "ssdlite_runtime.postprocess",
    "available_backends": "ssdlite_runtime.backends.base",
    "register_backend": "ssdlite_runtime.backends.base",
}
"""Imported on first use (PEP 562): importing a submodule, e.g. ``ssdlite_runtime.errors`` for a command, loads
nothing else, and ``ssdlite-detect`` quiets OpenCV's logging before cv2 loads."""


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ssdlite_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
