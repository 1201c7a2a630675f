"""``GET /health`` and ``GET /model``: is the service up, and which model does it serve under which limits."""

from __future__ import annotations

import time

from fastapi import APIRouter

from pneumoscope.serve.context import Context
from pneumoscope.serve.schemas import HealthResponse, ModelInfo
from pneumoscope.version import __version__

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthResponse, summary="Liveness")
async def health(context: Context) -> HealthResponse:
    """The server is up and the model loaded."""
    runner = context.runner
    return HealthResponse(status="ok", model_id=context.model_id, version=__version__,
                          uptime_s=round(time.monotonic() - context.started_at, 3),
                          requests_served=runner.served, queue_length=runner.queue_length)


@router.get("/model", response_model=ModelInfo, summary="The served model")
async def model(context: Context) -> ModelInfo:
    """Model card, classes, threshold, input size and validation metrics."""
    return context.model_info
