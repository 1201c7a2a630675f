"""``POST /predict``, ``/predict/batch`` and ``/explain``: decoding on the decode threads, the model on its runner."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from pneumoscope.errors import PneumoscopeError
from pneumoscope.serve import render
from pneumoscope.serve.context import Context, ServiceContext
from pneumoscope.serve.errors import error_code
from pneumoscope.serve.schemas import BatchItem, BatchResponse, ErrorResponse, ExplainResponse, Prediction
from pneumoscope.serve.uploads import ServeError, safe_filename

MAX_TTA_VIEWS = 10
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
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

router = APIRouter()


@router.post("/predict", response_model=Prediction, responses=UPLOAD_ERRORS, tags=["predict"],
             summary="Classify one chest X-ray")
async def predict(context: Context, file: UploadField, tta: TtaQuery = 0) -> Prediction:
    """Class, probability per class, operating threshold and the scope verdict (`in_scope`, `scope_reason`)
    for one image."""
    started = time.perf_counter()
    image, name = await context.decode(file)
    return await context.predict_one(image, name, tta, started)


@router.post("/predict/batch", response_model=BatchResponse, responses=UPLOAD_ERRORS, tags=["predict"],
             summary="Classify several chest X-rays")
async def predict_batch(context: Context, files: BatchFiles, tta: TtaQuery = 0) -> BatchResponse:
    """One result per file, in order; a file that cannot be read gets its error inline."""
    most = context.limits.max_batch_files
    if len(files) > most:
        raise ServeError(413, "too_many_files",
                         f"{len(files)} files sent; this server takes at most {most} per batch. Fix: split the batch.")
    items = await _gather([_batch_item(context, upload, tta) for upload in files])
    errors = sum(not item.ok for item in items)
    return BatchResponse(model_id=context.model_id, count=len(items), errors=errors, items=items)


@router.post(
    "/explain",
    response_class=Response,
    responses={
        200: {
            "model": ExplainResponse,
            "description": "The heatmap overlay as PNG (default), or JSON with `format=json`.",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **UPLOAD_ERRORS,
    },
    tags=["explain"],
    summary="Grad-CAM heatmap of one chest X-ray",
)
async def explain(
    context: Context,
    file: UploadField,
    method: MethodQuery = "gradcam",
    target_class: ClassQuery = None,
    format: FormatQuery = "png",
    max_side: MaxSideQuery = 1024,
    tta: TtaQuery = 0,
) -> Response:
    """Where the model looked: a heatmap overlay for the predicted class (or `class`)."""
    if target_class is not None and target_class not in context.classes:
        raise ServeError(422, "unknown_class",
                         f"class {target_class!r} is not one of this model's classes: {', '.join(context.classes)}.")
    started = time.perf_counter()
    image, name = await context.decode(file)
    prediction = await context.predict_one(image, name, tta, started)
    result = await context.runner.explain(image, method, target_class or prediction.label)
    target = str(result.get("target_class") or target_class or prediction.label)
    pngs = await context.cpu_work(render.explain_pngs, image.gray, result, max_side, format == "json")
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


async def _gather(coroutines: list[Awaitable[BatchItem]]) -> list[BatchItem]:
    return list(await asyncio.gather(*coroutines))


async def _batch_item(context: ServiceContext, upload: UploadFile, tta: int) -> BatchItem:
    name = safe_filename(upload.filename)
    started = time.perf_counter()
    try:
        image, name = await context.decode(upload)
        result = await context.predict_one(image, name, tta, started)
    except ServeError as error:
        return BatchItem(filename=name, ok=False, status_code=error.status_code,
                         error=ErrorResponse(error=error.code, detail=str(error.detail)))
    except PneumoscopeError as error:
        return BatchItem(filename=name, ok=False, status_code=422,
                         error=ErrorResponse(error=error_code(error), detail=str(error)))
    return BatchItem(filename=name, ok=True, status_code=200, result=result)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
