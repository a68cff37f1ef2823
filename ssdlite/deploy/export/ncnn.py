"""The "ncnn" exporter: the BatchNorm-folded network as an ncnn model (``FILE.ncnn.param`` + ``FILE.ncnn.bin``), with
its metadata in ``FILE.ncnn.json`` beside them (ncnn files have no metadata slot).

Conversion: the network is traced to TorchScript and converted by pnnx, ncnn's own PyTorch converter (the binary
bundled in the ``pnnx`` wheel, run on the traced file in a scratch folder; ``fp16=0`` keeps the weights float32 --
pnnx's default stores them as fp16). pnnx names the blobs by position (``in0``, ``out0``, ``out1``); they are renamed
in the ``.param`` text to ``images``, ``cls_logits`` and ``box_deltas``, the names of
:mod:`ssdlite_runtime.metadata`, so the file says what it holds. Every layer of the network converts
(Convolution, ConvolutionDepthWise, Split, BinaryOp, Reshape, Permute, Concat).

The file holds the raw network, batch 1 (ncnn has no batch axis): input ``images`` [3, S, S], outputs
``cls_logits`` [A, K + 1] and ``box_deltas`` [A, 4]. Decoding and NMS run in numpy in the runtime
(``ssdlite_runtime.backends.ncnn`` returns ``RawOutputs``; see its docstring for why not ncnn's DetectionOutput
layer). The sidecar JSON holds ``ModelInfo.to_metadata()`` (class names, category ids, input size and scaling,
default boxes, ...), which the backend reads; without it the model cannot be run.

Run one without torch: ``Predictor("model.ncnn.param")`` or ``ssdlite-detect image IMG --model model.ncnn.param``
(``pip install 'ssdlite-runtime[ncnn]'``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ssdlite.deploy.export.base import ExportOptions, inference_network, register_exporter
from ssdlite.deploy.metadata import model_metadata
from ssdlite_runtime.errors import one_line
from ssdlite_runtime.metadata import INPUT_NAME, RAW_OUTPUT_NAMES

__all__ = ["NCNN_SUFFIX", "export_ncnn", "ncnn_files"]

NCNN_SUFFIX = ".ncnn.param"
"""The ending of the file a user passes around (``Predictor("model.ncnn.param")``); the weights are
``.ncnn.bin`` and the metadata ``.ncnn.json`` beside it (the names ``ssdlite_runtime.backends.ncnn`` reads)."""

PNNX_BLOBS = {"in0": INPUT_NAME, "out0": RAW_OUTPUT_NAMES[0], "out1": RAW_OUTPUT_NAMES[1]}
"""pnnx's positional blob names and the names the exported ``.param`` gives them."""


def ncnn_files(path: str | Path) -> tuple[Path, Path, Path]:
    """The ``.ncnn.param``, ``.ncnn.bin`` and ``.ncnn.json`` files of an export to ``path``.

    Raises:
        ValueError: ``path`` does not end in ``.ncnn.param``.
    """
    path = Path(path)
    if not path.name.lower().endswith(NCNN_SUFFIX) or len(path.name) == len(NCNN_SUFFIX):
        raise ValueError(
            f"an ncnn export is three files, NAME.ncnn.param + NAME.ncnn.bin + NAME.ncnn.json; pass --out ending in "
            f"{NCNN_SUFFIX} (got {path})"
        )
    stem = path.name[: -len(".param")]
    return path, path.with_name(f"{stem}.bin"), path.with_name(f"{stem}.json")


def export_ncnn(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
) -> Path:
    """Export ``model`` as ncnn files: ``path`` (``NAME.ncnn.param``), ``NAME.ncnn.bin`` and ``NAME.ncnn.json``.

    Args:
        model: an SSDLite (left unchanged; the file has BatchNorm folded into the convolutions).
        path: the ``.ncnn.param`` file to write (parent folders are created).
        class_names, category_ids: stored in the metadata.

    Returns:
        The ``.ncnn.param`` path.

    Raises:
        ValueError: ``path`` does not end in ``.ncnn.param``; pnnx could not convert the network (its last log line).
    """
    import pnnx

    param, weights, sidecar = ncnn_files(path)
    metadata = model_metadata(model, class_names=class_names, category_ids=category_ids)
    size = int(model.image_size)
    with tempfile.TemporaryDirectory(prefix="ssdlite_ncnn_") as scratch_dir:
        scratch = Path(scratch_dir)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings of the input-shape check; torch.jit's deprecation notice
            traced = torch.jit.trace(inference_network(model), torch.zeros(1, 3, size, size), check_trace=False)
            traced.save(str(scratch / "network.pt"))
        # The bundled pnnx binary, as pnnx.export runs it, but with its exit status checked and its log captured
        # (pnnx.export ignores the one and prints the other).
        result = subprocess.run(
            [pnnx.EXEC_PATH, "network.pt", f"inputshape=[1,3,{size},{size}]f32", "device=cpu", "fp16=0"],
            cwd=scratch,
            capture_output=True,
            text=True,
        )
        converted_param, converted_bin = scratch / "network.ncnn.param", scratch / "network.ncnn.bin"
        if result.returncode != 0 or not converted_param.is_file() or not converted_bin.is_file():
            log = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
            reason = one_line(log[-1])[:300] if log else f"exit status {result.returncode}"
            raise ValueError(f"pnnx could not convert the network to ncnn for {param} ({reason})")
        text = rename_blobs(converted_param.read_text(), PNNX_BLOBS, source=str(param))
        param.parent.mkdir(parents=True, exist_ok=True)
        param.write_text(text)
        shutil.copyfile(converted_bin, weights)
    sidecar.write_text(json.dumps(metadata, indent=1) + "\n")
    return param


def rename_blobs(param_text: str, names: dict[str, str], *, source: str) -> str:
    """An ncnn ``.param`` text with the blobs (and the Input layers) of ``names`` renamed.

    The format: line 1 the magic number 7767517, line 2 ``layer_count blob_count``, then one layer per line:
    ``type name input_count output_count inputs... outputs... key=value...``.

    Raises:
        ValueError: a blob of ``names`` is not in the text (pnnx changed its naming; ``source`` names the file).
    """
    lines = param_text.strip().splitlines()
    found: set[str] = set()
    for index, line in enumerate(lines[2:], start=2):
        fields = line.split()
        if len(fields) < 4:
            continue
        kind, layer, inputs, outputs = fields[0], fields[1], int(fields[2]), int(fields[3])
        blobs = fields[4 : 4 + inputs + outputs]
        found.update(blob for blob in blobs if blob in names)
        renamed = [names.get(blob, blob) for blob in blobs]
        if kind == "Input":
            layer = names.get(layer, layer)
        lines[index] = " ".join([kind, layer, str(inputs), str(outputs), *renamed, *fields[4 + inputs + outputs :]])
    missing = sorted(set(names) - found)
    if missing:
        raise ValueError(
            f"pnnx's ncnn model for {source} has no blob {', '.join(missing)} (expected {', '.join(names)}); "
            "this pnnx version names its blobs differently"
        )
    return "\n".join(lines) + "\n"


@register_exporter(
    "ncnn",
    title="NCNN",
    suffix=NCNN_SUFFIX,
    packages=("pnnx",),
    extra="ncnn",
    companions=(".ncnn.bin", ".ncnn.json"),
    note="NCNN files hold the raw network for batch 1; ssdlite-runtime decodes and runs NMS in numpy",
)
def _export(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_ncnn(model, path, class_names=options.class_names, category_ids=options.category_ids)
