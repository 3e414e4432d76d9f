"""`email_configs`: e-mail over SMTP, with Alertmanager's connection rules and a text part beside the HTML.

Connection: implicit TLS when the port is 465 or `force_implicit_tls: true`, else plain SMTP upgraded
with STARTTLS when the server offers it; `require_tls` (default `global.smtp_require_tls`, true)
refuses to go on when it does not, so mail never leaves in clear text by accident. AUTH only when
`auth_username` is set and the server offers AUTH, with the first mechanism the server lists among
CRAM-MD5 (needs `auth_secret`), PLAIN (with `auth_identity`) and LOGIN; as Go's smtp package, PLAIN
and LOGIN never send a password over an unencrypted connection except to localhost. Every setting
left empty falls back to `global.smtp_*`.

Message: multipart/alternative with the rendered text (default `vigil.default.text`) and HTML
(default `vigil.default.html`, rendered with HTML escaping); headers `From`, `To`, `Subject`
(default `vigil.default.subject`), `Date`, `Message-Id` and the rendered `headers`. SMTP failures are
retryable, as in Alertmanager; a bad address or template is not. smtplib blocks; its socket timeout
bounds each step.
"""

from __future__ import annotations

import hmac
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid

from vigil.notifier.alert import Alert
from vigil.notifier.config import EmailConfig, GlobalConfig, TLSConfig
from vigil.notifier.integration import NotifyContext, NotifyError
from vigil.notifier.receivers.common import IntegrationBase
from vigil.notifier.receivers.sender import DEFAULT_TIMEOUT_S, read_secret, ssl_context
from vigil.notifier.templates import Renderer, Templater, template_data

__all__ = ["EmailIntegration", "Settings", "build_message"]

SUBJECT = '{{ template "vigil.default.subject" . }}'
HTML = '{{ template "vigil.default.html" . }}'
TEXT = '{{ template "vigil.default.text" . }}'
_LOCALHOST = {"localhost", "127.0.0.1", "::1"}
_STRUCTURAL = {"Content-Type", "Mime-Version", "Content-Transfer-Encoding", "Date", "Message-Id"}


def _canonical(header: str) -> str:
    return "-".join(p[:1].upper() + p[1:].lower() for p in header.split("-"))


class Settings:
    """The effective settings: the item's own values, else `global.smtp_*` (Alertmanager's rule)."""

    def __init__(self, cfg: EmailConfig, g: GlobalConfig) -> None:
        self.to = cfg.to
        self.from_ = cfg.from_ or g.smtp_from
        self.hello = cfg.hello or g.smtp_hello
        self.smarthost = cfg.smarthost or g.smtp_smarthost
        host, _, port = self.smarthost.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port) if port.isdigit() else 25
        self.username = cfg.auth_username or g.smtp_auth_username
        self.password = cfg.auth_password or g.smtp_auth_password
        self.password_file = cfg.auth_password_file or g.smtp_auth_password_file
        self.secret = cfg.auth_secret or g.smtp_auth_secret
        self.identity = cfg.auth_identity or g.smtp_auth_identity
        self.require_tls = g.smtp_require_tls if cfg.require_tls is None else cfg.require_tls
        self.tls: TLSConfig = cfg.tls_config if cfg.tls_config != TLSConfig() else g.smtp_tls_config
        self.implicit_tls = bool(cfg.force_implicit_tls) or self.port == 465
        self.headers = {_canonical(k): v for k, v in cfg.headers.items()}
        self.html = cfg.html or HTML
        self.text = cfg.text or TEXT


def build_message(
    s: Settings, render: Renderer, now_ms: int, label: str = "email"
) -> tuple[EmailMessage, str, list[str]]:
    """The message, the envelope sender and the envelope recipients."""
    headers = {"Subject": SUBJECT, "To": s.to, "From": s.from_, **s.headers}
    rendered = {k: render(f"headers.{k}", v) for k, v in headers.items()}
    to = render("to", s.to)
    from_ = render("from", s.from_)
    senders = [addr for _, addr in getaddresses([from_]) if addr]
    recipients = [addr for _, addr in getaddresses([to]) if addr]
    if len(senders) != 1:
        raise NotifyError(f"{label}: from: expected one address, got {len(senders)}", retryable=False)
    if not recipients:
        raise NotifyError(f"{label}: to: expected at least one address, got none", retryable=False)
    msg = EmailMessage()
    for k, v in rendered.items():
        if k not in _STRUCTURAL:
            # Header injection: a rendered value never starts another header.
            msg[k] = " ".join(v.splitlines())
    msg["Date"] = formatdate(now_ms / 1000, usegmt=True)
    msg["Message-Id"] = make_msgid(domain=s.hello or "localhost")
    msg.set_content(render("text", s.text))
    msg.add_alternative(render("html", s.html, html=True), subtype="html")
    return msg, senders[0], recipients


class _CramMD5:
    def __init__(self, user: str, secret: str) -> None:
        self.user, self.secret = user, secret

    def __call__(self, challenge: bytes | None = None, /) -> str:
        return f"{self.user} {hmac.new(self.secret.encode(), challenge or b'', 'md5').hexdigest()}"


class _Plain:
    # smtplib base64-encodes what the callback returns.
    def __init__(self, identity: str, user: str, password: str) -> None:
        self.response = f"{identity}\0{user}\0{password}"

    def __call__(self, challenge: bytes | None = None, /) -> str:
        return self.response


def _auth(smtp: smtplib.SMTP, s: Settings, encrypted: bool, label: str) -> None:
    if not s.username or not smtp.has_extn("auth"):
        return
    for mech in smtp.esmtp_features["auth"].upper().split():
        if mech == "CRAM-MD5" and s.secret:
            smtp.auth("CRAM-MD5", _CramMD5(s.username, s.secret), initial_response_ok=False)
            return
        if mech in ("PLAIN", "LOGIN"):
            if not encrypted and s.host not in _LOCALHOST:
                raise NotifyError(f"{label}: refusing AUTH over an unencrypted connection", retryable=False)
            password = read_secret(label, s.password, s.password_file, "auth_password_file")
            if mech == "PLAIN":
                smtp.auth("PLAIN", _Plain(s.identity, s.username, password), initial_response_ok=True)
            else:
                smtp.user, smtp.password = s.username, password
                smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
            return
    raise NotifyError(f"{label}: the server offers no AUTH mechanism Vigil supports", retryable=True)


class _SMTPS(smtplib.SMTP_SSL):
    # smtplib checks the certificate against the host it connects to; tls_config.server_name may differ.
    server_name = ""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = self.server_name or host
        return super()._get_socket(host, port, timeout)  # type: ignore[misc,no-any-return]


def send(
    s: Settings, msg: EmailMessage, sender: str, recipients: list[str], timeout: float, label: str
) -> None:
    """One SMTP session; smtplib and OS errors propagate."""
    ctx = ssl_context(s.tls)
    server_name = s.tls.server_name or s.host
    smtp: smtplib.SMTP
    if s.implicit_tls:
        smtps = _SMTPS(local_hostname=s.hello, timeout=timeout, context=ctx)
        smtps.server_name = server_name
        smtps.connect(s.host, s.port)
        smtp = smtps
    else:
        smtp = smtplib.SMTP(local_hostname=s.hello, timeout=timeout)
        smtp.connect(s.host, s.port)
    try:
        smtp.ehlo()
        encrypted = s.implicit_tls
        if not encrypted and smtp.has_extn("starttls"):
            smtp._host = server_name  # type: ignore[attr-defined]  # the name starttls verifies
            smtp.starttls(context=ctx)
            smtp.ehlo()
            encrypted = True
        elif not encrypted and s.require_tls:
            raise NotifyError(
                f"{label}: require_tls is true but the server does not offer STARTTLS", retryable=True
            )
        _auth(smtp, s, encrypted, label)
        smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
        smtp.quit()
    finally:
        smtp.close()


class EmailIntegration(IntegrationBase):
    kind = "email"

    def __init__(
        self,
        config: EmailConfig,
        global_: GlobalConfig,
        templater: Templater,
        index: int = 0,
        *,
        external_url: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(index, config.sends_resolved, external_url)
        self.settings = Settings(config, global_)
        self.templater = templater
        self.timeout_s = timeout_s

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        s = self.settings
        data = template_data(ctx, alerts, self.external_url)
        msg, sender, recipients = build_message(
            s, Renderer(self.label, self.templater, data), ctx.now_ms, self.label
        )
        try:
            send(s, msg, sender, recipients, self.timeout_s, self.label)
        except NotifyError:
            raise
        except smtplib.SMTPResponseException as exc:
            # The server's reply may quote what it got (an AUTH line is base64 of the password):
            # the code only, and whether it is permanent.
            raise NotifyError(f"{self.label}: SMTP error {exc.smtp_code}", retryable=True) from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, OSError) and exc.strerror:
                reason += f" ({exc.strerror})"
            raise NotifyError(f"{self.label}: {reason}", retryable=True) from None
