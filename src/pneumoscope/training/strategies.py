"""Training strategies: which layers are trained, at which learning rate, in which epoch.

- ``end_to_end``: every layer from the first epoch, at ``optim.lr``.
- ``two_stage``: stage 1 (``strategy.stage1_epochs`` epochs) trains the head on a frozen backbone at
  ``stage1_lr`` (1e-3); stage 2 trains all layers at ``stage2_lr`` (1e-5) for the remaining epochs.
- ``unfreeze_last``: the head and the last ``strategy.unfreeze_last`` backbone layers, at ``optim.lr``
  (``unfreeze_last: 0``: the head only, on a frozen backbone: "transfer learning, last layer only").

Dropout before the head is a model option (``model.dropout``). A frozen backbone also keeps its batch-norm
statistics fixed (its norm layers stay in eval mode), as in Keras, so that "frozen" means the layers do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pneumoscope.training.config import TrainConfig


@dataclass(frozen=True)
class Stage:
    """One stage of a run: its number (1-based), epoch range ``[first_epoch, end_epoch)`` and learning rate."""

    number: int
    first_epoch: int
    end_epoch: int
    lr: float

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.first_epoch


def stages(config: TrainConfig) -> list[Stage]:
    """The stages of ``config``'s strategy, covering epochs ``0 .. trainer.epochs - 1``."""
    total = config.trainer.epochs
    if config.strategy.kind == "two_stage":
        split = config.strategy.stage1_epochs
        return [Stage(1, 0, split, config.strategy.stage1_lr), Stage(2, split, total, config.strategy.stage2_lr)]
    return [Stage(1, 0, total, config.optim.lr)]


def stage_of_epoch(config: TrainConfig, epoch: int) -> Stage:
    """The stage that trains ``epoch`` (0-based); epochs past the end belong to the last stage."""
    for stage in stages(config):
        if epoch < stage.end_epoch:
            return stage
    return stages(config)[-1]


def apply_stage(model: nn.Module, config: TrainConfig, stage: Stage) -> None:
    """Set ``requires_grad`` of ``model`` (a ``pneumoscope.models.Classifier``) for ``stage`` of the strategy."""
    kind = config.strategy.kind
    if kind == "two_stage" and stage.number == 1:
        model.freeze_backbone()
    elif kind == "unfreeze_last":
        model.freeze_backbone()
        model.unfreeze_last(config.strategy.unfreeze_last)
    else:
        model.unfreeze_all()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimizer should update (those with ``requires_grad``)."""
    return [p for p in model.parameters() if p.requires_grad]


def freeze_frozen_norm_stats(model: nn.Module) -> int:
    """Put norm layers whose parameters are all frozen into eval mode (fixed running statistics); returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
                count += 1
    return count
