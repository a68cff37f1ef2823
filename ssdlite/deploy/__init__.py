"""How a trained model leaves training: the exporters, the eager backend, checkpoints for inference, evaluation.

Running an exported file is :mod:`ssdlite_runtime` (runtime/ in this repository, no torch): the Predictor, the
backend registry and its backends, pre- and postprocessing, drawing, and the detect command's jobs. This package
adds what needs torch.

Modules:
    export/       one module per format (ONNX, TorchScript) + INT8, each registering itself in ``export.base``
    backends/     "eager": PyTorch on a checkpoint or an SSDLite, which ``ssdlite_runtime``'s registry loads by path
    metadata      what a model puts in its exported files: its ``ssdlite_runtime.metadata.ModelInfo``
    predictor     the runtime's ``Predictor``, which here also exports a model on the fly for "ort" / "int8"
    model_files   reading a checkpoint for inference; ``export_checkpoint`` (``ssdlite-export``)
    evaluate      COCO evaluation of a Predictor (an exported or INT8 model)

Dependencies point one way: predictor -> export -> metadata -> ``ssdlite.core``; the eager backend imports no
exporter, no exporter imports a backend, and ``ssdlite_runtime`` imports nothing from here
(tests/deploy/test_import_graph.py).
"""
