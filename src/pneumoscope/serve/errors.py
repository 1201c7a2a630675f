"""Every error the service answers is JSON, ``{"error": code, "detail": message}``: the handlers for the service's
own errors, HTTP errors, invalid parameters, user errors of pneumoscope (422) and anything unexpected (500,
logged)."""

from __future__ import annotations

import http
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pneumoscope.errors import PneumoscopeError
from pneumoscope.serve.uploads import ServeError

log = logging.getLogger("pneumoscope.serve")


def error_code(error: Exception) -> str:
    """``ImageLoadError`` → ``image_load_error``."""
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(_: Request, error: ServeError) -> JSONResponse:
        return error_response(error.status_code, error.code, str(error.detail), error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = http.HTTPStatus(error.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return error_response(error.status_code, code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query"))
            message = str(item.get("msg", "invalid"))
            parts.append(f"{where}: {message}" if where else message)
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request.")

    @app.exception_handler(PneumoscopeError)
    async def user_error(_: Request, error: PneumoscopeError) -> JSONResponse:
        return error_response(422, error_code(error), str(error))

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request", exc_info=error)
        return error_response(500, "internal_error", "unexpected server error; it was logged on the server.")
