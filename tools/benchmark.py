"""Benchmarks: named measurements collected into one JSON report.

Usage:
    python tools/benchmark.py                                  # every measurement
    python tools/benchmark.py --only data_pipeline --json runs/benchmark.json
    python tools/benchmark.py --smoke                          # tiny inputs, seconds: checks every measurement runs

Report (printed, and written with --json)::

    {"latency_ms": {...}, "throughput": {...}, "ratios": {...}, "info": {measurement: {...}, "versions": {...}}}

A measurement is a function ``measure_<name>(options: BenchmarkOptions) -> dict`` returning a partial report (any
of the sections above, keys prefixed with its name); add it to ``MEASUREMENTS`` and ``main`` merges it.

Measurements (the ratios are time ratios ours / reference, lower is better, except the throughput ratios
``train_vs_tv_ssd`` and ``data_pipeline_ssdlite_vs_torchvision_v2``, higher is better):
    latency: end-to-end latency at batch 1 (uint8 RGB image in, final detections in original pixels out; median
        over many calls after warm-up; torch 2 threads, ONNX Runtime 2 intra-op threads) of our Predictor with the
        eager, ONNX Runtime and INT8 backends, of torchvision's ssdlite320_mobilenet_v3_large (random weights,
        nothing downloaded) and of torchvision's SSD class running our network (ssdlite.torchvision_reference),
        all with torchvision's evaluation postprocessing (score 0.001, 300 per class, NMS 0.55, 300 per image);
        plus the raw network alone in ONNX Runtime (``ort_raw_net``). Calls alternate between the detectors in
        rounds, so load from other processes hits all alike.
    train_step: training images / s (batch 32 at --size, forward + loss + backward + SGD step) of our model with
        MultiBoxLoss vs torchvision's SSD on the same network computing its own loss.
    postprocess: our postprocess_detections vs torchvision's SSD.postprocess_detections + transform.postprocess on
        the same head outputs.
    evaluator: COCO evaluation time of faster-coco-eval vs pycocotools on the same ground truth and detections.
    int8_accuracy: with --checkpoint and --val: COCO AP of the eager, ONNX Runtime and INT8 Predictors on the
        validation set (INT8 calibrated on --calib); otherwise reported as not measured.
    data_pipeline: images per second per worker (one thread) of our train pipeline at --size with the "ssdlite"
        augmentation, next to torchvision.transforms.v2 with the same recipe, the SSDLite preset of torchvision's
        detection references (RandomIoUCrop + RandomHorizontalFlip) plus the Resize / ToDtype / Normalize that
        produce the same network input, on the same decoded images (the raccoon photos under
        ../shared/data/raccoon, else generated shapes); the ratio ours / torchvision; our full "ssd" augmentation
        and the decode rate of ``read_image`` for reference. Rounds alternate between the pipelines and the median
        round is reported, so load from other processes hits all alike.
    classifiers: parameters and multiply-adds (ssdlite.complexity) and batch-1 latency, eager (BatchNorm folded,
        channels-last) and ONNX Runtime, of the MobileNetV1 and MobileNetV2 classifiers (1000 classes, random
        weights) at widths 1.0 / 0.75 / 0.5 / 0.25 (224 px) and inputs 224 / 192 / 160 / 128 (width 1.0): the
        MobileNetV1 paper's Tables 6 and 7 for both networks.

With --markdown the report is also printed as the README's comparison tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ssdlite.errors import command  # noqa: E402

PROG = "benchmark.py"
REPO_ROOT = Path(__file__).resolve().parents[1]
RACCOON_ROOT = REPO_ROOT.parent / "shared" / "data" / "raccoon"
REPORT_SECTIONS = ("latency_ms", "throughput", "ratios", "accuracy", "info")
INFERENCE_THREADS = 2
"""torch intra-op threads and ONNX Runtime intra-op threads of the model measurements (smoke: 1, see --threads)."""


@dataclass(frozen=True)
class BenchmarkOptions:
    """What every measurement may read.

    Attributes:
        smoke: tiny inputs and short timings (checks that a measurement runs, numbers meaningless).
        image_size: network input side S.
        seconds: timed seconds per pipeline (split into rounds).
        raccoon_root: VOC folder of real photos; generated shapes when it does not exist.
        checkpoint: model for latency / accuracy (default: ssdlite_mobilenet_v2, 90 classes, random weights).
        val_images, val_annotations: COCO validation set for int8_accuracy.
        threads: torch and ONNX Runtime intra-op threads for the model measurements.
        calibration_images: INT8 calibration folder (default: generated shapes; for int8_accuracy the ``train``
            folder next to ``val_images`` when there is one).
    """

    smoke: bool = False
    image_size: int = 320
    seconds: float = 6.0
    raccoon_root: Path = RACCOON_ROOT
    checkpoint: Path | None = None
    val_images: Path | None = None
    val_annotations: Path | None = None
    calibration_images: Path | None = None
    threads: int = INFERENCE_THREADS


# ---------------------------------------------------------------------------------------------- data_pipeline


def measure_data_pipeline(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Train-pipeline images / s on one thread: ours vs torchvision v2's SSDLite preset (see the module docstring)."""
    from ssdlite.data.image_io import read_image
    from ssdlite.data.transforms import train_transforms

    torch.set_num_threads(1)  # a DataLoader worker runs torch on one thread; OpenCV likewise here
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        samples, source, files = _benchmark_samples(options, scratch=Path(scratch))
        # Like for like: our "ssdlite" preset is the same recipe as torchvision's (IoU crop + flip); our full SSD
        # augmentation (zoom-out + photometric as well) is timed beside them for reference.
        ours = train_transforms(options.image_size, "ssdlite")
        ours.set_random_seed(0)
        ours_full = train_transforms(options.image_size, "ssd")
        ours_full.set_random_seed(0)
        torch.manual_seed(0)
        torchvision_preset = _torchvision_ssdlite_preset(options.image_size)
        pipelines = {
            "ssdlite": ours,
            "torchvision_v2": lambda sample: torchvision_preset(*_torchvision_inputs(sample)),
            "ssd_full": ours_full,
        }
        rates = _alternating_rates(pipelines, samples, seconds=0.2 if options.smoke else options.seconds)
        decode_rate = _rate_of(read_image, files, seconds=0.1 if options.smoke else 1.0)
    sides = [float(np.sqrt(sample["image"].shape[0] * sample["image"].shape[1])) for sample in samples]
    return {
        "throughput": {
            "data_pipeline_ssdlite_images_per_s": rates["ssdlite"],
            "data_pipeline_torchvision_v2_images_per_s": rates["torchvision_v2"],
            "data_pipeline_ssd_full_images_per_s": rates["ssd_full"],
            "data_pipeline_read_image_images_per_s": decode_rate,
        },
        "latency_ms": {
            "data_pipeline_ssdlite_per_image": 1000.0 / rates["ssdlite"],
            "data_pipeline_torchvision_v2_per_image": 1000.0 / rates["torchvision_v2"],
        },
        "ratios": {"data_pipeline_ssdlite_vs_torchvision_v2": rates["ssdlite"] / rates["torchvision_v2"]},
        "info": {
            "data_pipeline": {
                "images": len(samples),
                "source": source,
                "image_size": options.image_size,
                "mean_image_side_px": round(statistics.fmean(sides), 1),
                "threads": 1,
                "ssdlite": "augment 'ssdlite': MinIoURandomCrop + Resize + HorizontalFlip + [-1, 1]",
                "ssd_full": "augment 'ssd': ZoomOut(p=0.5) + MinIoURandomCrop + Resize + HorizontalFlip + photometric "
                "+ [-1, 1]",
                "torchvision_v2": "Image (CHW view) + RandomIoUCrop + RandomHorizontalFlip + Resize + ToDtype + Normalize "
                "+ SanitizeBoundingBoxes (antialias default)",
            }
        },
    }


def _benchmark_samples(options: BenchmarkOptions, *, scratch: Path) -> tuple[list[dict], str, list[Path]]:
    """Decoded reader samples and their files: every raccoon photo (train + val), else shapes written to
    ``scratch`` (smoke: 8 images)."""
    from ssdlite.data.coco import CocoDetection
    from ssdlite.data.synthetic import make_shapes
    from ssdlite.data.voc import VOCDetection

    limit = 8 if options.smoke else None
    if options.raccoon_root.is_dir():
        datasets = [VOCDetection(options.raccoon_root, split) for split in ("train", "val")]
        source = f"raccoon ({options.raccoon_root})"
    else:
        paths = make_shapes(scratch, num_train=8 if options.smoke else 200, num_val=0, size=480, seed=0)
        datasets = [CocoDetection(paths["train_images"], paths["train_annotations"])]
        source = "generated shapes (480 px)"
    samples, files = [], []
    for dataset in datasets:
        for index in range(len(dataset)):
            samples.append(dataset[index])
            files.append(dataset.records[index].path)
    return samples[:limit], source, files[:limit]


def _torchvision_ssdlite_preset(image_size: int) -> Callable:
    """torchvision's detection-reference "ssdlite" train preset (v2), resized and scaled like ours to [-1, 1]."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(p=0.5),
            v2.Resize((image_size, image_size)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
            v2.SanitizeBoundingBoxes(),
        ]
    )


def _torchvision_inputs(sample: dict) -> tuple[Any, dict]:
    """The sample as torchvision's references hand it to the v2 transforms: a CHW uint8 image and a target."""
    from torchvision import tv_tensors

    height, width = sample["image"].shape[:2]
    image = tv_tensors.Image(torch.from_numpy(sample["image"]).permute(2, 0, 1))
    boxes = tv_tensors.BoundingBoxes(
        torch.from_numpy(sample["boxes"]), format="XYXY", canvas_size=(height, width)
    )
    return image, {"boxes": boxes, "labels": torch.from_numpy(sample["labels"])}


def _alternating_rates(
    pipelines: dict[str, Callable[[Any], Any]], items: Sequence[Any], *, seconds: float, rounds: int = 5
) -> dict[str, float]:
    """Items / s of each pipeline: ``rounds`` alternating rounds of about seconds / rounds each; median round."""
    for pipeline in pipelines.values():  # warm-up
        for item in items[:4]:
            pipeline(item)
    per_round = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            per_round[name].append(_rate_of(pipeline, items, seconds=seconds / rounds))
    return {name: statistics.median(values) for name, values in per_round.items()}


def _rate_of(function: Callable[[Any], Any], items: Sequence[Any], *, seconds: float) -> float:
    """Calls ``function`` on the items in turn (at least one full pass) until ``seconds`` passed; items / s."""
    count = 0
    start = time.perf_counter()
    while True:
        for item in items:
            function(item)
        count += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


# ------------------------------------------------------------------------------------ shared model and images


def _benchmark_model(options: BenchmarkOptions) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Our detector: --checkpoint, else ssdlite_mobilenet_v2 with 90 classes and random weights (smoke: width 0.35
    at 128 px)."""
    from ssdlite.deploy.predictor import load_checkpoint_for_inference
    from ssdlite.models import build_model

    if options.checkpoint is not None:
        model, meta = load_checkpoint_for_inference(options.checkpoint)
        return model, {"model": str(options.checkpoint), **_model_facts(model)}
    torch.manual_seed(0)
    overrides = dict(width_mult=0.35, image_size=128) if options.smoke else dict(image_size=options.image_size)
    model = build_model("ssdlite_mobilenet_v2", num_classes=90, **overrides).eval()
    return model, {"model": "ssdlite_mobilenet_v2, random weights", **_model_facts(model)}


def _model_facts(model: torch.nn.Module) -> dict[str, Any]:
    return {
        "image_size": int(model.image_size),
        "num_classes": int(model.num_classes),
        "width_mult": model.config.get("width_mult"),
        "anchors": int(model.anchors.shape[0]),
    }


def _camera_frames(count: int, *, seed: int) -> list[np.ndarray]:
    """uint8 RGB 480 x 640 frames of generated shapes (a 640 px scene, cropped to 4:3)."""
    from ssdlite.data.synthetic import render_shapes_image

    frames = []
    for index in range(count):
        image, _, _ = render_shapes_image(np.random.default_rng([seed, index]), size=640)
        frames.append(np.ascontiguousarray(image[80:560]))
    return frames


def _write_images(images: Sequence[np.ndarray], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def _interleaved_latencies_ms(
    candidates: dict[str, Callable[[Any], Any]], items: Sequence[Any], *, rounds: int, warmup: int = 3
) -> dict[str, float]:
    """Median milliseconds per call of each candidate; rounds alternate between candidates (one pass over the
    items each), so load from other processes hits all alike."""
    for function in candidates.values():
        for item in items[:warmup]:
            function(item)
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, function in candidates.items():
            for item in items:
                start = time.perf_counter()
                function(item)
                timings[name].append(time.perf_counter() - start)
    return {name: 1000.0 * statistics.median(values) for name, values in timings.items()}


def _use_threads(threads: int) -> None:
    """Intra-op threads for torch; OpenCV gets one (the resize is tiny, its own pool would compete)."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)


# ---------------------------------------------------------------------------------------------------- latency


def measure_latency(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """End-to-end batch-1 latency of our three backends and torchvision's detectors (see the module docstring)."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS
    from ssdlite.deploy.export import export_network_onnx, export_onnx
    from ssdlite.deploy.onnx_runtime import load_onnx_session
    from ssdlite.deploy.predictor import Predictor, preprocess_images
    from ssdlite.deploy.quantize import quantize_model
    from ssdlite.models.complexity import profile
    from ssdlite.torchvision_reference import torchvision_ssd

    _use_threads(options.threads)
    model, model_info = _benchmark_model(options)
    frames = _camera_frames(2 if options.smoke else 16, seed=1)
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        scratch = Path(scratch)
        calibration = options.calibration_images or _write_images(
            _camera_frames(4 if options.smoke else 32, seed=2), scratch / "calibration"
        )
        settings = dict(EVALUATION_SETTINGS, batch_size=1)
        # One torch -> ONNX export (batch 1) serves the raw network, the NMS graph and the INT8 quantization.
        network = export_network_onnx(model, scratch / "network.onnx")
        raw_path = export_onnx(model, scratch / "raw.onnx", network_onnx=network)
        nms_path = export_onnx(model, scratch / "nms.onnx", with_nms=True, network_onnx=network)
        int8_path = quantize_model(
            model, scratch / "int8.onnx", calibration_images=calibration, with_nms=True, network_onnx=network
        )
        eager = Predictor(model, **settings)
        ort = Predictor(nms_path, backend="ort", threads=options.threads, **settings)
        ort_raw_outputs = Predictor(raw_path, backend="ort", threads=options.threads, **settings)
        int8 = Predictor(int8_path, backend="int8", threads=options.threads, **settings)
        raw_session, _ = load_onnx_session(raw_path, threads=options.threads)
        raw_inputs = [preprocess_images([frame], model.image_size, channels_last=False) for frame in frames]
        tv_v3 = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
        tv_same = torchvision_ssd(model).eval()

        def torchvision_detector(detector: torch.nn.Module) -> Callable[[np.ndarray], Any]:
            def detect(frame: np.ndarray) -> Any:
                with torch.inference_mode():
                    image = torch.from_numpy(frame).permute(2, 0, 1).float().div_(255.0)
                    return detector([image])

            return detect

        candidates = {
            "ours_eager": eager.predict,
            "ours_ort": ort.predict,
            "ours_int8": int8.predict,
            "ours_ort_raw_outputs": ort_raw_outputs.predict,
            "tv_ssdlite_v3": torchvision_detector(tv_v3),
            "tv_ssd_same_net": torchvision_detector(tv_same),
            "ort_raw_net": lambda index: raw_session.run(None, {"images": raw_inputs[index]}),
        }
        items = list(range(len(frames)))
        calls = {
            name: (function if name == "ort_raw_net" else (lambda index, function=function: function(frames[index])))
            for name, function in candidates.items()
        }
        with torch.inference_mode():
            latency = _interleaved_latencies_ms(calls, items, rounds=2 if options.smoke else 10)
            detections = {
                "ours_eager": len(eager.predict(frames[0])[0]["scores"]),
                "ours_ort": len(ort.predict(frames[0])[0]["scores"]),
                "ours_int8": len(int8.predict(frames[0])[0]["scores"]),
                "tv_ssdlite_v3": len(candidates["tv_ssdlite_v3"](frames[0])[0]["scores"]),
                "tv_ssd_same_net": len(candidates["tv_ssd_same_net"](frames[0])[0]["scores"]),
            }
        complexity = {"ours": profile(model, int(model.image_size)), "tv_ssdlite_v3": profile(tv_v3, 320)}
        backends = {name: predictor.describe() for name, predictor in
                    (("eager", eager), ("ort", ort), ("int8", int8), ("ort_raw_outputs", ort_raw_outputs))}
    reference = latency["tv_ssdlite_v3"]
    return {
        "latency_ms": latency,
        "ratios": {
            "ort_vs_tv_v3": latency["ours_ort"] / reference,
            "eager_vs_tv_v3": latency["ours_eager"] / reference,
            "int8_vs_tv_v3": latency["ours_int8"] / reference,
            "ort_vs_raw_net": latency["ours_ort"] / latency["ort_raw_net"],
            "eager_vs_tv_ssd_same_net": latency["ours_eager"] / latency["tv_ssd_same_net"],
            "ort_raw_outputs_vs_ort": latency["ours_ort_raw_outputs"] / latency["ours_ort"],
        },
        "info": {
            "latency": {
                **model_info,
                "frames": f"{len(frames)} generated shapes frames, 480 x 640 uint8 RGB",
                "threads": f"torch {options.threads}, ONNX Runtime intra-op {options.threads}",
                "postprocess": EVALUATION_SETTINGS,
                "backends": backends,
                "detections_on_frame_0": detections,
                "int8_calibration": str(calibration) if options.calibration_images else "generated shapes frames",
                "complexity": {name: {"params": result.params, "macs": result.macs, "image_size": result.image_size}
                               for name, result in complexity.items()},
            }
        },
    }


# ------------------------------------------------------------------------------------------------ classifiers

CLASSIFIER_WIDTHS = (1.0, 0.75, 0.5, 0.25)
CLASSIFIER_SIZES = (224, 192, 160, 128)


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
    import onnxruntime as ort

    from ssdlite.deploy.export import ONNX_OPSET
    from ssdlite.deploy.onnx_runtime import session_options
    from ssdlite.models import build_classifier
    from ssdlite.models.complexity import profile
    from ssdlite.models.fold_bn import fold_batchnorm

    _use_threads(options.threads)
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
                inputs[size] = [torch.rand(1, 3, size, size, generator=generator) * 2 - 1 for _ in range(4)]
            path = Path(scratch) / f"{key}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter chatter (deprecations inside torch/onnxscript)
                torch.onnx.export(model, (inputs[size][0],), dynamo=True, opset_version=ONNX_OPSET,
                                  input_names=["images"], optimize=True, verbose=False).save(str(path))
            session = ort.InferenceSession(str(path), session_options(threads=options.threads),
                                           providers=["CPUExecutionProvider"])
            eager = fold_batchnorm(model).to(memory_format=torch.channels_last)
            eager_inputs = [image.contiguous(memory_format=torch.channels_last) for image in inputs[size]]
            numpy_inputs = [image.numpy() for image in inputs[size]]
            calls[f"{key}_eager"] = lambda index, eager=eager, batch=eager_inputs: eager(batch[index])
            calls[f"{key}_ort"] = lambda index, session=session, batch=numpy_inputs: session.run(
                None, {"images": batch[index]})
        with torch.inference_mode():
            latency = _interleaved_latencies_ms(calls, list(range(4)), rounds=1 if options.smoke else 10)
    return {
        "latency_ms": {f"classifier_{key}": value for key, value in latency.items()},
        "info": {"classifiers": {"threads": options.threads, "batch": 1, "variants": facts}},
    }


# ------------------------------------------------------------------------------------------------- train step


def measure_train_step(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Training images / s: our model + MultiBoxLoss + SGD vs torchvision's SSD (same network) + its loss + SGD."""
    import copy

    from ssdlite.core.loss import MultiBoxLoss
    from ssdlite.torchvision_reference import torchvision_ssd

    _use_threads(options.threads)
    model, model_info = _benchmark_model(options)
    batch_size = 2 if options.smoke else 32
    size = int(model.image_size)
    generator = torch.Generator().manual_seed(0)
    images01 = torch.rand(batch_size, 3, size, size, generator=generator)
    centres = torch.rand(batch_size, 3, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(batch_size, 3, 2, generator=generator) * 0.3 + 0.05
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)  # [B, 3, 4] normalised xyxy
    labels = torch.randint(1, model.num_classes + 1, (batch_size, 3), generator=generator)

    ours = copy.deepcopy(model).train().to(memory_format=torch.channels_last)
    criterion = MultiBoxLoss()
    ours_optimizer = torch.optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9)
    ours_images = (images01 * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)

    def ours_step() -> None:
        outputs = ours(ours_images)
        losses = criterion(outputs["cls_logits"], outputs["box_deltas"], ours.anchors, boxes, labels)
        ours_optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        ours_optimizer.step()

    theirs = torchvision_ssd(copy.deepcopy(model).train())
    theirs_optimizer = torch.optim.SGD(theirs.parameters(), lr=1e-3, momentum=0.9)
    theirs_images = list(images01)
    theirs_targets = [{"boxes": image_boxes * size, "labels": image_labels} for image_boxes, image_labels in
                      zip(boxes, labels)]

    def theirs_step() -> None:
        losses = theirs(theirs_images, theirs_targets)
        theirs_optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        theirs_optimizer.step()

    steps = {"ours": ours_step, "tv_ssd": theirs_step}
    seconds = _interleaved_latencies_ms(
        {name: (lambda _, step=step: step()) for name, step in steps.items()},
        [0] if options.smoke else [0, 1],
        rounds=1 if options.smoke else 3,
        warmup=1,
    )
    rates = {name: batch_size * 1000.0 / value for name, value in seconds.items()}
    return {
        "throughput": {"train_ours_images_per_s": rates["ours"], "train_tv_ssd_images_per_s": rates["tv_ssd"]},
        "ratios": {"train_vs_tv_ssd": rates["ours"] / rates["tv_ssd"]},
        "info": {
            "train_step": {
                **model_info,
                "batch_size": batch_size,
                "threads": options.threads,
                "ours": "SSDLite (channels_last) + MultiBoxLoss (batched matching) + SGD(momentum 0.9)",
                "tv_ssd": "torchvision SSD(our modules): GeneralizedRCNNTransform + per-image SSDMatcher + "
                "compute_loss + SGD(momentum 0.9); input [0, 1] images at the network size",
            }
        },
    }


# ------------------------------------------------------------------------------------------------ postprocess


def measure_postprocess(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Our postprocess_detections vs torchvision's SSD postprocessing on the same head outputs (batch 1)."""
    from torchvision.ops import box_convert

    from ssdlite.core.postprocess import postprocess_detections
    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS
    from ssdlite.deploy.predictor import preprocess_images
    from ssdlite.torchvision_reference import torchvision_ssd

    _use_threads(options.threads)
    model, model_info = _benchmark_model(options)
    size = int(model.image_size)
    frames = _camera_frames(2 if options.smoke else 16, seed=1)
    with torch.inference_mode():
        head_outputs = [
            model(torch.from_numpy(preprocess_images([frame], size, channels_last=False))) for frame in frames
        ]
    original_size = torch.tensor([frames[0].shape[:2]])
    theirs = torchvision_ssd(model, **EVALUATION_SETTINGS).eval()
    anchors_pixels = [box_convert(model.anchors, "cxcywh", "xyxy") * size]

    def ours(outputs: dict) -> Any:
        return postprocess_detections(
            outputs["cls_logits"], outputs["box_deltas"], model.anchors, original_size, **EVALUATION_SETTINGS
        )

    def torchvision_postprocess(outputs: dict) -> Any:
        head = {"cls_logits": outputs["cls_logits"], "bbox_regression": outputs["box_deltas"]}
        detections = theirs.postprocess_detections(head, anchors_pixels, [(size, size)])
        return theirs.transform.postprocess(detections, [(size, size)], [tuple(frames[0].shape[:2])])

    with torch.inference_mode():
        latency = _interleaved_latencies_ms(
            {"postprocess_ours": ours, "postprocess_tv": torchvision_postprocess},
            head_outputs,
            rounds=2 if options.smoke else 10,
        )
    return {
        "latency_ms": latency,
        "ratios": {"postprocess_vs_tv": latency["postprocess_ours"] / latency["postprocess_tv"]},
        "info": {"postprocess": {**model_info, "settings": EVALUATION_SETTINGS, "inputs": f"{len(frames)} frames"}},
    }


# -------------------------------------------------------------------------------------------------- evaluator


def measure_evaluator(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """COCO evaluation time: faster-coco-eval vs pycocotools, same ground truth and detections."""
    from ssdlite.evaluation.coco import CocoEvaluator

    ground_truth, results = _synthetic_coco(num_images=10 if options.smoke else 300, seed=0)
    evaluators = {
        name: (lambda _, name=name: CocoEvaluator(ground_truth, backend=name).evaluate(results))
        for name in ("pycocotools", "faster")
    }
    seconds = _interleaved_latencies_ms(evaluators, [0], rounds=1 if options.smoke else 3, warmup=1)
    return {
        "latency_ms": {"evaluator_pycocotools": seconds["pycocotools"], "evaluator_faster": seconds["faster"]},
        "ratios": {"faster_eval_vs_pycocotools": seconds["faster"] / seconds["pycocotools"]},
        "info": {
            "evaluator": {
                "images": len(ground_truth["images"]),
                "annotations": len(ground_truth["annotations"]),
                "detections": len(results),
                "timed": "CocoEvaluator(ground_truth, backend).evaluate(results): index, evaluate, accumulate, "
                "summarize",
            }
        },
    }


def _synthetic_coco(*, num_images: int, seed: int) -> tuple[dict, list[dict]]:
    """A COCO ground truth (20 categories, 1-10 boxes per 640 x 480 image) and 100 detections per image: the
    objects jittered, duplicated and mislabelled, plus random boxes, with random scores."""
    rng = np.random.default_rng(seed)
    categories = [{"id": i, "name": f"class_{i}"} for i in range(1, 21)]
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        count = int(rng.integers(1, 11))
        xy = rng.uniform(0, [560, 400], size=(count, 2))
        wh = rng.uniform(16, 200, size=(count, 2))
        labels = rng.integers(1, 21, size=count)
        for box_xy, box_wh, label in zip(xy, wh, labels):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label), "iscrowd": 0,
                 "bbox": [*map(float, box_xy), *map(float, box_wh)], "area": float(box_wh[0] * box_wh[1])}
            )
        picks = rng.integers(0, count, size=60)
        boxes = np.concatenate([xy[picks], wh[picks]], axis=1) + rng.normal(0, 8, size=(60, 4))
        noise = np.concatenate([rng.uniform(0, [560, 400], (40, 2)), rng.uniform(8, 200, (40, 2))], axis=1)
        detection_labels = np.concatenate([np.where(rng.random(60) < 0.8, labels[picks], rng.integers(1, 21, 60)),
                                           rng.integers(1, 21, 40)])
        for box, label, score in zip(np.concatenate([boxes, noise]), detection_labels, rng.random(100)):
            box[2:] = np.maximum(box[2:], 1.0)
            results.append({"image_id": image_id, "category_id": int(label), "bbox": box.round(2).tolist(),
                            "score": round(float(score), 5)})
    return {"images": images, "annotations": annotations, "categories": categories}, results


# ---------------------------------------------------------------------------------------------- int8_accuracy


def measure_int8_accuracy(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """COCO AP of eager, ONNX Runtime and INT8 on --val (needs --checkpoint); otherwise "not measured"."""
    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS, evaluate_predictor
    from ssdlite.deploy.export import export_network_onnx, export_onnx
    from ssdlite.deploy.predictor import Predictor, load_checkpoint_for_inference
    from ssdlite.deploy.quantize import quantize_model

    if options.checkpoint is None or options.val_images is None:
        reason = "not measured: pass --checkpoint (a trained model) and --val IMAGES_DIR [--val-ann ANN.json]"
        return {"info": {"int8_accuracy": reason}}
    _use_threads(options.threads)
    annotations = options.val_annotations or _default_annotations(options.val_images)
    calibration = options.calibration_images or _default_calibration(options.val_images)
    settings = dict(EVALUATION_SETTINGS, batch_size=1)
    model, meta = load_checkpoint_for_inference(options.checkpoint)
    names = {"class_names": meta["class_names"], "category_ids": meta["category_ids"]}
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        network = export_network_onnx(model, Path(scratch) / "network.onnx")
        ort_path = export_onnx(model, Path(scratch) / "ort.onnx", with_nms=True, network_onnx=network, **names)
        int8_path = quantize_model(
            model, Path(scratch) / "int8.onnx", calibration_images=calibration, with_nms=True,
            network_onnx=network, **names,
        )
        predictors = {
            "eager": Predictor(model, **names, **settings),
            "ort": Predictor(ort_path, backend="ort", threads=options.threads, **settings),
            "int8": Predictor(int8_path, backend="int8", threads=options.threads, **settings),
        }
        metrics = {
            name: evaluate_predictor(predictor, annotations, options.val_images)
            for name, predictor in predictors.items()
        }
    accuracy = {f"ap_{name}": 100.0 * values["AP"] for name, values in metrics.items()}
    accuracy.update({f"ap50_{name}": 100.0 * values["AP50"] for name, values in metrics.items()})
    accuracy["int8_ap_drop_points"] = accuracy["ap_eager"] - accuracy["ap_int8"]
    return {
        "accuracy": accuracy,
        "info": {
            "int8_accuracy": {
                "checkpoint": str(options.checkpoint),
                "val_images": str(options.val_images),
                "val_annotations": str(annotations),
                "calibration_images": str(calibration),
                "ap": "COCO AP@[.5:.95] x 100 (faster-coco-eval), evaluation postprocessing",
            }
        },
    }


def _default_annotations(images_dir: Path) -> Path:
    """The make_shapes layout: ROOT/val/*.jpg -> ROOT/annotations/val.json."""
    return images_dir.parent / "annotations" / f"{images_dir.name}.json"


def _default_calibration(images_dir: Path) -> Path:
    train = images_dir.parent / "train"
    return train if train.is_dir() else images_dir


# --------------------------------------------------------------------------------------------------- driver

MEASUREMENTS: dict[str, Callable[[BenchmarkOptions], dict[str, dict[str, Any]]]] = {
    "latency": measure_latency,
    "train_step": measure_train_step,
    "postprocess": measure_postprocess,
    "evaluator": measure_evaluator,
    "int8_accuracy": measure_int8_accuracy,
    "data_pipeline": measure_data_pipeline,
    "classifiers": measure_classifiers,
}


def run_benchmarks(names: Sequence[str], options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Runs the named measurements and merges their partial reports into one."""
    unknown = sorted(set(names) - set(MEASUREMENTS))
    if unknown:
        raise ValueError(f"unknown measurement(s) {unknown}; choose from {sorted(MEASUREMENTS)}")
    report: dict[str, dict[str, Any]] = {section: {} for section in REPORT_SECTIONS}
    load_before = os.getloadavg()
    load_by_measurement = {}
    for name in names:
        started, load_at_start = time.perf_counter(), os.getloadavg()[0]
        for section, values in MEASUREMENTS[name](options).items():
            if section not in report:
                raise ValueError(
                    f"measurement {name} returned section {section!r}; use one of {REPORT_SECTIONS}"
                )
            report[section].update(values)
        load_by_measurement[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "load_1_min_at_start": round(load_at_start, 2),
            "load_1_min_at_end": round(os.getloadavg()[0], 2),
        }
    report["info"]["versions"] = _versions()
    report["info"]["smoke"] = options.smoke
    report["info"]["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min_before": [round(value, 2) for value in load_before],
        "load_average_1_5_15_min_after": [round(value, 2) for value in os.getloadavg()],
        "load_by_measurement": load_by_measurement,
    }
    return report


def _versions() -> dict[str, str]:
    import albumentations
    import onnxruntime
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": onnxruntime.__version__,
        "albumentations": albumentations.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


def format_report(report: dict[str, dict[str, Any]]) -> str:
    """The report as a readable table: one line per number, grouped by section; then the machine load."""
    units = {"latency_ms": "ms", "throughput": "/s", "ratios": "x", "accuracy": "AP points"}
    lines = []
    for section, unit in units.items():
        values = report.get(section) or {}
        if not values:
            continue
        lines.append(f"{section} ({unit})")
        width = max(len(key) for key in values)
        lines.extend(f"  {key:<{width}}  {value:10.3f}" for key, value in values.items())
    info = report.get("info", {})
    if isinstance(info.get("int8_accuracy"), str):
        lines.append(f"accuracy: {info['int8_accuracy']}")
    machine = info.get("machine")
    if machine:
        lines.append(
            f"machine: {machine['cpus']} CPUs, load average (1/5/15 min) before {machine['load_average_1_5_15_min_before']}"
            f", after {machine['load_average_1_5_15_min_after']}"
        )
        for name, load in machine.get("load_by_measurement", {}).items():
            lines.append(
                f"  {name}: {load['seconds']} s, 1-min load {load['load_1_min_at_start']} -> {load['load_1_min_at_end']}"
            )
    return "\n".join(lines)


def markdown_tables(report: dict[str, dict[str, Any]]) -> str:
    """The README's comparison tables from a report (those whose measurements it holds), as Markdown."""
    from ssdlite.models.complexity import human

    latency, info, sections = report.get("latency_ms", {}), report.get("info", {}), []

    def ms_fps(value: float) -> str:
        return f"{value:.2f} ms ({1000.0 / value:.0f} fps)"

    variants = info.get("classifiers", {}).get("variants", {})
    if variants:
        def row(key: str) -> str:
            facts = variants[key]
            return (f"| {facts['model']} | {facts['width_mult']} | {facts['image_size']} | {human(facts['params'])} | "
                    f"{human(facts['macs'])} | {ms_fps(latency[f'classifier_{key}_eager'])} | "
                    f"{ms_fps(latency[f'classifier_{key}_ort'])} |")

        header = ("| model | width | input | params | MACs | eager (BN folded) | ONNX Runtime |\n"
                  "|---|---|---|---|---|---|---|")
        full = [key for key, facts in variants.items() if facts["width_mult"] == 1.0 and facts["image_size"] == 224]
        if full:
            sections.append("MobileNetV1 vs MobileNetV2 (1000 classes, batch 1)\n\n" + header + "\n"
                            + "\n".join(row(key) for key in full))
        if len(variants) > len(full):
            sections.append("Width and resolution multipliers (batch 1)\n\n" + header + "\n"
                            + "\n".join(row(key) for key in variants))
    complexity = info.get("latency", {}).get("complexity")
    if complexity:
        ours, theirs = complexity["ours"], complexity["tv_ssdlite_v3"]
        lines = [
            "| detector | input | params | MACs | eager | ONNX Runtime | INT8 (ONNX Runtime) |",
            "|---|---|---|---|---|---|---|",
            f"| ours, {info['latency']['model']} | {ours['image_size']} | {human(ours['params'])} | "
            f"{human(ours['macs'])} | {latency['ours_eager']:.2f} ms | {latency['ours_ort']:.2f} ms | "
            f"{latency['ours_int8']:.2f} ms |",
            f"| torchvision ssdlite320_mobilenet_v3_large | {theirs['image_size']} | {human(theirs['params'])} | "
            f"{human(theirs['macs'])} | {latency['tv_ssdlite_v3']:.2f} ms | | |",
        ]
        sections.append("Detectors end to end (batch 1, uint8 frame in, detections out)\n\n" + "\n".join(lines))
    return "\n\n".join(sections)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        default=None,
        help=f"measurements to run: {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny inputs and timings: checks that everything runs"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report here")
    parser.add_argument(
        "--markdown", action="store_true", help="also print the README's comparison tables (Markdown)"
    )
    parser.add_argument("--size", type=int, default=320, help="network input side (default 320)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per pipeline (default 6)")
    parser.add_argument("--raccoon", type=Path, default=RACCOON_ROOT, help="VOC folder of real photos")
    parser.add_argument("--checkpoint", type=Path, help="trained model (default: random ssdlite_mobilenet_v2)")
    parser.add_argument("--val", type=Path, metavar="IMAGES_DIR", help="validation images for int8_accuracy")
    parser.add_argument(
        "--val-ann", type=Path, metavar="ANN.json", help="their COCO annotations (default: ../annotations/NAME.json)"
    )
    parser.add_argument("--calib", type=Path, metavar="DIR", help="INT8 calibration images")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch / ONNX Runtime intra-op threads (default {INFERENCE_THREADS}; --smoke: 1, so that a smoke run "
        "under pytest -n 2 does not oversubscribe a 2-core machine)",
    )
    return parser.parse_args(argv)


@command(PROG)
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = BenchmarkOptions(
        smoke=args.smoke,
        image_size=args.size,
        seconds=args.seconds,
        raccoon_root=args.raccoon,
        checkpoint=args.checkpoint,
        val_images=args.val,
        val_annotations=args.val_ann,
        calibration_images=args.calib,
        threads=args.threads or (1 if args.smoke else INFERENCE_THREADS),
    )
    names = args.only or list(MEASUREMENTS)
    unknown = sorted(set(names) - set(MEASUREMENTS))
    if unknown:
        raise ValueError(f"unknown measurement(s) {unknown}; choose from {sorted(MEASUREMENTS)}")
    report = run_benchmarks(names, options)
    text = json.dumps(report, indent=2, sort_keys=True)
    print(format_report(report))
    if args.markdown:
        print("\n" + markdown_tables(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
