"""The one Predictor backend that needs torch, and so lives in the full package rather than in ``ssdlite_runtime``.

Modules:
    eager   "eager": PyTorch, a training checkpoint or an in-memory SSDLite

The other backends (ONNX Runtime, ...), the protocol and the registry are in :mod:`ssdlite_runtime.backends`; its
registry knows ``eager`` by module path (``ssdlite_runtime.backends.base.EAGER``), so this module is imported only
when a checkpoint or a model is run.
"""
