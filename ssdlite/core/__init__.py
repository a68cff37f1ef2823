"""Detection maths on tensors: default boxes, box coding, matching, loss, post-processing."""

from ssdlite.core.anchors import DefaultBoxConfig, boxes_per_location, default_boxes
from ssdlite.core.box_coder import decode, encode
from ssdlite.core.loss import MultiBoxLoss
from ssdlite.core.matcher import match_anchors
from ssdlite.core.postprocess import postprocess_detections

__all__ = [
    "DefaultBoxConfig",
    "MultiBoxLoss",
    "boxes_per_location",
    "decode",
    "default_boxes",
    "encode",
    "match_anchors",
    "postprocess_detections",
]
