"""Parameters and multiply-adds per layer, in the style of the MobileNets paper's Table 1.

Multiply-adds (MACs) are counted for Conv2d and Linear layers only, as the papers do: a convolution costs
``output elements * (in_channels / groups) * kernel_h * kernel_w``, a linear layer ``in_features * out_features``
per input row. Biases, BatchNorm, activations and pooling are not counted. Parameters are all parameters of the
model, BatchNorm scale and shift included (running statistics are buffers, not parameters).

Example:
    >>> print(summarize("mobilenet_v1", image_size=224))  # the rows of Table 1, 4.23M params, 569M MACs
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._builder import CLASSIFIERS, build_classifier, build_model
from ._registry import is_model, list_models
from .fold_bn import fold_batchnorm
from .ssdlite import MAX_IMAGE_SIZE

CLASSIFIER_IMAGE_SIZE = 224


@dataclass
class LayerProfile:
    """One Conv2d / Linear layer as it ran on one image.

    Attributes:
        name: qualified module name (``backbone.features.1.conv.0.0``).
        type_stride: Table 1's "Type / Stride", e.g. "Conv / s2", "Conv dw / s1", "FC".
        filter_shape: Table 1's "Filter Shape", e.g. "3x3x3x32", "3x3x32 dw", "1024x1000".
        input_size: input of the layer, "HxWxC" (or "C" for a linear layer).
        params: parameters of the layer (weight and bias).
        macs: multiply-adds of the layer for one image.
    """

    name: str
    type_stride: str
    filter_shape: str
    input_size: str
    params: int
    macs: int


@dataclass
class Profile:
    """Per-layer rows and totals of one model at one input size.

    Attributes:
        image_size: square input side.
        layers: one row per Conv2d / Linear call, in execution order.
        params: all parameters of the model (BatchNorm included).
        macs: sum of the layers' multiply-adds.
        info: extra facts about the model (name, width, classes, anchors, ...).
    """

    image_size: int
    layers: list[LayerProfile]
    params: int
    macs: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def layer_params(self) -> int:
        """Parameters of the Conv2d / Linear layers (the rest is BatchNorm)."""
        return sum(layer.params for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: info keys, ``image_size``, integer ``params``, ``macs``, ``layers``."""
        return {
            **self.info,
            "image_size": self.image_size,
            "params": int(self.params),
            "macs": int(self.macs),
            "conv_linear_params": int(self.layer_params),
            "batchnorm_params": int(self.params - self.layer_params),
            "layers": [asdict(layer) for layer in self.layers],
        }


def count_parameters(model: nn.Module) -> int:
    """All parameters of ``model`` (trainable or not, BatchNorm scale and shift included)."""
    return sum(parameter.numel() for parameter in model.parameters())


def _conv_row(name: str, conv: nn.Conv2d, inputs: torch.Tensor, output: torch.Tensor) -> LayerProfile:
    kernel_h, kernel_w = conv.kernel_size
    in_per_group = conv.in_channels // conv.groups
    depthwise = conv.groups == conv.in_channels and conv.groups > 1
    if depthwise:
        type_name, shape = "Conv dw", f"{kernel_h}x{kernel_w}x{conv.in_channels} dw"
    elif conv.groups > 1:
        type_name, shape = (
            "Conv group",
            f"{kernel_h}x{kernel_w}x{in_per_group}x{conv.out_channels} g{conv.groups}",
        )
    else:
        type_name, shape = "Conv", f"{kernel_h}x{kernel_w}x{conv.in_channels}x{conv.out_channels}"
    batch, channels, height, width = inputs.shape
    return LayerProfile(
        name=name,
        type_stride=f"{type_name} / s{conv.stride[0]}",
        filter_shape=shape,
        input_size=f"{height}x{width}x{channels}",
        params=count_parameters(conv),
        macs=output.numel() // batch * in_per_group * kernel_h * kernel_w,
    )


def _linear_row(name: str, linear: nn.Linear, inputs: torch.Tensor) -> LayerProfile:
    rows = inputs.numel() // inputs.shape[-1] // inputs.shape[0]
    return LayerProfile(
        name=name,
        type_stride="FC",
        filter_shape=f"{linear.in_features}x{linear.out_features}",
        input_size=str(linear.in_features),
        params=count_parameters(linear),
        macs=rows * linear.in_features * linear.out_features,
    )


@torch.no_grad()
def profile(model: nn.Module, image_size: int) -> Profile:
    """Runs ``model`` once on a zero image Tensor[1, 3, S, S] (eval mode) and records every Conv2d / Linear call.

    Args:
        model: any module taking an image batch; its training mode is restored afterwards.
        image_size: S.

    Returns:
        The :class:`Profile` (rows in execution order; a layer called twice gives two rows).
    """
    layers: list[LayerProfile] = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                layers.append(_conv_row(name, module, args[0], output))
            else:
                layers.append(_linear_row(name, module, args[0]))

        return hook

    handles = [
        module.register_forward_hook(make_hook(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters())
        model(torch.zeros(1, 3, image_size, image_size, dtype=parameter.dtype, device=parameter.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return Profile(
        image_size=image_size,
        layers=layers,
        params=count_parameters(model),
        macs=sum(layer.macs for layer in layers),
    )


def human(count: int) -> str:
    """12345678 -> "12.35M", 1234567890 -> "1.23G"."""
    for divisor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(count) >= divisor:
            return f"{count / divisor:.2f}{suffix}"
    return str(count)


def format_table(result: Profile) -> str:
    """Table 1-style text: Type / Stride, Filter Shape, Input Size, Params, MACs per layer, then totals."""
    header = ("Layer", "Type / Stride", "Filter Shape", "Input Size", "Params", "MACs")
    rows = [
        (
            layer.name,
            layer.type_stride,
            layer.filter_shape,
            layer.input_size,
            f"{layer.params:,}",
            f"{layer.macs:,}",
        )
        for layer in result.layers
    ]
    widths = [max(len(str(row[column])) for row in [header, *rows]) for column in range(len(header))]
    numeric = {4, 5}

    def line(row: tuple) -> str:
        cells = [
            str(cell).rjust(width) if column in numeric else str(cell).ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(header))
    info = ", ".join(f"{key}={value}" for key, value in result.info.items())
    totals = [
        f"Conv/Linear params: {result.layer_params:,}",
        f"BatchNorm params:   {result.params - result.layer_params:,}",
        f"Total params:       {result.params:,} ({human(result.params)})",
        f"Total MACs:         {result.macs:,} ({human(result.macs)}) at {result.image_size}x{result.image_size}",
    ]
    return "\n".join([info, rule, line(header), rule, *map(line, rows), rule, *totals])


def build_for_summary(
    name: str,
    *,
    image_size: int | None = None,
    width_mult: float | None = None,
    num_classes: int | None = None,
    shallow: bool = False,
) -> tuple[nn.Module, int, dict[str, Any]]:
    """Builds a detector preset or a classifier by name; returns (model, input size, info)."""
    if name in CLASSIFIERS:
        width_mult = 1.0 if width_mult is None else width_mult
        num_classes = 1000 if num_classes is None else num_classes
        model = build_classifier(name, width_mult=width_mult, num_classes=num_classes, shallow=shallow)
        image_size = CLASSIFIER_IMAGE_SIZE if image_size is None else image_size
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not 1 <= image_size <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"image_size of a classifier must be an integer from 1 to {MAX_IMAGE_SIZE} (square input side in "
                f"pixels, e.g. {CLASSIFIER_IMAGE_SIZE} as in the papers), got {image_size!r}"
            )
        info = {"model": name, "width_mult": width_mult, "num_classes": num_classes, "shallow": shallow}
        return model, image_size, info
    if not is_model(name):
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models() + list(CLASSIFIERS))}")
    overrides = {"image_size": image_size, "width_mult": width_mult, "num_classes": num_classes}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if shallow:
        overrides["shallow"] = True
    model = build_model(name, **overrides)
    info = {
        "model": name,
        "width_mult": model.config["width_mult"],
        "num_classes": model.num_classes,
        "outputs_per_box": model.num_classes + 1,
        "shallow": model.config["shallow"],
        "num_anchors": int(model.anchors.shape[0]),
    }
    return model, model.image_size, info


def summarize(
    name: str,
    *,
    image_size: int | None = None,
    width_mult: float | None = None,
    num_classes: int | None = None,
    shallow: bool = False,
    fold_bn: bool = False,
    as_json: bool = False,
) -> str:
    """The complexity summary of a registered detector or a classifier (``mobilenet_v1``, ``mobilenet_v2``).

    Args:
        name: a name from :func:`ssdlite.models.list_models` or ``mobilenet_v1`` / ``mobilenet_v2``.
        image_size: input side; default the preset's (detectors) or 224 (classifiers).
        width_mult: width multiplier; default 1.0.
        num_classes: object classes K of a detector (K + 1 outputs) or classes of a classifier (default 1000).
        shallow: MobileNetV1 without the five 14x14x512 blocks.
        fold_bn: fold BatchNorm into the convolutions first (parameters as deployed).
        as_json: one JSON object instead of the table.

    Returns:
        The text to print.

    Raises:
        ValueError: unknown name or invalid option.
    """
    model, size, info = build_for_summary(
        name, image_size=image_size, width_mult=width_mult, num_classes=num_classes, shallow=shallow
    )
    if fold_bn:
        model = fold_batchnorm(model)
    result = profile(model, size)
    result.info = {**info, "fold_bn": fold_bn}
    if as_json:
        return json.dumps(result.to_dict())
    return format_table(result)
