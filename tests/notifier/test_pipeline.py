"""The notification pipeline: inhibition, silences (through a test Muter), time intervals, dedup,
retries and their metrics. A fake clock; notifications and attempts are counted."""

from __future__ import annotations

from tests.notifier.corekit import (
    T0,
    FakeClock,
    Recorder,
    Silence,
    SilenceTable,
    alert,
    config,
    make,
    run_until,
)
from vigil.notifier.alert import fingerprint_hex
from vigil.notifier.integration import NotifyError
from vigil.notifier.marker import AlertState
from vigil.notifier.nflog import Entry
from vigil.notifier.pipeline import needs_update

FAR = T0 + 100 * 3600_000

INHIBIT = """
route:
  receiver: r
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
receivers:
- name: r
inhibit_rules:
- source_matchers: ['severity="critical"']
  target_matchers: ['severity="warning"']
  equal: [instance]
"""


def test_inhibition_hides_dependent_alerts_until_the_source_resolves() -> None:
    clock = FakeClock()
    rec = Recorder()
    n, reg = make(config(INHIBIT), {"r": [rec]}, clock)
    crit = alert("NodeDown", ends=FAR, severity="critical", instance="a")
    warn = alert("DiskSlow", ends=FAR, severity="warning", instance="a")
    other = alert("DiskSlow", ends=FAR, severity="warning", instance="b")
    n.put([crit, warn, other])
    run_until(n, clock, T0 + 30_000)
    sent = {s.ctx.group_key: s.names for s in rec.sent}
    assert sent == {'{}:{alertname="NodeDown"}': ["a"], '{}:{alertname="DiskSlow"}': ["b"]}
    st = n.marker.status(warn.fingerprint)
    assert st.state is AlertState.SUPPRESSED
    assert st.inhibited_by == (fingerprint_hex(crit.labels),)
    assert n.marker.status(other.fingerprint).state is AlertState.ACTIVE
    assert reg.get_sample_value("alertmanager_alerts", {"state": "suppressed"}) == 1
    assert reg.get_sample_value("alertmanager_alerts", {"state": "active"}) == 2
    n.put([alert("NodeDown", ends=clock.t, severity="critical", instance="a")])
    run_until(n, clock, T0 + 330_000)
    disk = [s for s in rec.sent if s.ctx.group_key == '{}:{alertname="DiskSlow"}']
    assert [s.names for s in disk] == [["b"], ["a", "b"]]
    assert n.marker.status(warn.fingerprint).state is AlertState.ACTIVE


def test_silence_suppresses_and_lifting_it_notifies() -> None:
    clock = FakeClock()
    rec = Recorder()
    silences = SilenceTable()
    silences.silences.append(Silence("sil-1", {"instance": "a"}, T0, T0 + 200_000))
    n, _ = make(config(INHIBIT), {"r": [rec]}, clock, muter=silences)
    a = alert("Down", ends=FAR, instance="a")
    n.put([a])
    run_until(n, clock, T0 + 30_000)
    assert rec.sent == []
    st = n.marker.status(a.fingerprint)
    assert (st.state, st.silenced_by) == (AlertState.SUPPRESSED, ("sil-1",))
    run_until(n, clock, T0 + 330_000)  # the silence ended at +200s
    assert len(rec.sent) == 1
    assert n.marker.status(a.fingerprint).state is AlertState.ACTIVE


INTERVALS = """
route:
  receiver: r
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1h
  repeat_interval: 48h
  routes:
  - matchers: ['kind="muted"']
    mute_time_intervals: [office]
  - matchers: ['kind="active"']
    active_time_intervals: [office]
receivers:
- name: r
time_intervals:
- name: office
  time_intervals:
  - times: [{start_time: '09:00', end_time: '11:00'}]
"""


def test_mute_and_active_time_intervals() -> None:
    clock = FakeClock()  # 10:00 UTC: inside "office"
    rec = Recorder()
    n, _ = make(config(INTERVALS), {"r": [rec]}, clock)
    n.put([alert("M", ends=FAR, kind="muted"), alert("A", ends=FAR, kind="active")])
    run_until(n, clock, T0 + 30_000)
    assert [s.alerts[0].name for s in rec.sent] == ["A"]
    run_until(n, clock, T0 + 30_000 + 3600_000, step_ms=60_000)  # 11:00:30: outside
    assert [s.alerts[0].name for s in rec.sent] == ["A", "M"]
    n.put([alert("A2", ends=FAR, kind="active")])  # outside the active interval: held back
    run_until(n, clock, T0 + 4 * 3600_000, step_ms=60_000)
    assert [s.alerts[0].name for s in rec.sent] == ["A", "M"]
    run_until(n, clock, T0 + 24 * 3600_000, step_ms=600_000)  # next day 09:00-11:00
    assert [s.alerts[0].name for s in rec.sent] == ["A", "M", "A2"]


def test_retryable_failures_then_success_is_one_delivery() -> None:
    clock = FakeClock()
    rec = Recorder(failures=[NotifyError("503", retryable=True, reason="serverError")] * 2)
    n, reg = make(config(INHIBIT), {"r": [rec]}, clock)
    n.put([alert("Down", ends=FAR)])
    run_until(n, clock, T0 + 30_000)
    assert (rec.attempts, len(rec.sent)) == (3, 1)
    lab = {"integration": "webhook"}
    assert reg.get_sample_value("alertmanager_notifications_total", lab) == 1
    assert reg.get_sample_value("alertmanager_notification_requests_total", lab) == 3
    assert reg.get_sample_value("alertmanager_notification_requests_failed_total", lab) == 2
    assert reg.get_sample_value("alertmanager_notification_latency_seconds_count", lab) == 3
    assert (
        reg.get_sample_value("alertmanager_notifications_failed_total", {**lab, "reason": "serverError"})
        is None
    )
    assert reg.get_sample_value("vigil_notifications_failed_total", {"receiver": "r", **lab}) is None
    # Delivered and logged: the next flushes do not send again.
    run_until(n, clock, T0 + 3600_000, step_ms=60_000)
    assert len(rec.sent) == 1


def test_non_retryable_failure_is_not_retried_and_counted() -> None:
    clock = FakeClock()
    rec = Recorder(failures=[NotifyError("400 bad request", retryable=False, reason="clientError")])
    n, reg = make(config(INHIBIT), {"r": [rec]}, clock)
    n.put([alert("Down", ends=FAR)])
    run_until(n, clock, T0 + 30_000)
    assert (rec.attempts, len(rec.sent)) == (1, 0)
    lab = {"integration": "webhook"}
    assert (
        reg.get_sample_value("alertmanager_notifications_failed_total", {**lab, "reason": "clientError"}) == 1
    )
    assert reg.get_sample_value("vigil_notifications_failed_total", {"receiver": "r", **lab}) == 1
    # Nothing was logged: the next flush tries again and delivers.
    run_until(n, clock, T0 + 330_000)
    assert (rec.attempts, len(rec.sent)) == (2, 1)


def test_retries_stop_at_the_flush_deadline() -> None:
    clock = FakeClock()
    rec = Recorder(failures=[NotifyError("timeout", retryable=True)] * 1000)
    n, reg = make(config(INHIBIT), {"r": [rec]}, clock)
    n.put([alert("Down", ends=FAR)])
    run_until(n, clock, T0 + 30_000)
    # Backoff 0.5s ×1.5 (±50%) capped at 60s within a 5m deadline: a handful of attempts, not 1000.
    assert 3 <= rec.attempts <= 40
    assert (
        reg.get_sample_value(
            "alertmanager_notifications_failed_total", {"integration": "webhook", "reason": "other"}
        )
        == 1
    )


def test_integration_crashing_is_a_failure_not_a_dead_notifier() -> None:
    class Broken(Recorder):
        def notify(self, ctx, alerts):  # type: ignore[no-untyped-def]
            raise KeyError("bug")

    clock = FakeClock()
    bad, good = Broken(index=0), Recorder(index=1)
    n, reg = make(config(INHIBIT), {"r": [bad, good]}, clock)
    n.put([alert("Down", ends=FAR)])
    run_until(n, clock, T0 + 30_000)
    assert len(good.sent) == 1
    assert (
        reg.get_sample_value("vigil_notifications_failed_total", {"receiver": "r", "integration": "webhook"})
        == 1
    )


def _entry(firing: set[int], resolved: set[int], ts: int = T0) -> Entry:
    return Entry("g", "r", "webhook", 0, ts, frozenset(firing), frozenset(resolved), ts + 10**9)


def test_dedup_rules() -> None:
    rep, now = 3600_000, T0 + 60_000
    assert needs_update(None, {1}, set(), True, rep, now)
    assert not needs_update(None, set(), {1}, True, rep, now)  # only resolved, never notified
    assert needs_update(_entry({1}, set()), {1, 2}, set(), True, rep, now)  # new firing alert
    assert not needs_update(_entry({1, 2}, set()), {1}, set(), False, rep, now)  # a subset: nothing new
    assert needs_update(_entry({1, 2}, set()), {1}, {2}, True, rep, now)  # newly resolved, sent
    assert needs_update(_entry({1}, set()), set(), {1}, False, rep, now)  # all resolved: clear the log
    assert not needs_update(_entry(set(), {1}), set(), {1, 2}, True, rep, now)  # receiver never saw 2
    assert not needs_update(_entry({1}, set(), ts=now - rep), {1}, set(), True, rep, now)
    assert needs_update(_entry({1}, set(), ts=now - rep - 1), {1}, set(), True, rep, now)


def test_alerts_of_a_receiver_without_integrations_are_still_marked() -> None:
    clock = FakeClock()
    n, _ = make(config(INHIBIT), {"r": []}, clock)  # a "null" receiver
    a = alert("Down", ends=FAR)
    n.put([a])
    assert n.marker.status(a.fingerprint).state is AlertState.UNPROCESSED
    run_until(n, clock, T0 + 30_000)
    assert n.marker.status(a.fingerprint).state is AlertState.ACTIVE
