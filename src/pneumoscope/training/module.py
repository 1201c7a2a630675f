"""The Lightning module: loss, accuracy, optimizer and schedule around a ``pneumoscope.models.Classifier``.

Batches arrive as uint8 ``(B, 1, S, S)`` tensors; they become float [0, 1] and are augmented *after* the transfer
to the training device (``on_after_batch_transfer``), so that on a GPU the whole batch is augmented there.

Losses: cross-entropy (optional class weights and label smoothing) or, for a single-output binary model
(``model.sigmoid_binary``), BCE with the positive class weighted. The validation loss that chooses the best epoch is
the plain (unweighted, unsmoothed) negative log-likelihood, comparable across epochs and strategies.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from pneumoscope.device import skip_uninitialized_memory_fill
from pneumoscope.training.config import TrainConfig
from pneumoscope.training.strategies import (
    Stage,
    apply_stage,
    freeze_frozen_norm_stats,
    stage_of_epoch,
    stages,
    trainable_parameters,
)

_STATE_KEY = "pneumoscope"


def to_float_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 images → float32 in [0, 1] (other dtypes are taken as already scaled)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def classification_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean loss of ``logits`` (B, K) against class indices: softmax CE for K >= 2, sigmoid BCE for K == 1."""
    logits = logits.float()
    if logits.shape[1] == 1:
        soft = target.float() * (1.0 - label_smoothing) + 0.5 * label_smoothing
        pos_weight = None if weight is None else (weight[1] / weight[0]).reshape(1)
        return F.binary_cross_entropy_with_logits(logits[:, 0], soft, pos_weight=pos_weight)
    return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)


def predicted_class(logits: torch.Tensor) -> torch.Tensor:
    """Class index per row (threshold 0 on a single logit, argmax otherwise)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def build_optimizer(name: str, params: list[nn.Parameter], lr: float, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) / Adam / AdamW / AdaGrad over ``params`` (``optim.eps``, when set, for the adaptive ones)."""
    wd = config.optim.weight_decay
    eps = {} if config.optim.eps is None else {"eps": config.optim.eps}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.optim.momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **eps)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **eps)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd, **eps)
    raise ValueError(f"unknown optimizer {name!r}")


def reseed(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch (all devices), numpy and random from the run's seed, the epoch and the process rank."""
    import random

    import numpy as np

    value = (seed * 1_000_003 + epoch * 1009 + rank) % (2**32)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


class ClassifierModule(L.LightningModule):
    """Trains ``model`` with the loss, optimizer, schedule and strategy of ``config``."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        class_weights: torch.Tensor | None = None,
        augment: nn.Module | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.model = model
        self.config = config
        self.channels_last = channels_last
        self.register_buffer("class_weights", class_weights, persistent=False)
        # kept out of the module tree: it has no learnable state and must not enter checkpoints
        self._augment = (augment,)
        self._compiled: tuple[Any, ...] = (torch.compile(model),) if config.trainer.compile else ()
        self.stage = stage_of_epoch(config, 0).number
        apply_stage(self.model, config, self.current_stage)
        self.train_loss = MeanMetric()
        self.train_acc = MeanMetric()
        self.val_loss = MeanMetric()
        self.val_acc = MeanMetric()
        self.epoch_figures: dict[str, float] = {}
        self._epoch_batches = 0

    # ---------------------------------------------------------------- stages
    @property
    def current_stage(self) -> Stage:
        return stages(self.config)[self.stage - 1]

    @property
    def last_stage_number(self) -> int:
        return stages(self.config)[-1].number

    def _enter_stage(self, number: int) -> None:
        self.stage = number
        apply_stage(self.model, self.config, self.current_stage)

    def on_fit_start(self) -> None:
        # here, not where the Trainer is built: every process of a multi-process run passes through this hook
        if torch.are_deterministic_algorithms_enabled():
            skip_uninitialized_memory_fill()

    def on_train_epoch_start(self) -> None:
        self._epoch_batches = 0
        wanted = stage_of_epoch(self.config, self.current_epoch).number
        if wanted != self.stage:
            self._enter_stage(wanted)
            self._rebuild_for_new_stage()
        self.model.train()
        freeze_frozen_norm_stats(self.model)
        self.train_loss.reset()
        self.train_acc.reset()

    def _rebuild_for_new_stage(self) -> None:
        """New optimizer/scheduler for the new trainable set; under DDP also a new wrapper (DDP fixes its set of
        parameters when it wraps the model)."""
        strategy = self.trainer.strategy
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(strategy.model, DistributedDataParallel):
            strategy.model = strategy._setup_model(strategy.model.module)
        strategy.setup_optimizers(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_STATE_KEY] = {"stage": int(self.stage)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # runs before optimizers are created, so they are built for the stage the run was in
        stage = int(checkpoint.get(_STATE_KEY, {}).get("stage", 1))
        self._enter_stage(stage)

    # ---------------------------------------------------------------- data
    @property
    def augment(self) -> nn.Module | None:
        return self._augment[0]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        images = to_float_batch(images)
        training = self.trainer is not None and self.trainer.training
        if training:
            if self._epoch_batches == 0:
                # random state per (seed, epoch, rank), set right before the epoch's first random draw: a resumed
                # run draws exactly what the uninterrupted run drew
                reseed(self.config.seed, self.current_epoch, self.global_rank)
            self._epoch_batches += 1
        if training and self.augment is not None:
            images = self.augment(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        network = self._compiled[0] if self._compiled else self.model
        return network(images)

    # ---------------------------------------------------------------- steps
    def _mixup(self, images: torch.Tensor, labels: torch.Tensor):
        alpha = self.config.loss.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(images.shape[0], device=images.device)
        return lam * images + (1.0 - lam) * images[perm], labels[perm], lam

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        smoothing = self.config.loss.label_smoothing
        if self.config.loss.mixup_alpha > 0:
            mixed, other, lam = self._mixup(images, labels)
            logits = self(mixed)
            loss = lam * classification_loss(logits, labels, self.class_weights, smoothing) + (1.0 - lam) * (
                classification_loss(logits, other, self.class_weights, smoothing))
        else:
            logits = self(images)
            loss = classification_loss(logits, labels, self.class_weights, smoothing)
        correct = (predicted_class(logits.detach()) == labels).float()
        self.train_loss.update(loss.detach(), weight=labels.shape[0])
        self.train_acc.update(correct)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=labels.shape[0])
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        losses = classification_loss_per_sample(logits, labels)
        self.val_loss.update(losses)
        self.val_acc.update((predicted_class(logits) == labels).float())

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()
        self.val_acc.reset()

    def on_validation_epoch_end(self) -> None:
        val_loss = self.val_loss.compute()
        val_acc = self.val_acc.compute()
        # the experiment loggers get these in the epoch's metrics.csv row (training.tracking), at step = epoch
        self.log("val_loss", val_loss, prog_bar=True, sync_dist=False, logger=False)
        self.log("val_acc", val_acc, prog_bar=True, sync_dist=False, logger=False)
        self.epoch_figures.update(val_loss=float(val_loss), val_acc=float(val_acc))

    def train_epoch_figures(self) -> dict[str, float]:
        """Mean training loss and accuracy of the epoch so far (synchronised across processes)."""
        return {"train_loss": float(self.train_loss.compute()), "train_acc": float(self.train_acc.compute())}

    # ---------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        stage = self.current_stage
        optimizer = build_optimizer(self.config.optim.optimizer, trainable_parameters(self.model), stage.lr,
                                    self.config)
        kind = self.config.optim.scheduler
        if kind == "none":
            return optimizer
        if kind == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=self.config.optim.plateau_factor,
                patience=self.config.optim.plateau_patience, min_lr=self.config.optim.min_lr)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"}}
        steps = max(1, stage.epochs * self._steps_per_epoch())
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=self.config.optim.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        trainer = self.trainer
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total) or trainer.max_epochs in (None, -1):
            return 1
        return max(1, math.ceil(total / trainer.max_epochs))

    def current_lr(self) -> float:
        optimizers = self.trainer.optimizers if self.trainer is not None else []
        return float(optimizers[0].param_groups[0]["lr"]) if optimizers else float("nan")


def classification_loss_per_sample(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample negative log-likelihood (no weights, no smoothing): the validation loss."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")
    return F.cross_entropy(logits, target, reduction="none")
