"""Request limits: bodies over the size limit are refused before anything parses them; 422s always serialise."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    # An HTTPException, so FastAPI's body reader re-raises it as is (any other error becomes a 400).
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class BodyLimitMiddleware:
    """413 on a declared Content-Length over the limit at once, else as soon as the bytes received pass it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")  # the server has already refused a malformed one
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"detail": BodyTooLargeError(self.limit).detail}, 413)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # chunked bodies declare no length: count what arrives
                    raise BodyTooLargeError(self.limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLargeError as err:  # raised where no exception handler caught it
            if started:
                raise
            await JSONResponse({"detail": err.detail}, 413)(scope, receive, send)


MAX_ECHO_CHARS = 200  # a 422 shows this much of a bad input; a 300 KB string is named, not sent back


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's default 422, except that it cannot fail and cannot balloon: the default echoes each bad input
    back, and non-UTF-8 bytes (a body sent as octet-stream or text), a NaN or a lone surrogate in that echo
    turned the 422 into a 500, while a huge field came back whole. Registered for `RequestValidationError`
    (Starlette types every handler by `Exception`)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [_safe_error(error) for error in errors]}, 422)


NOT_JSON = "the body must be a JSON object sent as content-type application/json"


def _safe_error(error: Any) -> dict[str, object]:
    safe = {key: jsonable_encoder(json_safe(value)) for key, value in error.items() if key != "input"}
    if tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes | bytearray | str):
        safe["msg"] = NOT_JSON  # FastAPI hands a body of another content type to the model as bytes or text
    if "input" in error:
        safe["input"] = _echo(jsonable_encoder(json_safe(error["input"])))
    return safe


def _echo(value: object) -> object:
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHO_CHARS else f"{value[:MAX_ECHO_CHARS]}... ({len(value)} characters)"
    size = len(json.dumps(value))
    if size <= MAX_ECHO_CHARS:
        return value
    return f"<a {type(value).__name__} of {size} characters, not echoed>"


def json_safe(value: object) -> object:
    """``value`` as JSON can carry it: bytes decoded with their undecodable bytes escaped (jsonable_encoder
    assumes UTF-8), lone surrogates escaped, NaN and infinities as text; the rest left to jsonable_encoder."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
