"""`alertmanager_configs` (Vigil's own): forward the alerts to an external Alertmanager, as Prometheus
sends them, so an existing Alertmanager keeps routing, silencing and paging.

The body is Alertmanager's API v2 `postableAlerts`: a JSON array of `{labels, annotations, startsAt,
endsAt, generatorURL}` POSTed to `<url>/api/v2/alerts`. An alert with an end (resolved, or a firing
one whose end is known) carries it, so the remote resolves it at the same moment Vigil does; one
without carries none, and the remote resolves it after its own `resolve_timeout` unless it is sent
again (keep that route's `repeat_interval` below the remote's `resolve_timeout`). 400 (a body the
remote refuses) is final; 5xx and 429 retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vigil.notifier.alert import Alert
from vigil.notifier.config import AlertmanagerForwardConfig, GlobalConfig
from vigil.notifier.integration import NotifyContext
from vigil.notifier.receivers.common import IntegrationBase, http_config, timeout_s
from vigil.notifier.receivers.sender import HTTPSender, go_json
from vigil.notifier.templates import go_time_json

__all__ = ["AlertmanagerIntegration", "postable_alerts"]


def postable_alerts(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in alerts:
        item: dict[str, Any] = {
            "labels": dict(sorted(a.labels.items())),
            "annotations": dict(sorted(a.annotations.items())),
        }
        if a.starts_at_ms:
            item["startsAt"] = go_time_json(a.starts_at_ms)
        if a.ends_at_ms:
            item["endsAt"] = go_time_json(a.ends_at_ms)
        if a.generator_url:
            item["generatorURL"] = a.generator_url
        out.append(item)
    return out


class AlertmanagerIntegration(IntegrationBase):
    kind = "alertmanager"

    def __init__(
        self,
        config: AlertmanagerForwardConfig,
        global_: GlobalConfig,
        index: int = 0,
        *,
        external_url: str = "",
    ) -> None:
        super().__init__(index, config.sends_resolved, external_url)
        self.sender = HTTPSender(
            self.label, http_config(config.http_config, global_), timeout_s(config.timeout)
        )
        self.url = config.url.rstrip("/") + "/api/v2/alerts"

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        self.sender.post_checked(self.url, json_body=go_json(postable_alerts(alerts)))
