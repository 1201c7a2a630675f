"""The FastAPI service: REST API (predict, batch, explain, health, model), its OpenAPI docs and the web page.

``create_app(predictor)`` builds the app around a loaded ``pneumoscope.inference.Predictor`` (or anything with
the same ``classes``, ``threshold``, ``image_size``, ``model_id``, ``card``, ``predict_arrays`` and
``explain_array``): one ``context.ServiceContext`` shared by the routers (``routes_predict``, ``routes_service``),
the error handlers (``errors``), the pages and security headers (``pages``) and the upload limits
(``uploads.BodyLimitMiddleware``). Decoding runs on a few threads of its own, the model in its own thread
(``runner.ModelRunner``), so the event loop never blocks on CPU work.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from pneumoscope.serve import routes_predict, routes_service
from pneumoscope.serve.context import INTENDED_USE, Limits, ServiceContext
from pneumoscope.serve.errors import add_error_handlers
from pneumoscope.serve.pages import SecurityHeadersMiddleware, add_pages
from pneumoscope.serve.runner import ModelRunner
from pneumoscope.serve.uploads import BODY_TIMEOUT_S, MIN_BODY_RATE, BodyLimitMiddleware
from pneumoscope.version import __version__


def create_app(
    predictor: Any,
    max_upload_mb: float = 20,
    max_batch_files: int = 16,
    max_batch_mb: float | None = None,
    max_batch_size: int = 16,
    cpu_threads: int | None = None,
    docs: bool = True,
    body_timeout_s: float = BODY_TIMEOUT_S,
    min_body_rate: float = MIN_BODY_RATE,
) -> FastAPI:
    """The service around ``predictor`` (loaded once, shared by all requests).

    ``max_upload_mb`` limits one file and the body of ``/predict`` and ``/explain``; ``/predict/batch`` takes
    at most ``max_batch_files`` files and ``max_batch_mb`` (default: 4 x ``max_upload_mb``) in all. A request body
    that pauses for ``body_timeout_s`` seconds, or averages under ``min_body_rate`` bytes/s after the first
    ``body_timeout_s``, is answered 408 and its connection closed (``uploads.BodyLimitMiddleware``).
    ``max_batch_size`` is how many queued images the model predicts in one call; ``cpu_threads`` how many
    threads decode uploads and encode PNGs (default: up to 4).
    """
    limits = Limits(max_upload_mb=max_upload_mb, max_batch_files=max_batch_files,
                    max_batch_mb=max_batch_mb if max_batch_mb is not None else 4 * max_upload_mb,
                    body_timeout_s=body_timeout_s, min_body_rate=min_body_rate)
    # Decoding and PNG encoding get a few threads of their own: dozens of threads (Starlette's default pool)
    # only fight over the GIL with the event loop and make latency worse under load.
    workers = ThreadPoolExecutor(max_workers=cpu_threads or min(4, os.cpu_count() or 1),
                                 thread_name_prefix="pneumoscope-decode")
    context = ServiceContext(predictor, ModelRunner(predictor, max_batch=max_batch_size), workers, limits)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        context.close()

    app = FastAPI(
        title="Pneumoscope",
        version=__version__,
        summary="Pneumonia classification and Grad-CAM heatmaps for chest X-rays.",
        description=_description(context.classes, context.model_id),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.context = context
    app.add_middleware(BodyLimitMiddleware, limit_for=limits.body_limit_for, timeout_s=body_timeout_s,
                       min_rate=min_body_rate)
    add_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware)
    app.include_router(routes_predict.router)
    app.include_router(routes_service.router)
    add_pages(app, docs)
    return app


def _description(classes: list[str], model_id: str) -> str:
    return (
        f"Serving model `{model_id}` (classes: {', '.join(classes)}).\n\n"
        f"**{INTENDED_USE}**\n\n"
        "Uploads are checked by content (magic bytes and decoding), decoded in memory and never stored. "
        'Errors are JSON: `{"error": code, "detail": message}`.'
    )
