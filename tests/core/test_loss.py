"""MultiBox loss: torchvision's SSD.compute_loss as the oracle."""

import pytest
import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_convert, box_iou

from ssdlite.core.anchors import DefaultBoxConfig, default_boxes
from ssdlite.core.loss import MultiBoxLoss
from ssdlite.core.matcher import match_anchors

IMAGE_SIZE = 160
FEATURE_SIZES = ((10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1))
NUM_COLUMNS = 4  # background + 3 classes


def torchvision_ssd() -> SSD:
    """An SSD object used only for compute_loss / matching: backbone and head are never run."""
    generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    return SSD(nn.Identity(), generator, (IMAGE_SIZE, IMAGE_SIZE), NUM_COLUMNS, head=nn.Identity())


def torchvision_loss(cls_logits, box_deltas, anchors_cxcywh, boxes, labels):
    """SSD.forward's training branch without the network: pixel anchors/targets, SSDMatcher, compute_loss."""
    ssd = torchvision_ssd()
    anchors_pixels = box_convert(anchors_cxcywh, "cxcywh", "xyxy") * IMAGE_SIZE
    targets, matched_idxs = [], []
    for image_boxes, image_labels in zip(boxes, labels):
        valid = image_labels > 0
        target = {"boxes": image_boxes[valid] * IMAGE_SIZE, "labels": image_labels[valid]}
        targets.append(target)
        if target["boxes"].numel() == 0:
            matched_idxs.append(torch.full((anchors_pixels.shape[0],), -1, dtype=torch.int64))
        else:
            matched_idxs.append(ssd.proposal_matcher(box_iou(target["boxes"], anchors_pixels)))
    head_outputs = {"cls_logits": cls_logits, "bbox_regression": box_deltas}
    return ssd.compute_loss(targets, head_outputs, [anchors_pixels] * len(targets), matched_idxs)


def random_batch(seed: int, anchors: torch.Tensor):
    generator = torch.Generator().manual_seed(seed)
    batch_size, num_slots = 4, 5
    centres = torch.rand(batch_size, num_slots, 2, generator=generator) * 0.7 + 0.15
    sizes = torch.rand(batch_size, num_slots, 2, generator=generator) * 0.4 + 0.03
    boxes = box_convert(torch.cat((centres, sizes), -1), "cxcywh", "xyxy").clamp(0, 1)
    labels = torch.randint(1, NUM_COLUMNS, (batch_size, num_slots), generator=generator)
    labels[0, 3:] = 0  # padded
    labels[1, 1:] = 0  # one object
    labels[2, :] = 0  # no objects
    cls_logits = torch.randn(batch_size, anchors.shape[0], NUM_COLUMNS, generator=generator) * 2
    box_deltas = torch.randn(batch_size, anchors.shape[0], 4, generator=generator)
    return cls_logits, box_deltas, boxes, labels


@pytest.mark.parametrize(
    "config", [DefaultBoxConfig.torchvision(), DefaultBoxConfig.paper()], ids=["tv", "paper"]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_equals_torchvision_compute_loss(config, seed):
    anchors = default_boxes(config, FEATURE_SIZES)
    cls_logits, box_deltas, boxes, labels = random_batch(seed, anchors)
    expected = torchvision_loss(cls_logits, box_deltas, anchors, boxes, labels)
    losses = MultiBoxLoss()(cls_logits, box_deltas, anchors, boxes, labels)
    torch.testing.assert_close(losses["bbox_regression"], expected["bbox_regression"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(losses["classification"], expected["classification"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(losses["loss"], losses["bbox_regression"] + losses["classification"])
    assert losses["num_positives"] > 0


def test_torchvision_anchor_generator_agrees_with_our_anchors_here():
    # The oracle above converts our anchors; make sure they are torchvision's own for this layout.
    from torchvision.models.detection.image_list import ImageList

    generator = torchvision_ssd().anchor_generator
    images = ImageList(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE), [(IMAGE_SIZE, IMAGE_SIZE)])
    theirs = generator(images, [torch.zeros(1, 1, h, w) for h, w in FEATURE_SIZES])[0]
    ours = (
        box_convert(default_boxes(DefaultBoxConfig.torchvision(), FEATURE_SIZES), "cxcywh", "xyxy")
        * IMAGE_SIZE
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_batch_without_objects_has_zero_finite_loss():
    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    cls_logits = torch.randn(2, anchors.shape[0], NUM_COLUMNS, requires_grad=True)
    box_deltas = torch.randn(2, anchors.shape[0], 4, requires_grad=True)
    losses = MultiBoxLoss()(
        cls_logits, box_deltas, anchors, torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.int64)
    )
    assert losses["num_positives"] == 0
    assert losses["loss"] == 0  # like torchvision: no positives, no mined negatives
    losses["loss"].backward()
    assert torch.isfinite(cls_logits.grad).all() and torch.isfinite(box_deltas.grad).all()


def test_hard_negatives_are_three_per_positive_and_the_hardest():
    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    boxes = torch.tensor([[[0.3, 0.3, 0.7, 0.7]]])
    labels = torch.tensor([[1]])
    cls_logits = torch.zeros(1, anchors.shape[0], NUM_COLUMNS)
    losses = MultiBoxLoss()(cls_logits, torch.zeros(1, anchors.shape[0], 4), anchors, boxes, labels)
    positives = int(losses["num_positives"])
    # uniform logits: every default box costs log(4); 1 positive + 3 negatives per positive are counted
    expected = (positives + 3 * positives) * torch.log(torch.tensor(4.0)) / positives
    torch.testing.assert_close(losses["classification"], expected)
    # make some negatives hard: they (and only they) dominate the mined set
    hard = torch.zeros(anchors.shape[0], dtype=torch.bool)
    hard[-3 * positives :] = True
    cls_logits[0, hard, 2] = 10.0
    harder = MultiBoxLoss()(cls_logits, torch.zeros(1, anchors.shape[0], 4), anchors, boxes, labels)
    matched_labels, _ = match_anchors(anchors, boxes, labels)
    assert not (hard & (matched_labels[0] > 0)).any()
    hard_loss = torch.nn.functional.cross_entropy(
        cls_logits[0, hard], torch.zeros(int(hard.sum()), dtype=torch.int64), reduction="sum"
    )
    easy_positive_loss = positives * torch.log(torch.tensor(4.0))
    torch.testing.assert_close(harder["classification"], (hard_loss.sum() + easy_positive_loss) / positives)


def test_bad_targets_give_finite_loss_and_gradients():
    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    nan, inf = float("nan"), float("inf")
    boxes = torch.tensor(
        [
            [[nan, 0.1, 0.5, 0.5], [0.2, 0.2, 0.2, 0.8], [0.1, 0.1, inf, 0.9], [-inf, -inf, 0.5, 0.5]],
            [[1.1, 0.2, 1.4, 0.6], [0.6, 0.6, 0.5, 0.7], [-0.3, -0.2, 0.6, 0.7], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    labels = torch.tensor([[1, 2, 3, 1], [1, 2, 3, 0]])
    cls_logits = torch.randn(2, anchors.shape[0], NUM_COLUMNS, requires_grad=True)
    box_deltas = torch.randn(2, anchors.shape[0], 4, requires_grad=True)
    losses = MultiBoxLoss()(cls_logits, box_deltas, anchors, boxes, labels)
    assert all(torch.isfinite(value).all() for value in losses.values())
    losses["loss"].backward()
    assert torch.isfinite(cls_logits.grad).all() and torch.isfinite(box_deltas.grad).all()
    # the only usable box is the partly-outside one, which counts as its clamped version
    clamped = MultiBoxLoss()(
        cls_logits,
        box_deltas,
        anchors,
        torch.tensor([[[0.0, 0.0, 0.6, 0.7]]]).expand(2, 1, 4),
        torch.tensor([[0], [3]]),
    )
    torch.testing.assert_close(losses["loss"], clamped["loss"])


def test_half_precision_outputs_give_float32_loss_close_to_float32():
    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    cls_logits, box_deltas, boxes, labels = random_batch(0, anchors)
    reference = MultiBoxLoss()(cls_logits, box_deltas, anchors, boxes, labels)
    losses = MultiBoxLoss()(cls_logits.bfloat16(), box_deltas.bfloat16(), anchors, boxes, labels)
    assert losses["loss"].dtype == torch.float32
    torch.testing.assert_close(losses["loss"], reference["loss"], rtol=2e-2, atol=0)


@pytest.mark.parametrize("box_loss", ["giou", "diou", "ciou"])
def test_iou_box_losses_on_the_decoded_positives(box_loss):
    from torchvision import ops

    from ssdlite.core.box_coder import decode, encode

    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    cls_logits, box_deltas, boxes, labels = random_batch(0, anchors)
    losses = MultiBoxLoss(box_loss=box_loss)(cls_logits, box_deltas, anchors, boxes, labels)
    reference = MultiBoxLoss()(cls_logits, box_deltas, anchors, boxes, labels)
    torch.testing.assert_close(losses["classification"], reference["classification"])  # only the box term changes
    # oracle: torchvision's loss on every positive default box, one at a time, over the positives of the batch
    matched_labels, matched_boxes = match_anchors(anchors, boxes, labels)
    positives = (matched_labels > 0).nonzero().tolist()
    oracle = {"giou": ops.generalized_box_iou_loss, "diou": ops.distance_box_iou_loss,
              "ciou": ops.complete_box_iou_loss}[box_loss]
    expected = sum(
        oracle(decode(box_deltas[b, a], anchors[a])[None], matched_boxes[b, a][None], reduction="sum")
        for b, a in positives
    ) / len(positives)
    torch.testing.assert_close(losses["bbox_regression"], expected, rtol=1e-5, atol=1e-6)
    # perfect offsets: zero box loss, finite gradients
    perfect = encode(matched_boxes, anchors).nan_to_num(0.0).requires_grad_(True)
    exact = MultiBoxLoss(box_loss=box_loss)(cls_logits, perfect, anchors, boxes, labels)
    assert exact["bbox_regression"].item() < 1e-5
    exact["loss"].backward()
    assert torch.isfinite(perfect.grad).all()


def test_unknown_box_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown box_loss 'iou'; use one of smooth_l1, giou, diou, ciou"):
        MultiBoxLoss(box_loss="iou")


def test_iou_aware_classification_targets():
    from ssdlite.core.box_coder import decode, encode

    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    cls_logits, box_deltas, boxes, labels = random_batch(1, anchors)
    cls_logits.requires_grad_(True)
    losses = MultiBoxLoss(cls_target="iou")(cls_logits, box_deltas, anchors, boxes, labels)
    reference = MultiBoxLoss()(cls_logits, box_deltas, anchors, boxes, labels)
    torch.testing.assert_close(losses["bbox_regression"], reference["bbox_regression"])  # only the class term
    # oracle, box by box: torchvision's box_iou for the quality, soft-target cross-entropy for each positive and
    # the one-hot one for the hard negatives, which are the same as with one-hot targets
    matched_labels, matched_boxes = match_anchors(anchors, boxes, labels)
    positive = matched_labels > 0
    hard = torch.nn.functional.cross_entropy(cls_logits.detach().transpose(1, 2), matched_labels, reduction="none")
    expected = 0.0
    for b, a in positive.nonzero().tolist():
        quality = box_iou(decode(box_deltas[b, a], anchors[a])[None], matched_boxes[b, a][None])[0, 0]
        target = torch.zeros(NUM_COLUMNS)
        target[matched_labels[b, a]], target[0] = quality, 1 - quality
        expected = expected + torch.nn.functional.cross_entropy(cls_logits[b, a].detach()[None], target[None])
    from ssdlite.core.loss import hard_negative_mask

    expected = expected + hard[hard_negative_mask(hard, positive, 3)].sum()
    torch.testing.assert_close(losses["classification"], expected / positive.sum(), rtol=1e-5, atol=1e-6)
    losses["loss"].backward()
    assert torch.isfinite(cls_logits.grad).all()
    # Perfectly placed boxes (IoU 1) make the soft target the one-hot one.
    perfect = encode(matched_boxes, anchors).nan_to_num(0.0)
    torch.testing.assert_close(
        MultiBoxLoss(cls_target="iou")(cls_logits, perfect, anchors, boxes, labels)["classification"],
        MultiBoxLoss()(cls_logits, perfect, anchors, boxes, labels)["classification"],
    )
    with pytest.raises(ValueError, match="unknown cls_target 'soft'; use one of label, iou"):
        MultiBoxLoss(cls_target="soft")
