"""Default boxes (anchors) of SSD / SSDLite.

SSD paper (Liu et al., 2016), section 2.2 "Choosing scales and aspect ratios for default boxes": feature map k of m
gets the scale ``s_k = s_min + (s_max - s_min) * k / (m - 1)``, one box per aspect ratio ``a`` with
``w = s_k * sqrt(a)``, ``h = s_k / sqrt(a)``, plus one extra unit-ratio box of scale ``sqrt(s_k * s_{k+1})``
(``s_m = 1``). Box centres sit at ``((j + 0.5) / f_w, (i + 0.5) / f_h)``.

Two layouts are provided:

* :meth:`DefaultBoxConfig.paper` -- the TF Object Detection API ``ssd_anchor_generator`` of the
  ssd_mobilenet_v2 / ssdlite configs (``min_scale 0.2``, ``max_scale 0.95``, aspect ratios 1, 2, 1/2, 3, 1/3, the
  interpolated box last, ``reduce_boxes_in_lowest_layer``: the lowest map only has (0.1, 1), (0.2, 2), (0.2, 1/2)).
  2034 boxes at 320x320, 1917 at 300x300. Not clipped, as in TF.
* :meth:`DefaultBoxConfig.torchvision` -- exactly torchvision's
  ``DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)`` used by ``ssdlite320_mobilenet_v3_large``:
  the interpolated box second, 6 boxes everywhere, sizes clipped to [0, 1]. 3234 boxes at 320x320.

Order of the result (the same as torchvision's DefaultBoxGenerator and SSD head flattening): map by map (highest
resolution first), row-major over (y, x), then the boxes of one location.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Width-height pairs of one feature map: ((w, h), ...) as fractions of the input side.
BoxShapes = tuple[tuple[float, float], ...]

_LOWEST_LAYER_BOXES = (
    (0.1, 1.0),
    (None, 2.0),
    (None, 0.5),
)  # TF's reduce_boxes_in_lowest_layer: (scale, ratio)


@dataclass(frozen=True)
class DefaultBoxConfig:
    """How the default boxes of every feature map are shaped.

    Hashable (frozen, tuples only), so :func:`default_boxes` caches its result per (config, feature sizes).

    Attributes:
        aspect_ratios: per feature map, the width/height ratios of the boxes of scale ``s_k`` (1.0 included
            explicitly), in the order the boxes of one location are laid out.
        min_ratio: ``s_min``, the scale of the first (highest-resolution) map.
        max_ratio: ``s_max``, the scale of the last map.
        interpolated_box_last: where the extra unit-ratio box of scale ``sqrt(s_k * s_{k+1})`` goes: last (TF) or
            right after the first box (torchvision).
        reduce_lowest: TF's ``reduce_boxes_in_lowest_layer``: the first map gets only the boxes
            (0.1, 1.0), (s_min, 2.0), (s_min, 0.5) as (scale, aspect ratio).
        clip: clamp box widths and heights to [0, 1] (torchvision's ``clip``; TF does not clip).
    """

    aspect_ratios: tuple[tuple[float, ...], ...]
    min_ratio: float = 0.2
    max_ratio: float = 0.95
    interpolated_box_last: bool = True
    reduce_lowest: bool = False
    clip: bool = False

    def __post_init__(self) -> None:
        # Accept lists (e.g. from a JSON/YAML config) but store tuples, so the config stays hashable.
        ratios = tuple(tuple(float(ratio) for ratio in map_ratios) for map_ratios in self.aspect_ratios)
        object.__setattr__(self, "aspect_ratios", ratios)
        if len(self.aspect_ratios) < 2:
            raise ValueError(
                f"DefaultBoxConfig needs aspect ratios for at least 2 feature maps, got {self.aspect_ratios!r}"
            )
        if not 0.0 < self.min_ratio < self.max_ratio:
            raise ValueError(
                f"DefaultBoxConfig needs 0 < min_ratio < max_ratio, got min_ratio={self.min_ratio}, "
                f"max_ratio={self.max_ratio}"
            )
        for ratios in self.aspect_ratios:
            if not ratios or any(ratio <= 0 for ratio in ratios):
                raise ValueError(
                    f"DefaultBoxConfig aspect ratios must be non-empty and positive, got {self.aspect_ratios!r}"
                )

    @classmethod
    def paper(cls, num_feature_maps: int = 6) -> DefaultBoxConfig:
        """TF Object Detection API ``ssd_anchor_generator`` of ssd_mobilenet_v2 / ssdlite (2034 boxes at 320)."""
        ratios = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
        return cls(
            aspect_ratios=(ratios,) * num_feature_maps,
            min_ratio=0.2,
            max_ratio=0.95,
            interpolated_box_last=True,
            reduce_lowest=True,
            clip=False,
        )

    @classmethod
    def torchvision(cls, num_feature_maps: int = 6) -> DefaultBoxConfig:
        """torchvision ``DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)`` (3234 boxes at 320)."""
        ratios = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
        return cls(
            aspect_ratios=(ratios,) * num_feature_maps,
            min_ratio=0.2,
            max_ratio=0.95,
            interpolated_box_last=False,
            reduce_lowest=False,
            clip=True,
        )

    @property
    def num_feature_maps(self) -> int:
        return len(self.aspect_ratios)

    def scales(self) -> list[float]:
        """``s_k`` for k = 0 .. m-1, followed by 1.0 (the scale "after" the last map)."""
        m = self.num_feature_maps
        step = (self.max_ratio - self.min_ratio) / (m - 1)
        return [self.min_ratio + step * k for k in range(m)] + [1.0]

    def box_shapes(self) -> tuple[BoxShapes, ...]:
        """Per feature map, the (w, h) of the boxes of one location, in layout order."""
        scales = self.scales()
        shapes = []
        for k, ratios in enumerate(self.aspect_ratios):
            if k == 0 and self.reduce_lowest:
                specs = [
                    (self.min_ratio if scale is None else scale, ratio)
                    for scale, ratio in _LOWEST_LAYER_BOXES
                ]
            else:
                specs = [(scales[k], ratio) for ratio in ratios]
                interpolated = (math.sqrt(scales[k] * scales[k + 1]), 1.0)
                specs.insert(len(specs) if self.interpolated_box_last else 1, interpolated)
            shapes.append(
                tuple((scale * math.sqrt(ratio), scale / math.sqrt(ratio)) for scale, ratio in specs)
            )
        return tuple(shapes)


def boxes_per_location(config: DefaultBoxConfig) -> list[int]:
    """Number of default boxes at each location of each feature map (what the head predicts per cell)."""
    return [len(shapes) for shapes in config.box_shapes()]


def default_boxes(config: DefaultBoxConfig, feature_sizes: tuple[tuple[int, int], ...]) -> Tensor:
    """Default boxes for feature maps of the given sizes.

    Args:
        config: box layout.
        feature_sizes: ((h, w), ...) of each feature map, highest resolution first; one per config map.

    Returns:
        Tensor[A, 4]: (cx, cy, w, h) normalised to [0, 1] of the network input, float32, A =
        sum(h * w * boxes_per_location). A fresh copy of a cached tensor, safe to modify.
    """
    feature_sizes = tuple((int(h), int(w)) for h, w in feature_sizes)
    if len(feature_sizes) != config.num_feature_maps:
        raise ValueError(
            f"default_boxes got {len(feature_sizes)} feature sizes {feature_sizes} for a config with "
            f"{config.num_feature_maps} feature maps; pass one (h, w) per map"
        )
    return _cached_default_boxes(config, feature_sizes).clone()


@functools.lru_cache(maxsize=32)
def _cached_default_boxes(config: DefaultBoxConfig, feature_sizes: tuple[tuple[int, int], ...]) -> Tensor:
    per_map = [
        _grid_boxes(shapes, height, width, clip=config.clip)
        for shapes, (height, width) in zip(config.box_shapes(), feature_sizes)
    ]
    return torch.cat(per_map, dim=0)


def _grid_boxes(shapes: BoxShapes, height: int, width: int, *, clip: bool) -> Tensor:
    """Boxes of one map: Tensor[height * width * len(shapes), 4] (cx, cy, w, h), row-major, boxes innermost."""
    centres_x = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    centres_y = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    grid_y, grid_x = torch.meshgrid(centres_y, centres_x, indexing="ij")
    centres = torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 1, 2)  # [H*W, 1, 2]
    sizes = torch.tensor(shapes, dtype=torch.float32)  # [n, 2]
    if clip:
        sizes = sizes.clamp(min=0.0, max=1.0)
    num_locations, num_shapes = centres.shape[0], sizes.shape[0]
    boxes = torch.cat(
        (centres.expand(num_locations, num_shapes, 2), sizes.expand(num_locations, num_shapes, 2)), dim=-1
    )
    return boxes.reshape(-1, 4)
