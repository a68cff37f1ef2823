"""The one Predictor backend that needs torch, and so lives in the full package rather than in ``ssdlite_runtime``.

Modules:
    eager   "eager": PyTorch, a training checkpoint or an in-memory SSDLite

:data:`EAGER` is what ``ssdlite_runtime``'s registry knows of it before importing it (and torch): this package
declares it in the root pyproject.toml's ``ssdlite_runtime.backends`` entry points, so this module stays cheap to
import and the eager module loads only when a checkpoint or a model is run.
"""

from ssdlite_runtime.backends.base import BackendSpec

__all__ = ["EAGER"]

EAGER = BackendSpec(
    "eager",
    "ssdlite.deploy.backends.eager",
    "load_eager",
    suffixes=(".ckpt", ".pt", ".pth"),
    packages=("torch",),
    file_kind="a training checkpoint",
    install=(
        "checkpoints run with the full ssdlite package (in the ssdlite clone: pip install -e ./runtime -e .); "
        "or export this one to ONNX where it is installed "
        "(ssdlite-export --checkpoint FILE --format onnx --with-nms --out model.onnx) and run the .onnx file"
    ),
    fallback=True,  # checkpoints have many names, and an in-memory SSDLite runs here too
)
"""PyTorch on a training checkpoint or an in-memory SSDLite; also the backend of a file no other backend claims."""
