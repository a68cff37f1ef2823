"""Decoding + class-wise NMS as ONNX nodes, appended to an exported network graph.

The same computation as :func:`ssdlite.core.postprocess_detections` (up to the pixel rescale, which needs the
original image size and is left to the caller), in standard ONNX ops, so the file runs alone in any runtime:

* softmax over the K + 1 columns, background dropped; boxes decoded against the default boxes (a constant
  [A, 4]) with log-sizes clamped like torchvision's ``bbox_xform_clip``, then clipped to [0, 1];
* per class the ``topk_per_class`` best scores, scores > ``score_threshold``, class-wise NMS with the ONNX
  ``NonMaxSuppression`` op (scores [B, classes, boxes]: the op runs one NMS per image and class, so no
  coordinate-offset trick is needed), then the ``max_detections`` best survivors of each image, padded.

Best first. ``NonMaxSuppression`` over every candidate (up to K * ``topk_per_class`` = 27000 boxes for COCO at
the evaluation threshold 0.001) costs several times the network itself on a CPU. But whether a box survives NMS
depends only on the higher-scoring boxes of its class, so NMS over the M best candidates of an image gives each
of them its final verdict, and once ``max_detections`` of them survive (or no candidate is left outside them)
nothing outside can enter the result. The graph therefore runs NMS on the M = 2 * ``max_detections`` best scores of
each image (one ``TopK`` over the A * K scores; a candidate's rank in its class, needed for ``topk_per_class``, is
its running count among them), and an ``If`` falls back to NMS over all candidates for a batch where that did not
decide every image. Same result, for a small fraction of the work.

The four settings are graph inputs backed by initializers (ONNX overridable initializers): feed them to change a
setting at run time, leave them out for the stored defaults. ONNX Runtime logs a warning for each at session
creation (they are not constant-folded; nothing depends on them but the postprocessing).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from ssdlite.core.box_coder import VARIANCES
from ssdlite.core.postprocess import PostprocessSettings
from ssdlite_runtime.metadata import DETECTION_OUTPUT_NAMES, RAW_OUTPUT_NAMES, setting_inputs
from ssdlite_runtime.postprocess import BBOX_XFORM_CLIP

PREFIX = "postprocess/"
CENTRE_VARIANCE, SIZE_VARIANCE = VARIANCES


class _GraphBuilder:
    """Appends nodes (to the graph or a branch) and constants (always to the main graph) with unique names."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.nodes = graph.node
        self.count = 0
        self._constants: dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{PREFIX}{hint}_{self.count}"

    def constant(self, value: Any, dtype: type = np.int64) -> str:
        """A constant initializer (deduplicated for small values)."""
        from onnx import numpy_helper

        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= 16 else None
        if key is not None and key in self._constants:
            return self._constants[key]
        name = self.name("constant")
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        if key is not None:
            self._constants[key] = name
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, *, outputs: int = 1, **attributes: Any) -> Any:
        from onnx import helper

        names = [self.name(f"{hint}{index}" if outputs > 1 else hint) for index in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(op_type), **attributes))
        return names if outputs > 1 else names[0]


def append_postprocess(model: Any, anchors: Tensor, settings: PostprocessSettings) -> Any:
    """Turn a raw-network ONNX model into one that outputs detections (in place; also returned).

    Args:
        model: onnx.ModelProto whose graph outputs ``cls_logits`` [B, A, K + 1] and ``box_deltas`` [B, A, 4].
        anchors: Tensor[A, 4] default boxes (cx, cy, w, h) normalised.
        settings: the defaults of the setting inputs (:func:`ssdlite_runtime.metadata.setting_inputs`).

    Returns:
        The model, with graph outputs ``boxes`` [B, D, 4] (xyxy normalised), ``scores`` [B, D], ``labels``
        [B, D] int64 and ``num_detections`` [B] int64 (D = min(max_detections, A * K)), and the four setting inputs.

    Raises:
        ValueError: the graph does not output cls_logits and box_deltas.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    outputs = {output.name: output for output in graph.output}
    if set(outputs) != set(RAW_OUTPUT_NAMES):
        raise ValueError(
            "append_postprocess needs a raw network graph with outputs cls_logits and box_deltas, got "
            f"{sorted(outputs)}"
        )
    logits_shape = outputs["cls_logits"].type.tensor_type.shape.dim
    batch = logits_shape[0].dim_param or logits_shape[0].dim_value
    num_columns = logits_shape[2].dim_value
    anchors_np = anchors.detach().cpu().numpy().astype(np.float32)
    num_anchors = anchors_np.shape[0]
    if num_columns < 2 or logits_shape[1].dim_value not in (0, num_anchors):
        raise ValueError(
            f"cls_logits has shape {[d.dim_param or d.dim_value for d in logits_shape]} but there are "
            f"{num_anchors} default boxes; expected [B, {num_anchors}, K + 1]"
        )
    num_classes = num_columns - 1
    del graph.output[:]

    for name, value in setting_inputs(settings).items():
        graph.initializer.append(numpy_helper.from_array(value, name))
        element = TensorProto.FLOAT if value.dtype == np.float32 else TensorProto.INT64
        graph.input.append(helper.make_tensor_value_info(name, element, [1]))

    build = _GraphBuilder(graph)
    object_scores = _object_scores(build, "cls_logits")  # [B, A, K]
    boxes = _decoded_boxes(build, "box_deltas", anchors_np)  # [B, A, 4]
    total = num_anchors * num_classes
    count = build.op("Min", ["max_detections", build.constant([total])], "count")  # D

    fast, decided = _best_first(build, object_scores, boxes, count, num_classes=num_classes, total=total)
    full_branch = _full_branch(build, object_scores, boxes, count, num_anchors=num_anchors)
    fast_branch = helper.make_graph(
        [
            helper.make_node("Identity", [value], [f"{PREFIX}fast_{key}"])
            for key, value in zip(DETECTION_OUTPUT_NAMES, fast)
        ],
        "best_first",
        [],
        _output_infos(prefix=f"{PREFIX}fast_", batch=batch),
    )
    graph.node.append(
        helper.make_node(
            "If",
            [decided],
            list(DETECTION_OUTPUT_NAMES),
            name=f"{PREFIX}If",
            then_branch=fast_branch,
            else_branch=full_branch,
        )
    )
    graph.output.extend(_output_infos(prefix="", batch=batch))
    return model


def _output_infos(*, prefix: str, batch: Any) -> list[Any]:
    from onnx import TensorProto, helper

    return [
        helper.make_tensor_value_info(f"{prefix}boxes", TensorProto.FLOAT, [batch, "detections", 4]),
        helper.make_tensor_value_info(f"{prefix}scores", TensorProto.FLOAT, [batch, "detections"]),
        helper.make_tensor_value_info(f"{prefix}labels", TensorProto.INT64, [batch, "detections"]),
        helper.make_tensor_value_info(f"{prefix}num_detections", TensorProto.INT64, [batch]),
    ]


def _object_scores(build: _GraphBuilder, cls_logits: str) -> str:
    """Softmax over classes, background dropped: [B, A, K + 1] -> [B, A, K]."""
    probabilities = build.op("Softmax", [cls_logits], "probabilities", axis=-1)
    end = build.constant([np.iinfo(np.int64).max])
    return build.op("Slice", [probabilities, build.constant([1]), end, build.constant([2])], "object_scores")


def _decoded_boxes(build: _GraphBuilder, box_deltas: str, anchors: np.ndarray) -> str:
    """Same arithmetic, in the same order, as :func:`ssdlite.core.box_coder.decode`, then clipped to [0, 1]."""
    axis = build.constant([2])
    deltas_xy = build.op("Slice", [box_deltas, build.constant([0]), build.constant([2]), axis], "deltas_xy")
    deltas_wh = build.op("Slice", [box_deltas, build.constant([2]), build.constant([4]), axis], "deltas_wh")
    anchor_centres = build.constant(anchors[:, :2], np.float32)
    anchor_sizes = build.constant(anchors[:, 2:], np.float32)
    shifts = build.op("Mul", [deltas_xy, build.constant(CENTRE_VARIANCE, np.float32)], "shifts")
    centres = build.op("Add", [build.op("Mul", [shifts, anchor_sizes], "shifts_scaled"), anchor_centres], "centres")
    log_sizes = build.op("Mul", [deltas_wh, build.constant(SIZE_VARIANCE, np.float32)], "log_sizes")
    log_sizes = build.op("Min", [log_sizes, build.constant(BBOX_XFORM_CLIP, np.float32)], "log_sizes_clamped")
    half = build.op("Mul", [build.constant(0.5, np.float32), build.op("Exp", [log_sizes], "sizes")], "half")
    half = build.op("Mul", [half, anchor_sizes], "half_sizes")
    corners = build.op(
        "Concat",
        [build.op("Sub", [centres, half], "top_left"), build.op("Add", [centres, half], "bottom_right")],
        "corners",
        axis=-1,
    )
    zero, one = build.constant(0.0, np.float32), build.constant(1.0, np.float32)
    return build.op("Clip", [corners, zero, one], "boxes")


def _gather_rows(build: _GraphBuilder, values: str, index: str, width: int) -> str:
    """``values[b, index[b, i], :]``: [B, N, width] rows picked by index [B, M] -> [B, M, width]."""
    index3 = build.op("Unsqueeze", [index, build.constant([2])], "index3")
    shape = build.op("Concat", [build.op("Shape", [index], "index_shape"), build.constant([width])], "shape", axis=0)
    return build.op("GatherElements", [values, build.op("Expand", [index3, shape], "index_rows")], "rows", axis=1)


def _nms_and_best(
    build: _GraphBuilder, boxes: str, class_scores: str, max_per_class: str, count: str
) -> tuple[list[str], str]:
    """NMS per (image, class), then the ``count`` best survivors per image, padded.

    Args:
        boxes: [B, N, 4] xyxy.
        class_scores: [B, C, N] (zero where a box is not a candidate of that class).
        max_per_class: int64 [1], NMS output limit per class.
        count: int64 [1], detections per image D.

    Returns:
        ([boxes [B, D, 4], scores [B, D], labels [B, D] (1..C), num_detections [B]], class-major box index
        [B, D] of each detection: ``class * N + box``).
    """
    selected = build.op(
        "NonMaxSuppression",
        [boxes, class_scores, max_per_class, "iou_threshold", "score_threshold"],
        "selected",
        center_point_box=0,
    )  # [S, 3] (image, class, box)
    zeros = build.op("ConstantOfShape", [build.op("Shape", [class_scores], "shape")], "zeros", value=_zero())
    survivors = build.op(
        "ScatterND", [zeros, selected, build.op("GatherND", [class_scores, selected], "kept")], "survivors"
    )  # [B, C, N]: survivor scores, zero elsewhere
    flat = build.op("Reshape", [survivors, build.constant([0, -1])], "flat")
    top_scores, top_index = build.op("TopK", [flat, count], "best", outputs=2, axis=1, largest=1, sorted=1)
    num_boxes = build.op("Shape", [boxes], "num_boxes", start=1, end=2)
    labels = build.op("Add", [build.op("Div", [top_index, num_boxes], "class"), build.constant([1])], "labels")
    box_rows = _gather_rows(build, boxes, build.op("Mod", [top_index, num_boxes], "box_index"), 4)
    valid = build.op("Greater", [top_scores, "score_threshold"], "valid")
    zero_f, zero_i = build.constant(0.0, np.float32), build.constant(0)
    valid3 = build.op("Unsqueeze", [valid, build.constant([2])], "valid3")
    results = [
        build.op("Where", [valid3, box_rows, zero_f], "boxes"),
        build.op("Where", [valid, top_scores, zero_f], "scores"),
        build.op("Where", [valid, labels, zero_i], "labels"),
        build.op(
            "ReduceSum",
            [build.op("Cast", [valid], "valid_int", to=7), build.constant([1])],
            "num_detections",
            keepdims=0,
        ),
    ]
    return results, top_index


def _best_first(
    build: _GraphBuilder, object_scores: str, boxes: str, count: str, *, num_classes: int, total: int
) -> tuple[list[str], str]:
    """NMS on the M = min(2 * max_detections, A * K) best scores of each image; and whether that decided them all.

    Returns:
        (the four outputs, bool scalar "every image is decided").
    """
    flat = build.op("Reshape", [object_scores, build.constant([0, -1])], "all_scores")  # [B, A * K], a * K + k
    prefix = build.op(
        "Min", [build.op("Mul", ["max_detections", build.constant([2])], "twice"), build.constant([total])], "prefix"
    )  # M
    top_scores, top_index = build.op("TopK", [flat, prefix], "prefix", outputs=2, axis=1, largest=1, sorted=1)
    num_classes_c = build.constant(num_classes)
    classes = build.op("Mod", [top_index, num_classes_c], "prefix_class")  # [B, M] 0-based
    anchor_index = build.op("Div", [top_index, num_classes_c], "prefix_anchor")
    # Rank of each candidate within its class: the running count of its class along the sorted prefix.
    one_hot = build.op(
        "OneHot",
        [classes, build.constant([num_classes]), build.constant([0.0, 1.0], np.float32)],
        "one_hot",
        axis=-1,
    )  # [B, M, K]
    running = build.op("CumSum", [one_hot, build.constant(1)], "running")
    rank = build.op(
        "GatherElements",
        [running, build.op("Unsqueeze", [classes, build.constant([2])], "class3")],
        "rank3",
        axis=2,
    )  # [B, M, 1], 1-based
    in_top = build.op(
        "LessOrEqual",
        [rank, build.op("Cast", [build.op("Unsqueeze", ["topk_per_class", build.constant([0])], "k2")], "kf", to=1)],
        "in_top3",
    )
    candidate_scores = build.op(
        "Where",
        [in_top, build.op("Unsqueeze", [top_scores, build.constant([2])], "scores3"), build.constant(0.0, np.float32)],
        "candidate_scores3",
    )  # [B, M, 1]
    zeros = build.op(
        "ConstantOfShape",
        [build.op("Shape", [build.op("Transpose", [one_hot], "one_hot_t", perm=[0, 2, 1])], "class_shape")],
        "class_zeros",
        value=_zero(),
    )  # [B, K, M]
    class_scores = build.op(
        "ScatterElements",
        [
            zeros,
            build.op("Transpose", [build.op("Unsqueeze", [classes, build.constant([2])], "c3")], "c_row", perm=[0, 2, 1]),
            build.op("Transpose", [candidate_scores], "s_row", perm=[0, 2, 1]),
        ],
        "class_scores",
        axis=1,
    )  # [B, K, M]: each candidate's score in its class row
    candidate_boxes = _gather_rows(build, boxes, anchor_index, 4)
    results, _ = _nms_and_best(build, candidate_boxes, class_scores, prefix, count)
    # Decided: enough survivors, or no candidate above the threshold outside the prefix, or no outside at all.
    enough = build.op("GreaterOrEqual", [results[3], count], "enough")
    last = build.op("Gather", [top_scores, build.constant(-1)], "last_score", axis=1)
    exhausted = build.op("LessOrEqual", [last, "score_threshold"], "exhausted")
    per_image = build.op("Or", [enough, exhausted], "decided_per_image")
    all_decided = build.op(
        "Cast",
        [build.op("ReduceMin", [build.op("Cast", [per_image], "decided_int", to=6)], "decided_min", keepdims=0)],
        "decided_bool",
        to=9,
    )
    covers_all = build.op(
        "Equal", [build.op("Squeeze", [prefix, build.constant([0])], "m"), build.constant(total)], "covers_all"
    )
    return results, build.op("Or", [all_decided, covers_all], "decided")


def _full_branch(build: _GraphBuilder, object_scores: str, boxes: str, count: str, *, num_anchors: int) -> Any:
    """The ``If`` else-branch: top-k per class over all scores, NMS over every candidate."""
    from onnx import helper

    branch_nodes: list[Any] = []
    main_nodes, build.nodes = build.nodes, branch_nodes
    scores = build.op("Transpose", [object_scores], "class_major", perm=[0, 2, 1])  # [B, K, A]
    k = build.op("Min", ["topk_per_class", build.constant([num_anchors])], "k")
    values, indices = build.op("TopK", [scores, k], "class_top", outputs=2, axis=2, largest=1, sorted=0)
    zeros = build.op("ConstantOfShape", [build.op("Shape", [scores], "shape")], "zeros", value=_zero())
    candidates = build.op("ScatterElements", [zeros, indices, values], "candidates", axis=2)
    results, _ = _nms_and_best(build, boxes, candidates, k, count)
    for key, value in zip(DETECTION_OUTPUT_NAMES, results):
        branch_nodes.append(helper.make_node("Identity", [value], [f"{PREFIX}full_{key}"]))
    build.nodes = main_nodes
    return helper.make_graph(branch_nodes, "all_candidates", [], _output_infos(prefix=f"{PREFIX}full_", batch=None))


def _zero() -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.zeros(1, np.float32))
