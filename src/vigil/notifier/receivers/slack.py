"""`slack_configs`: a Slack message through an incoming webhook (or `chat.postMessage` with a bot
token), in Block Kit with the `text` fallback Slack shows in push notifications and old clients.

Layout, readable on a phone: a header (the rendered `title`), `pretext` and `text` as mrkdwn
sections (Vigil's default text is one line per alert with its graph and events links), the
configured `fields`, Graph/Events buttons when the notification is about one alert, and `footer` as
context. Each part is cut to Block Kit's limits (header 150 characters, section 3000, 10 fields,
button URL 3000), so Slack never refuses a message for its size. Fields left empty render Vigil's
default templates (`vigil.default.title`, `vigil.slack.text`).

Delivery: 2xx is accepted (Slack answers `ok`); the bot API answers 200 with `{"ok": false,
"error": ...}` on failure, which is final.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vigil.notifier.alert import Alert
from vigil.notifier.config import GlobalConfig, SlackConfig
from vigil.notifier.integration import NotifyContext, NotifyError
from vigil.notifier.receivers.common import IntegrationBase, http_config, timeout_s
from vigil.notifier.receivers.sender import HTTPSender, go_json, read_secret
from vigil.notifier.templates import Data, Renderer, Templater, template_data, truncate

__all__ = ["DEFAULTS", "SlackIntegration", "slack_payload"]

DEFAULTS = {
    "title": '{{ template "vigil.default.title" . }}',
    "text": '{{ template "vigil.slack.text" . }}',
    "fallback": '{{ template "vigil.default.title" . }}',
}
HEADER_MAX = 150
SECTION_MAX = 3000
FIELDS_MAX = 10
FIELD_MAX = 2000
URL_MAX = 3000
FALLBACK_MAX = 4000  # Slack cuts `text` at 40000; a push notification shows far less
BOT_URL = "https://slack.com/api/chat.postMessage"


def _render(cfg: SlackConfig, render: Renderer, key: str) -> str:
    value: str = getattr(cfg, key)
    return render(key, value or DEFAULTS.get(key, ""))


def slack_payload(cfg: SlackConfig, render: Renderer, data: Data) -> dict[str, Any]:
    title = _render(cfg, render, "title")
    pretext = _render(cfg, render, "pretext")
    text = _render(cfg, render, "text")
    footer = _render(cfg, render, "footer")
    fallback = _render(cfg, render, "fallback")
    blocks: list[dict[str, Any]] = []
    if title.strip():
        blocks.append(
            {
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(title.strip(), HEADER_MAX), "emoji": True},
            }
        )
    for part in (pretext, text):
        if part.strip():
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": truncate(part.strip(), SECTION_MAX)}}
            )
    fields = []
    for i, f in enumerate(cfg.fields[:FIELDS_MAX]):
        ftitle = render(f"fields[{i}].title", f.title)
        fvalue = render(f"fields[{i}].value", f.value)
        fields.append({"type": "mrkdwn", "text": truncate(f"*{ftitle}*\n{fvalue}", FIELD_MAX)})
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if len(data.Alerts) == 1:  # with several, the text carries one pair of links per alert
        a = data.Alerts[0]
        buttons = [
            {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
            for label, url in (("Graph", a.GraphURL), ("Events", a.EventsURL))
            if url and len(url) <= URL_MAX
        ]
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
    if footer.strip():
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(footer, SECTION_MAX)}]}
        )
    payload: dict[str, Any] = {"text": truncate((fallback or title).strip(), FALLBACK_MAX), "blocks": blocks}
    for key in ("channel", "username", "icon_url", "icon_emoji"):
        value = render(key, getattr(cfg, key))
        if value:
            payload[key] = value
    if "icon_url" in payload:  # Slack takes one icon
        payload.pop("icon_emoji", None)
    if cfg.link_names:
        payload["link_names"] = True
    return payload


class SlackIntegration(IntegrationBase):
    kind = "slack"

    def __init__(
        self,
        config: SlackConfig,
        global_: GlobalConfig,
        templater: Templater,
        index: int = 0,
        *,
        external_url: str = "",
    ) -> None:
        super().__init__(index, config.sends_resolved, external_url)
        self.config = config
        self.global_ = global_
        self.templater = templater
        self.sender = HTTPSender(
            self.label, http_config(config.http_config, global_), timeout_s(config.timeout)
        )

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        c, g = self.config, self.global_
        data = template_data(ctx, alerts, self.external_url)
        body = go_json(slack_payload(c, Renderer(self.label, self.templater, data), data))
        if c.app_token or c.app_token_file:
            token = read_secret(self.label, c.app_token, c.app_token_file, "app_token_file")
            resp = self.sender.post_checked(
                c.app_url or BOT_URL, json_body=body, headers={"Authorization": f"Bearer {token}"}
            )
            try:
                answer = json.loads(resp.body)
            except ValueError:
                raise NotifyError(
                    f"{self.label}: chat.postMessage answered with something not JSON", retryable=False
                ) from None
            if not isinstance(answer, dict) or answer.get("ok") is not True:
                error = answer.get("error") if isinstance(answer, dict) else None
                raise NotifyError(f"{self.label}: chat.postMessage: {str(error)[:100]}", retryable=False)
            return
        if c.api_url or c.api_url_file:
            url = read_secret(self.label, c.api_url or "", c.api_url_file, "api_url_file")
        else:
            url = read_secret(
                self.label, g.slack_api_url or "", g.slack_api_url_file, "global.slack_api_url_file"
            )
        self.sender.post_checked(url, json_body=body)
