"""``MeanProbabilityEnsemble``: several trained classifiers of one task as one model.

Each member's logits are scaled by its own temperature (chosen on validation when it was trained) and turned into
class probabilities; the ensemble's output is the log of their mean. A softmax of that output, the way every
pneumoscope model's logits are read, gives the mean probability back, so an ensemble is saved, loaded, exported,
evaluated and served like any other model folder (``models.io``): one ``model.safetensors`` holding every member's
weights under ``members.<i>.``, one ``model.json`` whose ``members`` list rebuilds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pneumoscope.errors import ModelError
from pneumoscope.models.scoring import pool_features

ENSEMBLE_ARCHITECTURE = "mean_probability_ensemble"
# keeps log() finite where a member is certain; 1e-12 changes no probability by more than that
_FLOOR = 1e-12


class MeanProbabilityEnsemble(nn.Module):
    """Images (B, 1, H, W) float in [0, 1] → log of the members' mean class probabilities (B, num_classes)."""

    def __init__(self, members: Sequence[nn.Module], temperatures: Sequence[float]):
        super().__init__()
        if len(members) < 2 or len(members) != len(temperatures):
            raise ModelError("an ensemble needs two or more members, each with its temperature.")
        classes = {int(member.num_classes) for member in members}
        if len(classes) != 1:
            raise ModelError(f"the members predict different numbers of classes ({sorted(classes)}).",
                             fix="combine models trained for the same task.")
        self.members = nn.ModuleList(members)
        self.num_classes = classes.pop()
        self.sigmoid_binary = False
        self.register_buffer("temperatures", torch.tensor([float(t) for t in temperatures]), persistent=False)

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def _log_mean(self, member_logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Log of the mean of the members' temperature-scaled class probabilities."""
        probabilities = [member.probabilities(logits / self.temperatures[i])
                         for i, (member, logits) in enumerate(zip(self.members, member_logits, strict=True))]
        return torch.log(torch.stack(probabilities).mean(dim=0).clamp_min(_FLOOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._log_mean([member(x) for member in self.members])

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and the members' pooled penultimate features side by side (B, sum of their widths)."""
        feature_maps = [member.features(x) for member in self.members]
        logits = [member.head(feature_map) for member, feature_map in zip(self.members, feature_maps, strict=True)]
        return self._log_mean(logits), torch.cat([pool_features(f) for f in feature_maps], dim=1)

    def cam_target_layer(self) -> list[nn.Module]:
        """Every member's Grad-CAM layer: the heatmap of the ensemble's output averages theirs."""
        return [member.cam_target_layer() for member in self.members]

    def description(self, member_meta: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """What ``model.json`` needs to rebuild the ensemble: each member's architecture and temperature, with the
        identity recorded in ``member_meta`` (its run, its weights' SHA-256)."""
        return {"architecture": ENSEMBLE_ARCHITECTURE, "model_kwargs": {},
                "members": [{**dict(info), "architecture": member.spec.name,
                             "model_kwargs": dict(member.model_kwargs), "temperature": float(t)}
                            for member, t, info in zip(self.members, self.temperatures.tolist(), member_meta,
                                                       strict=True)]}


def build_ensemble(meta: Mapping[str, Any], source: Any) -> MeanProbabilityEnsemble:
    """The (untrained) ensemble that ``meta["members"]`` describes; ModelError naming ``source`` otherwise."""
    from pneumoscope.models.registry import create_model

    members = meta.get("members")
    if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, Mapping) for m in members):
        raise ModelError("model.json of an ensemble lacks its list of members.", path=source,
                         fix="re-create it with `pneumoscope ensemble RUN RUN ...`.")
    try:
        built = [create_model(m["architecture"], **m["model_kwargs"]) for m in members]
        temperatures = [float(m.get("temperature") or 1.0) for m in members]
    except (KeyError, TypeError, ValueError, ModelError) as error:
        raise ModelError(f"model.json describes an ensemble member that cannot be built ({error}).", path=source,
                         fix="re-create it with `pneumoscope ensemble RUN RUN ...`.") from None
    return MeanProbabilityEnsemble(built, temperatures)
