"""Decoding + class-wise NMS as plain tensor ops, for the TFLite exporter (:mod:`ssdlite.deploy.export.tflite`).

LiteRT's converter (``litert_torch``) has no lowering for ``torchvision.ops.nms`` and cannot emit TFLite's
NON_MAX_SUPPRESSION builtins, so :class:`DetectionGraph` writes greedy NMS as ops it does lower: per-class top-k,
one top-k of the best M candidates, their M x M IoU matrix, and a fixed number of Jacobi sweeps of
``keep_i = valid_i and not any_j(keep_j and j suppresses i)``, where j suppresses i when j ranks higher, has the same
class and IoU > threshold. Each sweep is exact for one more link of the longest suppression chain, so once the
number of sweeps reaches that length the result is exactly greedy NMS; the feasibility study measured chains of at
most 8-10 links among 300-600 candidates (trained shapes model; 3-4 for the COCO-sized model), hence
:data:`NMS_SWEEPS` = 32. :meth:`DetectionGraph.sweeps_needed` counts them for an image, for tests.

Versus :func:`ssdlite.core.postprocess.postprocess_detections` (same softmax, same per-class top-k and threshold,
:func:`ssdlite.core.box_coder.decode` with the core's variances, clipping, IoU test): NMS sees the best
M = min(K * topk_per_class, 2 * max_detections) candidates of the image instead of all of them, which is exact when
no more than M candidates pass the threshold or when ``max_detections`` survive among the M (the fast path of the
ONNX graph, which falls back to all candidates where TFLite has no such branch). At display thresholds this is
always the case; at evaluation settings (score > 0.001) a low-scoring tail can differ.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssdlite.core.box_coder import VARIANCES, decode
from ssdlite.core.postprocess import PostprocessSettings
from ssdlite_runtime.metadata import TFLITE_OUTPUT_NAMES

__all__ = ["NMS_SWEEPS", "DetectionGraph"]

NMS_SWEEPS = 32
"""Jacobi sweeps of the in-graph NMS: several times the longest suppression chain the feasibility study measured
(8-10), each one [M, M] x [M] product."""


class DetectionGraph(nn.Module):
    """The network, then decoding and class-wise NMS, for one NHWC image; outputs in Android's detection layout.

    Args:
        network: ``images [1, 3, S, S] -> (cls_logits [1, A, K + 1], box_deltas [1, A, 4])`` (``inference_network``).
        default_boxes: [A, 4] (cx, cy, w, h) normalised.
        settings: score threshold, NMS IoU, candidates per class, detections per image D (baked into the graph).
        sweeps: NMS sweeps (:data:`NMS_SWEEPS`).

    ``forward(images)``, images float32 [1, S, S, 3] (NHWC, scaled as the metadata says), returns a dict:
    ``detection_boxes`` [1, D, 4] (ymin, xmin, ymax, xmax) normalised to [0, 1], ``detection_classes`` [1, D]
    (float, 0-based: label - 1), ``detection_scores`` [1, D] (best first), ``num_detections`` [1] (float); rows
    past ``num_detections`` are zeros. Names and order (sorted by name) are those of TensorFlow's detection models.
    """

    def __init__(
        self,
        network: nn.Module,
        default_boxes: Tensor,
        num_classes: int,
        settings: PostprocessSettings,
        *,
        sweeps: int = NMS_SWEEPS,
    ) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("default_boxes", default_boxes.detach().float().cpu().clone())
        self.settings = settings
        self.sweeps = int(sweeps)
        self.per_class = min(settings.topk_per_class, default_boxes.shape[0])
        """k: candidates per class (the best ``topk_per_class`` anchors)."""
        self.num_candidates = min(num_classes * self.per_class, 2 * settings.max_detections)
        """M: candidates NMS sees (the best of the K * k)."""
        self.num_detections = min(settings.max_detections, self.num_candidates)
        """D: the padded output size."""

    def candidates(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The M best candidates, best first: scores [M], classes [M] (0-based), boxes [M, 4] xyxy, and the
        suppression matrix [M, M] (row i, column j: j outranks i, same class, IoU > threshold)."""
        cls_logits, box_deltas = self.network(images.permute(0, 3, 1, 2))
        scores = torch.softmax(cls_logits[0], dim=-1)[:, 1:].transpose(0, 1)  # [K, A]
        boxes = decode(box_deltas[0], self.default_boxes, VARIANCES).clamp(0.0, 1.0)  # [A, 4]
        per_class, candidates = self.per_class, self.num_candidates
        class_scores, class_anchors = torch.topk(scores, per_class, dim=1)  # [K, k]
        top_scores, top_index = torch.topk(class_scores.reshape(-1), candidates)  # [M], best first
        classes = torch.div(top_index, per_class, rounding_mode="floor")
        anchors = class_anchors.reshape(-1).index_select(0, top_index)
        top_boxes = boxes.index_select(0, anchors)  # [M, 4]
        area = (top_boxes[:, 2] - top_boxes[:, 0]) * (top_boxes[:, 3] - top_boxes[:, 1])
        corner_min = torch.maximum(top_boxes[:, None, :2], top_boxes[None, :, :2])
        corner_max = torch.minimum(top_boxes[:, None, 2:], top_boxes[None, :, 2:])
        overlap = (corner_max - corner_min).clamp(min=0.0)
        intersection = overlap[..., 0] * overlap[..., 1]
        iou = intersection / (area[:, None] + area[None, :] - intersection + 1e-12)
        outranks = torch.ones(candidates, candidates, dtype=torch.bool).tril(diagonal=-1)
        suppresses = (iou > self.settings.nms_iou) & (classes[:, None] == classes[None, :]) & outranks
        return top_scores, classes, top_boxes, suppresses

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        scores, classes, boxes, suppresses = self.candidates(images)
        detections = self.num_detections
        valid = scores > self.settings.score_threshold
        suppression = suppresses.float()
        keep = valid
        for _ in range(self.sweeps):
            keep = valid & (suppression @ keep.float() < 0.5)
        kept_scores, order = torch.topk(torch.where(keep, scores, torch.full_like(scores, -1.0)), detections)
        found = kept_scores > 0
        zero = torch.zeros_like(kept_scores)
        outputs = (
            torch.where(found[:, None], boxes.index_select(0, order)[:, [1, 0, 3, 2]], zero[:, None])[None],
            torch.where(found, classes.index_select(0, order).float(), zero)[None],
            torch.where(found, kept_scores, zero)[None],
            keep.sum().clamp(max=detections).float().reshape(1),
        )
        return dict(zip(TFLITE_OUTPUT_NAMES, outputs, strict=True))

    @torch.no_grad()
    def sweeps_needed(self, images: Tensor) -> int:
        """Sweeps after which ``keep`` stops changing for these images (+1 to confirm): for tests of
        :data:`NMS_SWEEPS`."""
        scores, _, _, suppresses = self.candidates(images)
        valid = scores > self.settings.score_threshold
        keep, suppression = valid, suppresses.float()
        for sweep in range(1, scores.numel() + 2):
            updated = valid & (suppression @ keep.float() < 0.5)
            if torch.equal(updated, keep):
                return sweep
            keep = updated
        return scores.numel() + 1
