"""Upload safety: a streaming body-size limit, content sniffing, safe names and in-memory decoding.

Nothing here touches the file system: uploads are decoded from bytes in memory and the client's file name is
only echoed back (sanitised), never used as a path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumoscope.errors import ImageLoadError

if TYPE_CHECKING:
    from pneumoscope.inference.sources import LoadedImage

MB = 1024 * 1024

# Leading bytes of the formats the decoder reads; DICOM is recognised by "DICM" after its 128-byte preamble.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
SUPPORTED_FORMATS = "JPEG, PNG, BMP, TIFF, GIF, WebP or DICOM"


class ServeError(HTTPException):
    """An HTTP error with a machine-readable code; rendered as ``{"error": code, "detail": message}``."""

    def __init__(self, status_code: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code


class UploadTooLarge(ServeError):
    """The request body is larger than the limit (raised while the body streams in)."""

    def __init__(self, limit_bytes: int):
        super().__init__(
            413, "upload_too_large",
            f"the upload is larger than the server's limit of {limit_bytes / MB:g} MB. "
            "Fix: send a smaller file (or start the server with a larger --max-upload-mb).",
            headers={"Connection": "close"},
        )


def sniff_format(data: bytes) -> str | None:
    """The image format that ``data`` starts like (by content, not name), or None."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f<>\"'`]")


def safe_filename(name: str | None) -> str | None:
    """The base name of a client-supplied file name with directories and control characters removed.

    Used only in messages and answers, never as a path.
    """
    if not name:
        return None
    base = re.split(r"[\\/]", name)[-1]
    base = _UNSAFE_NAME_CHARS.sub("", base).strip()
    return base[:200] or None


def decode_upload(data: bytes, filename: str | None, max_bytes: int) -> LoadedImage:
    """Decode an uploaded image or DICOM from memory: the grey float32 (H, W) image in [0, 1] and the
    colourfulness of the original (which the out-of-distribution guard uses).

    Raises ServeError with 400 (empty), 413 (too large), 415 (not an image by content) or 422 (an image that
    cannot be decoded: truncated, corrupt, DICOM without pixel data).
    """
    from pneumoscope.inference.sources import load_input_bytes

    shown = filename or "upload"
    if not data:
        raise ServeError(400, "empty_file", f"{shown}: the file is empty (0 bytes). Fix: choose it again.")
    if len(data) > max_bytes:
        raise UploadTooLarge(max_bytes)
    try:
        loaded = load_input_bytes(data, shown)
    except ImageLoadError as error:
        if sniff_format(data) is None:
            raise ServeError(
                415, "unsupported_media_type",
                f"{shown}: not a supported image (checked by content, not by name). "
                f"Fix: upload a {SUPPORTED_FORMATS} file.",
            ) from error
        raise ServeError(422, "undecodable_image", str(error)) from error
    gray = np.asarray(loaded.gray)
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise ServeError(422, "undecodable_image", f"{shown}: decodes to an unusable shape {gray.shape}.")
    return loaded


def _error_body(error: ServeError) -> bytes:
    return json.dumps({"error": error.code, "detail": error.detail}).encode()


class BodyLimitMiddleware:
    """Rejects request bodies above a size limit with 413, early: on the declared Content-Length before
    reading anything, else as soon as the streamed bytes pass the limit (chunked uploads).

    ``limit_for(path)`` gives the limit in bytes for a request path (None = unlimited).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int | None]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_error(send, UploadTooLarge(limit))
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except UploadTooLarge as error:
            if started:
                raise
            await _send_error(send, error)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Send, error: ServeError) -> None:
    body = _error_body(error)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
