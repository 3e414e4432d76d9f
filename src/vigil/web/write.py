"""Write endpoints: remote write 1.0 (`/api/v1/write`) and text import (`/api/v1/import/prometheus`).

Status codes follow the remote-write spec: 204 stored; 400 bad data (senders do not retry);
413 too large; 415 wrong encoding; 5xx only for storage trouble, so senders retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

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
from vigil.web.auth import Scope, TokenAuth
from vigil.web.body import BodyTooLarge, read_body

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


class WriteAPI:
    def __init__(
        self,
        ingester: Ingester,
        auth: TokenAuth,
        max_body: int,
        max_decompressed: int,
        max_samples: int,
        hmac_key: str | None = None,
    ) -> None:
        self._ingester = ingester
        self._auth = auth
        self._max_body = max_body
        self._max_decompressed = max_decompressed
        self._max_samples = max_samples
        # When set, writes must carry an HMAC signature of their body (vigil.ship.signing).
        self._hmac_key = hmac_key or None

    def _authorize(self, request: Request) -> Response | None:
        denied = self._auth.check(request, Scope.WRITE)
        if denied:
            self._ingester.reject("unauthorized")
        return denied

    async def _body(self, request: Request) -> bytes | Response:
        """The request body, or the response refusing it."""
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge:
            return self._bad("body_too_large", f"request body exceeds {self._max_body} bytes", 413)
        except ClientDisconnect:
            return self._bad("client_disconnect", "client disconnected", 400)
        key = self._auth.signing_key(request, self._hmac_key)  # the tenant's own, if it has one
        if key is not None:
            problem = signing.verify(key, body, request.headers, time.time())
            if problem is not None:
                return self._bad("bad_signature", f"unauthorized: {problem}", 401)
        return body

    def _bad(self, reason: str, message: str, status: int = 400) -> Response:
        self._ingester.reject(reason)
        return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status)

    async def remote_write(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied:
            return denied
        ctype = request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
        if ctype != "application/x-protobuf":
            return self._bad(
                "unsupported_media_type",
                f"unsupported content type {ctype!r}; remote write 1.0 sends application/x-protobuf",
                415,
            )
        proto = request.headers.get("content-type", "")
        if "proto=" in proto and "prometheus.WriteRequest" not in proto:
            return self._bad(
                "unsupported_media_type", "only remote write 1.0 (prometheus.WriteRequest) is supported", 415
            )
        encoding = request.headers.get("content-encoding", "snappy").strip().lower()
        if encoding != "snappy":
            return self._bad(
                "unsupported_media_type", f"unsupported content encoding {encoding!r}; expected snappy", 415
            )
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        return await run_in_threadpool(self._store_remote, body, self._auth.tenant_of(request))

    def _store_remote(self, body: bytes, tenant: str | None) -> Response:
        try:
            raw = decode_snappy(body, self._max_decompressed)
        except DecompressedTooLarge as exc:
            return self._bad(
                "body_too_large",
                f"decompressed body of {exc.size} bytes exceeds {self._max_decompressed} bytes",
                413,
            )
        except DecodeError as exc:
            return self._bad("snappy", f"bad snappy body: {exc}")
        try:
            decoded = decode_write_request(raw, limits=self._ingester.wire_limits)
        except OverLimit as exc:
            return self._bad(exc.reason, str(exc), _STATUS.get(exc.reason, 400))
        except DecodeError as exc:
            return self._bad("protobuf", f"bad protobuf body: {exc}")
        if decoded.timestamps.size > self._max_samples:
            return self._bad(
                "too_many_samples",
                f"{decoded.timestamps.size} samples exceed the limit of {self._max_samples} per request",
                413,
            )
        return self._store(lambda: self._ingester.write_remote(decoded, tenant))

    async def import_text(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied:
            return denied
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        return await run_in_threadpool(self._store_text, body, self._auth.tenant_of(request))

    def _store_text(self, body: bytes, tenant: str | None) -> Response:
        # Parsing costs far more per line than counting: refuse by an upper bound on the samples
        # first (every line but comments and blank ones could be one).
        lines = body.count(b"\n") + 1 - body.endswith(b"\n") - body.count(b"\n\n")
        lines -= body.count(b"\n#") + body.startswith(b"#")
        if lines > self._max_samples:
            return self._bad(
                "too_many_samples",
                f"more than {self._max_samples} samples (lines) exceed the limit per request",
                413,
            )
        try:
            parsed = parse_text(body, default_timestamp_ms=int(time.time() * 1000))
        except TextParseError as exc:
            return self._bad("text_parse", f"bad exposition text: {exc}")
        if parsed.timestamps.size > self._max_samples:
            return self._bad(
                "too_many_samples",
                f"{parsed.timestamps.size} samples exceed the limit of {self._max_samples} per request",
                413,
            )
        return self._store(lambda: self._ingester.write_text(parsed, tenant))

    def _store(self, write: Callable[[], IngestResult]) -> Response:
        try:
            result = write()
        except InvalidSeries as exc:
            return self._bad(exc.reason, str(exc), _STATUS.get(exc.reason, 400))
        except StorageError as exc:
            log.error("storage error on write: %s", exc)
            self._ingester.reject("storage")
            return PlainTextResponse(f"storage error: {exc}\n", status_code=503)
        if result.partial:
            # Spec: the valid part MAY be stored, but the sender must hear about the rest (400: no retry).
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
