"""The Predictor's backends, one module per runtime, listed in the registry's table in :mod:`.base`.

Modules:
    base           the backend protocol (``Backend``), the shared types (``RawOutputs``, ``Detections``) and the
                   registry (``BUILTIN_BACKENDS``, ``load_backend``, ``backend_for_path``, ``register_backend``)
    onnx_runtime   "ort" and "int8": ONNX Runtime, a float or an INT8 ``.onnx`` file
    openvino       "openvino": OpenVINO, a float or an INT8 IR (``.xml`` + ``.bin``), NMS inside or raw
    ncnn           "ncnn": an ``.ncnn.param`` + ``.bin`` + ``.json`` export (Core ML files: Apple only, refused)
    tflite         "tflite": LiteRT (ai-edge-litert), a float or an INT8 ``.tflite`` file with NMS inside

Another installed distribution adds backends through the entry-point group ``ssdlite_runtime.backends``: the full
``ssdlite`` package adds "eager" (PyTorch, which this package never imports) that way.

Adding a runtime is one new module here and one row of ``BUILTIN_BACKENDS`` in :mod:`.base`, e.g.::

    # ssdlite_runtime/backends/openvino.py
    \"\"\"The "openvino" backend: an OpenVINO IR (.xml + .bin) written by ssdlite-export --format openvino.\"\"\"

    from ssdlite_runtime.backends.base import Backend, Detections, RawOutputs
    from ssdlite_runtime.metadata import ModelInfo


    class OpenVinoBackend(Backend):
        def __init__(self, path, *, threads=None):
            import openvino as ov  # the runtime's package: imported inside, never at the top

            model = ov.Core().read_model(path)
            super().__init__(ModelInfo.from_metadata(metadata_of(model), source=str(path)))
            ...

        def run(self, batch):  # float32 [B, 3, S, S], scaled as self.info says
            ...  # RawOutputs(cls_logits, box_deltas), or one Detections dict per image, boxes in [0, 1]


    def load_openvino(path, *, device="cpu", threads=None):
        return OpenVinoBackend(path, threads=threads)

    # ssdlite_runtime/backends/base.py, in BUILTIN_BACKENDS
    BackendSpec("openvino", "ssdlite_runtime.backends.openvino", "load_openvino", suffixes=(".xml",),
                packages=("openvino",), extra="openvino", file_kind="an OpenVINO IR file"),

The rules, which tests/deploy/test_import_graph.py and tests/runtime check:

* The table is read before any backend module is imported, so ``Predictor("m.xml")``, ``ssdlite-detect --model
  m.xml`` (and ``--backend openvino``) and the webcam loop find the backend, and only a file of its kind imports it.
* Top-level imports: the standard library, numpy, cv2 and ``ssdlite_runtime`` only; the runtime's package inside
  the loader or the class. A backend imports no other backend, and never torch or ``ssdlite``.
* ``packages`` are checked before the module is imported; ``extra`` is the ``ssdlite-runtime`` extra in
  runtime/pyproject.toml that installs them (``pip install 'ssdlite-runtime[openvino]'`` is then what a user
  without the package is told).
* The file's metadata is ``ModelInfo.to_metadata()``'s dict, written by the format's exporter in the full package;
  where the format has no metadata slot, a JSON file beside it.
* ``run`` returns boxes normalised to [0, 1] in xyxy order and labels 1..K (convert a format's own layout, e.g.
  yxyx or 0-based classes, here); clip what the runtime does not clip. The Predictor does the rest.
"""
