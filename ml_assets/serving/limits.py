"""Request limits: bodies over the size limit are refused before anything parses them; 422s always serialise."""

from __future__ import annotations

import math

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


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's default 422, except that it cannot fail: the default echoes each bad input back, and a NaN
    (Python's JSON parser accepts it) or a lone surrogate in that echo turned the 422 into a 500."""
    return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, 422)


def json_safe(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
