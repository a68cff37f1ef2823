"""What a model puts in the files it is exported to: its :class:`~ssdlite_runtime.metadata.ModelInfo`.

The keys, their encoding and the reading side belong to the runtime (:mod:`ssdlite_runtime.metadata`); this module
fills in the values, from the model (labels, input size, default boxes, architecture) and from the one definition of
each setting in ``ssdlite.core``: the input scaling (:mod:`ssdlite.core.normalization`), the box-coding variances
(:data:`ssdlite.core.box_coder.VARIANCES`) and the postprocessing settings
(:class:`~ssdlite_runtime.postprocess.PostprocessSettings`, ``EVALUATION_POSTPROCESS`` by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ssdlite.core.box_coder import VARIANCES
from ssdlite.core.normalization import PIXEL_MEAN, PIXEL_STD
from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings
from ssdlite_runtime.metadata import ModelInfo

__all__ = ["INPUT_SCALING", "model_info", "model_labels", "model_metadata"]

INPUT_SCALING: dict[str, tuple[float, float, float]] = {"mean": (PIXEL_MEAN,) * 3, "scale": (1 / PIXEL_STD,) * 3}
"""The network's input scaling (:mod:`ssdlite.core.normalization`) as ``ModelInfo`` and
``ssdlite_runtime.preprocess.preprocess_images`` take it: ``input = (pixel - mean) * scale`` per RGB channel."""


def model_labels(
    num_classes: int, class_names: Sequence[str] | None, category_ids: Sequence[int] | None
) -> tuple[list[str], list[int]]:
    """The class names and dataset category ids of labels 1..K, defaulting to ``class_1..class_K`` and 1..K.

    Raises:
        ValueError: names or ids whose count is not the model's number of classes.
    """
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(1, num_classes + 1)]
    ids = [int(i) for i in category_ids] if category_ids is not None else list(range(1, num_classes + 1))
    if len(names) != num_classes or len(ids) != num_classes:
        raise ValueError(
            f"the model has {num_classes} classes but got {len(names)} class names and {len(ids)} category ids; "
            "pass one name and one id per object class (background excluded)"
        )
    return names, ids


def model_info(
    model: Any,
    *,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    postprocess: PostprocessSettings | None = None,
    quantization: str = "none",
) -> ModelInfo:
    """What a runtime needs to know about ``model``, as its exported file (or the eager backend) describes it.

    Args:
        model: the SSDLite (``config``, ``num_classes``, ``image_size``, ``feature_sizes``, ``anchors`` are read).
        class_names: names of labels 1..K (default ``class_1 .. class_K``).
        category_ids: dataset category id of labels 1..K (default 1..K).
        postprocess: in-graph postprocessing settings, None for a raw-network file (whose metadata then states
            the evaluation settings).
        quantization: "none" or a description of the INT8 quantization.

    Raises:
        ValueError: class names or category ids whose count is not the model's number of classes.
    """
    names, ids = model_labels(int(model.num_classes), class_names, category_ids)
    return ModelInfo(
        names,
        ids,
        int(model.image_size),
        **INPUT_SCALING,
        with_nms=postprocess is not None,
        default_boxes=model.anchors.detach().float().cpu().numpy(),
        variances=VARIANCES,
        postprocess=postprocess or EVALUATION_POSTPROCESS,
        quantization=quantization,
        model_config=dict(getattr(model, "config", {})),
        feature_sizes=tuple(tuple(int(side) for side in size_hw) for size_hw in model.feature_sizes),
    )


def model_metadata(model: Any, **options: Any) -> dict[str, str]:
    """The ``{key: string}`` metadata every exported file of ``model`` carries (ONNX ``metadata_props``, ...):
    ``model_info(model, **options).to_metadata()``; the keys are listed in :mod:`ssdlite_runtime.metadata`."""
    return model_info(model, **options).to_metadata()
