"""E-mail through a real SMTP server (aiosmtpd on 127.0.0.1) with STARTTLS on a trustme CA and AUTH:
the MIME that arrives (text + HTML parts, subject, from/to, headers), the envelope, and failures."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port
from vigil.notifier.config import EmailConfig, GlobalConfig
from vigil.notifier.integration import NotifyError
from vigil.notifier.receivers import EmailIntegration
from vigil.notifier.templates import load_templater

from .conftest import ctx, firing

USER, PASSWORD = "vigil", "s3cret-PASS"


@dataclass
class Mailbox:
    port: int
    ca_file: str
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((mechanism, data.login.decode()))
            ok = (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


def _start(tmp_path: Path, *, starttls: bool, exclude: list[str] | None = None) -> tuple[Mailbox, Controller]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    box = Mailbox(free_port(), str(ca_file))
    kwargs: dict[str, Any] = {"authenticator": box.authenticate, "auth_require_tls": starttls}
    if starttls:
        kwargs |= {"tls_context": server_ctx, "require_starttls": True}
    if exclude:
        kwargs["auth_exclude_mechanism"] = exclude
    ctl = Controller(box, hostname="127.0.0.1", port=box.port, ready_timeout=60, **kwargs)
    ctl.start()
    return box, ctl


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    box, ctl = _start(tmp_path, starttls=True)
    try:
        yield box
    finally:
        ctl.stop()


@pytest.fixture
def plain_mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    box, ctl = _start(tmp_path, starttls=False)
    try:
        yield box
    finally:
        ctl.stop()


def integration(box: Mailbox, **kw: Any) -> EmailIntegration:
    cfg = EmailConfig.model_validate(
        {
            "to": "Ops <ops@example.com>, sec@example.com",
            "auth_username": USER,
            "auth_password": PASSWORD,
            "tls_config": {"ca_file": box.ca_file},
            "headers": {"Subject": "Alert subject", "x-vigil-receiver": "ops"},
            "text": "plain body",
            "html": "<p>html body</p>",
            **kw,
        }
    )
    g = GlobalConfig.model_validate(
        {"smtp_smarthost": f"127.0.0.1:{box.port}", "smtp_from": "vigil@example.com"}
    )
    return EmailIntegration(cfg, g, load_templater(), timeout_s=30)


def test_starttls_auth_and_multipart_message(mailbox: Mailbox) -> None:
    integration(mailbox).notify(ctx(), [firing()])
    [(sender, rcpts, msg)] = mailbox.messages
    assert sender == "vigil@example.com" and rcpts == ["ops@example.com", "sec@example.com"]
    assert mailbox.logins and mailbox.logins[0][1] == USER
    assert msg["Subject"] == "Alert subject" and msg["From"] == "vigil@example.com"
    assert msg["To"] == "Ops <ops@example.com>, sec@example.com"
    assert msg["X-Vigil-Receiver"] == "ops" and msg["Message-Id"] and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content().strip() for p in msg.iter_parts()}
    assert parts == {"text/plain": "plain body", "text/html": "<p>html body</p>"}


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_each_auth_mechanism(tmp_path: Path, mech: str) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mech]
    box, ctl = _start(tmp_path, starttls=True, exclude=[other])
    try:
        integration(box).notify(ctx(), [firing()])
    finally:
        ctl.stop()
    assert box.logins == [(mech, USER)] and len(box.messages) == 1


def test_wrong_password_is_retryable_and_not_shown(mailbox: Mailbox) -> None:
    with pytest.raises(NotifyError) as e:
        integration(mailbox, auth_password="WRONG-pw-123").notify(ctx(), [firing()])
    assert e.value.retryable and "535" in str(e.value)
    assert "WRONG-pw-123" not in str(e.value) and PASSWORD not in str(e.value)
    assert mailbox.messages == []


def test_untrusted_certificate_is_refused(mailbox: Mailbox) -> None:
    with pytest.raises(NotifyError) as e:
        integration(mailbox, tls_config={}).notify(ctx(), [firing()])  # system CAs only
    assert e.value.retryable and mailbox.messages == []


def test_require_tls_refuses_a_server_without_starttls(plain_mailbox: Mailbox) -> None:
    with pytest.raises(NotifyError) as e:
        integration(plain_mailbox).notify(ctx(), [firing()])
    assert e.value.retryable and "STARTTLS" in str(e.value)
    assert plain_mailbox.messages == []


def test_without_require_tls_sends_in_clear_to_localhost(plain_mailbox: Mailbox) -> None:
    integration(plain_mailbox, require_tls=False).notify(ctx(), [firing()])
    assert len(plain_mailbox.messages) == 1


def test_header_values_cannot_inject_headers(mailbox: Mailbox) -> None:
    integration(mailbox, headers={"Subject": "a\nBcc: evil@example.com"}).notify(ctx(), [firing()])
    [(_, rcpts, msg)] = mailbox.messages
    assert msg["Bcc"] is None and "evil@example.com" not in rcpts


def test_bad_template_is_final(mailbox: Mailbox) -> None:
    with pytest.raises(NotifyError) as e:
        integration(mailbox, html="{{ .Oops").notify(ctx(), [firing()])
    assert not e.value.retryable and "email[0]: template of html" in str(e.value)


def test_connection_refused_is_retryable() -> None:
    cfg = EmailConfig.model_validate(
        {"to": "a@example.com", "text": "t", "html": "h", "headers": {"Subject": "s"}}
    )
    g = GlobalConfig.model_validate(
        {"smtp_smarthost": f"127.0.0.1:{free_port()}", "smtp_from": "v@example.com"}
    )
    with pytest.raises(NotifyError) as e:
        EmailIntegration(cfg, g, load_templater()).notify(ctx(), [firing()])
    assert e.value.retryable and "ConnectionRefused" in str(e.value)
