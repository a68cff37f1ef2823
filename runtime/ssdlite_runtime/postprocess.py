"""From raw head outputs to detections, in numpy: for files whose graph returns the raw network outputs.

Softmax, the best ``topk_per_class`` anchors per class, the score threshold, decoding against the default boxes
(SSD paper, eq. 2, with the file's variances), clipping to the image, class-wise NMS, the best ``max_detections``
per image: the result of ``ssdlite.core.postprocess.postprocess_detections`` (torchvision's
``SSD.postprocess_detections`` + ``batched_nms``), which tests/runtime/test_postprocess.py uses as the oracle. Boxes
stay normalised to [0, 1]; the Predictor scales them to each image.

The settings have one definition, :class:`PostprocessSettings`, whose defaults are torchvision's SSDLite ones (the
evaluation settings, :data:`EVALUATION_POSTPROCESS`); ``ssdlite.core.postprocess`` and every exporter use the same
class, and an exported file stores the values it was made with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BBOX_XFORM_CLIP",
    "EVALUATION_POSTPROCESS",
    "PostprocessSettings",
    "class_wise_nms",
    "decode_boxes",
    "postprocess_raw_outputs",
]

BBOX_XFORM_CLIP = math.log(1000.0 / 16)
"""torchvision's ``bbox_xform_clip``: decoded log-sizes are clamped here, so exp() stays finite for wild outputs."""


@dataclass(frozen=True)
class PostprocessSettings:
    """How head outputs become detections: score threshold, candidates per class, NMS IoU, detections per image.

    The defaults are the evaluation settings, those torchvision's ``ssdlite320_mobilenet_v3_large`` passes to
    ``SSD.__init__`` (``score_thresh=0.001, topk_candidates=300, nms_thresh=0.55, detections_per_img=300``): COCO
    AP wants every low-scoring box too. Validation during training, ``tools/eval_coco.py``, the deployed-model
    evaluation and the defaults stored in exported files all use ``PostprocessSettings()``; display (the
    Predictor, ``ssdlite-detect``) replaces the threshold and the counts, see :mod:`ssdlite_runtime.predictor`.

    Attributes:
        score_threshold: keep class scores strictly above this, in [0, 1].
        nms_iou: IoU above which NMS suppresses a box of the same class, in [0, 1].
        topk_per_class: candidates kept per class and image before NMS (>= 1).
        max_detections: detections kept per image after NMS (>= 1); the padded output size D of an exported graph.

    Raises:
        ValueError: a threshold outside [0, 1] or a count that is not an integer >= 1 (names the field and value).
    """

    score_threshold: float = 0.001
    nms_iou: float = 0.55
    topk_per_class: int = 300
    max_detections: int = 300

    def __post_init__(self) -> None:
        for name in ("score_threshold", "nms_iou"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            object.__setattr__(self, name, float(value))
        for name in ("topk_per_class", "max_detections"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
            object.__setattr__(self, name, int(value))


EVALUATION_POSTPROCESS = PostprocessSettings()
"""The evaluation settings (``PostprocessSettings()``)."""


def decode_boxes(box_deltas: np.ndarray, default_boxes: np.ndarray, variances: tuple[float, float]) -> np.ndarray:
    """Boxes from regression outputs: ``ssdlite.core.box_coder.decode`` in float32 numpy.

    Args:
        box_deltas: float32 [..., A, 4] (dx, dy, dw, dh).
        default_boxes: float32 [A, 4] (cx, cy, w, h) normalised.
        variances: (centre variance, size variance).

    Returns:
        float32 [..., A, 4] (x1, y1, x2, y2) normalised (not clipped).
    """
    centre_variance, size_variance = (np.float32(value) for value in variances)
    deltas = box_deltas.astype(np.float32, copy=False)
    anchor_centres, anchor_sizes = default_boxes[:, :2], default_boxes[:, 2:]
    centres = deltas[..., :2] * centre_variance * anchor_sizes + anchor_centres
    log_sizes = np.minimum(deltas[..., 2:] * size_variance, np.float32(BBOX_XFORM_CLIP))
    half_sizes = np.float32(0.5) * np.exp(log_sizes) * anchor_sizes
    return np.concatenate((centres - half_sizes, centres + half_sizes), axis=-1)


def class_wise_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, iou_threshold: float, max_detections: int
) -> np.ndarray:
    """Greedy NMS within each label, best first, cut at ``max_detections``: torchvision's ``batched_nms`` followed by
    the best ``max_detections``.

    A box is suppressed by a better box of its label whose IoU with it is above ``iou_threshold``. Greedy NMS keeps
    boxes in score order, so the first ``max_detections`` kept are the result, and the candidates are taken in
    growing blocks (each checked against the boxes kept so far, then against each other) instead of all at once:
    with evaluation settings an image has thousands of candidates, of which a few hundred decide the result.

    Args:
        boxes: [N, 4] xyxy.
        scores: [N].
        labels: [N] int (the NMS groups).
        iou_threshold: IoU above which the lower-scoring box of a pair is suppressed.
        max_detections: boxes kept at most.

    Returns:
        int64 [D] indices into the inputs, highest score first.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    start, block = 0, 2 * max_detections
    while start < len(order) and len(kept) < max_detections:
        candidates = order[start : start + block]
        start, block = start + block, 4 * block
        if kept:  # what the boxes kept so far suppress
            candidates = candidates[~_suppressed_by(np.array(kept), candidates, boxes, areas, labels, iou_threshold)]
        while candidates.size and len(kept) < max_detections:
            best, candidates = candidates[0], candidates[1:]
            kept.append(int(best))
            candidates = candidates[~_suppressed_by(best[None], candidates, boxes, areas, labels, iou_threshold)]
    return np.array(kept, dtype=np.int64)


def _suppressed_by(
    kept: np.ndarray, candidates: np.ndarray, boxes: np.ndarray, areas: np.ndarray, labels: np.ndarray, threshold: float
) -> np.ndarray:
    """bool [len(candidates)]: whether a box of ``kept`` with the same label overlaps it with IoU > ``threshold``
    (the IoU of torchvision's ``nms``: intersection / (area a + area b - intersection))."""
    top_left = np.maximum(boxes[kept, None, :2], boxes[None, candidates, :2])
    bottom_right = np.minimum(boxes[kept, None, 2:], boxes[None, candidates, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)  # [kept, candidates]
    with np.errstate(divide="ignore", invalid="ignore"):  # two empty boxes: 0 / 0 = NaN, which suppresses nothing
        iou = intersection / (areas[kept, None] + areas[None, candidates] - intersection)
    same_label = labels[kept, None] == labels[None, candidates]
    return ((iou > threshold) & same_label).any(axis=0)


def postprocess_raw_outputs(
    cls_logits: np.ndarray,
    box_deltas: np.ndarray,
    default_boxes: np.ndarray,
    variances: tuple[float, float],
    settings: PostprocessSettings,
) -> list[dict[str, np.ndarray]]:
    """Detections of every image of a batch, boxes normalised to [0, 1].

    Args:
        cls_logits: float [B, A, K + 1], column 0 = background.
        box_deltas: float [B, A, 4] (dx, dy, dw, dh).
        default_boxes: float32 [A, 4] (cx, cy, w, h) normalised.
        variances: (centre variance, size variance) of the box coding.
        settings: threshold, candidates per class, NMS IoU, detections per image.

    Returns:
        One dict per image: ``boxes`` float32 [D, 4] xyxy normalised and clipped to [0, 1], ``scores`` float32 [D],
        ``labels`` int64 [D] in 1..K; sorted by score, highest first.

    Raises:
        ValueError: outputs whose number of boxes is not that of the default boxes.
    """
    batch_size, num_anchors, num_columns = cls_logits.shape
    if box_deltas.shape != (batch_size, num_anchors, 4) or default_boxes.shape != (num_anchors, 4):
        raise ValueError(
            f"raw outputs cls_logits {cls_logits.shape} and box_deltas {box_deltas.shape} do not match the "
            f"{len(default_boxes)} default boxes of the model file; re-export it"
        )
    logits = cls_logits.astype(np.float32, copy=False)
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    scores = (exponentials / exponentials.sum(axis=-1, keepdims=True))[..., 1:].transpose(0, 2, 1)  # [B, K, A]
    boxes = np.clip(decode_boxes(box_deltas, default_boxes, variances), 0.0, 1.0)  # [B, A, 4]

    # The best k anchors of each class, then the threshold: torchvision's threshold-then-top-k gives the same set.
    k = min(settings.topk_per_class, num_anchors)
    if k < num_anchors:
        top_anchors = np.argpartition(-scores, k - 1, axis=2)[..., :k]  # [B, K, k], in no particular order
    else:
        top_anchors = np.broadcast_to(np.arange(num_anchors), scores.shape)
    labels = np.repeat(np.arange(1, num_columns, dtype=np.int64), k)  # [K * k]
    detections = []
    for image, anchors in enumerate(top_anchors):
        candidate_scores = np.take_along_axis(scores[image], anchors, axis=1).reshape(-1)
        keep = candidate_scores > settings.score_threshold
        candidate_boxes, candidate_scores = boxes[image][anchors.reshape(-1)[keep]], candidate_scores[keep]
        candidate_labels = labels[keep]
        kept = class_wise_nms(
            candidate_boxes,
            candidate_scores,
            candidate_labels,
            iou_threshold=settings.nms_iou,
            max_detections=settings.max_detections,
        )
        detections.append(
            {
                "boxes": candidate_boxes[kept].astype(np.float32).reshape(-1, 4),
                "scores": candidate_scores[kept].astype(np.float32),
                "labels": candidate_labels[kept],
            }
        )
    return detections
