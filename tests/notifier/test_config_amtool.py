"""The Alertmanager configuration model: accept/refuse verdicts compared with Debian's
`amtool check-config` (0.25) on a corpus of good and bad files, every refusal one line naming the
file and the key, the defaults applied, and vigil.yml's `alerting:` section.

Deliberate divergences, not in the corpus: `msteams_configs`/`msteamsv2_configs` (newer than 0.25,
accepted); quoted UTF-8 label names (0.27+ fallback parser); the integrations Vigil does not deliver
to (pagerduty, opsgenie, ...) load without their own checks, and are refused by `check_supported`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vigil.cmd.main import main
from vigil.config import ConfigError, config_from_yaml
from vigil.notifier.config import (
    alertmanager_config_from_yaml,
    check_supported,
    load_alerting,
    load_alertmanager_config,
    load_routing_source,
)
from vigil.notifier.routing import build_routes

AMTOOL = shutil.which("amtool")

BASE = "receivers: [{name: r}, {name: s}]\n"
RECEIVERS = "receivers:\n- name: r\n- name: s\n"

GOOD = {
    "minimal": "route: {receiver: r}\n" + BASE,
    "nested": """
route:
  receiver: r
  group_by: [alertname, cluster]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 1h30m
  routes:
  - matchers: ['severity=~"crit|warn"', 'team!=ops']
    receiver: s
    continue: true
    routes: [{match: {a: b}, group_by: ['...']}]
  - match_re: {service: 'web-.*'}
    group_wait: 0s
"""
    + RECEIVERS,
    "email_global": """
global: {smtp_smarthost: 'smtp.example.com:587', smtp_from: a@example.com, resolve_timeout: 1m}
route: {receiver: r}
receivers: [{name: r, email_configs: [{to: b@example.com, headers: {Subject: hi}}]}, {name: s}]
""",
    "slack_global": """
global: {slack_api_url: 'https://hooks.slack.com/services/X'}
route: {receiver: r}
receivers: [{name: r, slack_configs: [{channel: '#ops', send_resolved: true}]}, {name: s}]
""",
    "webhook": """
route: {receiver: r}
receivers: [{name: r, webhook_configs: [{url: 'http://127.0.0.1:9/hook', max_alerts: 3,
  http_config: {basic_auth: {username: u, password: p}}}]}, {name: s}]
""",
    "intervals": """
route:
  receiver: r
  routes: [{receiver: s, mute_time_intervals: [night], active_time_intervals: [work]}]
mute_time_intervals:
- name: night
  time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]
time_intervals:
- name: work
  time_intervals: [{weekdays: ['monday:friday'], days_of_month: ['1:-1'], months: ['1:12'],
    years: ['2020:2030'], location: Europe/Berlin}]
"""
    + RECEIVERS,
    "inhibit": """
route: {receiver: r}
inhibit_rules:
- source_matchers: [severity=critical]
  target_matchers: ['severity=~"warn|info"']
  equal: [cluster, alertname]
- source_match: {a: b}
  target_match_re: {c: 'd.*'}
"""
    + RECEIVERS,
    "templates": "templates: ['*.tmpl']\nroute: {receiver: r}\n" + BASE,
    "empty_group_by": "route: {receiver: r, group_by: [], routes: [{group_by: ['...']}]}\n" + BASE,
    "unused_receiver_ok": "route: {receiver: s}\n" + BASE,
}

BAD = {
    "unknown_receiver": (
        "route: {receiver: r, routes: [{receiver: nope}]}\n" + BASE,
        "route.routes[0].receiver",
    ),
    "duplicate_receiver": ("route: {receiver: r}\nreceivers: [{name: r}, {name: r}]\n", "receivers[1].name"),
    "no_route": (BASE, "route"),
    "root_without_receiver": ("route: {group_by: [a]}\n" + BASE, "route.receiver"),
    "root_matchers": ("route: {receiver: r, matchers: [a=b]}\n" + BASE, "route"),
    "root_match": ("route: {receiver: r, match: {a: b}}\n" + BASE, "route"),
    "root_continue": ("route: {receiver: r, continue: true}\n" + BASE, "route.continue"),
    "root_mute": (
        "route: {receiver: r, mute_time_intervals: [t]}\ntime_intervals: [{name: t, time_intervals: []}]\n"
        + BASE,
        "route.mute_time_intervals",
    ),
    "group_by_duplicate": ("route: {receiver: r, group_by: [a, a]}\n" + BASE, "route.group_by[1]"),
    "group_by_all_mixed": ("route: {receiver: r, group_by: ['...', a]}\n" + BASE, "route.group_by"),
    "group_interval_zero": (
        "route: {receiver: r, routes: [{group_interval: 0s}]}\n" + BASE,
        "route.routes[0].group_interval",
    ),
    "repeat_interval_zero": ("route: {receiver: r, repeat_interval: 0s}\n" + BASE, "route.repeat_interval"),
    "bad_duration": ("route: {receiver: r, group_wait: soon}\n" + BASE, "route.group_wait"),
    "bare_number_duration": ("route: {receiver: r, group_wait: 30}\n" + BASE, "route.group_wait"),
    "unknown_top_key": ("route: {receiver: r}\nroutes: []\n" + BASE, "routes"),
    "unknown_route_key": ("route: {receiver: r, recevier: s}\n" + BASE, "route.recevier"),
    "bad_match_re": (
        "route: {receiver: r, routes: [{match_re: {a: '('}}]}\n" + BASE,
        "route.routes[0].match_re.a",
    ),
    "bad_match_name": (
        "route: {receiver: r, routes: [{match: {a-b: c}}]}\n" + BASE,
        "route.routes[0].match.a-b",
    ),
    "bad_matcher": (
        "route: {receiver: r, routes: [{matchers: ['a=\"b']}]}\n" + BASE,
        "route.routes[0].matchers[0]",
    ),
    "email_no_smarthost": (
        "route: {receiver: r}\nreceivers: [{name: r, email_configs: [{to: a@b, from: c@d}]}]\n",
        "receivers[0].email_configs[0].smarthost",
    ),
    "email_no_to": (
        "global: {smtp_smarthost: 'h:25', smtp_from: a@b}\nroute: {receiver: r}\n"
        "receivers: [{name: r, email_configs: [{from: c@d}]}]\n",
        "receivers[0].email_configs[0].to",
    ),
    "slack_no_url": (
        "route: {receiver: r}\nreceivers: [{name: r, slack_configs: [{channel: x}]}]\n",
        "receivers[0].slack_configs[0].api_url",
    ),
    "webhook_no_url": (
        "route: {receiver: r}\nreceivers: [{name: r, webhook_configs: [{}]}]\n",
        "receivers[0].webhook_configs[0]",
    ),
    "webhook_bad_scheme": (
        "route: {receiver: r}\nreceivers: [{name: r, webhook_configs: [{url: 'ftp://x/y'}]}]\n",
        "receivers[0].webhook_configs[0].url",
    ),
    "receiver_without_name": (
        "route: {receiver: r}\nreceivers: [{name: r}, {webhook_configs: []}]\n",
        "receivers[1].name",
    ),
    "undefined_interval": (
        "route: {receiver: r, routes: [{mute_time_intervals: [nope]}]}\n" + BASE,
        "route.routes[0].mute_time_intervals[0]",
    ),
    "duplicate_interval": (
        "route: {receiver: r}\ntime_intervals: [{name: t}]\nmute_time_intervals: [{name: t}]\n" + BASE,
        "time_intervals[0].name",
    ),
    "bad_weekday": (
        "route: {receiver: r}\ntime_intervals: [{name: t, time_intervals: [{weekdays: [funday]}]}]\n" + BASE,
        "time_intervals[0].time_intervals[0].weekdays[0]",
    ),
    "bad_times": (
        "route: {receiver: r}\ntime_intervals: [{name: t, time_intervals: "
        "[{times: [{start_time: '10:00', end_time: '09:00'}]}]}]\n" + BASE,
        "time_intervals[0].time_intervals[0].times[0]",
    ),
    "bad_location": (
        "route: {receiver: r}\ntime_intervals: [{name: t, time_intervals: [{location: Mars/Base}]}]\n" + BASE,
        "time_intervals[0].time_intervals[0].location",
    ),
    "slack_url_and_file": (
        "global: {slack_api_url: 'https://x.example/', slack_api_url_file: /f}\nroute: {receiver: r}\n"
        + BASE,
        "global",
    ),
    "duplicate_yaml_key": ("route: {receiver: r}\nroute: {receiver: s}\n" + BASE, None),
    "not_a_mapping": ("- route\n", None),
    "bad_continue_type": (
        "route: {receiver: r, routes: [{continue: 'yes'}]}\n" + BASE,
        "route.routes[0].continue",
    ),
}


def _amtool_accepts(path: Path) -> bool:
    assert AMTOOL is not None
    p = subprocess.run(
        [AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return p.returncode == 0


@pytest.mark.skipif(
    AMTOOL is None, reason="Debian's amtool (package prometheus-alertmanager) is not installed"
)
def test_verdicts_agree_with_amtool_check_config(tmp_path: Path) -> None:
    disagree = []
    for name, text in [*GOOD.items(), *((n, t) for n, (t, _) in BAD.items())]:
        path = tmp_path / f"{name}.yml"
        path.write_text(text)
        try:
            load_alertmanager_config(path)
            ours = True
        except ConfigError:
            ours = False
        if ours != _amtool_accepts(path):
            disagree.append((name, "vigil accepts" if ours else "vigil refuses"))
        assert ours == (name in GOOD), name
    assert disagree == []


@pytest.mark.parametrize("name", sorted(BAD))
def test_errors_are_one_line_naming_file_and_key(name: str, tmp_path: Path) -> None:
    text, key = BAD[name]
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_alertmanager_config(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}"), msg
    if key is not None:
        assert msg.startswith(f"{path}: {key}: "), msg
        assert "expected" in msg, msg


def test_defaults_and_inheritance() -> None:
    cfg = alertmanager_config_from_yaml(GOOD["nested"], "am.yml")
    assert cfg.global_.resolve_timeout == 300_000
    root = build_routes(cfg.route)  # type: ignore[arg-type]
    assert (root.group_wait, root.group_interval, root.repeat_interval) == (10_000, 60_000, 5_400_000)
    first, second = root.routes
    assert first.receiver == "s" and first.group_by == {"alertname", "cluster"}
    leaf = first.routes[0]
    assert leaf.receiver == "s" and leaf.group_by_all and leaf.group_wait == 10_000
    assert second.receiver == "r" and second.group_wait == 0
    # group_by: [] does not reset the parent's grouping (Go keeps the inherited one).
    cfg = alertmanager_config_from_yaml(
        "route: {receiver: r, group_by: [a], routes: [{group_by: []}]}\n" + BASE
    )
    assert build_routes(cfg.route).routes[0].group_by == {"a"}  # type: ignore[arg-type]
    # Alertmanager's own defaults with no timings given.
    r = build_routes(alertmanager_config_from_yaml(GOOD["minimal"]).route)  # type: ignore[arg-type]
    assert (r.group_wait, r.group_interval, r.repeat_interval, r.group_by) == (
        30_000,
        300_000,
        14_400_000,
        frozenset(),
    )


def test_send_resolved_defaults_differ_per_integration() -> None:
    cfg = alertmanager_config_from_yaml(
        """
global: {smtp_smarthost: 'h:25', smtp_from: a@b, slack_api_url: 'https://hooks.example/x'}
route: {receiver: r}
receivers: [{name: r, email_configs: [{to: x@y}], slack_configs: [{}], webhook_configs: [{url: 'http://h/'}],
  msteamsv2_configs: [{webhook_url: 'https://h/w'}]}]
"""
    )
    rcv = cfg.receiver("r")
    assert not rcv.email_configs[0].sends_resolved and not rcv.slack_configs[0].sends_resolved
    assert rcv.webhook_configs[0].sends_resolved and rcv.msteamsv2_configs[0].sends_resolved


def test_unsupported_integrations_load_and_are_refused_by_check_supported() -> None:
    text = "route: {receiver: r}\nreceivers: [{name: r, pagerduty_configs: [{routing_key: k}]}]\n"
    cfg = alertmanager_config_from_yaml(text, "am.yml")
    with pytest.raises(
        ConfigError, match=r"^am.yml: receivers\[0\]\.pagerduty_configs: expected one of email_configs"
    ):
        check_supported(cfg, "am.yml")


def test_sms_configs() -> None:
    cfg = alertmanager_config_from_yaml(
        "route: {receiver: r}\nreceivers: [{name: r, sms_configs: "
        "[{url: 'https://api.example/sms', from: '+1555', to: ['+1556']}]}]\n"
    )
    sms = cfg.receiver("r").sms_configs[0]
    assert (sms.from_, sms.to, sms.to_field, sms.sends_resolved) == ("+1555", ("+1556",), "To", False)
    with pytest.raises(ConfigError, match=r"sms_configs\[0\]\.to: expected"):
        alertmanager_config_from_yaml(
            "route: {receiver: r}\nreceivers: [{name: r, sms_configs: [{url: 'https://a.example/'}]}]\n"
        )


def test_vigil_yml_alerting_inline_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inline = "alerting:\n  route: {receiver: r, routes: [{receiver: nope}]}\n  receivers: [{name: r}]\n"
    cfg = config_from_yaml(inline, "vigil.yml")
    with pytest.raises(ConfigError) as e:
        load_alerting(cfg.alerting, "vigil.yml")
    assert str(e.value).startswith(
        'vigil.yml: alerting.route.routes[0].receiver: expected the name of a receiver, got undefined "nope"'
    )
    (tmp_path / "vigil.yml").write_text(inline)
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 2
    assert "alerting.route.routes[0].receiver" in capsys.readouterr().err
    # config_file, relative to vigil.yml's directory, and not together with inline keys.
    (tmp_path / "am.yml").write_text(
        "route: {receiver: r, routes: [{matchers: [a=b], receiver: s}]}\n" + BASE
    )
    (tmp_path / "vigil.yml").write_text("alerting: {config_file: am.yml}\n")
    assert main(["config", "check"]) == 0
    assert main(["routes", "test", "--config", str(tmp_path / "vigil.yml"), "a=b"]) == 0
    assert capsys.readouterr().out.endswith("s\n")
    assert load_routing_source(tmp_path / "vigil.yml").route is not None
    with pytest.raises(ConfigError, match=r"^vigil\.yml: alerting: expected either config_file or inline"):
        config_from_yaml("alerting: {config_file: am.yml, route: {receiver: r}}\n", "vigil.yml")
    assert config_from_yaml("{}", "vigil.yml").alerting.inline == {}
