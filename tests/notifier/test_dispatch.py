"""Grouping, timing and dedup of the notifier core, driven by a fake clock; notifications are counted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.notifier.corekit import T0, FakeClock, Recorder, alert, config, make, run_until
from vigil.notifier.dispatch import Dispatcher, label_set_string, sort_alerts
from vigil.notifier.notifier import NotifierLimits
from vigil.notifier.routing import build_routes

BASIC = """
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
receivers:
- name: team
"""
FAR = T0 + 100 * 3600_000  # an explicit end far away: the alert fires for the whole test


def test_forty_alerts_of_one_incident_make_one_notification_after_group_wait() -> None:
    clock = FakeClock()
    rec = Recorder()
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance=f"host{i:02d}") for i in range(40)])
    run_until(n, clock, T0 + 29_000)
    assert rec.sent == []
    run_until(n, clock, T0 + 30_000)
    assert len(rec.sent) == 1
    assert len(rec.sent[0].alerts) == 40
    assert rec.sent[0].ctx.group_key == '{}:{alertname="Down"}'
    assert rec.sent[0].ctx.group_labels == {"alertname": "Down"}
    assert all(a.ends_at_ms == 0 for a in rec.sent[0].alerts)  # firing: end cleared, as Alertmanager does


def test_new_alert_in_existing_group_waits_for_group_interval() -> None:
    clock = FakeClock()
    rec = Recorder()
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, T0 + 60_000)
    assert len(rec.sent) == 1
    n.put([alert("Down", ends=FAR, instance="b")])
    run_until(n, clock, T0 + 30_000 + 300_000 - 1000)
    assert len(rec.sent) == 1  # not before group_interval
    run_until(n, clock, T0 + 30_000 + 300_000)
    assert len(rec.sent) == 2
    assert rec.sent[1].names == ["a", "b"]


def test_old_alert_flushes_a_new_group_at_once() -> None:
    clock = FakeClock()
    rec = Recorder()
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, starts=T0 - 3600_000, instance="a")])
    assert n.step(T0) == 1
    assert len(rec.sent) == 1


def test_repeat_interval_resends_unchanged_group() -> None:
    clock = FakeClock()
    rec = Recorder()
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, T0 + 30_000)
    assert len(rec.sent) == 1
    # Flushes every 5m; the log entry is from T0+30s; the first flush strictly more than 1h later
    # is at T0+30s+65m (at +60m exactly the entry is not yet older than the interval).
    run_until(n, clock, T0 + 30_000 + 60 * 60_000)
    assert len(rec.sent) == 1
    run_until(n, clock, T0 + 30_000 + 65 * 60_000)
    assert len(rec.sent) == 2
    run_until(n, clock, T0 + 30_000 + 130 * 60_000)
    assert len(rec.sent) == 3


def test_resolved_notification_with_send_resolved() -> None:
    clock = FakeClock()
    rec = Recorder(send_resolved=True)
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, T0 + 60_000)
    n.put([alert("Down", ends=clock.t, instance="a")])  # resolved now
    run_until(n, clock, T0 + 30_000 + 300_000)
    assert [s.statuses() for s in rec.sent] == [["firing"], ["resolved"]]
    assert len(n.dispatcher) == 0  # the group left empty after the resolved flush is removed
    run_until(n, clock, T0 + 3 * 3600_000, step_ms=60_000)
    assert len(rec.sent) == 2


def test_resolution_without_send_resolved_sends_nothing_but_clears_the_log() -> None:
    clock = FakeClock()
    rec = Recorder(send_resolved=False)
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, T0 + 60_000)
    n.put([alert("Down", ends=clock.t, instance="a")])
    run_until(n, clock, T0 + 30_000 + 300_000)
    assert len(rec.sent) == 1
    entry = n.nflog.query('{}:{alertname="Down"}', "team", "webhook", 0)
    assert entry is not None and entry.firing == frozenset()  # cleared: a new firing notifies again
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, clock.t + 30_000)
    assert [s.statuses() for s in rec.sent] == [["firing"], ["firing"]]


def test_send_resolved_false_gets_only_firing_alerts() -> None:
    clock = FakeClock()
    rec = Recorder(send_resolved=False)
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a"), alert("Down", ends=FAR, instance="b")])
    run_until(n, clock, T0 + 60_000)
    n.put([alert("Down", ends=clock.t, instance="a"), alert("Down", ends=FAR, instance="c")])
    run_until(n, clock, T0 + 330_000)
    assert rec.sent[1].names == ["b", "c"]


def test_alert_firing_and_resolving_before_the_first_flush_sends_nothing() -> None:
    clock = FakeClock()
    rec = Recorder(send_resolved=True)
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a")])
    clock.advance(10_000)
    n.put([alert("Down", ends=clock.t, instance="a")])
    run_until(n, clock, T0 + 3600_000, step_ms=10_000)
    assert rec.sent == []
    assert len(n.dispatcher) == 0


def test_flapping_alert() -> None:
    clock = FakeClock()
    rec = Recorder(send_resolved=True)
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, T0 + 30_000)
    # Resolves and fires again between two flushes: the next flush sees it firing, as notified.
    run_until(n, clock, T0 + 100_000)
    n.put([alert("Down", ends=clock.t, instance="a")])
    clock.advance(20_000)
    n.put([alert("Down", ends=FAR, starts=clock.t, instance="a")])
    run_until(n, clock, T0 + 30_000 + 300_000)
    assert len(rec.sent) == 1
    # Resolves for a whole interval: resolved, then a new firing period is a new notification.
    n.put([alert("Down", ends=clock.t, instance="a")])
    run_until(n, clock, T0 + 30_000 + 600_000)
    n.put([alert("Down", ends=FAR, starts=clock.t, instance="a")])
    run_until(n, clock, clock.t + 30_000)
    assert [s.statuses() for s in rec.sent] == [["firing"], ["resolved"], ["firing"]]


def test_continue_routes_notify_two_receivers() -> None:
    cfg = config(
        """
route:
  receiver: default
  group_wait: 10s
  routes:
  - matchers: ['service="db"']
    receiver: dba
    continue: true
  - matchers: ['service="db"']
    receiver: oncall
receivers:
- name: default
- name: dba
- name: oncall
"""
    )
    clock = FakeClock()
    dflt, dba, oncall = Recorder(), Recorder(), Recorder()
    n, _ = make(cfg, {"default": [dflt], "dba": [dba], "oncall": [oncall]}, clock)
    n.put([alert("Slow", ends=FAR, service="db")])
    run_until(n, clock, T0 + 10_000)
    assert (len(dflt.sent), len(dba.sent), len(oncall.sent)) == (0, 1, 1)
    assert dba.sent[0].ctx.group_key == '{}/{service="db"}:{}'
    assert sorted(g.receiver for g in n.groups()) == ["dba", "oncall"]


def test_group_by_all_labels() -> None:
    cfg = config(
        """
route:
  receiver: r
  group_by: ['...']
  group_wait: 10s
receivers:
- name: r
"""
    )
    clock = FakeClock()
    rec = Recorder()
    n, _ = make(cfg, {"r": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance=i) for i in ("a", "b", "c")])
    run_until(n, clock, T0 + 10_000)
    assert len(rec.sent) == 3
    assert sorted(s.ctx.group_key for s in rec.sent) == [
        f'{{}}:{{alertname="Down", instance="{i}"}}' for i in ("a", "b", "c")
    ]


def test_group_limit_refuses_new_groups_and_counts() -> None:
    clock = FakeClock()
    rec = Recorder()
    n, reg = make(config(BASIC), {"team": [rec]}, clock, limits=NotifierLimits(max_groups=2))
    n.put([alert(name, ends=FAR) for name in ("A", "B", "C")])
    assert len(n.dispatcher) == 2
    assert reg.get_sample_value("alertmanager_dispatcher_aggregation_group_limit_reached_total") == 1
    run_until(n, clock, T0 + 30_000)
    assert len(rec.sent) == 2


def test_failed_flush_keeps_resolved_alerts_for_the_next_one() -> None:
    from vigil.notifier.integration import NotifyError

    clock = FakeClock()
    rec = Recorder()
    n, _ = make(config(BASIC), {"team": [rec]}, clock)
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, T0 + 30_000)
    n.put([alert("Down", ends=clock.t, instance="a")])
    rec.failures = [NotifyError("400", retryable=False, reason="clientError")]
    run_until(n, clock, T0 + 330_000)
    assert len(rec.sent) == 1 and len(n.dispatcher) == 1
    run_until(n, clock, T0 + 630_000)
    assert [s.statuses() for s in rec.sent] == [["firing"], ["resolved"]]
    assert len(n.dispatcher) == 0


def test_label_set_string_and_order_follow_go() -> None:
    assert label_set_string({}) == "{}"
    # Go sorts the formatted pairs: "a1=" before "a=" ('1' < '=').
    assert label_set_string({"a": "x", "a1": 'q"'}) == '{a1="q\\"", a="x"}'
    got = sort_alerts(
        [
            alert("B", instance="2"),
            alert("A", job="z"),
            alert("A", job="a", instance="9"),
            alert("A", instance="1"),
        ]
    )
    assert [(a.labels.get("job"), a.labels.get("instance")) for a in got] == [
        ("a", "9"),
        ("z", None),
        (None, "1"),
        (None, "2"),
    ]


def test_dispatcher_step_and_deadline_without_a_notifier() -> None:
    d = Dispatcher(build_routes(config(BASIC).route))  # type: ignore[arg-type]
    assert d.next_deadline() is None
    d.add([alert("Down", ends=FAR, starts=T0, instance="a")], T0)
    assert d.next_deadline() == T0 + 30_000
    assert d.step(T0 + 29_999) == []
    (f,) = d.step(T0 + 30_000)
    assert d.next_deadline() is None  # busy while its flush runs
    assert d.step(T0 + 10**9) == []
    d.done(f, True, T0 + 30_000)
    assert d.next_deadline() == T0 + 330_000


def test_alert_updated_during_a_flush_stays_in_its_group() -> None:
    d = Dispatcher(build_routes(config(BASIC).route))  # type: ignore[arg-type]
    d.add([replace(alert("Down", starts=T0, ends=T0 + 1000, instance="a"), updated_at_ms=T0)], T0)
    (f,) = d.step(T0 + 30_000)
    assert f.alerts[0].resolved_at(f.now_ms)
    # It fires again while the resolved notification is being delivered.
    d.add([replace(alert("Down", starts=T0 + 31_000, ends=FAR, instance="a"), updated_at_ms=T0 + 31_000)], T0)
    d.done(f, True, T0 + 32_000)
    assert [g.alerts[0].ends_at_ms for g in d.groups()] == [FAR]


def test_step_looks_only_at_due_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    d = Dispatcher(build_routes(config(BASIC).route))  # type: ignore[arg-type]
    d.add([alert(f"A{i}", ends=FAR, starts=T0) for i in range(500)], T0)
    looked = []
    live = Dispatcher._live
    monkeypatch.setattr(Dispatcher, "_live", lambda self, e: looked.append(e) or live(self, e))
    assert d.step(T0 + 29_999) == [] and looked == []
    assert len(d.step(T0 + 30_000)) == 500 and len(looked) == 500


def test_marker_forgets_alerts_the_store_dropped() -> None:
    clock = FakeClock()
    rec = Recorder()
    n, _ = make(config(BASIC), {"team": [rec]}, clock, limits=NotifierLimits(gc_interval_ms=60_000))
    n.put([alert("Down", ends=FAR, instance="a")])
    run_until(n, clock, T0 + 30_000)
    n.put([alert("Down", ends=clock.t, instance="a")])
    run_until(n, clock, T0 + 400_000)
    assert n.alerts() == [] and n.marker.count() == 0
