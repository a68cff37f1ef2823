"""The in-graph decoding + NMS (ONNX, run by ONNX Runtime) against ssdlite.core.postprocess_detections.

The postprocessing graph is appended to a pass-through "network" (Identity nodes), so random head outputs can be
fed directly: no model, no exporter, a fraction of a second per case.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from ssdlite.core.anchors import DefaultBoxConfig, default_boxes
from ssdlite.core.postprocess import PostprocessSettings, postprocess_detections
from ssdlite.deploy.export.onnx_postprocess import append_postprocess

FEATURE_SIZES = ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))
ANCHORS = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)  # 2034 boxes


def postprocess_model(num_columns: int, settings: PostprocessSettings | None = None) -> onnx.ModelProto:
    """Identity "network" with inputs logits_in [B, A, K + 1], deltas_in [B, A, 4], plus the postprocessing."""
    num_anchors = ANCHORS.shape[0]
    logits_shape, deltas_shape = ["batch", num_anchors, num_columns], ["batch", num_anchors, 4]
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["logits_in"], ["cls_logits"]),
            helper.make_node("Identity", ["deltas_in"], ["box_deltas"]),
        ],
        "pass_through",
        [
            helper.make_tensor_value_info("logits_in", TensorProto.FLOAT, logits_shape),
            helper.make_tensor_value_info("deltas_in", TensorProto.FLOAT, deltas_shape),
        ],
        [
            helper.make_tensor_value_info("cls_logits", TensorProto.FLOAT, logits_shape),
            helper.make_tensor_value_info("box_deltas", TensorProto.FLOAT, deltas_shape),
        ],
    )
    # IR 10 like our exports (onnx.helper defaults to the newest IR, which older ONNX Runtime releases refuse)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return append_postprocess(model, ANCHORS, settings or PostprocessSettings())


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def head_outputs(seed: int, batch: int, num_columns: int, logit_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    cls_logits = torch.randn(batch, ANCHORS.shape[0], num_columns, generator=generator) * logit_scale
    box_deltas = torch.randn(batch, ANCHORS.shape[0], 4, generator=generator) * 0.7
    return cls_logits, box_deltas


def assert_same_as_core(outputs, cls_logits, box_deltas, *, score, topk, nms_iou, max_detections):
    boxes, scores, labels, counts = outputs
    expected = postprocess_detections(
        cls_logits,
        box_deltas,
        ANCHORS,
        torch.ones(cls_logits.shape[0], 2, dtype=torch.int64),  # 1 x 1 "pixels": boxes stay normalised
        score_threshold=score,
        topk_per_class=topk,
        nms_iou=nms_iou,
        max_detections=max_detections,
    )
    padded = min(max_detections, ANCHORS.shape[0] * (cls_logits.shape[-1] - 1))
    assert boxes.shape[1:] == (padded, 4) and scores.shape[1:] == labels.shape[1:] == (padded,)
    for index, reference in enumerate(expected):
        count = int(counts[index])
        assert count == len(reference["scores"])
        np.testing.assert_array_equal(labels[index, :count], reference["labels"].numpy())
        np.testing.assert_allclose(scores[index, :count], reference["scores"].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(boxes[index, :count], reference["boxes"].numpy(), rtol=0, atol=1e-5)
        assert (scores[index, count:] == 0).all() and (labels[index, count:] == 0).all()
        assert (boxes[index, count:] == 0).all()


@pytest.mark.parametrize(
    ("num_columns", "logit_scale", "score", "topk", "nms_iou", "max_detections"),
    [
        (4, 3.0, 0.001, 300, 0.55, 300),  # evaluation settings: the best-first prefix decides every image
        (4, 3.0, 0.2, 50, 0.45, 40),
        (4, 3.0, 0.5, 300, 0.55, 10),
        (11, 3.0, 0.05, 100, 0.55, 100),
        (91, 1.0, 0.001, 300, 0.55, 300),  # COCO-sized: 27000 candidates per image
        (3, 3.0, 0.001, 5, 0.5, 300),  # few candidates: the prefix cannot decide, the If falls back to all
        (2, 1.0, 0.001, 2000, 0.3, 300),  # heavy suppression: survivors beyond the prefix, the fallback matters
        (3, 1.0, 0.9, 300, 0.55, 300),  # nothing above the threshold
    ],
)
def test_equals_core_postprocess(num_columns, logit_scale, score, topk, nms_iou, max_detections):
    cls_logits, box_deltas = head_outputs(num_columns, 3, num_columns, logit_scale)
    outputs = session(postprocess_model(num_columns)).run(
        None,
        {
            "logits_in": cls_logits.numpy(),
            "deltas_in": box_deltas.numpy(),
            "score_threshold": np.array([score], np.float32),
            "iou_threshold": np.array([nms_iou], np.float32),
            "topk_per_class": np.array([topk], np.int64),
            "max_detections": np.array([max_detections], np.int64),
        },
    )
    assert_same_as_core(
        outputs, cls_logits, box_deltas, score=score, topk=topk, nms_iou=nms_iou, max_detections=max_detections
    )


def test_stored_defaults_apply_when_the_settings_are_not_fed():
    settings = PostprocessSettings(score_threshold=0.3, nms_iou=0.4, topk_per_class=20, max_detections=15)
    cls_logits, box_deltas = head_outputs(7, 2, 6, 3.0)
    model = postprocess_model(6, settings)
    outputs = session(model).run(None, {"logits_in": cls_logits.numpy(), "deltas_in": box_deltas.numpy()})
    assert_same_as_core(outputs, cls_logits, box_deltas, score=0.3, topk=20, nms_iou=0.4, max_detections=15)
    assert outputs[0].shape == (2, 15, 4)


def test_graph_is_valid_onnx_with_the_nms_op_and_setting_inputs():
    model = postprocess_model(5)
    onnx.checker.check_model(model, full_check=True)
    op_types = {node.op_type for node in model.graph.node}
    assert "If" in op_types
    branch_ops = {
        node.op_type
        for node in model.graph.node
        if node.op_type == "If"
        for attribute in node.attribute
        for node in attribute.g.node
    }
    assert "NonMaxSuppression" in op_types | branch_ops
    inputs = [value.name for value in model.graph.input]
    assert inputs[-4:] == ["score_threshold", "iou_threshold", "topk_per_class", "max_detections"]
    assert [value.name for value in model.graph.output] == ["boxes", "scores", "labels", "num_detections"]


def test_raw_graph_with_other_outputs_is_rejected():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    with pytest.raises(ValueError, match="cls_logits and box_deltas"):
        append_postprocess(helper.make_model(graph), ANCHORS, PostprocessSettings())
