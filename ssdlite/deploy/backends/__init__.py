"""The Predictor's backends, one module per runtime, each registering itself in :mod:`.base`.

Modules:
    base           the backend protocol, the shared types (``RawOutputs``, ``ModelInfo``, ``Detections``) and the
                   registry (``register_backend``, ``load_backend``, ``backend_for_path``)
    eager          "eager": PyTorch, a training checkpoint or an in-memory SSDLite
    onnx_runtime   "ort" and "int8": ONNX Runtime, a float or INT8 ``.onnx`` file (or a model exported on the fly)

A new runtime is a new module here with a ``@register_backend(...)`` loader; see :mod:`.base` for the rules.
"""
