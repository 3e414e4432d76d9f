"""Differential tests against Debian's Alertmanager 0.25 on 127.0.0.1: the webhook message Vigil sends
equals, key for key and value for value, what Alertmanager sends to the same local capture server
for the same alerts; and alerts forwarded with `alertmanager_configs` show in its `/api/v2/alerts`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, require_binary, wait_http
from tests.waiting import wait_until
from vigil.notifier.alert import Alert
from vigil.notifier.config import AlertmanagerForwardConfig, GlobalConfig, WebhookConfig
from vigil.notifier.integration import NotifyContext
from vigil.notifier.receivers import AlertmanagerIntegration, WebhookIntegration
from vigil.notifier.templates import go_time_json

from .conftest import Capture

pytestmark = [pytest.mark.peer, pytest.mark.slow]


class Alertmanager:
    def __init__(self, tmp_path: Path, config: str) -> None:
        binary = require_binary("prometheus-alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp_path / "am.yml"
        cfg.write_text(config)
        self.log = (tmp_path / "am.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url={self.url}",
                "--cluster.listen-address=",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/-/ready", proc=self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def alerts(self) -> list[dict[str, Any]]:
        r = httpx.get(self.url + "/api/v2/alerts", timeout=10)
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out


@pytest.fixture
def am_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Alertmanager] = []

    def start(config: str) -> Alertmanager:
        am = Alertmanager(tmp_path, config)
        started.append(am)
        return am

    yield start
    for am in started:
        am.stop()


def _alerts(now_ms: int) -> list[Alert]:
    gen = "http://prom:9090/graph?g0.expr=rate%28ssh_failed_total%5B5m%5D%29+%3E+1&g0.tab=1"
    base = {"alertname": "BruteForce", "job": "node", "severity": "page"}
    return [
        Alert(
            {**base, "instance": "bastion-1"},
            {"summary": "SSH <brute> & force", "runbook": "ünïcode"},
            starts_at_ms=now_ms - 600_123,
            generator_url=gen,
        ),
        Alert(
            {**base, "instance": "bastion-2"},
            {"summary": "SSH brute force"},
            starts_at_ms=now_ms - 900_000,
            ends_at_ms=now_ms - 60_000,
            generator_url=gen,
        ),
    ]


def _postable(a: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "startsAt": go_time_json(a.starts_at_ms),
        "generatorURL": a.generator_url,
    }
    if a.ends_at_ms:
        out["endsAt"] = go_time_json(a.ends_at_ms)
    return out


def test_webhook_message_equals_alertmanagers(am_factory: Any, capture: Capture) -> None:
    am = am_factory(
        f"""
route:
  receiver: hook.sec
  group_by: [alertname]
  group_wait: 1s
receivers:
  - name: hook.sec
    webhook_configs: [{{url: "{capture.url}/am"}}]
"""
    )
    now_ms = int(time.time() * 1000)
    alerts = _alerts(now_ms)
    r = httpx.post(am.url + "/api/v2/alerts", json=[_postable(a) for a in alerts], timeout=10)
    assert r.status_code == 200, r.text
    wait_until(lambda: capture.received, what="Alertmanager's webhook")
    theirs = capture.received[0]
    ctx = NotifyContext(
        receiver="hook.sec",  # Alertmanager sends it regexp-quoted: hook\.sec
        group_key='{}:{alertname="BruteForce"}',
        group_labels={"alertname": "BruteForce"},
        now_ms=int(time.time() * 1000),
        external_url=am.url,
    )
    WebhookIntegration(WebhookConfig.model_validate({"url": capture.url + "/vigil"}), GlobalConfig()).notify(
        ctx, alerts
    )
    ours = capture.received[1]
    assert (theirs.path, ours.path) == ("/am", "/vigil")
    assert ours.json() == theirs.json()
    assert list(ours.json()) == list(theirs.json())  # Go's field order
    assert [list(a) for a in ours.json()["alerts"]] == [list(a) for a in theirs.json()["alerts"]]
    assert ours.body == theirs.body  # Go's encoding too: escapes, UTF-8, the final newline
    assert theirs.headers["Content-Type"] == ours.headers["Content-Type"] == "application/json"


def test_forwarded_alerts_show_in_alertmanager(am_factory: Any) -> None:
    am = am_factory("route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n")
    now_ms = int(time.time() * 1000)
    firing, resolved = _alerts(now_ms)
    fwd = AlertmanagerIntegration(
        AlertmanagerForwardConfig.model_validate({"url": am.url + "/"}), GlobalConfig()
    )
    ctx = NotifyContext("fwd", "{}:{}", {}, now_ms, "http://vigil:9090")
    fwd.notify(ctx, [firing, resolved])
    wait_until(lambda: am.alerts(), what="forwarded alerts")
    [shown] = am.alerts()  # the resolved one is not active
    assert shown["labels"] == dict(firing.labels)
    assert shown["annotations"] == dict(firing.annotations)
    assert shown["fingerprint"] == f"{firing.fingerprint:016x}"
    assert shown["generatorURL"] == firing.generator_url
    # the same instant; Alertmanager's API prints milliseconds always (.760Z), Go's JSON trims (.76Z)
    shown_ms = round(datetime.fromisoformat(shown["startsAt"].replace("Z", "+00:00")).timestamp() * 1000)
    assert shown_ms == firing.starts_at_ms
    # resolving it through the same integration removes it from the active alerts
    done = Alert(firing.labels, firing.annotations, firing.starts_at_ms, now_ms - 1, firing.generator_url)
    fwd.notify(ctx, [done])
    wait_until(lambda: am.alerts() == [], what="the forwarded resolution")
