"""Upload safety: a streaming body-size limit, content sniffing, safe names and in-memory decoding.

Nothing here touches the file system: uploads are decoded from bytes in memory and the client's file name is
only echoed back (sanitised), never used as a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

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


def decode_upload(data: bytes, filename: str | None, max_bytes: int, shrink_to: int | None = None) -> LoadedImage:
    """Decode an uploaded image or DICOM from memory: the grey float32 (H, W) image in [0, 1] and the
    colourfulness of the original (which the scope verdict's image statistics use); ``shrink_to`` as in
    ``inference.sources.load_input_bytes`` (the model's ``decode_side``: the same pixels as ``pneumoscope predict``).

    Raises ServeError with 400 (empty), 413 (too large), 415 (not an image by content) or 422 (an image that
    cannot be decoded: truncated, corrupt, DICOM without pixel data; or too small or too elongated to be a chest
    X-ray: ``data.imaging.check_geometry``, the rule of every entry point).
    """
    from pneumoscope.inference.sources import load_input_bytes

    shown = filename or "upload"
    if not data:
        raise ServeError(400, "empty_file", f"{shown}: the file is empty (0 bytes). Fix: choose it again.")
    if len(data) > max_bytes:
        raise UploadTooLarge(max_bytes)
    try:
        loaded = load_input_bytes(data, shown, shrink_to)
    except ImageLoadError as error:
        if sniff_format(data) is None:
            raise ServeError(
                415, "unsupported_media_type",
                f"{shown}: not a supported image (checked by content, not by name). "
                f"Fix: upload a {SUPPORTED_FORMATS} file.",
            ) from error
        raise ServeError(422, "undecodable_image", str(error)) from error
    return loaded


def _error_body(error: ServeError) -> bytes:
    return json.dumps({"error": error.code, "detail": error.detail}).encode()


class BodyTimeout(ServeError):
    """The request body stopped arriving, or arrives too slowly to ever finish (a slow-body attack or a dead link)."""

    def __init__(self, received: int, seconds: float, timeout_s: float, min_rate: float):
        super().__init__(
            408, "request_timeout",
            f"the upload arrived too slowly ({received:,} bytes in {seconds:.1f} s); the server waits at most "
            f"{timeout_s:g} s without data and needs {min_rate:g} bytes/s on average after the first {timeout_s:g} s. "
            "Fix: send the file again over a faster or steadier connection.",
            headers={"Connection": "close"},
        )


# An over-cap body is read and discarded up to this many more bytes before the 413 goes out, so that clients that
# send the whole body before reading the answer (Python's http.client, requests) get the 413 instead of a connection
# reset; a body larger still is cut off.
DRAIN_BYTES = 64 * MB
BODY_TIMEOUT_S = 20.0  # the longest pause in a body, and the grace period before the minimum rate applies
MIN_BODY_RATE = 500.0  # bytes/s a body must average (after BODY_TIMEOUT_S) to be read to its end


class _Body:
    """The request body as the app reads it: counted against the size limit and read against the time limits."""

    def __init__(self, receive: Receive, limit: int, timeout_s: float, min_rate: float):
        self._receive = receive
        self.limit = limit
        self.timeout_s = timeout_s
        self.min_rate = min_rate
        self.received = 0
        self.complete = False
        self._started = time.monotonic()

    async def receive(self) -> Message:
        """The next message; UploadTooLarge (after draining) past the limit, BodyTimeout when too slow."""
        if self.complete:  # after the body only the disconnect can come, whenever it comes
            return await self._receive()
        message = await self._next()
        if self.received > self.limit:
            await self.discard_rest(DRAIN_BYTES)
            raise UploadTooLarge(self.limit)
        return message

    async def discard_rest(self, most: int) -> None:
        """Read and drop the rest of the body, at most ``most`` more bytes (BodyTimeout when too slow)."""
        stop = self.received + most
        while not self.complete and self.received <= stop:
            await self._next()

    async def _next(self) -> Message:
        now = time.monotonic()
        deadline = min(now + self.timeout_s, self._started + self.timeout_s + self.received / self.min_rate)
        try:
            message = await asyncio.wait_for(self._receive(), timeout=max(0.0, deadline - now))
        except TimeoutError:
            raise BodyTimeout(self.received, time.monotonic() - self._started, self.timeout_s,
                              self.min_rate) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        else:  # http.disconnect
            self.complete = True
        return message


class BodyLimitMiddleware:
    """Limits request bodies in size and in time.

    Size: a body above the limit gets 413, early: on the declared Content-Length before the app runs, else as soon
    as the streamed bytes pass the limit (chunked uploads). Either way up to ``DRAIN_BYTES`` more are read and
    discarded first (not when the client waits for ``100 Continue``: it has sent nothing), so that clients that
    send before they read see the 413. Time: a body that pauses for ``timeout_s`` or averages under ``min_rate``
    bytes/s after the first ``timeout_s`` gets 408 and the connection is closed.

    ``limit_for(path)`` gives the limit in bytes for a request path (None = unlimited).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int | None], timeout_s: float = BODY_TIMEOUT_S,
                 min_rate: float = MIN_BODY_RATE):
        self.app = app
        self.limit_for = limit_for
        self.timeout_s = timeout_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        body = _Body(receive, limit, self.timeout_s, self.min_rate)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            if not _expects_continue(scope) and declared - limit <= DRAIN_BYTES:
                with contextlib.suppress(BodyTimeout):  # too slow to drain: answer now
                    await body.discard_rest(declared)
            await _send_error(send, UploadTooLarge(limit))
            return

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, body.receive, tracking_send)
        except (UploadTooLarge, BodyTimeout) as error:
            if started:
                raise
            await _send_error(send, error)


def _expects_continue(scope: Scope) -> bool:
    return any(key == b"expect" and value.lower() == b"100-continue" for key, value in scope.get("headers", []))


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
