"""`webhook_configs`: Alertmanager's version-4 webhook JSON, field for field, so every consumer written
for Alertmanager's webhook (jiralert, alertmanager-discord, scripts, ...) works unchanged.

The body is Go's encoding of Alertmanager 0.25's `webhook.Message`: the template data first
(`receiver`, `status`, `alerts`, `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`),
then `version` "4", `groupKey` and `truncatedAlerts`; map keys sorted, times in Go's RFC 3339 form,
`endsAt` of a firing alert Go's zero time. With `max_alerts` > 0 only the first `max_alerts` alerts
are sent, the status and common labels are computed from those, and the rest are counted in
`truncatedAlerts`, as Alertmanager does. Alertmanager's `receiver` is the name quoted as a regular
expression (its template data quotes it), so Vigil's is too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vigil.notifier.alert import Alert, fingerprint_hex
from vigil.notifier.config import GlobalConfig, WebhookConfig
from vigil.notifier.integration import NotifyContext
from vigil.notifier.receivers.common import IntegrationBase, http_config, timeout_s
from vigil.notifier.receivers.sender import HTTPSender, go_json, read_secret
from vigil.notifier.templates import common, go_time_json, quote_meta, status_of

__all__ = ["WebhookIntegration", "webhook_message"]


def webhook_message(
    ctx: NotifyContext, alerts: Sequence[Alert], max_alerts: int = 0, external_url: str = ""
) -> dict[str, Any]:
    """The version-4 message, keys in Go's order."""
    truncated = 0
    if max_alerts > 0 and len(alerts) > max_alerts:
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    items = []
    for a in alerts:
        resolved = a.resolved_at(ctx.now_ms)
        items.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": dict(sorted(a.labels.items())),
                "annotations": dict(sorted(a.annotations.items())),
                "startsAt": go_time_json(a.starts_at_ms),
                "endsAt": go_time_json(a.ends_at_ms if resolved else 0),
                "generatorURL": a.generator_url,
                "fingerprint": fingerprint_hex(a.labels),
            }
        )
    return {
        "receiver": quote_meta(ctx.receiver),
        "status": status_of(alerts, ctx.now_ms),
        "alerts": items,
        "groupLabels": dict(sorted(ctx.group_labels.items())),
        "commonLabels": dict(sorted(common([a.labels for a in alerts]).items())),
        "commonAnnotations": dict(sorted(common([a.annotations for a in alerts]).items())),
        "externalURL": ctx.external_url or external_url,
        "version": "4",
        "groupKey": ctx.group_key,
        "truncatedAlerts": truncated,
    }


class WebhookIntegration(IntegrationBase):
    kind = "webhook"

    def __init__(
        self, config: WebhookConfig, global_: GlobalConfig, index: int = 0, *, external_url: str = ""
    ) -> None:
        super().__init__(index, config.sends_resolved, external_url)
        self.config = config
        self.sender = HTTPSender(
            self.label, http_config(config.http_config, global_), timeout_s(config.timeout)
        )

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        url = read_secret(self.label, self.config.url or "", self.config.url_file, "url_file")
        body = go_json(webhook_message(ctx, alerts, self.config.max_alerts, self.external_url))
        self.sender.post_checked(url, json_body=body)
