"""Moved to :mod:`ssdlite.deploy.export.int8`; these names stay importable from here until tools/benchmark.py
(being moved to ``ssdlite.benchmarks``) imports them from there. Remove afterwards."""

from ssdlite.deploy.export.int8 import ImageFolderCalibrationReader, quantize_model, quantize_network_onnx

__all__ = ["ImageFolderCalibrationReader", "quantize_model", "quantize_network_onnx"]
