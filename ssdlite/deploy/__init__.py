"""How a trained model leaves training: the exporters, the eager backend, checkpoints for inference, evaluation.

Running an exported file is :mod:`ssdlite_runtime` (runtime/ in this repository, no torch): the Predictor, the
backend registry and its backends, pre- and postprocessing, drawing, and the detect command's jobs. This package
adds what needs torch.

Modules:
    export/        one module per format, each registering its exporters in ``export.base``: ONNX (decoding and NMS
                   in the graph), INT8 ONNX, TorchScript, OpenVINO (float or INT8), TFLite / LiteRT (float or INT8),
                   NCNN and Core ML
    backends/      "eager": PyTorch on a checkpoint or an SSDLite, which this package's pyproject.toml declares in the
                   ``ssdlite_runtime.backends`` entry points
    default_model  the checkpoint ``ssdlite-detect`` runs without ``--model`` (the ``ssdlite_runtime.default_model``
                   entry point)
    metadata       what a model puts in its exported files: its ``ssdlite_runtime.metadata.ModelInfo``
    model_files    reading a checkpoint for inference; ``export_checkpoint`` (``ssdlite-export``)
    evaluate       the detections of a Predictor on a COCO dataset (an exported or INT8 model)

Dependencies point one way: export -> metadata -> ``ssdlite.core``; the eager backend imports no exporter, no
exporter imports a backend, and ``ssdlite_runtime`` imports nothing from here (tests/deploy/test_import_graph.py).
"""
