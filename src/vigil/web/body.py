"""Reading a request body with a size bound, for every endpoint that takes one.

The declared Content-Length is refused before a byte is read; a chunked or lying body is counted
as it streams and refused at the first chunk past the bound, so no more than `limit` bytes (plus
one chunk) are ever held. The time a body may take is bounded below, by the connection guard
(`vigil.web.connections`)."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is (or says it is) larger than the endpoint accepts."""


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
