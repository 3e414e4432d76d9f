"""Vigil's default templates and Alertmanager's data model through the real Go-template engine
(`vigil.template`): the methods templates call (`.SortedPairs`, `.Remove`, `.Alerts.Firing`, time
`.Format`), each integration's default message, a receiver's own `templates:` files, and failures."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import pytest

from vigil.notifier.alert import Alert
from vigil.notifier.config import EmailConfig, GlobalConfig, MSTeamsV2Config, SlackConfig, SmsConfig
from vigil.notifier.integration import NotifyError
from vigil.notifier.receivers import MSTeamsV2Integration, SlackIntegration, SmsIntegration
from vigil.notifier.receivers.email import Settings, build_message
from vigil.notifier.templates import Renderer, load_templater, template_data

from .conftest import EXTERNAL, NOW_MS, Capture, ctx, firing, resolved

GROUP = {"alertname": "BruteForce", "instance": "bastion-1"}


def render(text: str, alerts: list[Alert] | None = None, *, html: bool = False, **kw: Any) -> str:
    data = template_data(ctx(**kw), alerts if alerts is not None else [firing(), resolved()])
    return load_templater().render(text, data, html=html)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ .CommonLabels.SortedPairs.Values }}", "[BruteForce node page]"),
        ("{{ range .CommonLabels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}",
         "alertname=BruteForce;job=node;severity=page;"),
        ("{{ .CommonLabels.Names }}", "[alertname job severity]"),
        ('{{ (.CommonLabels.Remove (stringSlice "job" "severity")).Names }}', "[alertname]"),
        ("{{ len .Alerts }} {{ len .Alerts.Firing }} {{ len .Alerts.Resolved }}", "2 1 1"),
        ("{{ range .Alerts.Resolved }}{{ .Labels.instance }}{{ end }}", "bastion-2"),
        ('{{ (index .Alerts 0).StartsAt.Format "2006-01-02 15:04:05" }}', "2023-11-14 22:03:20"),
        ("{{ (index .Alerts 0).EndsAt }}", "0001-01-01 00:00:00 +0000 UTC"),
        ("{{ (index .Alerts 1).EndsAt }}", "2023-11-14 22:13:19 +0000 UTC"),
        ("{{ .Status }} {{ .Receiver }} {{ .ExternalURL }}", f"firing ops {EXTERNAL}"),
        ('{{ join "," .GroupLabels.Values }}', "BruteForce"),
        ("{{ .CommonAnnotations.summary }}|{{ .Labels }}", None),  # .Labels is not a field of Data
        ("{{ (index .Alerts 0).Fingerprint }}", f"{firing().fingerprint:016x}"),
        ("{{ (index .Alerts 0).Annotations.nothing }}|", "|"),  # a missing key is "" as in Go's KV
    ],
)  # fmt: skip
def test_data_model_through_the_engine(text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(Exception, match="Labels"):
            render(text)
        return
    assert render(text) == expected


def test_default_title_and_text() -> None:
    alerts = [firing(), firing("bastion-9", description="many failures"), resolved()]
    title = render('{{ template "vigil.default.title" . }}', alerts, group_labels=GROUP)
    assert title == "[FIRING:2] BruteForce bastion-1"
    assert render('{{ template "vigil.default.title" . }}', [resolved()]) == "[RESOLVED] BruteForce"
    text = render('{{ template "vigil.default.text" . }}', alerts)
    lines = text.splitlines()
    assert lines[0] == "FIRING BruteForce bastion-1: SSH brute force on bastion-1"
    assert lines[1].startswith(f"  graph: {EXTERNAL}/graph?g0.expr=rate%28ssh_failed_total")
    assert lines[2].startswith(f"  events: {EXTERNAL}/api/v1/events?match%5B%5D=")
    assert lines[3] == "FIRING BruteForce bastion-9: many failures"
    assert lines[6] == "RESOLVED BruteForce bastion-2: SSH brute force on bastion-2"
    assert len(lines) == 9


def test_slack_defaults(capture: Capture) -> None:
    cfg = SlackConfig.model_validate({"api_url": capture.url})
    SlackIntegration(cfg, GlobalConfig(), load_templater()).notify(
        ctx(group_labels=GROUP), [firing(), resolved()]
    )
    p = capture.received[0].json()
    assert p["text"] == "[FIRING:1] BruteForce bastion-1"
    header, section = p["blocks"]
    assert header["text"]["text"] == "[FIRING:1] BruteForce bastion-1"
    first, second = section["text"]["text"].splitlines()
    assert first.startswith("• *FIRING BruteForce* bastion-1: SSH brute force on bastion-1 <https://vigil")
    assert "|graph> · <" in first and first.endswith("|events>")
    assert second.startswith("• *RESOLVED BruteForce* bastion-2")


def test_teams_defaults(capture: Capture) -> None:
    cfg = MSTeamsV2Config.model_validate({"webhook_url": capture.url})
    MSTeamsV2Integration(cfg, GlobalConfig(), load_templater()).notify(ctx(), [firing()])
    title, text = capture.received[0].json()["attachments"][0]["content"]["body"]
    assert title["text"] == "[FIRING:1] BruteForce" and title["color"] == "Attention"
    assert text["text"].startswith(
        "- **FIRING BruteForce** bastion-1: SSH brute force on bastion-1 ([graph](https://"
    )


def test_sms_default(capture: Capture) -> None:
    cfg = SmsConfig.model_validate({"url": capture.url, "from": "+1", "to": ["+2"]})
    SmsIntegration(cfg, GlobalConfig(), load_templater()).notify(ctx(), [firing(), resolved()])
    body = capture.received[0].form()["Body"][0]
    title, one, two = body.splitlines()
    assert title == "[FIRING:1] BruteForce"
    assert one.startswith(
        "BruteForce bastion-1: SSH brute force on bastion-1 https://vigil.example.com/graph?"
    )
    assert two.startswith("RESOLVED BruteForce bastion-2")
    assert body.isascii()


def test_email_defaults_escape_html() -> None:
    hostile = firing("bastion-1", summary="<script>alert(1)</script> & more")
    cfg = EmailConfig.model_validate({"to": "ops@example.com", "from": "v@example.com", "smarthost": "h:25"})
    s = Settings(cfg, GlobalConfig())
    data = template_data(ctx(group_labels=GROUP), [hostile])
    msg, _, _ = build_message(s, Renderer("email[0]", load_templater(), data), NOW_MS)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "[FIRING:1] BruteForce bastion-1"
    parts = {p.get_content_type(): p.get_content() for p in parsed.iter_parts()}  # type: ignore[attr-defined]
    assert "<script>alert(1)</script> & more" in parts["text/plain"]
    html = parts["text/html"]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert f'<a href="{EXTERNAL}/graph?g0.expr=' in html and "/api/v1/events?match" in html


def test_receiver_templates_override_and_extend_defaults(tmp_path: Path, capture: Capture) -> None:
    (tmp_path / "a.tmpl").write_text(
        '{{ define "vigil.default.title" }}SEC {{ .Status | toUpper }}{{ end }}'
        '{{ define "my.text" }}{{ range .Alerts }}{{ .Labels.instance }} {{ end }}{{ end }}'
    )
    templater = load_templater([str(tmp_path / "*.tmpl")])
    cfg = SlackConfig.model_validate({"api_url": capture.url, "text": '{{ template "my.text" . }}'})
    SlackIntegration(cfg, GlobalConfig(), templater).notify(ctx(), [firing(), firing("b2")])
    p = capture.received[0].json()
    assert p["text"] == "SEC FIRING"
    assert p["blocks"][1]["text"]["text"] == "bastion-1 b2"


@pytest.mark.parametrize(
    "title", ["{{ .Nope }}", '{{ template "undefined.name" . }}', "{{ if }}", "{{ .Alerts.Firing.Oops }}"]
)
def test_bad_template_is_final_and_named(capture: Capture, title: str) -> None:
    cfg = SlackConfig.model_validate({"api_url": capture.url + "/SECRET", "title": title})
    with pytest.raises(NotifyError) as e:
        SlackIntegration(cfg, GlobalConfig(), load_templater()).notify(ctx(), [firing()])
    assert not e.value.retryable and str(e.value).startswith("slack[0]: template of title: ")
    assert "SECRET" not in str(e.value) and capture.received == []


@pytest.mark.parametrize(
    ("am_name", "vigil_name"),
    [
        ("slack.default.title", "vigil.default.title"),
        ("slack.default.text", "vigil.slack.text"),
        ("email.default.subject", "vigil.default.title"),
        ("email.default.html", "vigil.default.html"),
        ("msteams.default.text", "vigil.teams.text"),
        ("msteamsv2.default.title", "vigil.default.title"),
    ],
)
def test_alertmanagers_default_names_render_vigils_defaults(am_name: str, vigil_name: str) -> None:
    # A configuration written for Alertmanager names its defaults; they must render, with Vigil's text.
    html = "html" in am_name
    got = render(f'{{{{ template "{am_name}" . }}}}', html=html)
    assert got and got == render(f'{{{{ template "{vigil_name}" . }}}}', html=html)
