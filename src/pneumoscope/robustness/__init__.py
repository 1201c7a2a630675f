"""Robustness: acquisition-shift perturbations, generalisation proxies (unseen-site normals, resolution
consistency) and the stress test. Models enter only as predict functions ``list[(H, W) float32] -> probs (N, C)``.
"""

from __future__ import annotations

from pneumoscope.robustness.perturbations import (
    KINDS,
    REFERENCE_SIZE,
    SEVERITIES,
    Perturbation,
    describe_perturbations,
    get_perturbation,
    list_perturbations,
    perturb,
)
from pneumoscope.robustness.proxies import (
    bootstrap_ci,
    resolution_consistency,
    resolution_pairs,
    unseen_site_normals,
)
from pneumoscope.robustness.stress import (
    STRESS_COLUMNS,
    PredictFn,
    pneumonia_probability,
    predicted_classes,
    stress_test,
    summary_by_kind,
)

__all__ = [
    "KINDS",
    "REFERENCE_SIZE",
    "SEVERITIES",
    "STRESS_COLUMNS",
    "Perturbation",
    "PredictFn",
    "bootstrap_ci",
    "describe_perturbations",
    "get_perturbation",
    "list_perturbations",
    "perturb",
    "pneumonia_probability",
    "predicted_classes",
    "resolution_consistency",
    "resolution_pairs",
    "stress_test",
    "summary_by_kind",
    "unseen_site_normals",
]
