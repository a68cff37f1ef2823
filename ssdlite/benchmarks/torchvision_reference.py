"""torchvision's SSD meta-architecture around our network: the same weights through torchvision's code.

For like-for-like comparisons (the latency, train_step and postprocess benchmarks): :func:`torchvision_ssd` wraps
an :class:`SSDLite`'s backbone, extra layers and prediction blocks in ``torchvision.models.detection.SSD`` -- its
``GeneralizedRCNNTransform`` (normalise with mean/std 0.5, i.e. [-1, 1], and resize), its anchor generator
(``DefaultBoxGenerator`` producing our default boxes), its matching and loss in train mode, and its
``postprocess_detections`` in eval mode. The modules are shared, not copied: the two detectors compute the same
network.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDScoringHead

from ssdlite.core.anchors import DefaultBoxConfig
from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings
from ssdlite.models.ssdlite import SSDLite

__all__ = ["default_box_generator", "torchvision_ssd"]


class _FeatureMaps(nn.Module):
    """Backbone taps + extra layers of an SSDLite, as the ``OrderedDict`` of maps torchvision's SSD expects."""

    def __init__(self, model: SSDLite) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.extras = model.extras

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        maps = list(self.backbone(images))
        for block in self.extras:
            maps.append(block(maps[-1]))
        return OrderedDict((str(index), feature) for index, feature in enumerate(maps))


class _SSDLiteHead(nn.Module):
    """torchvision's ``SSDLiteHead`` with our prediction blocks (torchvision's ``SSDScoringHead`` flattening)."""

    def __init__(self, model: SSDLite) -> None:
        super().__init__()
        self.classification_head = SSDScoringHead(model.classification_head, model.num_classes + 1)
        self.regression_head = SSDScoringHead(model.regression_head, 4)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {
            "bbox_regression": self.regression_head(features),
            "cls_logits": self.classification_head(features),
        }


def default_box_generator(config: DefaultBoxConfig) -> DefaultBoxGenerator:
    """A torchvision ``DefaultBoxGenerator`` that lays out exactly our default boxes.

    Scales, centres and clipping come from the generator's own arguments; the (w, h) pairs of each location are
    set to ours, since ``DefaultBoxGenerator`` alone cannot express TF's reduced lowest layer or our box order.
    """
    generator = DefaultBoxGenerator(
        [[2, 3]] * config.num_feature_maps,
        min_ratio=config.min_ratio,
        max_ratio=config.max_ratio,
        clip=config.clip,
    )
    generator._wh_pairs = [torch.tensor(shapes, dtype=torch.float32) for shapes in config.box_shapes()]
    return generator


def torchvision_ssd(model: SSDLite, *, postprocess: PostprocessSettings = EVALUATION_POSTPROCESS) -> SSD:
    """``torchvision.models.detection.SSD`` computing ``model``'s network (modules shared with ``model``).

    Args:
        model: our SSDLite.
        postprocess: torchvision's ``score_thresh``, ``nms_thresh``, ``topk_candidates`` and
            ``detections_per_img`` (default: the evaluation settings, those of ``ssdlite320_mobilenet_v3_large``).

    Returns:
        The SSD, in the training mode of ``model``. Input: a list of float [3, H, W] images in [0, 1].
    """
    size = int(model.image_size)
    detector = SSD(
        _FeatureMaps(model),
        default_box_generator(model.box_config),
        (size, size),
        model.num_classes + 1,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        head=_SSDLiteHead(model),
        score_thresh=postprocess.score_threshold,
        nms_thresh=postprocess.nms_iou,
        detections_per_img=postprocess.max_detections,
        topk_candidates=postprocess.topk_per_class,
    )
    return detector.train(model.training)
