"""The web page at ``/`` and its files under ``/static``, offline Swagger UI at ``/docs``, and the security headers
of every answer (a strict CSP on the page)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


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
            extra += [(b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"DENY")]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {key.lower() for key, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(key, value) for key, value in extra if key not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_pages(app: FastAPI, docs: bool) -> None:
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
