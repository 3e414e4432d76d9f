"""Slack, Teams (Workflows and MessageCard) and SMS against a real local HTTP server: the payloads
checked against the documented schemas, links present, secrets kept out of errors; and
`build_integrations`' order and indices."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.notifier.config import (
    GlobalConfig,
    MSTeamsConfig,
    MSTeamsV2Config,
    ReceiverConfig,
    SlackConfig,
    SmsConfig,
)
from vigil.notifier.integration import NotifyError
from vigil.notifier.receivers import (
    MSTeamsIntegration,
    MSTeamsV2Integration,
    SlackIntegration,
    SmsIntegration,
    build_integrations,
)
from vigil.notifier.templates import load_templater

from .conftest import EXTERNAL, Capture, ctx, firing, resolved

PLAIN = {"title": "T1", "text": "body text"}  # no actions: rendered as they are


def slack(url: str, **kw: Any) -> SlackIntegration:
    cfg = SlackConfig.model_validate({"api_url": url, "fallback": "fb", **PLAIN, **kw})
    return SlackIntegration(cfg, GlobalConfig(), load_templater())


def test_slack_block_kit_with_text_fallback(capture: Capture) -> None:
    slack(
        capture.url + "/services/T0/B0/XXXX",
        channel="#sec",
        fields=[{"title": "Host", "value": "bastion-1"}],
        footer="vigil",
    ).notify(ctx(), [firing()])
    [got] = capture.received
    p = got.json()
    assert p["text"] == "fb" and p["channel"] == "#sec"
    kinds = [b["type"] for b in p["blocks"]]
    assert kinds == ["header", "section", "section", "actions", "context"]
    header, text, fields, actions, context = p["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "T1", "emoji": True}
    assert text["text"] == {"type": "mrkdwn", "text": "body text"}
    assert fields["fields"] == [{"type": "mrkdwn", "text": "*Host*\nbastion-1"}]
    graph, events = actions["elements"]
    assert graph["type"] == "button" and graph["text"]["type"] == "plain_text"
    assert graph["url"].startswith(EXTERNAL + "/graph?g0.expr=")
    assert events["url"].startswith(EXTERNAL + "/api/v1/events?match%5B%5D=")
    assert context["elements"][0]["type"] == "mrkdwn"


def test_slack_cuts_to_block_kit_limits(capture: Capture) -> None:
    slack(capture.url, title="H" * 500, text="S" * 5000).notify(ctx(), [firing(), firing("b")])
    p = capture.received[0].json()
    assert len(p["blocks"][0]["text"]["text"]) == 150
    assert len(p["blocks"][1]["text"]["text"]) == 3000
    assert "actions" not in [b["type"] for b in p["blocks"]]  # several alerts: links are in the text


def test_slack_global_api_url(capture: Capture) -> None:
    cfg = SlackConfig.model_validate({"fallback": "fb", **PLAIN})
    g = GlobalConfig.model_validate({"slack_api_url": capture.url + "/g"})
    SlackIntegration(cfg, g, load_templater()).notify(ctx(), [firing()])
    assert capture.received[0].path == "/g"


def test_slack_bot_api_error_is_final(capture: Capture) -> None:
    capture.body = b'{"ok": false, "error": "channel_not_found"}'
    cfg = SlackConfig.model_validate(
        {"app_token": "xoxb-SECRET", "app_url": capture.url + "/api", "fallback": "fb", **PLAIN}
    )
    with pytest.raises(NotifyError) as e:
        SlackIntegration(cfg, GlobalConfig(), load_templater()).notify(ctx(), [firing()])
    assert not e.value.retryable and "channel_not_found" in str(e.value)
    assert capture.received[0].headers["Authorization"] == "Bearer xoxb-SECRET"
    assert "SECRET" not in str(e.value)


def test_slack_error_hides_webhook_path(capture: Capture) -> None:
    capture.status, capture.body = 404, b"no_service"
    with pytest.raises(NotifyError) as e:
        slack(capture.url + "/services/T0/B0/SECRETPATH").notify(ctx(), [firing()])
    assert not e.value.retryable and "no_service" in str(e.value) and "SECRETPATH" not in str(e.value)


def test_slack_bad_template_is_final(capture: Capture) -> None:
    with pytest.raises(NotifyError) as e:
        slack(capture.url, text="{{ .Broken").notify(ctx(), [firing()])
    assert not e.value.retryable and "slack[0]: template of text" in str(e.value)
    assert capture.received == []


def test_teams_workflows_adaptive_card(capture: Capture) -> None:
    cfg = MSTeamsV2Config.model_validate({"webhook_url": capture.url + "/workflows/SECRET", **PLAIN})
    MSTeamsV2Integration(cfg, GlobalConfig(), load_templater()).notify(ctx(), [resolved()])
    m = capture.received[0].json()
    assert m["type"] == "message"
    [att] = m["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title, text = card["body"]
    assert title["type"] == "TextBlock" and title["text"] == "T1" and title["color"] == "Good"
    assert text == {"type": "TextBlock", "text": "body text", "wrap": True}
    assert [a["type"] for a in card["actions"]] == ["Action.OpenUrl", "Action.OpenUrl"]
    assert card["actions"][1]["url"].startswith(EXTERNAL + "/api/v1/events?")


def test_teams_message_card(capture: Capture) -> None:
    cfg = MSTeamsConfig.model_validate({"webhook_url": capture.url, "summary": "sum", **PLAIN})
    MSTeamsIntegration(cfg, GlobalConfig(), load_templater()).notify(ctx(), [firing()])
    c = capture.received[0].json()
    assert c["@type"] == "MessageCard" and c["@context"] == "http://schema.org/extensions"
    assert (c["themeColor"], c["title"], c["text"], c["summary"]) == ("8C1A1A", "T1", "body text", "sum")
    assert c["potentialAction"][0]["@type"] == "OpenUri"
    assert c["potentialAction"][0]["targets"][0]["uri"].startswith(EXTERNAL + "/graph?")


def test_teams_500_retries_without_url(capture: Capture) -> None:
    capture.status = 502
    cfg = MSTeamsV2Config.model_validate({"webhook_url": capture.url + "/sig=SECRETSIG", **PLAIN})
    with pytest.raises(NotifyError) as e:
        MSTeamsV2Integration(cfg, GlobalConfig(), load_templater()).notify(ctx(), [firing()])
    assert e.value.retryable and "SECRETSIG" not in str(e.value)


def sms(url: str, **kw: Any) -> SmsIntegration:
    cfg = SmsConfig.model_validate(
        {
            "url": url,
            "from": "+15550100",
            "to": ["+15550199", "+15550198"],
            "text": "ALERT bastion-1",
            "http_config": {"basic_auth": {"username": "AC123", "password": "authtoken-SECRET"}},
            **kw,
        }
    )
    return SmsIntegration(cfg, GlobalConfig(), load_templater())


def test_sms_twilio_form_per_recipient(capture: Capture) -> None:
    sms(capture.url + "/2010-04-01/Accounts/AC123/Messages.json").notify(ctx(), [firing()])
    assert len(capture.received) == 2
    for got, to in zip(capture.received, ["+15550199", "+15550198"], strict=True):
        assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert got.headers["Authorization"] == "Basic QUMxMjM6YXV0aHRva2VuLVNFQ1JFVA=="
        assert got.form() == {"From": ["+15550100"], "To": [to], "Body": ["ALERT bastion-1"]}


def test_sms_custom_field_names_and_length_cap(capture: Capture) -> None:
    sms(capture.url, text="x" * 5000, from_field="sender", to_field="msisdn", body_field="msg").notify(
        ctx(), [firing()]
    )
    form = capture.received[0].form()
    assert set(form) == {"sender", "msisdn", "msg"} and len(form["msg"][0]) == 1600


def test_sms_failure_tries_every_recipient_and_hides_password(capture: Capture) -> None:
    capture.status, capture.body = 400, b'{"code": 21211, "message": "invalid To"}'
    with pytest.raises(NotifyError) as e:
        sms(capture.url).notify(ctx(), [firing()])
    assert len(capture.received) == 2
    assert not e.value.retryable and "2 of 2 recipients failed" in str(e.value)
    assert "SECRET" not in str(e.value)


def test_build_integrations_order_and_indices(capture: Capture) -> None:
    rcv = ReceiverConfig.model_validate(
        {
            "name": "all",
            "sms_configs": [{"url": capture.url, "to": ["1"]}],
            "slack_configs": [{"api_url": capture.url}, {"api_url": capture.url}],
            "webhook_configs": [{"url": capture.url}],
            "alertmanager_configs": [{"url": capture.url}],
            "email_configs": [{"to": "a@example.com", "smarthost": "127.0.0.1:25", "from": "v@example.com"}],
            "msteamsv2_configs": [{"webhook_url": capture.url}],
            "msteams_configs": [{"webhook_url": capture.url}],
        }
    )
    got = build_integrations(rcv, GlobalConfig(), load_templater(), external_url=EXTERNAL)
    assert [(i.name, i.index) for i in got] == [
        ("webhook", 0), ("email", 0), ("slack", 0), ("slack", 1), ("msteams", 0), ("msteamsv2", 0),
        ("sms", 0), ("alertmanager", 0),
    ]  # fmt: skip
    assert [i.send_resolved for i in got] == [True, False, False, False, True, True, False, True]


def test_context_without_external_url_uses_the_built_one(capture: Capture) -> None:
    rcv = ReceiverConfig.model_validate(
        {"name": "s", "slack_configs": [{"api_url": capture.url, "fallback": "f", **PLAIN}]}
    )
    [i] = build_integrations(rcv, GlobalConfig(), load_templater(), external_url="http://built:9")
    i.notify(ctx(external_url=""), [firing()])
    urls = [e["url"] for e in capture.received[0].json()["blocks"][-1]["elements"]]
    assert all(u.startswith("http://built:9/") for u in urls)
