"""The FastAPI service: REST API (predict, batch, explain, health, model), its OpenAPI docs and the web page.

``create_app(predictor)`` builds the app around a loaded ``pneumoscope.inference.Predictor`` (or anything with
the same ``classes``, ``threshold``, ``image_size``, ``model_id``, ``card``, ``predict_arrays`` and
``explain_array``). Decoding runs in Starlette's thread pool, the model in its own thread
(``runner.ModelRunner``), so the event loop never blocks on CPU work.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http
import importlib.util
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumoscope.errors import PneumoscopeError
from pneumoscope.inference.sources import LoadedImage
from pneumoscope.serve import render
from pneumoscope.serve.runner import ModelRunner
from pneumoscope.serve.schemas import (
    BatchItem,
    BatchResponse,
    ErrorResponse,
    ExplainResponse,
    HealthResponse,
    ModelInfo,
    Prediction,
    ScopeCheck,
)
from pneumoscope.serve.uploads import (
    BODY_TIMEOUT_S,
    MB,
    MIN_BODY_RATE,
    BodyLimitMiddleware,
    ServeError,
    decode_upload,
    safe_filename,
)
from pneumoscope.version import __version__

log = logging.getLogger("pneumoscope.serve")
T = TypeVar("T")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_TTA_VIEWS = 10
INTENDED_USE = "Research use only. Not a medical device: not for diagnosis or treatment decisions."
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Empty file or malformed request.",
        408: "Upload arrived too slowly (a pause or an average rate beyond the server's limits).",
        413: "Upload larger than the server's limit.",
        415: "Not an image or DICOM (checked by content).",
        422: "Invalid parameters, or an image that cannot be decoded (truncated, DICOM without pixels) or is too "
             "small or too elongated to be a chest X-ray.",
        503: "Server busy: retry later.",
    }.items()
}

TtaQuery = Annotated[int, Query(ge=0, le=MAX_TTA_VIEWS, description="Test-time views to average (0 = off).")]
UploadField = Annotated[UploadFile, File(description="A chest X-ray: JPEG, PNG, BMP, TIFF, WebP or DICOM.")]
BatchFiles = Annotated[list[UploadFile], File(
    description="Chest X-rays or DICOM files (at most `limits.max_batch_files` of GET /model).")]
MethodQuery = Annotated[Literal["gradcam", "gradcam++"], Query(description="CAM method.")]
ClassQuery = Annotated[str | None, Query(
    alias="class", description="Class to explain, one of GET /model's `classes` (default: the predicted).")]
FormatQuery = Annotated[Literal["png", "json"], Query(
    description="`png`: the overlay image; `json`: prediction + image, heatmap and overlay PNGs (base64).")]
MaxSideQuery = Annotated[int, Query(ge=32, le=4096, description="Longest side of the returned images (px).")]


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
    upload_bytes = int(max_upload_mb * MB)
    batch_bytes = int((max_batch_mb if max_batch_mb is not None else 4 * max_upload_mb) * MB)
    runner = ModelRunner(predictor, max_batch=max_batch_size)
    # Decoding and PNG encoding get a few threads of their own: dozens of threads (Starlette's default pool)
    # only fight over the GIL with the event loop and make latency worse under load.
    workers = ThreadPoolExecutor(max_workers=cpu_threads or min(4, os.cpu_count() or 1),
                                 thread_name_prefix="pneumoscope-decode")

    async def cpu_work(function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(workers, functools.partial(function, *args))

    started_at = time.monotonic()
    classes = [str(c) for c in predictor.classes]
    model_id = str(predictor.model_id)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runner.close()
        workers.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="Pneumoscope",
        version=__version__,
        summary="Pneumonia classification and Grad-CAM heatmaps for chest X-rays.",
        description=_description(classes, model_id),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runner = runner
    app.state.predictor = predictor

    def limit_for(path: str) -> int | None:
        if path == "/predict/batch":
            return batch_bytes
        if path in ("/predict", "/explain"):
            return upload_bytes
        return 64 * 1024  # no other endpoint takes a body

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for, timeout_s=body_timeout_s, min_rate=min_body_rate)
    _add_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware)

    async def decode(upload: UploadFile) -> tuple[LoadedImage, str | None]:
        name = safe_filename(upload.filename)
        data = await upload.read(upload_bytes + 1)
        image = await cpu_work(decode_upload, data, name, upload_bytes)
        return image, name

    async def predict_one(image: LoadedImage, name: str | None, tta: int, started: float) -> Prediction:
        raw = await runner.predict(image, tta)
        return _prediction(raw, name, image.gray.shape, tta, model_id, started)

    @app.post("/predict", response_model=Prediction, responses=_UPLOAD_ERRORS, tags=["predict"],
              summary="Classify one chest X-ray")
    async def predict(file: UploadField, tta: TtaQuery = 0) -> Prediction:
        """Class, probability per class, operating threshold and the scope verdict (`in_scope`, `scope_reason`)
        for one image."""
        started = time.perf_counter()
        image, name = await decode(file)
        return await predict_one(image, name, tta, started)

    @app.post("/predict/batch", response_model=BatchResponse, responses=_UPLOAD_ERRORS, tags=["predict"],
              summary="Classify several chest X-rays")
    async def predict_batch(files: BatchFiles, tta: TtaQuery = 0) -> BatchResponse:
        """One result per file, in order; a file that cannot be read gets its error inline."""
        if len(files) > max_batch_files:
            raise ServeError(413, "too_many_files",
                             f"{len(files)} files sent; this server takes at most {max_batch_files} "
                             "per batch. Fix: split the batch.")
        items = await _gather_items([_batch_item(decode, predict_one, f, tta) for f in files])
        errors = sum(not item.ok for item in items)
        return BatchResponse(model_id=model_id, count=len(items), errors=errors, items=items)

    @app.post(
        "/explain",
        response_class=Response,
        responses={
            200: {
                "model": ExplainResponse,
                "description": "The heatmap overlay as PNG (default), or JSON with `format=json`.",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_UPLOAD_ERRORS,
        },
        tags=["explain"],
        summary="Grad-CAM heatmap of one chest X-ray",
    )
    async def explain(
        file: UploadField,
        method: MethodQuery = "gradcam",
        target_class: ClassQuery = None,
        format: FormatQuery = "png",
        max_side: MaxSideQuery = 1024,
        tta: TtaQuery = 0,
    ) -> Response:
        """Where the model looked: a heatmap overlay for the predicted class (or `class`)."""
        if target_class is not None and target_class not in classes:
            raise ServeError(422, "unknown_class",
                             f"class {target_class!r} is not one of this model's classes: "
                             f"{', '.join(classes)}.")
        started = time.perf_counter()
        image, name = await decode(file)
        prediction = await predict_one(image, name, tta, started)
        result = await runner.explain(image, method, target_class or prediction.label)
        target = str(result.get("target_class") or target_class or prediction.label)
        pngs = await cpu_work(render.explain_pngs, image.gray, result, max_side, format == "json")
        headers = {"X-Predicted-Class": prediction.label, "X-Target-Class": target,
                   "X-In-Scope": "true" if prediction.in_scope else "false",
                   "X-Scope-Reason": prediction.scope_reason.encode("ascii", "replace").decode()}
        if format == "png":
            return Response(pngs.overlay, media_type="image/png", headers={
                **headers, "Content-Disposition": 'inline; filename="overlay.png"'})
        body = ExplainResponse(
            prediction=prediction, method=method, target_class=target, width=pngs.width, height=pngs.height,
            image_png=_b64(pngs.image), heatmap_png=_b64(pngs.heatmap), overlay_png=_b64(pngs.overlay))
        return JSONResponse(body.model_dump(mode="json"), headers=headers)

    @app.get("/health", response_model=HealthResponse, tags=["service"], summary="Liveness")
    async def health() -> HealthResponse:
        """The server is up and the model loaded."""
        return HealthResponse(status="ok", model_id=model_id, version=__version__,
                              uptime_s=round(time.monotonic() - started_at, 3),
                              requests_served=runner.served, queue_length=runner.queue_length)

    limits = {"max_upload_mb": max_upload_mb, "max_batch_files": max_batch_files,
              "max_batch_mb": round(batch_bytes / MB, 3), "body_timeout_s": body_timeout_s,
              "min_body_rate_bytes_per_s": min_body_rate}
    model_info = _model_info(predictor, classes, model_id, limits)

    @app.get("/model", response_model=ModelInfo, tags=["service"], summary="The served model")
    async def model() -> ModelInfo:
        """Model card, classes, threshold, input size and validation metrics."""
        return model_info

    _add_pages(app, docs)
    return app


async def _gather_items(coroutines: list) -> list[BatchItem]:
    return list(await asyncio.gather(*coroutines))


async def _batch_item(decode, predict_one, upload: UploadFile, tta: int) -> BatchItem:
    name = safe_filename(upload.filename)
    started = time.perf_counter()
    try:
        image, name = await decode(upload)
        result = await predict_one(image, name, tta, started)
    except ServeError as error:
        return BatchItem(filename=name, ok=False, status_code=error.status_code,
                         error=ErrorResponse(error=error.code, detail=str(error.detail)))
    except PneumoscopeError as error:
        return BatchItem(filename=name, ok=False, status_code=422,
                         error=ErrorResponse(error=_error_code(error), detail=str(error)))
    return BatchItem(filename=name, ok=True, status_code=200, result=result)


def _prediction(raw: dict, name: str | None, shape: tuple[int, ...], tta: int, model_id: str,
                started: float) -> Prediction:
    std = raw.get("p_std")
    return Prediction(
        filename=name,
        label=str(raw["label"]),
        probabilities={str(k): float(v) for k, v in raw["probabilities"].items()},
        probabilities_std={str(k): float(v) for k, v in std.items()} if isinstance(std, dict) else None,
        threshold=None if raw.get("threshold") is None else float(raw["threshold"]),
        in_scope=bool(raw.get("in_scope", True)),
        scope_reason=str(raw.get("scope_reason") or ""),
        scope_detail=str(raw.get("scope_detail") or ""),
        scope_checks={str(name): ScopeCheck(**_json_safe(check)) for name, check in
                      (raw.get("scope_checks") or {}).items()},
        model_id=model_id,
        width=int(shape[1]),
        height=int(shape[0]),
        tta=tta,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _model_info(predictor: Any, classes: list[str], model_id: str, limits: dict[str, float]) -> ModelInfo:
    card = dict(getattr(predictor, "card", None) or {})
    threshold = getattr(predictor, "threshold", None)
    metrics = card.get("val_metrics") or card.get("metrics")
    return ModelInfo(
        model_id=model_id,
        task=card.get("task"),
        architecture=card.get("architecture"),
        classes=classes,
        threshold=None if threshold is None else float(threshold),
        threshold_method=card.get("threshold_method"),
        image_size=int(predictor.image_size),
        metrics=metrics if isinstance(metrics, dict) else None,
        card=_json_safe(card),
        card_markdown=card.get("model_card") or None,
        limits=limits,
        intended_use=INTENDED_USE,
    )


def _json_safe(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into plain Python (model metadata may hold them)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _description(classes: list[str], model_id: str) -> str:
    return (
        f"Serving model `{model_id}` (classes: {', '.join(classes)}).\n\n"
        f"**{INTENDED_USE}**\n\n"
        "Uploads are checked by content (magic bytes and decoding), decoded in memory and never stored. "
        'Errors are JSON: `{"error": code, "detail": message}`.'
    )


def _error_code(error: Exception) -> str:
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _error_response(status: int, code: str, detail: str,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(_: Request, error: ServeError) -> JSONResponse:
        return _error_response(error.status_code, error.code, str(error.detail), error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = http.HTTPStatus(error.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return _error_response(error.status_code, code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query"))
            message = str(item.get("msg", "invalid"))
            parts.append(f"{where}: {message}" if where else message)
        return _error_response(422, "invalid_request", "; ".join(parts) or "invalid request.")

    @app.exception_handler(PneumoscopeError)
    async def user_error(_: Request, error: PneumoscopeError) -> JSONResponse:
        return _error_response(422, _error_code(error), str(error))

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request", exc_info=error)
        return _error_response(500, "internal_error", "unexpected server error; it was logged on the server.")


class SecurityHeadersMiddleware:
    """Adds no-sniff / no-referrer / no-store headers to every answer, and a strict CSP to the web page."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                 (b"cache-control", b"no-store")]
        if path == "/" or path.startswith("/static/"):
            extra += [(b"content-security-policy", _PAGE_CSP.encode()), (b"x-frame-options", b"DENY")]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {key.lower() for key, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(key, value) for key, value in extra if key not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add_pages(app: FastAPI, docs: bool) -> None:
    """The web page at ``/``, its files under ``/static``, and offline Swagger UI at ``/docs``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    if not docs:
        return
    assets = swagger_ui_dir()
    if assets is None:
        @app.get("/docs", include_in_schema=False)
        async def docs_unavailable() -> HTMLResponse:
            return HTMLResponse(
                "<!doctype html><title>Pneumoscope API</title><p>Interactive API docs need the "
                "<code>swagger-ui-py</code> package (it ships Swagger UI, so no CDN is used): "
                "<code>pip install swagger-ui-py</code>. The schema itself is at "
                '<a href="/openapi.json">/openapi.json</a>.</p>')
        return

    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="Pneumoscope API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png")


def swagger_ui_dir() -> Path | None:
    """Swagger UI's files as shipped by the ``swagger-ui-py`` package (served locally), or None if absent."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None
