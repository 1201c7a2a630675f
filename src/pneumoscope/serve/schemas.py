"""Pydantic models of the service's responses, so that ``/openapi.json`` documents every field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a short machine-readable code and a one-line human message."""

    error: str = Field(description="Short machine-readable code, e.g. `unsupported_media_type`.",
                       examples=["unsupported_media_type"])
    detail: str = Field(description="What went wrong and how to fix it, in one line.")


class Prediction(BaseModel):
    """The model's answer for one image."""

    filename: str | None = Field(None, description="The uploaded file's base name (only echoed back).")
    label: str = Field(description="Predicted class.")
    probabilities: dict[str, float] = Field(description="Probability per class (they sum to 1).")
    probabilities_std: dict[str, float] | None = Field(
        None, description="Spread of each probability over the test-time views (only with `tta` > 0).")
    threshold: float | None = Field(
        None, description="Operating threshold on the positive class's probability (binary models only).")
    ood: bool = Field(description="True when the input does not look like a frontal chest X-ray.")
    ood_score: float | None = Field(None, description="Out-of-distribution score (higher = less X-ray-like).")
    ood_reasons: list[str] = Field(default_factory=list, description="Why the input was flagged, if it was.")
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


class ModelInfo(BaseModel):
    """What the served model is: classes, threshold, input size, validation metrics and its card."""

    model_id: str
    task: str | None = None
    architecture: str | None = None
    classes: list[str]
    threshold: float | None = None
    threshold_method: str | None = None
    image_size: int
    metrics: dict[str, Any] | None = Field(None, description="Validation metrics recorded with the model.")
    card: dict[str, Any] = Field(description="The model's metadata (model.json / ONNX metadata).")
    card_markdown: str | None = Field(None, description="The model card (Markdown), if the model has one.")
    limits: dict[str, float | int] = Field(description="This server's upload limits.")
    intended_use: str = Field(description="Research use only: this is not a medical device.")
