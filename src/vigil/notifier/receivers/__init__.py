"""Receiver integrations of the notifier: webhook, e-mail, Slack, Microsoft Teams (Workflows and the
retired MessageCard), SMS through an HTTP gateway and forwarding to an external Alertmanager, one
module each, over one HTTP sender (`sender`).

Each integration formats one notification and sends it once (`Integration.notify`); grouping,
retries, dedup and metrics are the pipeline's. `build_integrations` turns one `receivers` item into
its integrations, in Alertmanager's order of kinds, each with its index among those of its kind.
"""

from __future__ import annotations

from vigil.notifier.config import GlobalConfig, ReceiverConfig
from vigil.notifier.integration import Integration
from vigil.notifier.receivers.alertmanager import AlertmanagerIntegration
from vigil.notifier.receivers.email import EmailIntegration
from vigil.notifier.receivers.msteams import MSTeamsIntegration, MSTeamsV2Integration
from vigil.notifier.receivers.slack import SlackIntegration
from vigil.notifier.receivers.sms import SmsIntegration
from vigil.notifier.receivers.webhook import WebhookIntegration
from vigil.notifier.templates import Templater

__all__ = [
    "AlertmanagerIntegration",
    "EmailIntegration",
    "MSTeamsIntegration",
    "MSTeamsV2Integration",
    "SlackIntegration",
    "SmsIntegration",
    "WebhookIntegration",
    "build_integrations",
]


def build_integrations(
    receiver: ReceiverConfig, global_: GlobalConfig, templater: Templater, *, external_url: str
) -> list[Integration]:
    """The integrations of `receiver` (Alertmanager's order: webhook, email, slack, msteams,
    msteamsv2; then Vigil's sms and alertmanager). `external_url` is the base of the links when a
    notification's context has none."""
    r, g, t, u = receiver, global_, templater, external_url
    out: list[Integration] = []
    out += [WebhookIntegration(c, g, i, external_url=u) for i, c in enumerate(r.webhook_configs)]
    out += [EmailIntegration(c, g, t, i, external_url=u) for i, c in enumerate(r.email_configs)]
    out += [SlackIntegration(c, g, t, i, external_url=u) for i, c in enumerate(r.slack_configs)]
    out += [MSTeamsIntegration(c, g, t, i, external_url=u) for i, c in enumerate(r.msteams_configs)]
    out += [MSTeamsV2Integration(c, g, t, i, external_url=u) for i, c in enumerate(r.msteamsv2_configs)]
    out += [SmsIntegration(c, g, t, i, external_url=u) for i, c in enumerate(r.sms_configs)]
    out += [AlertmanagerIntegration(c, g, i, external_url=u) for i, c in enumerate(r.alertmanager_configs)]
    return out
