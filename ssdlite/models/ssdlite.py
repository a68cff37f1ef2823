"""SSDLite: a MobileNet backbone, extra feature layers and a separable-convolution head (MobileNetV2 paper, 6.2).

The model returns raw tensors -- class logits and box deltas for every default box -- and carries the default boxes
as the buffer ``anchors``. Matching, the loss and decoding live in ``ssdlite.core``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ssdlite.core.anchors import DefaultBoxConfig, boxes_per_location, default_boxes
from ssdlite_runtime.metadata import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE  # defined once, in the runtime

from .blocks import extra_block, prediction_block

EXTRA_CHANNELS = (512, 256, 256, 128)
"""Output channels of the four extra layers appended to the stride-32 map (MobileNetV2 paper, TF config)."""


def check_image_size(image_size: int) -> int:
    """Returns ``image_size`` or raises ValueError when it is not an integer from 64 to 2048."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be an integer >= {MIN_IMAGE_SIZE} (square input side in pixels, e.g. 300 or 320), "
            f"got {image_size!r}"
        )
    if image_size > MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size {image_size} is larger than {MAX_IMAGE_SIZE}, the largest input side an SSDLite is built "
            f"for (its memory grows with the square of the side); use a side from {MIN_IMAGE_SIZE} to "
            f"{MAX_IMAGE_SIZE}, e.g. 320 as in the paper (larger images are resized to it)"
        )
    return image_size


def check_num_classes(num_classes: int) -> int:
    """Returns ``num_classes`` or raises ValueError when it is not an integer >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be an integer >= 1 (object classes, background excluded), got {num_classes!r}"
        )
    return num_classes


class SSDLite(nn.Module):
    """SSDLite detector: backbone taps + extra layers + per-map prediction blocks.

    The head predicts, for feature map k with ``n_k`` boxes per location, ``n_k * (K + 1)`` class logits and
    ``n_k * 4`` box deltas per location; outputs are flattened map by map, row-major over (y, x), then the boxes of a
    location -- the order of :func:`ssdlite.core.anchors.default_boxes` and torchvision's SSD head.

    Args:
        backbone: module mapping Tensor[B, 3, S, S] to a list of feature maps, with attribute
            ``out_channels: list[int]`` (MobileNetV2Backbone, MobileNetV1Backbone).
        num_classes: K, the number of object classes (background excluded; logits have K + 1 columns).
        image_size: S, the square input side the default boxes are laid out for.
        box_config: default box layout; it must describe ``len(backbone.out_channels) + len(extra_channels)`` maps.
        extra_channels: output channels of the extra layers appended to the last backbone map.
        config: the plain dict :func:`ssdlite.models.build_model_from_config` rebuilds this model from
            (:meth:`ssdlite.models.SSDLiteConfig.to_dict`).

    Attributes:
        anchors (Tensor[A, 4]): default boxes (cx, cy, w, h) normalised to [0, 1] (non-persistent buffer: it
            follows ``.to(device)`` but is derived from the config, not stored in state dicts).
        feature_sizes (tuple[tuple[int, int], ...]): (h, w) of every feature map at ``image_size``.
        num_classes (int): K.
        image_size (int): S.
        config (dict): see Args.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        num_classes: int,
        image_size: int,
        box_config: DefaultBoxConfig,
        extra_channels: Sequence[int] = EXTRA_CHANNELS,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.image_size = check_image_size(image_size)
        self.config = dict(config) if config is not None else {}
        self.backbone = backbone
        in_channels = [backbone.out_channels[-1], *extra_channels[:-1]]
        self.extras = nn.ModuleList(extra_block(cin, cout) for cin, cout in zip(in_channels, extra_channels))
        feature_channels = [*backbone.out_channels, *extra_channels]
        num_boxes = boxes_per_location(box_config)
        if len(num_boxes) != len(feature_channels):
            raise ValueError(
                f"the default box config describes {len(num_boxes)} feature maps but the model has "
                f"{len(feature_channels)} ({len(backbone.out_channels)} backbone taps + {len(extra_channels)} extras); "
                "give the config one aspect-ratio tuple per feature map"
            )
        self.classification_head = nn.ModuleList(
            prediction_block(channels, boxes * (num_classes + 1))
            for channels, boxes in zip(feature_channels, num_boxes)
        )
        self.regression_head = nn.ModuleList(
            prediction_block(channels, boxes * 4) for channels, boxes in zip(feature_channels, num_boxes)
        )
        self.box_config = box_config
        self.feature_sizes = self._feature_sizes()
        self.register_buffer("anchors", default_boxes(box_config, self.feature_sizes), persistent=False)

    @torch.no_grad()
    def _feature_sizes(self) -> tuple[tuple[int, int], ...]:
        """(h, w) of every feature map for an ``image_size`` input, from a dummy forward in eval mode."""
        was_training = self.training
        self.eval()
        parameter = next(self.parameters())
        dummy = torch.zeros(
            1, 3, self.image_size, self.image_size, dtype=parameter.dtype, device=parameter.device
        )
        sizes = tuple((int(feature.shape[-2]), int(feature.shape[-1])) for feature in self.features(dummy))
        self.train(was_training)
        return sizes

    def features(self, images: Tensor) -> list[Tensor]:
        """Feature maps the head predicts from: the backbone taps then the extra layers.

        Args:
            images: Tensor[B, 3, S, S] RGB scaled to [-1, 1].

        Returns:
            One Tensor[B, C_k, H_k, W_k] per feature map, highest resolution first.
        """
        maps = list(self.backbone(images))
        for block in self.extras:
            maps.append(block(maps[-1]))
        return maps

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Runs the detector.

        Args:
            images: Tensor[B, 3, S, S] RGB scaled to [-1, 1] (``x / 127.5 - 1``), S = ``image_size``.

        Returns:
            dict with ``cls_logits`` Tensor[B, A, K + 1] (column 0 = background) and ``box_deltas`` Tensor[B, A, 4]
            (dx, dy, dw, dh) relative to ``anchors`` with variances (0.1, 0.2).
        """
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(
                f"SSDLite built for image_size={self.image_size} expects images of shape "
                f"[B, 3, {self.image_size}, {self.image_size}], got {list(images.shape)}; resize the input or build the "
                "model with the matching image_size"
            )
        maps = self.features(images)
        return {
            "cls_logits": _flatten_predictions(self.classification_head, maps, self.num_classes + 1),
            "box_deltas": _flatten_predictions(self.regression_head, maps, 4),
        }


def _flatten_predictions(blocks: nn.ModuleList, maps: list[Tensor], values_per_box: int) -> Tensor:
    """Applies one prediction block per map and flattens to Tensor[B, A, values_per_box] in default-box order.

    Same as torchvision's ``SSDScoringHead``: [B, n * V, H, W] -> view [B, n, V, H, W] -> permute to
    [B, H, W, n, V] -> [B, H * W * n, V].
    """
    outputs = []
    for block, feature in zip(blocks, maps):
        prediction = block(feature)
        batch, _, height, width = prediction.shape
        prediction = prediction.view(batch, -1, values_per_box, height, width).permute(0, 3, 4, 1, 2)
        outputs.append(prediction.reshape(batch, -1, values_per_box))
    return torch.cat(outputs, dim=1)
