"""Write endpoints: remote write 1.0 (`/api/v1/write`) and text import (`/api/v1/import/prometheus`).

Status codes follow the remote-write spec: 204 stored; 400 bad data (senders do not retry);
413 too large; 415 wrong encoding; 5xx only for storage trouble, so senders retry.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from vigil.ingest.ingester import Ingester, IngestResult
from vigil.ingest.validate import InvalidSeries
from vigil.model.textparse import TextParseError, parse_text
from vigil.prompb.codec import (
    DecodeError,
    DecompressedTooLarge,
    OverLimit,
    decode_snappy,
    decode_write_request,
)
from vigil.ship import signing
from vigil.storage.interface import StorageError
from vigil.web.auth import Caller, Endpoint, Scope, TokenAuth, requires
from vigil.web.body import BodyTooLarge, read_body
from vigil.web.errors import APIError

log = logging.getLogger(__name__)

# Refusals that are not plain bad data: the request is too large (413), or the store is at a
# series limit (429: senders retry later; nothing of the request was stored).
_STATUS = {
    "too_many_samples": 413,
    "too_many_series": 413,
    "max_series": 429,
    "max_series_per_tenant": 429,
    "max_series_per_metric": 429,
}


# Why samples of a partly stored request were refused, for the 400 text (reasons from the store).
_WHY_REJECTED = {
    "native_histogram": "native histograms are not supported",
    "too_old": "older than the out-of-order window or retention",
    "too_far_in_future": "ahead of the server's clock by more than limits.future_grace",
}


@dataclass(frozen=True)
class WriteOptions:
    """The bounds of one write request (`limits.*` in `vigil.yml`) and the shared signing key."""

    max_body: int  # limits.max_request_body_bytes
    max_decompressed: int  # limits.max_decompressed_bytes
    max_samples: int  # limits.max_samples_per_request
    hmac_key: str | None = None  # server.auth.hmac_key: when set, writes must be signed (vigil.ship.signing)


def _counted(endpoint: Endpoint[WriteAPI]) -> Endpoint[WriteAPI]:
    """Every refused write, the token's 401 included, counted by reason (the error type)."""

    @functools.wraps(endpoint)
    async def counted(api: WriteAPI, request: Request) -> Response:
        try:
            return await endpoint(api, request)
        except APIError as exc:
            api.ingester.reject(exc.error_type)
            raise

    return counted


def _refuse(reason: str, message: str, status: int = 400) -> APIError:
    # Plain text, as Prometheus' remote write handler answers; `reason` is what the refusal is counted as.
    return APIError(status, reason, message, text=True)


class WriteAPI:
    """Handlers for remote write and text import over an Ingester (see `routes`)."""

    def __init__(self, ingester: Ingester, auth: TokenAuth, options: WriteOptions) -> None:
        self.ingester = ingester
        self.auth = auth
        self._opts = options

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/write", self.remote_write, methods=["POST"]),
            Route("/api/v1/import/prometheus", self.import_text, methods=["POST"]),
        ]

    async def _body(self, request: Request, caller: Caller) -> bytes:
        """The request body, signature checked; APIError refusing it."""
        limit = self._opts.max_body
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            raise _refuse("body_too_large", f"request body exceeds {limit} bytes", 413) from None
        except ClientDisconnect:
            raise _refuse("client_disconnect", "client disconnected") from None
        key = caller.signing_key(self._opts.hmac_key)  # the tenant's own, if it has one
        if key is not None:
            problem = signing.verify(key, body, request.headers, time.time())
            if problem is not None:
                raise _refuse("bad_signature", f"unauthorized: {problem}", 401)
        return body

    @_counted
    @requires(Scope.WRITE)
    async def remote_write(self, request: Request, caller: Caller) -> Response:
        ctype = request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
        if ctype != "application/x-protobuf":
            raise _refuse(
                "unsupported_media_type",
                f"unsupported content type {ctype!r}; remote write 1.0 sends application/x-protobuf",
                415,
            )
        proto = request.headers.get("content-type", "")
        if "proto=" in proto and "prometheus.WriteRequest" not in proto:
            raise _refuse(
                "unsupported_media_type", "only remote write 1.0 (prometheus.WriteRequest) is supported", 415
            )
        encoding = request.headers.get("content-encoding", "snappy").strip().lower()
        if encoding != "snappy":
            raise _refuse(
                "unsupported_media_type", f"unsupported content encoding {encoding!r}; expected snappy", 415
            )
        body = await self._body(request, caller)
        return await run_in_threadpool(self._store_remote, body, caller.tenant)

    def _store_remote(self, body: bytes, tenant: str | None) -> Response:
        opts = self._opts
        try:
            raw = decode_snappy(body, opts.max_decompressed)
        except DecompressedTooLarge as exc:
            raise _refuse(
                "body_too_large",
                f"decompressed body of {exc.size} bytes exceeds {opts.max_decompressed} bytes",
                413,
            ) from None
        except DecodeError as exc:
            raise _refuse("snappy", f"bad snappy body: {exc}") from None
        try:
            decoded = decode_write_request(raw, limits=self.ingester.wire_limits)
        except OverLimit as exc:
            raise _refuse(exc.reason, str(exc), _STATUS.get(exc.reason, 400)) from None
        except DecodeError as exc:
            raise _refuse("protobuf", f"bad protobuf body: {exc}") from None
        if decoded.timestamps.size > opts.max_samples:
            raise _refuse(
                "too_many_samples",
                f"{decoded.timestamps.size} samples exceed the limit of {opts.max_samples} per request",
                413,
            )
        return self._store(lambda: self.ingester.write_remote(decoded, tenant))

    @_counted
    @requires(Scope.WRITE)
    async def import_text(self, request: Request, caller: Caller) -> Response:
        body = await self._body(request, caller)
        return await run_in_threadpool(self._store_text, body, caller.tenant)

    def _store_text(self, body: bytes, tenant: str | None) -> Response:
        max_samples = self._opts.max_samples
        # Parsing costs far more per line than counting: refuse by an upper bound on the samples
        # first (every line but comments and blank ones could be one).
        lines = body.count(b"\n") + 1 - body.endswith(b"\n") - body.count(b"\n\n")
        lines -= body.count(b"\n#") + body.startswith(b"#")
        if lines > max_samples:
            raise _refuse(
                "too_many_samples",
                f"more than {max_samples} samples (lines) exceed the limit per request",
                413,
            )
        try:
            parsed = parse_text(body, default_timestamp_ms=int(time.time() * 1000))
        except TextParseError as exc:
            raise _refuse("text_parse", f"bad exposition text: {exc}") from None
        if parsed.timestamps.size > max_samples:
            raise _refuse(
                "too_many_samples",
                f"{parsed.timestamps.size} samples exceed the limit of {max_samples} per request",
                413,
            )
        return self._store(lambda: self.ingester.write_text(parsed, tenant))

    def _store(self, write: Callable[[], IngestResult]) -> Response:
        try:
            result = write()
        except InvalidSeries as exc:
            raise _refuse(exc.reason, str(exc), _STATUS.get(exc.reason, 400)) from None
        except StorageError as exc:
            log.error("storage error on write: %s", exc)
            raise _refuse("storage", f"storage error: {exc}", 503) from None
        if result.partial:
            # Spec: the valid part MAY be stored, but the sender must hear about the rest (400: no
            # retry). Not a refusal: the rejected samples are counted by reason by the ingester.
            detail = ", ".join(
                f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(result.rejected.items())
            )
            return PlainTextResponse(
                f"stored {result.accepted} samples; rejected: {detail}"
                + "".join(f" ({why})" for reason, why in _WHY_REJECTED.items() if reason in result.rejected)
                + "\n",
                status_code=400,
            )
        return Response(status_code=204)
