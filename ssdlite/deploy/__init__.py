"""How a trained model runs outside training: the Predictor, its backends, the exporters, detect.py's jobs.

Modules:
    predictor     ``Predictor``: one API over every backend (checks, preprocessing, postprocessing, class names)
    backends/     one module per runtime (eager, ONNX Runtime + INT8), each registering itself in ``backends.base``
    export/       one module per format (ONNX, TorchScript) + INT8, each registering itself in ``export.base``
    metadata      what every exported file carries: input/output names, labels, metadata (exporters <-> backends)
    preprocess    resize + input scaling, shared by the Predictor and the INT8 calibration
    model_files   finding the newest checkpoint; reading a checkpoint for inference
    plugins       what both registries share: importing their modules on first use, checking optional packages
    evaluate      COCO evaluation of a Predictor (an exported or INT8 model)
    jobs, stream, visualize   detect.py: images, folders, videos, cameras, drawing

Dependencies point one way: predictor -> backends -> export (only to export a model on the fly) -> metadata,
preprocess -> ``ssdlite.core``; no backend imports another, no exporter imports a backend
(tests/deploy/test_import_graph.py).
"""
