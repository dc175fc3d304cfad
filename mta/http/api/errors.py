"""Every error the API gives is JSON `{"error": {"code", "message", "field"}}`; this module makes
them, and the middleware turns aiohttp's own HTTP errors (404, 405, 413) and anything unexpected
into that shape too."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("mta.api")


class ApiError(Exception):
    """A request the API refuses: the HTTP status, a stable code, a message for people, and the
    request field at fault ("" when no single field is)."""

    def __init__(self, status: int, code: str, message: str, field: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid", message, field)


def error_response(err: ApiError) -> web.Response:
    return web.json_response(err.body(), status=err.status, headers=err.headers)


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid",
          503: "unavailable", 507: "insufficient_storage"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_error_middleware(on_error: Callable[[str], None]) -> Any:
    """`on_error(code)` counts each error answer (a metric)."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            on_error(err.code)
            if err.status >= 500:
                log.warning("%s %s: %s", request.method, request.path, err.message)
            return error_response(err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _CODES.get(exc.status, "error")
            on_error(code)
            message = exc.reason if exc.status != 413 else "request body too large"
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return error_response(ApiError(exc.status, code, message, "", headers))
        except json.JSONDecodeError as exc:
            on_error("bad_json")
            return error_response(ApiError(400, "bad_json", f"request body is not JSON: {exc}"))
        except Exception:
            # A bug: answered as JSON, logged with its trace, counted; never a hung connection.
            log.exception("%s %s failed", request.method, request.path)
            on_error("internal")
            return error_response(ApiError(500, "internal", "internal error"))

    return errors
