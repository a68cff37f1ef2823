"""The MobileNetV1 paper's Tables 6 and 7 for MobileNetV1 and MobileNetV2 alike.

Parameters and multiply-adds (:mod:`ssdlite.models.complexity`) and batch-1 latency, eager (BatchNorm folded,
channels-last) and ONNX Runtime, of the classifiers (1000 classes, random weights) at widths 1.0 / 0.75 / 0.5 / 0.25
(224 px) and inputs 224 / 192 / 160 / 128 (width 1.0).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .options import BenchmarkOptions
from .timing import interleaved_latencies_ms, use_threads

CLASSIFIER_WIDTHS = (1.0, 0.75, 0.5, 0.25)
CLASSIFIER_SIZES = (224, 192, 160, 128)
IMAGES_PER_SIZE = 4


def classifier_variants(smoke: bool) -> list[tuple[str, float, int]]:
    """(name, width, size) of the classifier measurements: the MobileNetV1 paper's Table 6 (widths at 224) and
    Table 7 (sizes at width 1.0), for MobileNetV1 and MobileNetV2 alike (smoke: width 0.25 at 64 px only)."""
    if smoke:
        return [(name, 0.25, 64) for name in ("mobilenet_v1", "mobilenet_v2")]
    variants = []
    for name in ("mobilenet_v1", "mobilenet_v2"):
        variants += [(name, width, CLASSIFIER_SIZES[0]) for width in CLASSIFIER_WIDTHS]
        variants += [(name, CLASSIFIER_WIDTHS[0], size) for size in CLASSIFIER_SIZES[1:]]
    return variants


def classifier_key(name: str, width: float, size: int) -> str:
    """``mobilenet_v1_w1.0_224``: the key of one variant in the report."""
    return f"{name}_w{width}_{size}"


def measure_classifiers(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Params, MACs and batch-1 latency (eager with BatchNorm folded and channels-last; ONNX Runtime) of the
    MobileNetV1 and MobileNetV2 classifiers (1000 classes, random weights) across width and input size."""
    from ssdlite.models import build_classifier
    from ssdlite.models.complexity import profile

    use_threads(options.threads)
    calls: dict[str, Callable[[int], Any]] = {}
    facts: dict[str, dict[str, Any]] = {}
    inputs: dict[int, list[torch.Tensor]] = {}
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        for name, width, size in classifier_variants(options.smoke):
            key = classifier_key(name, width, size)
            torch.manual_seed(0)
            model = build_classifier(name, width_mult=width).eval()
            complexity = profile(model, size)
            facts[key] = {"model": name, "width_mult": width, "image_size": size,
                          "params": complexity.params, "macs": complexity.macs}
            if size not in inputs:
                generator = torch.Generator().manual_seed(size)
                inputs[size] = [torch.rand(1, 3, size, size, generator=generator) * 2 - 1
                                for _ in range(IMAGES_PER_SIZE)]
            calls.update(_classifier_calls(model, key, inputs[size], Path(scratch), threads=options.threads))
        with torch.inference_mode():
            latency = interleaved_latencies_ms(
                calls, list(range(IMAGES_PER_SIZE)), rounds=1 if options.smoke else 10
            )
    return {
        "latency_ms": {f"classifier_{key}": value for key, value in latency.items()},
        "info": {"classifiers": {"threads": options.threads, "batch": 1, "variants": facts}},
    }


def _classifier_calls(
    model: torch.nn.Module, key: str, images: list[torch.Tensor], scratch: Path, *, threads: int
) -> dict[str, Callable[[int], Any]]:
    """``{key}_eager`` (BatchNorm folded, channels-last) and ``{key}_ort`` (ONNX Runtime) on image ``index``."""
    import onnxruntime as ort

    from ssdlite.deploy.export.onnx import trace_onnx
    from ssdlite.models.fold_bn import fold_batchnorm
    from ssdlite_runtime.backends.onnx_runtime import session_options

    path = trace_onnx(fold_batchnorm(model).eval(), images[0], scratch / f"{key}.onnx")
    session = ort.InferenceSession(str(path), session_options(threads=threads), providers=["CPUExecutionProvider"])
    eager = fold_batchnorm(model).eval().to(memory_format=torch.channels_last)
    eager_inputs = [image.contiguous(memory_format=torch.channels_last) for image in images]
    numpy_inputs = [image.numpy() for image in images]
    return {
        f"{key}_eager": lambda index: eager(eager_inputs[index]),
        f"{key}_ort": lambda index: session.run(None, {"images": numpy_inputs[index]}),
    }
