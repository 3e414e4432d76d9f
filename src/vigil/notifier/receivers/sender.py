"""The one HTTP sender the HTTP integrations share (Slack, Teams, webhook, SMS, Alertmanager).

It applies the integration's `http_config` the way Prometheus' common HTTP client does (basic auth,
`authorization` / bearer token, each also from a file; TLS with a CA, client certificate, server name,
skip-verify; a proxy only when configured), bounds every request (connect/read/write timeouts and a
total deadline on reading the answer) and the bytes read back, and classifies the outcome as
Alertmanager does: 2xx delivered, 5xx and 429 worth another try, any other status final; network
errors and timeouts retry. It sends once: retries and backoff are the pipeline's.

Error messages never contain the URL (Slack and Teams webhook URLs are credentials) or a credential:
the integration, the status and the start of the answer only.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from vigil.notifier.config import HTTPConfig, TLSConfig
from vigil.notifier.integration import NotifyError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_RESPONSE_BYTES",
    "HTTPSender",
    "Response",
    "check_status",
    "go_json",
    "read_secret",
    "retryable_status",
    "ssl_context",
]

DEFAULT_TIMEOUT_S = 30.0  # per request, when the integration sets no `timeout`
MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of an answer; the rest is never read
_MAX_SECRET_BYTES = 64 * 1024
_SHOWN_BODY = 200  # characters of an error answer quoted in the message
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


def read_secret(integration: str, value: str, file: str, key: str) -> str:
    """A secret given inline or in `*_file` (read at each notification, as Alertmanager does, so a
    rotated file takes effect; surrounding whitespace stripped). Errors name the key, never the content."""
    if not file:
        return value
    try:
        with Path(file).open("rb") as f:
            data = f.read(_MAX_SECRET_BYTES + 1)
    except OSError as exc:
        # A missing file may appear (a secret mounted late): worth another try.
        raise NotifyError(f"{integration}: reading {key}: {exc.strerror or exc}", retryable=True) from None
    if len(data) > _MAX_SECRET_BYTES:
        raise NotifyError(
            f"{integration}: reading {key}: file larger than {_MAX_SECRET_BYTES} bytes", retryable=False
        )
    return data.decode("utf-8", "replace").strip()


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """An SSLContext for `tls_config`: the system CAs unless `ca`/`ca_file` is given."""
    if tls.ca_file or tls.ca:
        ctx = ssl.create_default_context(cafile=tls.ca_file or None, cadata=tls.ca or None)
    else:
        ctx = ssl.create_default_context()
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.min_version in _VERSIONS:
        ctx.minimum_version = _VERSIONS[tls.min_version]
    if tls.max_version in _VERSIONS:
        ctx.maximum_version = _VERSIONS[tls.max_version]
    return ctx


def go_json(value: Any) -> bytes:
    """JSON as Go's `json.Encoder` writes it: compact, UTF-8, `<`, `>`, `&`, U+2028 and U+2029
    escaped, a newline at the end (byte for byte what Alertmanager's webhook sends)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(c, esc)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + "\n").encode()


def retryable_status(status: int) -> bool:
    """Alertmanager's verdict on a non-2xx status: 5xx and 429 may succeed later, other 4xx never."""
    return status >= 500 or status == 429


def check_status(integration: str, status: int, body: bytes) -> None:
    """Raise NotifyError unless `status` is 2xx."""
    if 200 <= status < 300:
        return
    shown = body.decode("utf-8", "replace").strip()[:_SHOWN_BODY]
    msg = f"{integration}: unexpected status code {status}" + (f": {shown}" if shown else "")
    raise NotifyError(msg, retryable=retryable_status(status))


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes  # at most MAX_RESPONSE_BYTES


class HTTPSender:
    """POSTs for one integration. A fresh client per request: notifications are rare, and a fresh one
    re-reads credential files and certificates, so a rotated one takes effect."""

    def __init__(
        self,
        integration: str,
        config: HTTPConfig | None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.integration = integration
        self.config = config or HTTPConfig()
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.clock = clock

    def _auth(self) -> tuple[httpx.Auth | None, dict[str, str]]:
        c, name = self.config, self.integration
        if c.oauth2 is not None:
            raise NotifyError(f"{name}: http_config.oauth2 is not supported", retryable=False)
        if c.basic_auth is not None:
            b = c.basic_auth
            pw = read_secret(name, b.password, b.password_file, "http_config.basic_auth.password_file")
            return httpx.BasicAuth(b.username, pw), {}
        if c.authorization is not None:
            a = c.authorization
            cred = read_secret(
                name, a.credentials, a.credentials_file, "http_config.authorization.credentials_file"
            )
            return None, {"Authorization": f"{a.type or 'Bearer'} {cred}"}
        if c.bearer_token or c.bearer_token_file:
            cred = read_secret(name, c.bearer_token, c.bearer_token_file, "http_config.bearer_token_file")
            return None, {"Authorization": f"Bearer {cred}"}
        return None, {}

    def _client(self) -> httpx.Client:
        c = self.config
        try:
            verify = ssl_context(c.tls_config)
        except (OSError, ssl.SSLError) as exc:
            raise NotifyError(f"{self.integration}: http_config.tls_config: {exc}", retryable=False) from None
        return httpx.Client(
            verify=verify,
            proxy=c.proxy_url or None,
            trust_env=c.proxy_from_environment,  # never an environment proxy unless asked for
            follow_redirects=c.follow_redirects,
            timeout=httpx.Timeout(self.timeout_s),
        )

    def post(
        self,
        url: str,
        *,
        json_body: bytes | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST once and read a bounded answer. Network failures and timeouts raise a retryable
        NotifyError; the status is left to the caller (`check_status`)."""
        auth, auth_headers = self._auth()
        all_headers = {"User-Agent": "Vigil-Notifier", **auth_headers, **(headers or {})}
        kwargs: dict[str, Any] = {"headers": all_headers}
        if auth is not None:
            kwargs["auth"] = auth
        if json_body is not None:
            kwargs["content"] = json_body
            all_headers.setdefault("Content-Type", "application/json")
        if form is not None:
            kwargs["data"] = dict(form)
        deadline = self.clock() + self.timeout_s
        try:
            with self._client() as client, client.stream("POST", url, **kwargs) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk[: self.max_response_bytes - len(body)]
                    # A trickling peer passes every read timeout: bound the whole answer too.
                    if len(body) >= self.max_response_bytes or self.clock() > deadline:
                        break  # leaving the block closes the connection: the rest is never read
                return Response(resp.status_code, bytes(body))
        except httpx.InvalidURL:
            raise NotifyError(f"{self.integration}: the configured URL is invalid", retryable=False) from None
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            # httpx's messages can quote the URL (a credential for Slack and Teams): name the class
            # and the OS reason only.
            reason = type(exc).__name__
            cause = exc if isinstance(exc, OSError) else exc.__cause__ or exc.__context__
            if isinstance(cause, OSError) and cause.strerror:
                reason += f" ({cause.strerror})"
            raise NotifyError(f"{self.integration}: request failed: {reason}", retryable=True) from None

    def post_checked(
        self,
        url: str,
        *,
        json_body: bytes | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        resp = self.post(url, json_body=json_body, form=form, headers=headers)
        check_status(self.integration, resp.status, resp.body)
        return resp
