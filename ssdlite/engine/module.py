"""The LightningModule of SSDLite training: the learning logic only (data lives in the DataModule).

What it does:

* builds the detector from the model registry (:func:`ssdlite.models.build_model`), optionally initialised
  from another checkpoint (``init_from``: every shape-compatible weight) and with a frozen backbone;
* trains with :class:`ssdlite.core.MultiBoxLoss` and SGD (momentum, weight decay 4e-5 on conv weights only), AdamW
  or RMSprop; the learning rate is given for ``base_batch_size`` images and scaled linearly to the global batch
  (batch size x devices x nodes x gradient accumulation); linear warm-up then cosine decay, stepped per step (when
  training is limited by time, :class:`ssdlite.engine.schedule.TimeBudget`, a callback ``ssdlite-train`` adds,
  fits the decay to ``trainer.max_time``);
* keeps an exponential moving average of the weights (``ema_model``, :class:`ssdlite.engine.ema.ModelEMA`), which
  is what validation evaluates and what ``load_checkpoint`` loads;
* recalibrates the BatchNorm statistics of the evaluated network on training batches before each validation
  (``bn_calibration_batches`` of the DataModule's ``calibration_dataloader()``, "precise BN": the running averages
  lag behind weights that change quickly, which on short schedules makes eval-mode outputs far worse than
  training-mode ones);
* validates with COCO mAP (:class:`ssdlite.evaluation.CocoEvaluator` on the DataModule's ``val_coco_gt()``),
  logging ``val/AP``, ``val/AP50``, ... (the best checkpoint is chosen on ``val/AP``); a validation image that
  cannot be read is scored as an image with no detections and named in a warning (``ssdlite.engine.evaluate``).

Gradient clipping, mixed precision, SyncBatchNorm and the number of devices are Trainer settings.

Checkpoint ``hyper_parameters`` hold, as plain Python types: the constructor arguments, ``model_config`` (the
``model.config`` dict ``build_model_from_config`` rebuilds the network from), ``class_names`` and ``category_ids``.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ssdlite.core.loss import MultiBoxLoss
from ssdlite.core.postprocess import PostprocessSettings
from ssdlite.engine import finetune
from ssdlite.engine.ema import ModelEMA
from ssdlite.engine.evaluate import batch_coco_results, unreadable_image_ids
from ssdlite.engine.optim import OptimizerName, build_optimizer, parameter_groups, scaled_learning_rate
from ssdlite.engine.schedule import WarmupCosineLR, warmup_cosine_scheduler
from ssdlite.evaluation import COCO_METRIC_NAMES, VOC_METRIC_NAMES, CocoEvaluator, unreadable_images_note
from ssdlite.models import (
    CATEGORY_IDS_KEY,
    CLASS_NAMES_KEY,
    HYPER_PARAMETERS_KEY,
    MODEL_CONFIG_KEY,
    build_model,
)

logger = logging.getLogger(__name__)
_info_on_rank_zero = rank_zero_only(logger.info)


class SSDLiteModule(L.LightningModule):
    """SSDLite training and validation.

    Args:
        arch: model preset (``ssdlite.models.list_models()``), e.g. ssdlite_mobilenet_v2, ssdlite320_mobilenet_v2.
        num_classes: K object classes (background excluded); linked from the data by ``tools/train.py``.
        class_names: names of labels 1..K; linked from the data.
        category_ids: dataset category id of labels 1..K; linked from the data.
        width_mult: width multiplier of the backbone (0.35 ... 1.4).
        image_size: square network input side S (the data is resized to it).
        default_boxes: default box layout: "paper", "torchvision", a dict of DefaultBoxConfig fields, or null for
            the preset's.
        pretrained_backbone: null, "imagenet" (downloads torchvision's weights, MobileNetV2 x1.0 only) or the path
            of a local backbone ``.pth``.
        init_from: checkpoint to initialise from (fine-tuning): every weight whose name and shape fit is copied,
            the class head is re-initialised when the classes differ.
        freeze_backbone: train the extra layers and heads only (backbone weights and BatchNorm statistics fixed).
        freeze_backbone_stride: freeze the backbone's first layers, those whose output stride is at most this (2,
            4, 8 or 16 on MobileNetV2; 0: none): their weights and BatchNorm statistics stay the pretrained ones.
            Early layers compute generic edges and textures that a small data set cannot improve, and they run at
            the largest resolution, so their backward pass is the costliest to run (docs/recipes.md measures 8).
        freeze_backbone_bn: keep the backbone's BatchNorm statistics at the pretrained ones (its BatchNorm layers
            stay in eval mode; every weight still learns), for a pretrained backbone fine-tuned at small batches.
        backbone_lr_factor: a factor on the backbone's learning rate (say 0.1 for a pretrained backbone, so that
            the new layers learn at the full rate without the ImageNet features being washed out).
        optimizer: "sgd", "adamw" or "rmsprop".
        lr: peak learning rate for a global batch of ``base_batch_size`` images.
        base_batch_size: the batch ``lr`` is given for; the run's lr is ``lr * global_batch / base_batch_size``.
            null: use ``lr`` as it is.
        momentum: SGD / RMSprop momentum (AdamW beta1).
        weight_decay: L2 weight decay of conv weights (BatchNorm parameters and biases get none).
        weight_decay_overrides: another decay for the conv weights under a module of the network, by dotted name
            (say ``{regression_head: 4.0e-5}``); the longest matching name wins.
        warmup_epochs: length of the linear warm-up, in epochs (fractions allowed).
        warmup_steps: length of the linear warm-up in optimizer steps, instead of ``warmup_epochs`` (for a schedule
            in steps, whose warm-up should not depend on the size of the data set).
        warmup_start_factor: learning-rate factor at the first step.
        min_lr_factor: learning-rate factor at the end of the cosine decay.
        ema: keep an exponential moving average of the weights for validation and export.
        ema_decay: EMA decay once warmed up.
        ema_warmup_steps: time constant of the EMA decay warm-up, in optimizer steps.
        neg_pos_ratio: hard negatives per positive in the classification loss.
        box_loss: "smooth_l1" (the paper's) or an IoU loss on the decoded boxes, "giou", "diou" or "ciou".
        cls_target: "label" (the paper's one-hot classification target) or "iou" (IoU-aware: a positive's target
            is the IoU of its predicted box on its class, the rest on background; see ``MultiBoxLoss``).
        bn_calibration_batches: training batches whose statistics replace the BatchNorm running averages of the
            evaluated network before each validation (0: keep the running averages).
        eval_backend: COCO evaluation backend for validation, "faster" (faster-coco-eval) or "pycocotools"
            (the same numbers).
        channels_last: keep weights and batches in channels-last (NHWC) memory, the layout the CPU convolution
            kernels prefer (the CPU recipes in configs/ turn it on; their headers give the speed-up measured);
            weights load the same either way.
    """

    def __init__(
        self,
        *,
        arch: str = "ssdlite_mobilenet_v2",
        num_classes: int = 90,
        class_names: list[str] | None = None,
        category_ids: list[int] | None = None,
        width_mult: float = 1.0,
        image_size: int = 320,
        default_boxes: str | dict[str, Any] | None = None,
        pretrained_backbone: str | None = None,
        init_from: str | None = None,
        freeze_backbone: bool = False,
        freeze_backbone_bn: bool = False,
        freeze_backbone_stride: int = 0,
        backbone_lr_factor: float = 1.0,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.01,
        base_batch_size: int | None = None,
        momentum: float = 0.9,
        weight_decay: float = 4e-5,
        weight_decay_overrides: dict[str, float] | None = None,
        warmup_epochs: float = 1.0,
        warmup_steps: int | None = None,
        warmup_start_factor: float = 0.001,
        min_lr_factor: float = 0.0,
        ema: bool = True,
        ema_decay: float = 0.9998,
        ema_warmup_steps: float = 2000.0,
        neg_pos_ratio: int = 3,
        box_loss: Literal["smooth_l1", "giou", "diou", "ciou"] = "smooth_l1",
        cls_target: Literal["label", "iou"] = "label",
        bn_calibration_batches: int = 20,
        eval_backend: Literal["faster", "pycocotools"] = "faster",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        class_names = [str(name) for name in class_names] if class_names else [
            f"class_{label}" for label in range(1, num_classes + 1)
        ]
        category_ids = [int(i) for i in category_ids] if category_ids else list(range(1, num_classes + 1))
        if warmup_steps is not None and (isinstance(warmup_steps, bool) or warmup_steps < 0):
            raise ValueError(f"warmup_steps must be a whole number >= 0 (or null to use warmup_epochs), got {warmup_steps}")
        if not len(class_names) == len(category_ids) == num_classes:
            raise ValueError(
                f"num_classes={num_classes} but got {len(class_names)} class_names and {len(category_ids)} "
                "category_ids; give one name and one id per object class (tools/train.py links them from the data)"
            )
        # class_names / category_ids go into checkpoints through on_save_checkpoint: as logged hyper-parameters
        # they would clash with the DataModule's own ``class_names`` argument (its class source, not the list).
        self.save_hyperparameters(ignore=["class_names", "category_ids"])
        overrides: dict[str, Any] = {"num_classes": num_classes, "width_mult": width_mult, "image_size": image_size}
        if default_boxes is not None:
            overrides["default_boxes"] = default_boxes
        if pretrained_backbone is not None:
            overrides["pretrained_backbone"] = pretrained_backbone
        self.model = build_model(arch, **overrides)
        if init_from is not None:
            transfer = finetune.load_compatible_weights(self.model, init_from, class_names=class_names)
            _info_on_rank_zero(transfer.summary())
        if freeze_backbone:
            _info_on_rank_zero(f"backbone frozen: {finetune.freeze_backbone(self.model):,} parameters")
        self._frozen_blocks = (
            finetune.frozen_block_count(self.model, freeze_backbone_stride) if freeze_backbone_stride else 0
        )
        if self._frozen_blocks and not freeze_backbone:
            frozen = finetune.freeze_backbone_blocks(self.model, self._frozen_blocks)
            _info_on_rank_zero(
                f"backbone frozen up to stride {freeze_backbone_stride}: its first {self._frozen_blocks} blocks, "
                f"{frozen:,} parameters"
            )
        parameter_groups(  # names and values checked now
            self.model, weight_decay=weight_decay, overrides=weight_decay_overrides,
            lr_factors={"backbone": backbone_lr_factor},
        )
        self.class_names = class_names
        self.category_ids = category_ids
        self.criterion = MultiBoxLoss(neg_pos_ratio=neg_pos_ratio, box_loss=box_loss, cls_target=cls_target)
        self.ema_model = ModelEMA(self.model, decay=ema_decay, warmup_steps=ema_warmup_steps) if ema else None
        self.detection_settings = PostprocessSettings()
        self.last_val_metrics: dict[str, Any] = {}
        self.last_val_step: int | None = None
        self.last_val_results: list[dict[str, Any]] = []
        self._evaluator: CocoEvaluator | None = None
        self._val_results: list[dict[str, Any]] = []
        self._val_image_ids: list[int] = []
        self._val_unreadable_ids: list[int] = []
        self._ema_step = -1

    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)  # before the optimizer is built from the parameters

    def _in_memory_format(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch with its images in channels-last memory when ``channels_last`` is set."""
        if not self.hparams.channels_last:
            return batch
        return {**batch, "images": batch["images"].contiguous(memory_format=torch.channels_last)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Adds what ``load_checkpoint`` needs to ``hyper_parameters``, as plain Python types (weights_only)."""
        checkpoint[HYPER_PARAMETERS_KEY] = {
            **_plain(dict(checkpoint.get(HYPER_PARAMETERS_KEY, {}))),
            MODEL_CONFIG_KEY: _plain(self.model.config),
            CLASS_NAMES_KEY: list(self.class_names),
            CATEGORY_IDS_KEY: [int(i) for i in self.category_ids],
        }

    # ------------------------------------------------------------------------------------------------ network

    @property
    def eval_model(self) -> torch.nn.Module:
        """The network validation runs: the EMA copy when there is one, else the trained weights."""
        return self.ema_model.module if self.ema_model is not None else self.model

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Raw outputs of the evaluation network (EMA when enabled): ``cls_logits`` [B, A, K+1], ``box_deltas``."""
        return self.eval_model(images)

    def train(self, mode: bool = True) -> SSDLiteModule:
        """Like ``nn.Module.train``, but a frozen backbone (or its frozen first blocks) stays in eval mode, and with
        ``freeze_backbone_bn`` its BatchNorm layers do (their statistics stay the pretrained ones)."""
        super().train(mode)
        if self.hparams.freeze_backbone:
            self.model.backbone.eval()
        if self._frozen_blocks:
            self.model.backbone.features[: self._frozen_blocks].eval()
        for module in self._frozen_batchnorm(self.model):
            module.eval()
        return self

    def _frozen_batchnorm(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The BatchNorm layers of ``model`` (the trained network or its EMA copy) whose statistics stay fixed."""
        if self.hparams.freeze_backbone or self.hparams.get("freeze_backbone_bn", False):
            frozen = model.backbone
        elif self._frozen_blocks:
            frozen = model.backbone.features[: self._frozen_blocks]
        else:
            return []
        return [module for module in frozen.modules() if isinstance(module, _BatchNorm)]

    # ----------------------------------------------------------------------------------------------- training

    def _losses(self, model: torch.nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        outputs = model(batch["images"])
        return self.criterion(
            outputs["cls_logits"].float(),
            outputs["box_deltas"].float(),
            model.anchors,
            batch["boxes"],
            batch["labels"],
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        batch = self._in_memory_format(batch)
        losses = self._losses(self.model, batch)
        batch_size = batch["images"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log_dict(
            {
                "train/bbox_regression": losses["bbox_regression"],
                "train/classification": losses["classification"],
            },
            on_step=True,
            on_epoch=True,
            batch_size=batch_size,
        )
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, prog_bar=True)
        return losses["loss"]

    def on_train_start(self) -> None:
        self._ema_step = self.trainer.global_step
        self._fit_schedule(self._scheduler())

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # One EMA update per optimizer step (not per micro-batch under gradient accumulation).
        if self.ema_model is not None and self.trainer.global_step != self._ema_step:
            self.ema_model.update(self.model)
            self._ema_step = self.trainer.global_step

    # --------------------------------------------------------------------------------------------- validation

    def on_validation_epoch_start(self) -> None:
        self._val_results = []
        self._val_image_ids = []
        self._val_unreadable_ids = []
        if not self.trainer.sanity_checking:
            self.calibrate_batchnorm()

    def calibrate_batchnorm(self) -> None:
        """Recomputes the BatchNorm statistics of :attr:`eval_model` on ``bn_calibration_batches`` training batches.

        As ``torch.optim.swa_utils.update_bn``: running averages reset, then the cumulative average over the
        batches (the DataModule's ``calibration_dataloader()``: training augmentation, shuffled) in train mode; but
        the layers whose statistics are frozen (``freeze_backbone``, ``freeze_backbone_bn``) keep theirs and stay
        in eval mode, as in training (``update_bn`` would reset them too). Nothing happens with
        ``bn_calibration_batches`` 0 or a DataModule without training batches to calibrate on.
        """
        batches = self.hparams.bn_calibration_batches
        datamodule = self.trainer.datamodule
        if not batches or not hasattr(datamodule, "calibration_dataloader"):
            return
        loader = datamodule.calibration_dataloader()
        if loader is None:
            return
        memory_format = torch.channels_last if self.hparams.channels_last else torch.contiguous_format
        images = (
            batch["images"].to(self.device).contiguous(memory_format=memory_format)
            for batch in itertools.islice(loader, batches)
        )
        with torch.inference_mode(False), torch.no_grad():
            recompute_batchnorm_statistics(images, self.eval_model, frozen=self._frozen_batchnorm(self.eval_model))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # The placeholder of an unreadable image has no boxes, so it adds nothing to the loss (no positives, hence no
        # hard negatives) and batch_coco_results drops its detections.
        batch = self._in_memory_format(batch)
        model = self.eval_model
        losses = self._losses(model, batch)
        self.log("val/loss", losses["loss"], on_epoch=True, sync_dist=True, batch_size=batch["images"].shape[0])
        self._val_results.extend(
            batch_coco_results(model, batch, self.category_ids, self.detection_settings)
        )
        self._val_image_ids.extend(batch["image_ids"].tolist())
        self._val_unreadable_ids.extend(unreadable_image_ids(batch))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        results, unreadable_ids = self._gather_results()
        metrics = None
        if self.trainer.is_global_zero:
            metrics = self.coco_evaluator().evaluate(results)
            metrics["unreadable_images"] = self._unreadable_file_names(unreadable_ids)
            if metrics["unreadable_images"]:
                logger.warning(f"validation: {unreadable_images_note(metrics['unreadable_images'])}")
        metrics = self.trainer.strategy.broadcast(metrics, src=0)
        self.last_val_metrics = metrics
        self.last_val_step = self.trainer.global_step
        self.last_val_results = results  # rank 0: the detections of the whole validation set; elsewhere []
        shown = ("AP", "AP50")
        self.log_dict({f"val/{name}": float(metrics[name]) for name in shown}, prog_bar=True)
        self.log_dict(
            {
                f"val/{name}": float(metrics[name])
                for name in (*COCO_METRIC_NAMES, *VOC_METRIC_NAMES)
                if name not in shown
            }
        )

    def coco_evaluator(self) -> CocoEvaluator:
        """The evaluator over the DataModule's validation ground truth (built once)."""
        if self._evaluator is None:
            datamodule = self.trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "val_coco_gt"):
                raise ValueError(
                    "validation needs a DataModule with val_coco_gt() (ssdlite.data.DetectionDataModule) for the "
                    "COCO ground truth"
                )
            self._evaluator = CocoEvaluator(datamodule.val_coco_gt(), backend=self.hparams.eval_backend)
        return self._evaluator

    def _gather_results(self) -> tuple[list[dict[str, Any]], list[int]]:
        """All ranks' COCO results on rank 0 (elsewhere: []), each image once, and the ids of the unreadable images.

        The DistributedSampler pads the last batch with repeated images; their detections are kept from the
        first rank that saw them.
        """
        world_size = self.trainer.world_size
        if world_size == 1:
            return self._val_results, self._val_unreadable_ids
        gathered: list[Any] = [None] * world_size
        torch.distributed.all_gather_object(
            gathered, (self._val_image_ids, self._val_results, self._val_unreadable_ids)
        )
        if not self.trainer.is_global_zero:
            return [], []
        seen: set[int] = set()
        merged = []
        unreadable: set[int] = set()
        for image_ids, results, unreadable_ids in gathered:
            new_ids = set(image_ids) - seen
            merged.extend(result for result in results if result["image_id"] in new_ids)
            seen |= new_ids
            unreadable.update(unreadable_ids)
        return merged, sorted(unreadable)

    def _unreadable_file_names(self, image_ids: list[int]) -> list[str]:
        """The validation ground truth's ``file_name`` of each image id (sorted by id, each once)."""
        if not image_ids:
            return []
        file_name_of = {image["id"]: image["file_name"] for image in self.trainer.datamodule.val_coco_gt()["images"]}
        return [file_name_of[image_id] for image_id in sorted(set(image_ids))]

    # ------------------------------------------------------------------------------------ optimizer, schedule

    def configure_optimizers(self) -> dict[str, Any]:
        hparams = self.hparams
        global_batch = self._global_batch_size()
        lr = scaled_learning_rate(hparams.lr, global_batch_size=global_batch, base_batch_size=hparams.base_batch_size)
        optimizer = build_optimizer(
            hparams.optimizer,
            parameter_groups(
                self.model, weight_decay=hparams.weight_decay, overrides=hparams.weight_decay_overrides,
                lr_factors={"backbone": hparams.backbone_lr_factor},
            ),
            lr=lr,
            momentum=hparams.momentum,
        )
        total_steps, warmup_steps = self._schedule_length()
        scheduler = WarmupCosineLR(
            optimizer,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_start_factor=hparams.warmup_start_factor,
            min_factor=hparams.min_lr_factor,
        )
        scaling = (
            f" = {hparams.lr:g} x {global_batch}/{hparams.base_batch_size} (global/base batch)"
            if hparams.base_batch_size
            else ""
        )
        length = f"over {scheduler.total_steps} steps" if scheduler.total_steps else "until max_time runs out"
        _info_on_rank_zero(
            f"{hparams.optimizer}: lr {lr:g}{scaling}; warm-up {scheduler.warmup_steps} steps, cosine decay "
            f"{length}; weight decay {hparams.weight_decay:g}"
            + "".join(f", {decay:g} in {name}" for name, decay in (hparams.weight_decay_overrides or {}).items())
            + (f"; backbone lr x {hparams.backbone_lr_factor:g}" if hparams.backbone_lr_factor != 1.0 else "")
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _global_batch_size(self) -> int:
        datamodule = self.trainer.datamodule
        batch_size = getattr(datamodule, "batch_size", None)
        if batch_size is None:
            if self.hparams.base_batch_size is not None:
                raise ValueError(
                    "lr scaling (model.base_batch_size) needs the DataModule's batch_size; train with a DataModule"
                )
            batch_size = 1
        return int(batch_size) * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def _scheduler(self) -> WarmupCosineLR | None:
        return warmup_cosine_scheduler(self.trainer)

    def _schedule_length(self) -> tuple[int | None, int]:
        """(total optimizer steps or None when no step count ends the run, warm-up steps) from the Trainer.

        None leaves the end to the time budget (``max_time``, see :class:`ssdlite.engine.schedule.TimeBudget`).
        """
        total = self.trainer.estimated_stepping_batches
        if math.isinf(self.trainer.num_training_batches):
            self.trainer.fit_loop.setup_data()  # estimated_stepping_batches skips it when max_epochs is -1
        batches = self.trainer.num_training_batches
        steps_per_epoch = 1 if math.isinf(batches) else max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))
        if self.hparams.get("warmup_steps") is not None:
            warmup_steps = int(self.hparams.warmup_steps)
        else:
            warmup_steps = round(self.hparams.warmup_epochs * steps_per_epoch)
        if math.isinf(total):
            return None, warmup_steps
        return max(1, int(total)), min(warmup_steps, max(0, int(total) - 1))

    def _fit_schedule(self, scheduler: WarmupCosineLR | None) -> None:
        """Sets the schedule's length again when training (re)starts: a resumed run may train longer."""
        if scheduler is not None:
            scheduler.total_steps, scheduler.warmup_steps = self._schedule_length()

    def recipe_facts(self) -> dict[str, Any]:
        """How this module trains, as the model card states it: the starting weights, the optimizer and its peak
        lr, lr scaling, the schedule, weight decay and EMA (the schedule's numbers once the Trainer has built it)."""
        hparams = self.hparams
        scheduler = self._scheduler() if self._trainer is not None else None
        start = f"pretrained backbone {hparams.pretrained_backbone}" if hparams.pretrained_backbone else "scratch"
        scaling = f"lr {hparams.lr:g} given for a batch of {hparams.base_batch_size}, scaled linearly"
        return {
            "from": hparams.init_from or start,
            "optimizer": f"{hparams.optimizer}, peak lr {scheduler.base_lrs[0]:g}" if scheduler else hparams.optimizer,
            "lr scaling": scaling if hparams.base_batch_size else "none (lr used as given)",
            "schedule": f"linear warm-up {scheduler.warmup_steps} steps, cosine decay" if scheduler else "-",
            "weight decay": hparams.weight_decay,
            "EMA": f"decay {hparams.ema_decay}" if hparams.ema else "off",
        }


def recompute_batchnorm_statistics(
    images: Iterable[Tensor], model: torch.nn.Module, *, frozen: Sequence[torch.nn.Module] = ()
) -> None:
    """Replaces the running statistics of ``model``'s BatchNorm layers, but ``frozen``, by their cumulative
    average over ``images`` (one forward pass per batch in train mode, ``frozen`` in eval mode); the model's mode
    and the layers' momenta are restored afterwards."""
    frozen_ids = {id(module) for module in frozen}
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and id(m) not in frozen_ids]
    if not layers:
        return
    momenta = {layer: layer.momentum for layer in layers}
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for module in frozen:
        module.eval()
    for batch in images:
        model(batch)
    for layer, momentum in momenta.items():
        layer.momentum = momentum
    model.train(was_training)
    for module in frozen:
        module.eval()


def _plain(value: Any) -> Any:
    """A copy of nested dicts / lists / tuples with tuples as lists (plain YAML / weights_only types)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
