"""MultiBox loss (SSD paper, section 2.2 "Training objective" and "Hard negative mining"), batched over images.

``L = (L_loc + L_conf) / N``: smooth L1 (beta 1) over the positive default boxes plus softmax cross-entropy over the
positives and the hardest negatives (at most ``neg_pos_ratio`` per positive, per image), both summed and divided by
N = max(1, positives in the batch). Equal to torchvision's ``SSD.compute_loss``.

``box_loss`` may replace the smooth L1 on the encoded offsets by an IoU loss on the decoded boxes: "giou"
(Rezatofighi et al. 2019), "diou" or "ciou" (Zheng et al. 2020), computed by ``torchvision.ops``; one term per
positive, summed and divided by N like the smooth L1.

``cls_target="iou"`` makes the classification IoU-aware (the idea of Li et al. 2020's quality focal loss and
Zhang et al. 2021's varifocal loss, kept in SSD's softmax form): a positive's target is the soft distribution
``IoU`` on its class and ``1 - IoU`` on background, where ``IoU`` is the overlap of the box the network predicts
there with its ground truth (no gradient through it). The class score then estimates localisation quality, so NMS
keeps the best-placed box instead of a confident loose one. Negatives keep the hard background target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from ssdlite.core.box_coder import VARIANCES, decode, encode
from ssdlite.core.matcher import match_anchors


def hard_negative_mask(classification_loss: Tensor, positive: Tensor, neg_pos_ratio: int) -> Tensor:
    """The negatives with the highest loss, ``neg_pos_ratio`` per positive of the same image.

    torchvision's sort-based selection: rank the negatives of each image by loss (positives pushed to the end
    with -inf) and keep those ranked below ``neg_pos_ratio * positives``. An image without positives gets no
    negatives. Positives are never selected (torchvision would count them twice in the rare case
    ``(1 + neg_pos_ratio) * positives > A``; otherwise the two agree).

    Args:
        classification_loss (Tensor[B, A]): per default box cross-entropy.
        positive (Tensor[B, A]): bool.
        neg_pos_ratio: negatives per positive.

    Returns:
        Tensor[B, A]: bool.
    """
    num_negatives = neg_pos_ratio * positive.sum(dim=1, keepdim=True)
    negative_loss = classification_loss.detach().masked_fill(positive, -float("inf"))
    order = negative_loss.sort(dim=1, descending=True).indices
    rank = order.sort(dim=1).indices
    return (rank < num_negatives) & ~positive


IOU_LOSSES = {"giou": generalized_box_iou_loss, "diou": distance_box_iou_loss, "ciou": complete_box_iou_loss}
BOX_LOSSES = ("smooth_l1", *IOU_LOSSES)
CLS_TARGETS = ("label", "iou")


class MultiBoxLoss(nn.Module):
    """SSD's MultiBox loss with hard negative mining.

    Args:
        neg_pos_ratio: hard negatives kept per positive (3 in the paper).
        variances: box coder variances (centre, size), default :data:`ssdlite.core.box_coder.VARIANCES`.
        iou_threshold: matching threshold.
        box_loss: "smooth_l1" (the paper's, on the encoded offsets) or an IoU loss on the decoded boxes: "giou",
            "diou", "ciou".
        cls_target: "label" (the paper's one-hot target) or "iou" (a positive's target is IoU on its class and
            1 - IoU on background, IoU of its predicted box with its ground truth; see the module docstring).
    """

    def __init__(
        self,
        neg_pos_ratio: int = 3,
        variances: tuple[float, float] = VARIANCES,
        iou_threshold: float = 0.5,
        box_loss: str = "smooth_l1",
        cls_target: str = "label",
    ) -> None:
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"unknown box_loss {box_loss!r}; use one of {', '.join(BOX_LOSSES)}")
        if cls_target not in CLS_TARGETS:
            raise ValueError(f"unknown cls_target {cls_target!r}; use one of {', '.join(CLS_TARGETS)}")
        self.cls_target = cls_target
        self.neg_pos_ratio = neg_pos_ratio
        self.variances = tuple(variances)
        self.iou_threshold = iou_threshold
        self.box_loss = box_loss

    def forward(
        self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor
    ) -> dict[str, Tensor]:
        """Compute the loss of a batch.

        Args:
            cls_logits (Tensor[B, A, K + 1]): class logits, column 0 = background.
            box_deltas (Tensor[B, A, 4]): predicted (dx, dy, dw, dh).
            anchors (Tensor[A, 4]): default boxes (cx, cy, w, h) normalised.
            gt_boxes (Tensor[B, M, 4]): xyxy normalised; non-finite, degenerate and out-of-image boxes are
                sanitised (clamped to [0, 1], dropped when empty), so the loss stays finite.
            gt_labels (Tensor[B, M]): int64 1..K, 0 = padding.

        Returns:
            dict with ``loss`` (bbox_regression + classification), ``bbox_regression``, ``classification``
            (float32 scalar tensors) and ``num_positives`` (int64 scalar tensor, positives in the batch).
        """
        # float32 whatever the model ran in (half/bfloat16 sums over thousands of boxes lose too much).
        cls_logits, box_deltas = cls_logits.float(), box_deltas.float()
        matched_labels, matched_boxes = match_anchors(
            anchors, gt_boxes, gt_labels, iou_threshold=self.iou_threshold
        )
        positive = matched_labels > 0  # [B, A]
        num_positives = positive.sum()
        normaliser = num_positives.clamp(min=1).to(cls_logits.dtype)

        if self.box_loss == "smooth_l1":
            target_deltas = encode(matched_boxes, anchors.to(matched_boxes.dtype), self.variances)
            box_loss = F.smooth_l1_loss(
                box_deltas, target_deltas.to(box_deltas.dtype), reduction="none", beta=1.0
            )
            bbox_regression = torch.where(positive[..., None], box_loss, torch.zeros_like(box_loss)).sum()
        else:
            predicted = decode(box_deltas[positive], anchors.expand_as(box_deltas)[positive], self.variances)
            bbox_regression = IOU_LOSSES[self.box_loss](predicted, matched_boxes[positive].to(predicted.dtype),
                                                        reduction="sum")

        num_columns = cls_logits.shape[-1]
        classification_loss = F.cross_entropy(
            cls_logits.reshape(-1, num_columns), matched_labels.reshape(-1), reduction="none"
        ).reshape(matched_labels.shape)
        if self.cls_target == "iou":
            classification_loss = self._iou_target_loss(
                classification_loss, cls_logits, box_deltas, anchors, matched_labels, matched_boxes, positive
            )
        selected = positive | hard_negative_mask(classification_loss, positive, self.neg_pos_ratio)
        classification = torch.where(
            selected, classification_loss, torch.zeros_like(classification_loss)
        ).sum()

        bbox_regression = bbox_regression / normaliser
        classification = classification / normaliser
        return {
            "loss": bbox_regression + classification,
            "bbox_regression": bbox_regression,
            "classification": classification,
            "num_positives": num_positives,
        }

    def _iou_target_loss(
        self,
        classification_loss: Tensor,
        cls_logits: Tensor,
        box_deltas: Tensor,
        anchors: Tensor,
        matched_labels: Tensor,
        matched_boxes: Tensor,
        positive: Tensor,
    ) -> Tensor:
        """``classification_loss`` with the positives' entries replaced by the soft-target cross-entropy."""
        with torch.no_grad():
            predicted = decode(box_deltas[positive], anchors.expand_as(box_deltas)[positive], self.variances)
            quality = _paired_iou(predicted, matched_boxes[positive].to(predicted.dtype))
        log_probabilities = F.log_softmax(cls_logits[positive], dim=-1)  # [P, K + 1]
        own_class = log_probabilities.gather(1, matched_labels[positive][:, None])[:, 0]
        soft_loss = -(quality * own_class + (1.0 - quality) * log_probabilities[:, 0])
        return classification_loss.masked_scatter(positive, soft_loss)


def _paired_iou(boxes: Tensor, other: Tensor) -> Tensor:
    """IoU of ``boxes[i]`` with ``other[i]`` (both Tensor[P, 4] xyxy): the diagonal of ``box_iou``."""
    top_left = torch.maximum(boxes[:, :2], other[:, :2])
    bottom_right = torch.minimum(boxes[:, 2:], other[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0.0).prod(dim=1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0.0).prod(dim=1)
    other_area = (other[:, 2:] - other[:, :2]).clamp(min=0.0).prod(dim=1)
    return intersection / (area + other_area - intersection).clamp(min=1e-12)
