"""The webhook integration against a real local HTTP server: Alertmanager's version-4 JSON, field by
field; `max_alerts`; and how every HTTP outcome is classified (shared by all HTTP integrations)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import trustme

from tests.conftest import free_port
from vigil.notifier.config import GlobalConfig, HTTPConfig, WebhookConfig
from vigil.notifier.integration import NotifyError
from vigil.notifier.receivers import WebhookIntegration

from .conftest import EXTERNAL, Capture, ctx, firing, resolved

GO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
ALERT_KEYS = ["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"]
MESSAGE_KEYS = [
    "receiver", "status", "alerts", "groupLabels", "commonLabels", "commonAnnotations", "externalURL",
    "version", "groupKey", "truncatedAlerts",
]  # fmt: skip


def webhook(url: str, **kw: object) -> WebhookIntegration:
    return WebhookIntegration(WebhookConfig.model_validate({"url": url, **kw}), GlobalConfig())


def test_version_4_message(capture: Capture) -> None:
    webhook(capture.url + "/hook").notify(ctx("ops"), [firing(), resolved()])
    [got] = capture.received
    assert got.path == "/hook"
    assert got.headers["Content-Type"] == "application/json"
    m = got.json()
    assert list(m) == MESSAGE_KEYS
    assert m["version"] == "4" and m["groupKey"] == '{}:{alertname="BruteForce"}'
    assert m["truncatedAlerts"] == 0 and m["status"] == "firing" and m["receiver"] == "ops"
    assert m["externalURL"] == EXTERNAL
    assert m["groupLabels"] == {"alertname": "BruteForce"}
    assert m["commonLabels"] == {"alertname": "BruteForce", "job": "node", "severity": "page"}
    a, b = m["alerts"]
    assert list(a) == ALERT_KEYS and list(b) == ALERT_KEYS
    assert a["status"] == "firing" and b["status"] == "resolved"
    assert a["endsAt"] == "0001-01-01T00:00:00Z"
    assert GO_TIME.fullmatch(a["startsAt"]) and GO_TIME.fullmatch(b["endsAt"])
    assert b["endsAt"] == "2023-11-14T22:13:19Z"  # NOW_MS - 1s
    assert re.fullmatch(r"[0-9a-f]{16}", a["fingerprint"])
    assert a["generatorURL"] == firing().generator_url
    # Go's encoder escapes & < > in strings; the JSON stays equal, the bytes are Go's
    assert b"\\u0026g0.tab=1" in got.body and got.body.endswith(b"}\n")


def test_max_alerts_truncates_and_counts(capture: Capture) -> None:
    alerts = [firing("h1"), firing("h2"), resolved("h3")]
    webhook(capture.url, max_alerts=1).notify(ctx(), alerts)
    m = capture.received[0].json()
    assert len(m["alerts"]) == 1 and m["truncatedAlerts"] == 2
    assert m["commonLabels"]["instance"] == "h1"  # computed from the alerts sent


def test_http_config_bearer_token_is_sent(capture: Capture) -> None:
    WebhookIntegration(
        WebhookConfig.model_validate({"url": capture.url, "http_config": {"bearer_token": "tok-123"}}),
        GlobalConfig(),
    ).notify(ctx(), [firing()])
    assert capture.received[0].headers["Authorization"] == "Bearer tok-123"


def test_global_http_config_is_inherited(capture: Capture) -> None:
    g = GlobalConfig(
        http_config=HTTPConfig.model_validate({"basic_auth": {"username": "u", "password": "p"}})
    )
    WebhookIntegration(WebhookConfig.model_validate({"url": capture.url}), g).notify(ctx(), [firing()])
    assert capture.received[0].headers["Authorization"] == "Basic dTpw"


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
def test_status_classification(capture: Capture, status: int, retryable: bool) -> None:
    capture.status, capture.body = status, b"nope"
    with pytest.raises(NotifyError) as e:
        webhook(capture.url + "/secret-path-XYZ").notify(ctx(), [firing()])
    assert e.value.retryable is retryable
    assert f"status code {status}" in str(e.value) and "webhook[0]" in str(e.value)
    assert "secret-path-XYZ" not in str(e.value) and "127.0.0.1" not in str(e.value)


def test_connection_refused_is_retryable_and_names_no_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/token-AAAA"
    with pytest.raises(NotifyError) as e:
        webhook(url).notify(ctx(), [firing()])
    assert e.value.retryable
    assert "token-AAAA" not in str(e.value) and "ConnectError" in str(e.value)


def test_timeout_is_retryable(capture: Capture) -> None:
    capture.hold = threading.Event()  # the server never answers until the test ends
    with pytest.raises(NotifyError) as e:
        webhook(capture.url + "/token-BBBB", timeout="200ms").notify(ctx(), [firing()])
    assert e.value.retryable and "Timeout" in str(e.value)
    assert "token-BBBB" not in str(e.value)


def test_url_file_is_read_at_notify_time(capture: Capture, tmp_path: Path) -> None:
    f = tmp_path / "url"
    f.write_text(capture.url + "/one\n")
    hook = WebhookIntegration(WebhookConfig.model_validate({"url_file": str(f)}), GlobalConfig())
    hook.notify(ctx(), [firing()])
    f.write_text(capture.url + "/two")
    hook.notify(ctx(), [firing()])
    assert [r.path for r in capture.received] == ["/one", "/two"]


def test_answer_read_is_bounded(capture: Capture) -> None:
    capture.status, capture.body = 500, b"x" * (1 << 20)
    hook = webhook(capture.url)
    hook.sender.max_response_bytes = 1000
    assert len(hook.sender.post(capture.url, json_body=b"{}").body) == 1000
    with pytest.raises(NotifyError) as e:
        hook.notify(ctx(), [firing()])
    assert len(str(e.value)) < 400  # the message quotes only the start of the answer


def test_tls_with_configured_ca(https_capture: Capture, ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = {"http_config": {"tls_config": {"ca_file": str(ca_file)}}}
    webhook(https_capture.url + "/tls", **tls).notify(ctx(), [firing()])
    assert [r.path for r in https_capture.received] == ["/tls"]


def test_tls_with_unknown_ca_is_refused_and_retryable(https_capture: Capture) -> None:
    with pytest.raises(NotifyError) as e:
        webhook(https_capture.url + "/token-CCCC").notify(ctx(), [firing()])
    assert e.value.retryable and "token-CCCC" not in str(e.value)
    assert https_capture.received == []
