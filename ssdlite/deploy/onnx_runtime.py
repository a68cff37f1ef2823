"""Moved to :mod:`ssdlite.deploy.backends.onnx_runtime`; these names stay importable from here until
tools/benchmark.py (being moved to ``ssdlite.benchmarks``) imports them from there. Remove afterwards."""

from ssdlite.deploy.backends.onnx_runtime import OnnxRuntimeBackend, load_onnx_session, session_options

__all__ = ["OnnxRuntimeBackend", "load_onnx_session", "session_options"]
