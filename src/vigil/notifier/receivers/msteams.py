"""`msteamsv2_configs` and `msteams_configs`: Microsoft Teams.

Workflows (`msteamsv2`, Power Automate's "post to a channel when a webhook request is received"):
a `message` whose one attachment has `contentType` `application/vnd.microsoft.card.adaptive` and an
Adaptive Card 1.2 as `content` (a bold heading in the status colour, the wrapped text, full width),
as Alertmanager 0.28 posts it, plus `Action.OpenUrl` buttons to the graph and events when the
notification is about one alert (with several, the text has one line with both links per alert).

The retired Office 365 connector (`msteams`) gets the legacy `MessageCard` (`themeColor` 8C1A1A
firing, 2DC72D resolved) with `OpenUri` actions; Microsoft has retired those connectors, so it is
kept only for tenants that still have one. Fields left empty render Vigil's `vigil.default.title`
and `vigil.teams.text` (markdown, which both card kinds display).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vigil.notifier.alert import Alert
from vigil.notifier.config import GlobalConfig, MSTeamsConfig, MSTeamsV2Config
from vigil.notifier.integration import NotifyContext
from vigil.notifier.receivers.common import IntegrationBase, http_config, timeout_s
from vigil.notifier.receivers.sender import HTTPSender, go_json, read_secret
from vigil.notifier.templates import Data, Renderer, Templater, template_data

__all__ = ["MSTeamsIntegration", "MSTeamsV2Integration", "adaptive_card_message", "message_card"]

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
DEFAULT_TITLE = '{{ template "vigil.default.title" . }}'
DEFAULT_TEXT = '{{ template "vigil.teams.text" . }}'
_CARD_COLOR = {"firing": "Attention", "resolved": "Good"}
_THEME_COLOR = {"firing": "8C1A1A", "resolved": "2DC72D"}


def _links(data: Data) -> list[tuple[str, str]]:
    if len(data.Alerts) != 1:
        return []
    a = data.Alerts[0]
    return [(label, url) for label, url in (("Graph", a.GraphURL), ("Events", a.EventsURL)) if url]


def adaptive_card_message(cfg: MSTeamsV2Config, render: Renderer, data: Data) -> dict[str, Any]:
    title = render("title", cfg.title or DEFAULT_TITLE)
    text = render("text", cfg.text or DEFAULT_TEXT)
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": [
            {
                "type": "TextBlock",
                "text": title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "style": "heading",
                "color": _CARD_COLOR.get(data.Status, "Warning"),
            },
            {"type": "TextBlock", "text": text, "wrap": True},
        ],
        "msteams": {"width": "full"},
    }
    actions = [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in _links(data)]
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


def message_card(cfg: MSTeamsConfig, render: Renderer, data: Data) -> dict[str, Any]:
    title = render("title", cfg.title or DEFAULT_TITLE)
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": _THEME_COLOR.get(data.Status, "808080"),
        "title": title,
        "summary": render("summary", cfg.summary) or title,
        "text": render("text", cfg.text or DEFAULT_TEXT),
    }
    actions = [
        {"@type": "OpenUri", "name": label, "targets": [{"os": "default", "uri": url}]}
        for label, url in _links(data)
    ]
    if actions:
        card["potentialAction"] = actions
    return card


class _Teams(IntegrationBase):
    def __init__(
        self,
        config: MSTeamsConfig | MSTeamsV2Config,
        global_: GlobalConfig,
        templater: Templater,
        index: int,
        external_url: str,
    ) -> None:
        super().__init__(index, config.sends_resolved, external_url)
        self.templater = templater
        self._url, self._url_file = config.webhook_url or "", config.webhook_url_file
        self.sender = HTTPSender(self.label, http_config(config.http_config, global_), timeout_s(None))

    def _post(self, body: dict[str, Any]) -> None:
        url = read_secret(self.label, self._url, self._url_file, "webhook_url_file")
        self.sender.post_checked(url, json_body=go_json(body))


class MSTeamsV2Integration(_Teams):
    kind = "msteamsv2"

    def __init__(
        self,
        config: MSTeamsV2Config,
        global_: GlobalConfig,
        templater: Templater,
        index: int = 0,
        *,
        external_url: str = "",
    ) -> None:
        super().__init__(config, global_, templater, index, external_url)
        self.config = config

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        data = template_data(ctx, alerts, self.external_url)
        self._post(adaptive_card_message(self.config, Renderer(self.label, self.templater, data), data))


class MSTeamsIntegration(_Teams):
    kind = "msteams"

    def __init__(
        self,
        config: MSTeamsConfig,
        global_: GlobalConfig,
        templater: Templater,
        index: int = 0,
        *,
        external_url: str = "",
    ) -> None:
        super().__init__(config, global_, templater, index, external_url)
        self.config = config

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        data = template_data(ctx, alerts, self.external_url)
        self._post(message_card(self.config, Renderer(self.label, self.templater, data), data))
