"""The Notifier as a service (real threads, conditions waited on with generous deadlines) and reload."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from tests.notifier.corekit import T0, FakeClock, Recorder, alert, config, make, run_until
from tests.waiting import wait_until
from vigil.notifier.alert import Alert
from vigil.notifier.integration import NotifyContext, NotifyError
from vigil.notifier.notifier import Notifier, wall_ms

FAST = """
route:
  receiver: r
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 500ms
receivers:
- name: r
"""


class Locked(Recorder):
    lock = threading.Lock()  # notify is called from worker threads

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        with self.lock:
            super().notify(ctx, alerts)


def test_service_delivers_in_real_time_on_its_threads() -> None:
    rec = Locked()
    seen: list[str] = []

    class Named(Locked):
        def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
            seen.append(threading.current_thread().name)
            super().notify(ctx, alerts)

    other = Named(index=1)
    n = Notifier(config(FAST), {"r": [rec, other]}, registry=CollectorRegistry())
    assert not any(t.name == "vigil-notifier" for t in threading.enumerate())  # constructors start nothing
    n.start()
    try:
        far = wall_ms() + 3600_000
        n.put([alert("Down", ends=far, instance=f"h{i}") for i in range(5)])
        wait_until(lambda: len(rec.sent) == 1 and len(other.sent) == 1, what="first notification")
        assert len(rec.sent[0].alerts) == 5
        assert any(t.name == "vigil-notifier" for t in threading.enumerate())
        assert seen and all(name.startswith("vigil-notifier") for name in seen)
        n.put([alert("Down", ends=far, instance="h9")])
        wait_until(lambda: len(rec.sent) == 2, what="second notification")
        assert len(rec.sent[1].alerts) == 6
    finally:
        n.stop()
    assert not any(t.name.startswith("vigil-notifier") for t in threading.enumerate())


def test_stop_ends_a_retrying_delivery() -> None:
    rec = Locked(failures=[NotifyError("503", retryable=True)] * 10**6)
    n = Notifier(config(FAST), {"r": [rec]}, registry=CollectorRegistry())
    n.start()
    n.put([alert("Down", ends=wall_ms() + 3600_000)])
    wait_until(lambda: rec.attempts >= 1, what="a first attempt")
    stopper = threading.Thread(target=n.stop)
    stopper.start()
    stopper.join(60)
    assert not stopper.is_alive()
    assert rec.sent == []


def test_reload_keeps_alerts_and_does_not_resend() -> None:
    base = """
route:
  receiver: r
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
receivers:
- name: r
- name: db
"""
    clock = FakeClock()
    r1 = Recorder()
    n, _ = make(config(base), {"r": [r1], "db": []}, clock)
    n.put([alert("Down", ends=T0 + 10**8, instance="a"), alert("Slow", ends=T0 + 10**8, service="db")])
    run_until(n, clock, T0 + 30_000)
    assert len(r1.sent) == 2
    clock.advance(60_000)
    r2, db = Recorder(), Recorder()
    routed = base.replace(
        "receivers:", "  routes:\n  - matchers: ['service=\"db\"']\n    receiver: db\nreceivers:"
    )
    n.reload(config(routed), {"r": [r2], "db": [db]})
    assert len(n.alerts()) == 2
    run_until(n, clock, clock.t + 3600_000, step_ms=60_000)
    assert r2.sent == []  # the same group key on the same receiver: already notified
    assert [s.ctx.group_key for s in db.sent] == ['{}/{service="db"}:{alertname="Slow"}']


def test_concurrent_puts_all_reach_the_group() -> None:
    rec = Locked()
    n = Notifier(config(FAST), {"r": [rec]}, registry=CollectorRegistry())
    n.start()
    try:
        far = wall_ms() + 3600_000

        def sender(k: int) -> None:
            for i in range(50):
                n.put([alert("Down", ends=far, instance=f"t{k}-{i}")])

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        def complete() -> bool:
            with rec.lock:
                return any(len(s.alerts) == 200 for s in rec.sent)

        wait_until(complete, what="a notification with all 200 alerts")
        assert len(n.alerts()) == 200 and len(n.groups()) == 1
    finally:
        n.stop()
