"""One error type for every endpoint, and the Starlette exception handlers that answer it.

A handler refuses a request by raising `APIError(status, error_type, message)`; the handler installed
by `vigil.web.app.create_app` writes the response. Two body formats, chosen by the endpoint as
Prometheus does:

- the Prometheus JSON envelope `{"status":"error","errorType":...,"error":...}` (the query API, events);
- plain text, one line (`text=True`): remote write and text import, where Prometheus answers with Go's
  `http.Error`, and the 401 of a refused token on every endpoint.

Anything else a handler raises is a bug: Starlette answers 500 and re-raises it to the server, which
logs the traceback and keeps serving.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ExceptionHandler

from vigil.web.promapi import STATUS_BY_ERROR_TYPE, error_body, go_quote

__all__ = ["EXCEPTION_HANDLERS", "APIError", "api_error", "bad_data", "invalid_param"]


class APIError(Exception):
    """A refused request: the HTTP `status`, a Prometheus `error_type` (for plain-text errors the
    reason the refusal is counted under) and the `message` the client reads."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        text: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.text = text
        self.headers = headers

    def response(self) -> Response:
        if self.text:
            return PlainTextResponse(
                self.message.rstrip("\n") + "\n", status_code=self.status, headers=self.headers
            )
        return Response(
            error_body(self.error_type, self.message),
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )


def api_error(error_type: str, message: str) -> APIError:
    """A Prometheus API error whose status follows from its type, as in Prometheus (`bad_data`: 400,
    `execution`: 422, `internal`: 500, ...)."""
    return APIError(STATUS_BY_ERROR_TYPE.get(error_type, 500), error_type, message)


def bad_data(message: str) -> APIError:
    return APIError(400, "bad_data", message)


def invalid_param(name: str, why: str) -> APIError:
    return bad_data(f"invalid parameter {go_quote(name)}: {why}")


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


EXCEPTION_HANDLERS: Mapping[type[Exception], ExceptionHandler] = {
    APIError: _api_error,
}
