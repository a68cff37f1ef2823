"""Detection maths on tensors: default boxes, box coding, matching, loss, post-processing, and the one definition
of each setting they share (variances, postprocessing settings, input scaling)."""

from ssdlite.core.anchors import DefaultBoxConfig, boxes_per_location, default_boxes
from ssdlite.core.box_coder import VARIANCES, decode, encode
from ssdlite.core.loss import MultiBoxLoss
from ssdlite.core.matcher import match_anchors
from ssdlite.core.normalization import PIXEL_MEAN, PIXEL_STD, normalize_pixels
from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings, postprocess_detections

__all__ = [
    "EVALUATION_POSTPROCESS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "VARIANCES",
    "DefaultBoxConfig",
    "MultiBoxLoss",
    "PostprocessSettings",
    "boxes_per_location",
    "decode",
    "default_boxes",
    "encode",
    "match_anchors",
    "normalize_pixels",
    "postprocess_detections",
]
