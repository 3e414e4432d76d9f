"""Differential: Alertmanager 0.25 and Vigil send the same e-mail configuration to the same local SMTP
server (aiosmtpd, STARTTLS on a trustme CA, AUTH): same envelope, same AUTH mechanism and login,
same header names and MIME structure, same text and HTML bodies."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.waiting import wait_until
from vigil.notifier.alert import Alert
from vigil.notifier.config import alertmanager_config_from_yaml
from vigil.notifier.integration import NotifyContext
from vigil.notifier.receivers import build_integrations
from vigil.notifier.templates import go_time_json, load_templater

from .test_alertmanager_peer import Alertmanager
from .test_email import PASSWORD, USER, _start

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_email_matches_alertmanagers(tmp_path: Path) -> None:
    # LOGIN left out: Alertmanager's LOGIN wants the challenge "Username:", aiosmtpd sends "User Name".
    box, ctl = _start(tmp_path, starttls=True, exclude=["LOGIN"])
    config = f"""
global:
  smtp_smarthost: 127.0.0.1:{box.port}
  smtp_from: vigil@example.com
  smtp_auth_username: {USER}
  smtp_auth_password: {PASSWORD}
route: {{receiver: mail, group_wait: 1s, group_by: [alertname]}}
receivers:
  - name: mail
    email_configs:
      - to: "ops@example.com, sec@example.com"
        tls_config: {{ca_file: "{box.ca_file}"}}
        headers: {{Subject: "Alert subject", X-Vigil-Receiver: ops}}
        text: "plain body"
        html: "<p>html body</p>"
"""
    (tmp_path / "am").mkdir()
    am = Alertmanager(tmp_path / "am", config)
    try:
        now_ms = int(time.time() * 1000)
        alert = Alert({"alertname": "BruteForce", "instance": "bastion-1"}, {}, starts_at_ms=now_ms - 1000)
        body = [{"labels": dict(alert.labels), "startsAt": go_time_json(alert.starts_at_ms)}]
        assert httpx.post(am.url + "/api/v2/alerts", json=body, timeout=10).status_code == 200
        wait_until(lambda: box.messages, what="Alertmanager's e-mail: " + str(tmp_path / "am" / "am.log"))
        cfg = alertmanager_config_from_yaml(config)
        [mail] = build_integrations(cfg.receivers[0], cfg.global_, load_templater(), external_url=am.url)
        ctx = NotifyContext(
            "mail", '{}:{alertname="BruteForce"}', {"alertname": "BruteForce"}, now_ms, am.url
        )
        mail.notify(ctx, [alert])
    finally:
        am.stop()
        ctl.stop()
    (their_from, their_to, theirs), (our_from, our_to, ours) = box.messages
    assert (
        (our_from, our_to)
        == (their_from, their_to)
        == ("vigil@example.com", ["ops@example.com", "sec@example.com"])
    )
    assert box.logins[0] == box.logins[1]  # same mechanism, same user
    assert sorted(k.lower() for k in ours) == sorted(k.lower() for k in theirs)
    for h in ("Subject", "From", "To", "X-Vigil-Receiver"):
        assert ours[h] == theirs[h], h
    assert ours.get_content_type() == theirs.get_content_type() == "multipart/alternative"

    def parts(m: Any) -> dict[str, str]:
        return {p.get_content_type(): p.get_content().strip() for p in m.iter_parts()}

    assert parts(ours) == parts(theirs) == {"text/plain": "plain body", "text/html": "<p>html body</p>"}
