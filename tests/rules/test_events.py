"""Event rules: alerts from events as they are stored (through the event store's subscriber hook),
thresholds per key within a window, quiet-period resolution with Prometheus' re-sending, and bounds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from vigil.config import config_from_yaml
from vigil.config.types import ConfigError
from vigil.events.store import EventStore
from vigil.model.event import Event
from vigil.notifier.alert import Alert
from vigil.rules.events import EventRules, compile_event_rules
from vigil.rules.group import RuleOptions

M = 60_000
T0 = 1_800_000_000_000


@dataclass
class ListSender:
    batches: list[list[Alert]] = field(default_factory=list)

    def send(self, alerts: Sequence[Alert]) -> None:
        self.batches.append(list(alerts))

    @property
    def alerts(self) -> list[Alert]:
        return [a for b in self.batches for a in b]


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


def rules(yaml: str, clock: Clock, sender: ListSender, **kw: object) -> EventRules:
    cfg = config_from_yaml(yaml, "vigil.yml")
    return EventRules(
        compile_event_rules(cfg.event_rules),
        sender=sender,
        clock=clock,
        options=RuleOptions(external_url="http://v:9400", external_labels={"site": "a"}),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(tmp_path / "events.db", 30 * 24 * 3_600_000, clock=lambda: T0 / 1000)
    yield s
    s.close()


NEW_PORT = """
event_rules:
- alert: NewListeningPort
  kind: listener_new
  by: [instance, port]
  labels: {severity: warning}
  annotations: {summary: "new port"}
  keep_firing_for: 10m
"""


def listener(port: int, t: int = T0, **labels: str) -> Event:
    return Event(t, "listener_new", "new", {"port": port, "process": "nc"}, {"instance": "h1", **labels})


def test_listener_new_sends_one_alert_at_once_through_the_store(store: EventStore) -> None:
    clock, sender = Clock(), ListSender()
    er = rules(NEW_PORT, clock, sender)
    store.subscribe(er.observe)
    assert store.append([listener(4444)]) == 1
    (batch,) = sender.batches  # sent in the appending call: no evaluation interval in between
    (a,) = batch
    assert dict(a.labels) == {
        "alertname": "NewListeningPort",
        "instance": "h1",
        "port": "4444",
        "severity": "warning",
        "site": "a",
    }
    assert a.starts_at_ms == T0 and a.ends_at_ms == T0 + 4 * M
    assert a.generator_url == "http://v:9400/api/v1/events?match[]=listener_new"
    # the same event re-sent (same id) is not new: no second alert; another event of the key
    # keeps the alert firing without sending it again before the resend delay
    assert store.append([Event(T0, "listener_new", "new", {"port": 4444}, {"instance": "h1"}, "id1")]) == 1
    assert store.append([Event(T0, "listener_new", "new", {"port": 4444}, {"instance": "h1"}, "id1")]) == 0
    assert len(sender.batches) == 1
    # another port is another alert
    store.append([listener(5555)])
    assert [dict(a.labels)["port"] for a in sender.alerts] == ["4444", "5555"]
    # a tenant's events are not the default tenant's rules'
    store.append([listener(6666, tenant="t1")])
    assert len(sender.alerts) == 2


def test_quiet_period_resolves_and_resends_as_prometheus(store: EventStore) -> None:
    clock, sender = Clock(), ListSender()
    er = rules(NEW_PORT, clock, sender)
    er.observe([listener(4444)])
    due = er.tick(clock.now)
    assert due == T0 + M  # the resend
    sends: list[tuple[int, int]] = []  # (minutes after T0, ends_at - now)
    for _ in range(100):  # a bound: the timers must run out
        if due is None:
            break
        clock.now = due
        n = len(sender.alerts)
        due = er.tick(clock.now)
        sends += [((clock.now - T0) // M, a.ends_at_ms - clock.now) for a in sender.alerts[n:]]
    firing = [k for k, d in sends if d > 0]
    resolved = [k for k, d in sends if d <= 0]
    assert firing == list(range(1, 10))  # every resend delay until the quiet period (10m) is over
    assert resolved == list(range(10, 26))  # resolved at +10m, re-sent for 15 minutes
    assert due is None and er.keys("NewListeningPort") == 0


FAILED_LOGINS = """
event_rules:
- alert: SSHBruteForce
  kind: auth
  match: '{result="failure", service="sshd"}'
  count: 3
  window: 5m
  by: [source_address]
  max_keys: 4
"""


def login(src: str, t: int, result: str = "failure") -> Event:
    return Event(t, "auth", "", {"service": "sshd", "result": result, "source_address": src})


def test_threshold_within_window_by_source() -> None:
    clock, sender = Clock(), ListSender()
    er = rules(FAILED_LOGINS, clock, sender)
    er.observe([login("10.0.0.1", T0), login("10.0.0.2", T0), login("10.0.0.1", T0 + M)])
    er.observe([login("10.0.0.1", T0 + 2 * M, result="success")])  # does not match
    assert sender.alerts == []
    er.observe([login("10.0.0.2", T0 + 6 * M)])  # 3rd of .2, but the 1st is outside 5m: no
    assert sender.alerts == []
    er.observe([login("10.0.0.1", T0 + 4 * M)])  # 3 of .1 within 5 minutes
    (a,) = sender.alerts
    assert dict(a.labels) == {"alertname": "SSHBruteForce", "source_address": "10.0.0.1", "site": "a"}
    assert a.generator_url.endswith("match[]=" + "auth%7Bresult%3D%22failure%22%2C+service%3D%22sshd%22%7D")
    assert [v.labels["source_address"] for v in er.active_alerts()] == ["10.0.0.1"]
    assert er.active_alerts()[0].value == 3.0


def test_an_event_dated_in_the_future_does_not_blind_its_key() -> None:
    # One forged (or badly clocked) failure dated a day ahead used to stay the key's newest time,
    # so the real burst after it was never within the window of it.
    clock, sender = Clock(), ListSender()
    er = rules(FAILED_LOGINS, clock, sender)
    er.observe([login("10.0.0.1", T0 + 24 * 60 * M)])
    clock.now = T0 + 10 * M
    er.observe([login("10.0.0.1", clock.now + i * 1000) for i in range(3)])
    (a,) = sender.alerts
    assert dict(a.labels)["source_address"] == "10.0.0.1"


def test_keys_are_bounded() -> None:
    clock, sender = Clock(), ListSender()
    reg = CollectorRegistry()
    er = rules(FAILED_LOGINS, clock, sender, registry=reg)
    for i in range(1000):  # 1000 sources, one failure each: quiet keys are forgotten
        er.observe([login(f"10.0.{i // 256}.{i % 256}", T0)])
    assert er.keys("SSHBruteForce") == 4
    # four sources firing fill the table: a fifth source's events are dropped and counted
    for i in range(4):
        er.observe([login(f"192.168.0.{i}", T0)] * 3)
    assert len(sender.alerts) == 4 and er.keys("SSHBruteForce") == 4
    er.observe([login("172.16.0.1", T0)] * 3)
    assert len(sender.alerts) == 4
    assert reg.get_sample_value("vigil_event_rule_events_dropped_total", {"alertname": "SSHBruteForce"}) == 3
    # a key holds at most `count` times
    assert all(len(k.times) <= 3 for st in er._rules for k in st.keys.values())


def test_windows_pruned_by_tick() -> None:
    clock, sender = Clock(), ListSender()
    er = rules(FAILED_LOGINS, clock, sender)
    er.observe([login("10.0.0.1", T0)])
    assert er.keys("SSHBruteForce") == 1
    assert er.tick(clock.now) == T0 + 5 * M
    clock.now = T0 + 5 * M
    assert er.tick(clock.now) is None and er.keys("SSHBruteForce") == 0


def test_backlog_events_do_not_alert() -> None:
    clock, sender = Clock(), ListSender()
    er = rules(NEW_PORT, clock, sender)
    er.observe([listener(4444, t=T0 - 11 * M)])  # older than keep_firing_for: would resolve at once
    assert sender.alerts == []


def test_bad_match_is_a_config_error() -> None:
    cfg = config_from_yaml("event_rules:\n- {alert: A, kind: auth, match: '{result=~\"(\"}'}\n", "vigil.yml")
    with pytest.raises(ConfigError) as exc:
        compile_event_rules(cfg.event_rules)
    assert str(exc.value).startswith("vigil.yml: event_rules[0].match: expected label matchers")


def test_templates_see_event_fields() -> None:
    def expander(text: str, **kw: object) -> str:
        labels = kw["labels"]
        assert isinstance(labels, dict)
        return text.replace("{{ $labels.process }}", labels["process"]).replace(
            "{{ $value }}", str(kw["value"])
        )

    clock, sender = Clock(), ListSender()
    yaml = NEW_PORT.replace('summary: "new port"', 'summary: "{{ $labels.process }} x{{ $value }}"')
    cfg = config_from_yaml(yaml, "vigil.yml")
    er = EventRules(
        compile_event_rules(cfg.event_rules),
        sender=sender,
        clock=clock,
        options=RuleOptions(expander=expander),
    )
    er.observe([listener(4444)])
    assert dict(sender.alerts[0].annotations) == {"summary": "nc x1.0"}


def test_reload_keeps_unchanged_rules() -> None:
    clock, sender = Clock(), ListSender()
    er = rules(NEW_PORT + FAILED_LOGINS.replace("event_rules:\n", ""), clock, sender)
    er.observe([listener(4444)])
    cfg = config_from_yaml(NEW_PORT, "vigil.yml")
    er.reload(compile_event_rules(cfg.event_rules))
    assert [a.labels["port"] for a in er.active_alerts()] == ["4444"]
    er.observe([listener(4444)])
    assert len(sender.alerts) == 1  # still the same firing alert


def test_a_failing_subscriber_does_not_lose_the_write(store: EventStore) -> None:
    def broken(_: Sequence[Event]) -> None:
        raise RuntimeError("bug")

    store.subscribe(broken)
    assert store.append([listener(1)]) == 1
    assert store.count() == 1


def test_manager_runs_event_timers_and_lists_their_alerts(tmp_path: Path) -> None:
    from vigil.rules.manager import Manager, ManagerSettings
    from vigil.rules.types import ListAppender

    clock, sender = Clock(), ListSender()
    er = rules(NEW_PORT, clock, sender)
    m = Manager(
        ManagerSettings(base_dir=tmp_path),
        query=lambda e, t: [],
        appender=ListAppender(),
        storage=None,  # type: ignore[arg-type]
        clock=clock,
        builtin=None,
        event_rules=er,
    )
    woken: list[bool] = []
    m.wake = lambda: woken.append(True)  # type: ignore[method-assign]
    er.wake = m.wake
    er.observe([listener(4444)])
    assert woken == [True]  # the loop is told a timer started
    m.run_once(clock.now)
    assert m.next_due() == T0 + M
    assert [a.labels["alertname"] for a in m.active_alerts()] == ["NewListeningPort"]
    clock.now = T0 + 10 * M
    m.run_once(clock.now)
    assert m.active_alerts() == [] and sender.alerts[-1].ends_at_ms == clock.now


def test_templates_checked_like_rule_files() -> None:
    from vigil.template.prometheus import check  # the checker rule files use

    cfg = config_from_yaml(NEW_PORT.replace('summary: "new port"', 'summary: "{{ bad }}"'), "vigil.yml")
    with pytest.raises(ConfigError) as exc:
        compile_event_rules(cfg.event_rules, "vigil.yml", check)
    where = "vigil.yml: event_rules[0].annotations.summary: "
    assert str(exc.value).startswith(where + "expected a valid template")
    assert 'function "bad" not defined' in str(exc.value)
    compile_event_rules(config_from_yaml(NEW_PORT, "vigil.yml").event_rules, "vigil.yml", check)


# -- the built-in event rules ---------------------------------------------------------------------


def builtin_rules(yaml: str, clock: Clock, sender: ListSender) -> EventRules:
    from vigil.rules.events import with_builtin
    from vigil.template.prometheus import check, expand

    cfg = config_from_yaml(yaml, "vigil.yml")
    return EventRules(
        compile_event_rules(with_builtin(cfg.event_rules, cfg.rules.builtin), "vigil.yml", check),
        sender=sender,
        clock=clock,
        options=RuleOptions(external_url="http://v:9400", expander=expand),
    )


def failed_login(t: int, source: str, user: str = "root") -> Event:
    fields: dict[str, str | int] = {"service": "sshd", "result": "failure", "method": "password"}
    fields |= {"user": user, "source_address": source, "count": 1}
    return Event(t, "auth", "sshd failure", fields, {"instance": "bastion-1"})


def test_builtin_brute_force_fires_on_the_tenth_failure_from_one_address() -> None:
    clock, sender = Clock(), ListSender()
    er = builtin_rules("", clock, sender)
    er.observe([failed_login(T0 + i * 1000, "203.0.113.7") for i in range(9)])
    er.observe([failed_login(T0 + i * 1000, f"198.51.100.{i}") for i in range(9)])  # 9 addresses, 1 each
    assert sender.alerts == []
    er.observe([failed_login(T0 + 10_000, "203.0.113.7", "admin")])
    (a,) = sender.alerts
    assert a.labels["alertname"] == "SSHBruteForceSource" and a.labels["severity"] == "critical"
    assert a.labels["source_address"] == "203.0.113.7" and a.labels["instance"] == "bastion-1"
    assert a.annotations["summary"] == "10 failed SSH logins from 203.0.113.7 on bastion-1 in 5 minutes"
    assert "last user tried: admin" in a.annotations["description"]


def test_builtin_new_port_only_for_unexpected_listeners() -> None:
    clock, sender = Clock(), ListSender()
    er = builtin_rules("", clock, sender)
    fields = {"protocol": "tcp", "address": "0.0.0.0", "process": "nc"}
    er.observe(
        [Event(T0, "listener_new", "new", {**fields, "port": 22, "expected": True}, {"instance": "h"})]
    )
    assert sender.alerts == []
    er.observe(
        [Event(T0, "listener_new", "new", {**fields, "port": 4444, "expected": False}, {"instance": "h"})]
    )
    (a,) = sender.alerts
    assert a.labels["alertname"] == "NewListeningPort" and a.labels["port"] == "4444"
    assert a.annotations["summary"] == "New tcp port 4444 listening on h"
    assert a.annotations["description"].startswith("nc listens on 0.0.0.0:4444 (tcp)")


def test_builtin_event_rules_disabled_replaced_or_off() -> None:
    from vigil.config.rules import BuiltinRulesConfig
    from vigil.rules.events import builtin_event_rules, with_builtin

    shipped = {r.alert for r in builtin_event_rules()}
    assert {"NewListeningPort", "SSHBruteForceSource"} <= shipped
    assert {r.alert for r in with_builtin((), BuiltinRulesConfig())} == shipped
    left = with_builtin((), BuiltinRulesConfig(disable=("NewListeningPort",)))
    assert "NewListeningPort" not in {r.alert for r in left}
    assert with_builtin((), BuiltinRulesConfig(enabled=False)) == ()
    mine = config_from_yaml(NEW_PORT, "vigil.yml").event_rules
    replaced = with_builtin(mine, BuiltinRulesConfig())
    assert [r for r in replaced if r.alert == "NewListeningPort"] == list(mine)  # the user's, once
