"""Box encoding relative to default boxes (SSD paper, eq. 2) with the usual variances :data:`VARIANCES` (0.1, 0.2).

``encode`` / ``decode`` are identical to torchvision's ``BoxCoder(weights=(10, 10, 5, 5))`` ``encode_single`` /
``decode_single`` applied to the same boxes in xyxy (weights are the reciprocal variances), but take the default
boxes as (cx, cy, w, h) and broadcast over any leading dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssdlite_runtime.postprocess import BBOX_XFORM_CLIP  # torchvision's bbox_xform_clip, shared with numpy

VARIANCES: tuple[float, float] = (0.1, 0.2)
"""(centre variance, size variance) of the box coding: the one definition that the loss, the postprocessing, the
exported graphs and their metadata read (torchvision's ``BoxCoder`` weights (10, 10, 5, 5) are the reciprocals)."""


def encode(boxes_xyxy: Tensor, anchors_cxcywh: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Box regression targets of ``boxes`` relative to ``anchors``.

    Args:
        boxes_xyxy (Tensor[..., 4]): ground-truth boxes (x1, y1, x2, y2), positive width and height.
        anchors_cxcywh (Tensor[..., 4]): default boxes (cx, cy, w, h) in the same units; broadcastable to boxes.
        variances: (centre variance, size variance).

    Returns:
        Tensor[..., 4]: (dx, dy, dw, dh) = ((cx - acx) / (aw * v0), (cy - acy) / (ah * v0),
        log(w / aw) / v1, log(h / ah) / v1).
    """
    centre_variance, size_variance = variances
    anchor_centres, anchor_sizes = anchors_cxcywh[..., :2], anchors_cxcywh[..., 2:]
    box_sizes = boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]
    box_centres = boxes_xyxy[..., :2] + 0.5 * box_sizes
    centre_deltas = (box_centres - anchor_centres) / (anchor_sizes * centre_variance)
    size_deltas = torch.log(box_sizes / anchor_sizes) / size_variance
    return torch.cat((centre_deltas, size_deltas), dim=-1)


def decode(deltas: Tensor, anchors_cxcywh: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Boxes from regression outputs, the inverse of :func:`encode`.

    Args:
        deltas (Tensor[..., 4]): (dx, dy, dw, dh). The log-sizes dw * v1 and dh * v1 are clamped at
            log(1000 / 16), torchvision's ``bbox_xform_clip``, so exp() stays finite.
        anchors_cxcywh (Tensor[..., 4]): default boxes (cx, cy, w, h); broadcastable to deltas.
        variances: (centre variance, size variance).

    Returns:
        Tensor[..., 4]: boxes (x1, y1, x2, y2) in the units of the anchors.
    """
    centre_variance, size_variance = variances
    anchors_cxcywh = anchors_cxcywh.to(deltas.dtype)
    anchor_centres, anchor_sizes = anchors_cxcywh[..., :2], anchors_cxcywh[..., 2:]
    centres = deltas[..., :2] * centre_variance * anchor_sizes + anchor_centres
    log_sizes = (deltas[..., 2:] * size_variance).clamp(max=BBOX_XFORM_CLIP)
    half_sizes = 0.5 * torch.exp(log_sizes) * anchor_sizes
    return torch.cat((centres - half_sizes, centres + half_sizes), dim=-1)
