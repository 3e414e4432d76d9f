"""Remote-write 1.0 client: POSTs one snappy-compressed WriteRequest and classifies the answer.

Classification follows the remote-write spec, as Prometheus' own sender does:

* 2xx: stored.
* 5xx, 429 and network/TLS errors: retryable; the same payload is sent again later. A Retry-After
  header (seconds or an HTTP date) tells the shipper the earliest time to do so.
* any other status (400 bad data, 401/403 credentials, 413 too large, ...): permanent; sending the
  same bytes again cannot succeed, so the payload is dropped and counted by the caller. Each distinct
  (status, message) is logged once, so a misconfiguration shows up without flooding the log.
"""

from __future__ import annotations

import email.utils
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import httpx

from vigil import __version__
from vigil.ship import signing

__all__ = ["Outcome", "RemoteWriteClient", "SendResult"]

log = logging.getLogger(__name__)

_MAX_LOGGED = 256  # distinct failure messages remembered for log-once; bounded against odd servers
_MAX_MESSAGE = 300


class Outcome(Enum):
    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status: int | None  # HTTP status; None when no response arrived
    reason: str  # short and bounded, usable as a metric label: "http_400", "network", ...
    message: str = ""  # the server's answer or the error, for logs
    retry_after_s: float | None = None  # from Retry-After, seconds from now

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; an old asctime-style date comes without a zone
        return None
    return max(0.0, when.timestamp() - now)


class RemoteWriteClient:
    """Sends remote-write payloads to one URL. Thread-safe; one connection pool per client."""

    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        hmac_key: str | bytes | None = None,
        ca_file: Path | str | None = None,
        cert_file: Path | str | None = None,
        key_file: Path | str | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`headers` replace or add to the remote-write ones (the events stream sends NDJSON)."""
        if key_file is not None and cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        self.url = url
        self._hmac_key = hmac_key or None
        self._clock = clock
        self._headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            "User-Agent": f"vigil-agent/{__version__}",
        } | (headers or {})
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        verify: ssl.SSLContext | bool = True
        if ca_file is not None or cert_file is not None:
            # The CA file replaces the system trust store: the agent trusts exactly its server's CA.
            verify = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
            if cert_file is not None:
                verify.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        self._logged: set[tuple[int | None, str]] = set()
        self._log_lock = threading.Lock()

    def send(self, body: bytes) -> SendResult:
        """POST one snappy-compressed WriteRequest. Never raises for HTTP or network trouble."""
        headers = dict(self._headers)
        if self._hmac_key is not None:
            headers |= signing.sign(self._hmac_key, body, self._clock())
        try:
            response = self._http.post(self.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            reason = "tls" if _is_tls_error(exc) else "network"
            result = SendResult(Outcome.RETRY, None, reason, f"{type(exc).__name__}: {exc}")
            self._log_once(result, logging.WARNING)
            return result
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(Outcome.OK, status, "ok")
        message = response.text.strip()[:_MAX_MESSAGE]
        if status >= 500 or status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
            result = SendResult(Outcome.RETRY, status, f"http_{status}", message, retry_after)
            self._log_once(result, logging.WARNING)
            return result
        result = SendResult(Outcome.PERMANENT, status, f"http_{status}", message)
        self._log_once(result, logging.ERROR)
        return result

    def _log_once(self, result: SendResult, level: int) -> None:
        # Numbers vary between otherwise identical messages ("stored 12 samples; rejected: 3 ...").
        key = (result.status, re.sub(r"\d+", "N", result.message))
        with self._log_lock:
            if key in self._logged or len(self._logged) >= _MAX_LOGGED:
                return
            self._logged.add(key)
        what = "dropping the batch" if result.outcome is Outcome.PERMANENT else "will retry"
        status = f"HTTP {result.status}" if result.status is not None else result.reason
        log.log(
            level,
            "remote write to %s failed (%s): %s; %s (logged once per distinct error)",
            self.url,
            status,
            result.message or "(no message)",
            what,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteWriteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes is short; the bound guards against cycles
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)
