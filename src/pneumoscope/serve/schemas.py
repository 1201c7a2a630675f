"""Pydantic models of the service's responses, so that ``/openapi.json`` documents every field."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, Field, create_model

from pneumoscope.models.meta import ModelMeta


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a short machine-readable code and a one-line human message."""

    error: str = Field(description="Short machine-readable code, e.g. `unsupported_media_type`.",
                       examples=["unsupported_media_type"])
    detail: str = Field(description="What went wrong and how to fix it, in one line.")


class ScopeCheck(BaseModel):
    """One applicability check of a prediction."""

    value: str | float | None = Field(None, description="What it measured (a header value, a score; for "
                                                        "`population`, the probability that the image shows an "
                                                        "adult).")
    ok: bool = Field(description="Whether the model applies as far as this check can tell.")
    reason: str = Field("", description="Short reason when not ok, e.g. `adult`.")
    detail: str = Field("", description="One line for people when not ok (or why a check was not applied).")


class Prediction(BaseModel):
    """The model's answer for one image."""

    filename: str | None = Field(None, description="The uploaded file's base name (only echoed back).")
    label: str = Field(description="Predicted class.")
    probabilities: dict[str, float] = Field(description="Probability per class (they sum to 1).")
    probabilities_std: dict[str, float] | None = Field(
        None, description="Spread of each probability over the test-time views (only with `tta` > 0).")
    threshold: float | None = Field(
        None, description="Operating threshold on the positive class's probability (binary models only).")
    in_scope: bool = Field(description="False when the model does not apply to this image (another population, "
                                       "not a frontal chest X-ray, another modality...): do not trust its label.")
    scope_reason: str = Field("", description="Why it is out of scope, e.g. `adult`, `not_a_chest_xray`, `lateral`, "
                                              "`modality CT`, `multi-frame` (several joined by `; `); empty when in "
                                              "scope.", examples=["adult"])
    scope_detail: str = Field("", description="The same in words, for people.")
    scope_checks: dict[str, ScopeCheck] = Field(
        default_factory=dict, description="Every check that ran (DICOM header: modality, body_part, view, frames, "
                                          "age; image; chest_xray; population) and its result.")
    model_id: str = Field(description="Identifier of the model that answered.")
    width: int = Field(description="Width of the decoded image in pixels.")
    height: int = Field(description="Height of the decoded image in pixels.")
    tta: int = Field(0, description="Number of test-time views averaged (0 = off).")
    elapsed_ms: float = Field(description="Server time for this image (decode + inference), milliseconds.")


class BatchItem(BaseModel):
    """One file of a batch: its prediction, or the error that stopped it."""

    filename: str | None = Field(None, description="The uploaded file's base name, as sent.")
    ok: bool = Field(description="Whether a prediction was made.")
    status_code: int = Field(description="The status a single `/predict` call would give for this file.")
    result: Prediction | None = None
    error: ErrorResponse | None = None


class BatchResponse(BaseModel):
    """Results of `/predict/batch`, in the order the files were sent."""

    model_id: str
    count: int = Field(description="Number of files received.")
    errors: int = Field(description="Number of files that could not be predicted.")
    items: list[BatchItem]


class ExplainResponse(BaseModel):
    """Heatmap of `/explain?format=json`: the prediction and three PNGs (base64) of the same size."""

    prediction: Prediction
    method: Literal["gradcam", "gradcam++"]
    target_class: str = Field(description="Class the heatmap explains.")
    width: int = Field(description="Width of the PNGs (the image, scaled to at most `max_side`).")
    height: int = Field(description="Height of the PNGs.")
    image_png: str = Field(description="The decoded input image, grayscale PNG, base64.")
    heatmap_png: str = Field(description="The heatmap alone, colour-mapped RGBA PNG (alpha = heat), base64.")
    overlay_png: str = Field(description="The heatmap blended over the image, RGB PNG, base64.")


class HealthResponse(BaseModel):
    """Liveness and basic counters."""

    status: Literal["ok"]
    model_id: str
    version: str = Field(description="Pneumoscope version.")
    uptime_s: float
    requests_served: int = Field(description="Images predicted or explained since start.")
    queue_length: int = Field(description="Images waiting for the model right now.")


def _model_meta_fields() -> dict[str, Any]:
    """``ModelMeta``'s typed fields (all but ``raw``) as pydantic field definitions, with their descriptions."""
    hints = get_type_hints(ModelMeta)
    return {f.name: (hints[f.name], Field(... if f.default is dataclasses.MISSING else f.default,
                                          description=f.metadata.get("description")))
            for f in dataclasses.fields(ModelMeta) if f.name != "raw"}


ModelMetadata = create_model(
    "ModelMetadata", __doc__="The validated fields of the model's metadata (``models.meta.ModelMeta``).",
    **_model_meta_fields())


class ModelInfo(ModelMetadata):  # type: ignore[misc,valid-type]
    """What the served model is: its metadata (classes, input size, task, threshold...), validation metrics and
    its card."""

    model_id: str
    architecture: str | None = None
    threshold_method: str | None = None
    metrics: dict[str, Any] | None = Field(None, description="Validation metrics recorded with the model.")
    card: dict[str, Any] = Field(description="The model's metadata (model.json / ONNX metadata).")
    card_markdown: str | None = Field(None, description="The model card (Markdown), if the model has one.")
    limits: dict[str, float | int] = Field(description="This server's upload limits.")
    intended_use: str = Field(description="Research use only: this is not a medical device.")
