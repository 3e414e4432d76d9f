"""The rule manager over a real tsdb DB with a fake clock, stepped with `run_once`/`next_due`:
phase-aligned scheduling, write-back, Prometheus' sendAlerts semantics (resend delay, EndsAt, the
15-minute resolved window, generatorURL, external labels), restarts, reloads and the built-in pack."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.tsdb.clock import FakeClock
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.notifier.alert import Alert
from vigil.promql.engine import Engine
from vigil.rules.group import RuleLoadError, RuleOptions
from vigil.rules.manager import Manager, ManagerSettings, generator_url
from vigil.rules.query import StorageAppender, engine_query
from vigil.tsdb.db import DB, Options

M = 60_000
T0 = 100 * 3_600_000 + 7_777  # not aligned to anything


@dataclass
class ListSender:
    batches: list[list[Alert]] = field(default_factory=list)

    def send(self, alerts: Sequence[Alert]) -> None:
        self.batches.append(list(alerts))

    @property
    def alerts(self) -> list[Alert]:
        return [a for b in self.batches for a in b]


@dataclass
class Env:
    db: DB
    clock: FakeClock
    dir: Path

    def manager(self, sender: ListSender | None = None, **kw: object) -> Manager:
        settings = kw.pop("settings", None) or ManagerSettings(rule_files=("rules/*.yml",), base_dir=self.dir)
        kw.setdefault("builtin", None)
        return Manager(
            settings,  # type: ignore[arg-type]
            query=engine_query(Engine(self.db)),
            appender=StorageAppender(self.db),
            storage=self.db,
            sender=sender,
            clock=self.clock,
            **kw,  # type: ignore[arg-type]
        )

    def write_rules(self, text: str, name: str = "a.yml") -> Path:
        (self.dir / "rules").mkdir(exist_ok=True)
        p = self.dir / "rules" / name
        p.write_text(text)
        return p

    def put(self, name: str, start: int, end: int, value: float = 1.0, **labels: str) -> None:
        """`name` = value every 15s in [start, end)."""
        ref = self.db.series_ref(Labels.from_dict({"__name__": name, **labels}))
        ts = np.arange(start, end, 15_000, dtype=np.int64)
        self.db.append(np.full(ts.size, ref), ts, np.full(ts.size, value))

    def read(self, name: str) -> dict[Labels, list[tuple[int, float]]]:
        out = {}
        for lb, ts, vs in self.db.select([Matcher.eq("__name__", name)], 0, 2**62):
            out[lb] = list(zip(ts.tolist(), vs.tolist(), strict=True))
        return out


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    clock = FakeClock(T0)
    # data is written ahead of the fake clock, which the test then moves through it
    opts = Options(fsync=False, out_of_order_window_ms=48 * 3_600_000, future_grace_ms=24 * 3_600_000)
    d = DB(tmp_path / "db", opts, now_ms=clock)
    yield Env(d, clock, tmp_path)
    d.close()


def step(m: Manager, clock: FakeClock) -> int:
    """Advance the clock to the next due time and run; returns that time."""
    due = m.next_due()
    assert due is not None
    clock.now = max(clock.now, due)
    m.run_once(clock.now)
    return due


@dataclass
class Recorder:
    """Runs a manager step by step and notes which evaluation time each batch came at."""

    m: Manager
    clock: FakeClock
    sender: ListSender
    sends: list[tuple[int, list[Alert]]] = field(default_factory=list)
    times: list[int] = field(default_factory=list)

    def steps(self, n: int) -> None:
        for _ in range(n):
            before = len(self.sender.batches)
            t = step(self.m, self.clock)
            self.times.append(t)
            for b in self.sender.batches[before:]:
                self.sends.append((t, b))


ALERT = """groups:
- name: g
  rules:
  - alert: High
    expr: m > 0
    for: 2m
    labels: {severity: page}
    annotations: {summary: high}
"""


def test_phase_aligned_schedule_and_recording_rule_queryable(env: Env) -> None:
    env.write_rules("groups:\n- name: rec\n  rules:\n  - record: job:m\n    expr: sum by (job) (m)\n")
    env.put("m", T0 - 10 * M, T0 + 10 * M, 2.0, job="a", i="1")
    env.put("m", T0 - 10 * M, T0 + 10 * M, 3.0, job="a", i="2")
    m = env.manager()
    (g,) = m.groups()
    m.run_once(T0)  # schedules only
    assert env.read("job:m") == {}
    first = m.next_due()
    assert first == g.eval_timestamp(T0) + M and T0 < first <= T0 + M
    # a slot of the group's own phase (in ns; the ms stamp is the slot truncated, as Prometheus)
    assert g.eval_timestamp(first + 1) == first
    times = [step(m, env.clock) for _ in range(3)]
    assert times == [first, first + M, first + 2 * M]
    (series,) = env.read("job:m").values()
    assert series == [(t, 5.0) for t in times]
    # and the engine sees it like any series
    res = Engine(env.db).instant_query("job:m", times[-1])
    assert [float(s.values[0]) for s in res.series] == [5.0]


def test_missed_iterations_counted_and_latest_slot_evaluated(env: Env) -> None:
    env.write_rules("groups:\n- name: rec\n  rules:\n  - record: one\n    expr: vector(1)\n")
    reg = CollectorRegistry()
    m = env.manager(registry=reg)
    m.run_once(T0)
    first = m.next_due()
    assert first is not None
    env.clock.now = first + 3 * M + 10  # three slots late
    m.run_once(env.clock.now)
    (series,) = env.read("one").values()
    assert [t for t, _ in series] == [first + 3 * M]
    key = {"rule_group": str(env.dir / "rules" / "a.yml") + ";rec"}
    assert reg.get_sample_value("vigil_rule_group_iterations_missed_total", key) == 3
    assert m.next_due() == first + 4 * M


def test_alert_lifecycle_sends_as_prometheus(env: Env) -> None:
    env.write_rules(ALERT)
    sender = ListSender()
    opts = RuleOptions(
        external_url="http://vigil.example:9400", external_labels={"site": "a", "severity": "x"}
    )
    settings = ManagerSettings(rule_files=("rules/a.yml",), base_dir=env.dir, options=opts)
    m = env.manager(sender, settings=settings)
    m.run_once(T0)
    first = m.next_due()
    assert first is not None
    env.put("m", first - 5 * M, first + 5 * M + 1)
    r = Recorder(m, env.clock, sender)
    r.steps(4)
    ((t0, (a0,)), *_) = r.sends
    fired = first + 2 * M  # pending at first, first+1m; fires when `for` (2m) has passed
    assert t0 == fired and a0.starts_at_ms == fired
    assert a0.ends_at_ms == fired + 4 * M  # 4 * max(resend_delay 1m, interval 1m)
    assert dict(a0.labels) == {"alertname": "High", "severity": "page", "site": "a"}  # own label wins
    assert dict(a0.annotations) == {"summary": "high"}
    assert a0.generator_url == "http://vigil.example:9400/graph?g0.expr=m+%3E+0&g0.tab=1"
    assert a0.generator_url == generator_url(opts.external_url, "m > 0")


def test_resend_delay_resolved_window(env: Env) -> None:
    env.write_rules(ALERT)
    sender = ListSender()
    m = env.manager(sender)
    m.run_once(T0)
    first = m.next_due()
    assert first is not None
    env.put("m", first - 5 * M, first + 5 * M + 1)
    r = Recorder(m, env.clock, sender)
    r.steps(40)
    rel = [((t - first) // M, a.ends_at_ms - t) for t, b in r.sends for a in b]
    # firing from +2m; the last sample is at +5m and the lookback (t-5m, t] is left-open (3.x), so
    # the last true evaluation is +9m and it resolves at +10m.
    # Re-sent when `last_sent + resend_delay < ts`: with both 1m, every other evaluation.
    firing = [(k, d) for k, d in rel if d > 0]
    resolved = [(k, d) for k, d in rel if d <= 0]
    assert [k for k, _ in firing] == [2, 4, 6, 8]
    assert all(d == 4 * M for _, d in firing)
    # resolved: sent at once at +10m, then every other evaluation while kept: until 15 minutes
    # after the resolution (at +26m it is more than 15 minutes and dropped unsent)
    assert [k for k, _ in resolved] == [10, 12, 14, 16, 18, 20, 22, 24]
    ends = {k * M + first + d for k, d in resolved}
    assert ends == {first + 10 * M}  # the resolution time, every time
    assert all(len(b) == 1 for _, b in r.sends)


def test_restart_during_pending_and_firing_restores_for_without_a_storm(env: Env) -> None:
    text = ALERT.replace("for: 2m", "for: 30m")
    env.write_rules(text)
    sender = ListSender()
    m = env.manager(sender)
    m.run_once(T0)
    first = m.next_due()
    assert first is not None
    env.put("m", first - 5 * M, first + 120 * M)
    r = Recorder(m, env.clock, sender)
    r.steps(8)  # pending for 7 minutes
    assert sender.batches == []
    # restart during pending: a new manager on the same DB, 2 minutes later
    env.clock.now += 2 * M
    sender2 = ListSender()
    m2 = env.manager(sender2)
    m2.run_once(env.clock.now)
    r2 = Recorder(m2, env.clock, sender2)
    r2.steps(2)  # restored after the second evaluation
    (g,) = m2.groups()
    (a,) = g.alerting_rules()[0].active_alerts()
    # pending 7m of 30m, down until the restart: 23 minutes left from the restart (not 30; more than
    # the 10m grace period, which would apply otherwise)
    down_s = (first + 7 * M) // 1000  # the old process' last ALERTS_FOR_STATE sample
    restored_at = r2.times[-1]
    assert a.active_at_ms == (first // 1000) * 1000 + (restored_at - down_s * 1000)
    r2.steps(30)
    fired = [t for t, _ in r2.sends]
    # it fires at the first evaluation once the remaining 23 minutes have passed
    assert fired and fired[0] - M < a.active_at_ms + 30 * M <= fired[0]
    # restart during firing: 3 minutes down
    n_before = len(sender2.alerts)
    assert n_before >= 1
    env.clock.now += 3 * M
    sender3 = ListSender()
    m3 = env.manager(sender3)
    m3.run_once(env.clock.now)
    r3 = Recorder(m3, env.clock, sender3)
    r3.steps(3)
    # two evaluations pending (not sent), restore, then firing again at once: one send, not a storm
    assert len(sender3.alerts) == 1
    (g3,) = m3.groups()
    (a3,) = g3.alerting_rules()[0].active_alerts()
    # the original activation survives both restarts (ALERTS_FOR_STATE holds whole seconds)
    assert a3.active_at_ms == a.active_at_ms // 1000 * 1000
    r3.steps(4)
    assert len(sender3.alerts) == 3  # then every other evaluation, as before the restart
    # ALERTS written by the restarted process only after the restore
    alerts_series = env.read("ALERTS")
    states = {lb.get("alertstate") for lb in alerts_series}
    assert states <= {"pending", "firing"}


def test_reload_keeps_unchanged_groups_and_copies_state(env: Env) -> None:
    env.write_rules(ALERT, "a.yml")
    env.write_rules("groups:\n- name: other\n  rules:\n  - record: one\n    expr: vector(1)\n", "b.yml")
    sender = ListSender()
    m = env.manager(sender)
    m.run_once(T0)
    first = m.next_due()
    assert first is not None
    env.put("m", first - 5 * M, first + 60 * M)
    r = Recorder(m, env.clock, sender)
    r.steps(10)  # both groups, ~5 rounds each... at least firing
    ga, gb = sorted(m.groups(), key=lambda g: g.name)
    assert ga.alerting_rules()[0].firing_alerts()
    # unchanged reload: same Group objects
    m.reload(m.settings)
    assert {id(g) for g in m.groups()} == {id(ga), id(gb)}
    # change group b; group a keeps its object, b's replacement is new
    env.write_rules("groups:\n- name: other\n  rules:\n  - record: one\n    expr: vector(2)\n", "b.yml")
    m.reload(m.settings)
    new_a, new_b = sorted(m.groups(), key=lambda g: g.name)
    assert new_a is ga and new_b is not gb
    # change the alert's annotations: the new group takes over the firing alert (no new pending phase)
    env.write_rules(ALERT.replace("summary: high", "summary: changed"), "a.yml")
    m.reload(m.settings)
    a2 = next(g for g in m.groups() if g.name == "g")
    assert a2 is not ga
    (alert,) = a2.alerting_rules()[0].firing_alerts()
    n = len(sender.alerts)
    r.steps(8)
    new = sender.alerts[n:]
    assert new and all(x.starts_at_ms == alert.fired_at_ms for x in new)


def test_reload_error_keeps_old_rules_and_reports(env: Env) -> None:
    env.write_rules(ALERT)
    reg = CollectorRegistry()
    m = env.manager(registry=reg)
    before = m.groups()
    env.write_rules("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: m >\n")
    with pytest.raises(RuleLoadError) as exc:
        m.reload(m.settings)
    assert "a.yml:5:11: " in str(exc.value) and "could not parse expression" in str(exc.value)
    assert m.groups() == before
    assert m.last_reload_error == str(exc.value)
    assert reg.get_sample_value("vigil_rules_last_reload_successful") == 0
    env.write_rules(ALERT)
    m.reload(m.settings)
    assert reg.get_sample_value("vigil_rules_last_reload_successful") == 1 and m.last_reload_error == ""


def test_removed_group_gets_stale_markers(env: Env) -> None:
    p = env.write_rules("groups:\n- name: rec\n  rules:\n  - record: one\n    expr: vector(1)\n")
    m = env.manager()
    m.run_once(T0)
    step(m, env.clock)
    p.unlink()
    env.clock.now += 1000
    m.reload(m.settings)
    assert m.groups() == []
    ((_, points),) = env.read("one").items()
    assert np.isnan(points[-1][1]) and len(points) == 2


def test_refused_samples_counted(env: Env, tmp_path: Path) -> None:
    d = DB(tmp_path / "db2", Options(fsync=False, out_of_order_window_ms=M), now_ms=env.clock)
    try:
        env.write_rules(
            "groups:\n- name: rec\n  query_offset: 1h\n  rules:\n  - record: one\n    expr: vector(1)\n"
        )
        reg = CollectorRegistry()
        ref = d.series_ref(Labels.from_dict({"__name__": "x"}))
        d.append(np.array([ref]), np.array([T0], np.int64), np.array([1.0]))  # the tenant's newest sample
        m = Manager(
            ManagerSettings(rule_files=("rules/a.yml",), base_dir=env.dir),
            query=engine_query(Engine(d)),
            appender=StorageAppender(d),
            storage=d,
            clock=env.clock,
            registry=reg,
            builtin=None,
        )
        m.run_once(T0)
        step(m, env.clock)  # written at ts - 1h: older than the 1m out-of-order window
        key = {"rule_group": str(env.dir / "rules" / "a.yml") + ";rec", "reason": "too_old"}
        assert reg.get_sample_value("vigil_rule_samples_refused_total", key) == 1
        (g,) = m.groups()
        assert g.rules[0].status.refused_samples == 1 and g.rules[0].status.health == "ok"
    finally:
        d.close()


def test_builtin_pack_disable_and_override(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "host.yml").write_text(
        "groups:\n- name: host\n  rules:\n"
        "  - alert: DiskFull\n    expr: vector(1)\n"
        "  - alert: NewPort\n    expr: vector(1)\n"
        "  - alert: Reboot\n    expr: vector(1)\n"
        "  - record: host:x\n    expr: vector(1)\n"
    )
    (pack / "README.txt").write_text("not a rule file")
    env.write_rules("groups:\n- name: mine\n  rules:\n  - alert: NewPort\n    expr: vector(2)\n")
    settings = ManagerSettings(
        rule_files=("rules/*.yml",), base_dir=env.dir, builtin_disable=("Reboot", "Typo")
    )
    with caplog.at_level(logging.WARNING, "vigil.rules.manager"):
        m = env.manager(settings=settings, builtin=pack)
    names = {(g.file, r.name) for g in m.groups() for r in g.rules}
    assert names == {
        ("builtin/host.yml", "DiskFull"),
        ("builtin/host.yml", "host:x"),
        (str(env.dir / "rules" / "a.yml"), "NewPort"),
    }
    assert "rules.builtin.disable: no built-in alert is named 'Typo'" in caplog.messages
    off = env.manager(settings=replace(settings, builtin_enabled=False), builtin=pack)
    assert {r.name for g in off.groups() for r in g.rules} == {"NewPort"}
    # the real pack, when installed, loads without errors
    env.manager(settings=settings, builtin="vigil.rules.builtin")


def test_constructor_starts_nothing_and_stop_joins(env: Env) -> None:
    import threading

    env.write_rules(ALERT)
    before = {t.name for t in threading.enumerate()}
    m = env.manager()
    assert {t.name for t in threading.enumerate()} == before
    m.start()
    assert "vigil-rules" in {t.name for t in threading.enumerate()}
    m.stop()
    m.stop()
    assert "vigil-rules" not in {t.name for t in threading.enumerate()}


def test_config_check_checks_rule_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vigil.cmd.main import main

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ok.yml").write_text(ALERT)
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("rule_files: [rules/*.yml, missing/*.yml]\n")
    assert main(["config", "check", str(cfg)]) == 0
    out = capsys.readouterr()
    assert "rule_files: no file matches 'missing/*.yml'" in out.err and "OK" in out.out
    (tmp_path / "rules" / "bad.yml").write_text("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: m >\n")
    assert main(["config", "check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f'{tmp_path}/rules/bad.yml:5:11: group "g", rule 1, "X": could not parse expression' in err
    assert f"{cfg}: rule_files: invalid rule files" in err


def test_request_reload_runs_in_the_loop_and_keeps_rules_on_error(env: Env) -> None:
    import threading

    from tests.waiting import wait_until
    from vigil.config import config_from_yaml

    env.write_rules(ALERT)
    m = env.manager()
    ran_in: list[str] = []
    m.start()
    try:
        m.request_reload(lambda: ran_in.append(threading.current_thread().name))
        wait_until(lambda: ran_in == ["vigil-rules"], what="the reload ran in the evaluation thread")
        # a new vigil.yml naming another file: reload_config swaps it in
        env.write_rules("groups:\n- name: two\n  rules:\n  - record: two\n    expr: vector(2)\n", "b.yml")
        cfg = config_from_yaml("rule_files: [rules/b.yml]\nrules: {builtin: {enabled: false}}\n", "vigil.yml")
        m.request_reload(lambda: m.reload_config(cfg, env.dir))
        wait_until(lambda: [g.name for g in m.groups()] == ["two"], what="the new rules")

        def broken() -> None:
            raise ValueError("vigil.yml: rules.resend_delay: expected a duration")

        m.request_reload(broken)
        wait_until(lambda: m.last_reload_error != "", what="the error reported")
        assert "rules.resend_delay" in m.last_reload_error and [g.name for g in m.groups()] == ["two"]
    finally:
        m.stop()


def test_default_tenant_rules_neither_read_nor_write_tenant_data(env: Env) -> None:
    from vigil.rules.query import DefaultTenantView

    env.write_rules(
        "groups:\n- name: g\n  rules:\n  - record: total\n    expr: sum(m)\n"
        "  - record: injected\n    expr: vector(1)\n    labels: {tenant: acme}\n"
    )
    env.put("m", T0 - 5 * M, T0 + 5 * M, 1.0)
    env.put("m", T0 - 5 * M, T0 + 5 * M, 100.0, tenant="acme")
    reg = CollectorRegistry()
    view = DefaultTenantView(env.db)
    m = Manager(
        ManagerSettings(rule_files=("rules/a.yml",), base_dir=env.dir),
        query=engine_query(Engine(view)),
        appender=StorageAppender(env.db, untenanted=True),
        storage=view,
        clock=env.clock,
        registry=reg,
        builtin=None,
    )
    m.run_once(T0)
    step(m, env.clock)
    ((_, points),) = env.read("total").items()
    assert points[0][1] == 1.0  # acme's 100 is not the default tenant's
    assert env.read("injected") == {}  # would have landed in acme's data
    key = {"rule_group": str(env.dir / "rules" / "a.yml") + ";g", "reason": "tenant_label"}
    assert reg.get_sample_value("vigil_rule_samples_refused_total", key) == 1


def test_ends_at_uses_the_longer_of_interval_and_resend_delay(env: Env) -> None:
    env.write_rules(ALERT.replace("- name: g\n", "- name: g\n  interval: 3m\n").replace("for: 2m", "for: 0s"))
    env.put("m", T0 - 5 * M, T0 + 30 * M)
    sender = ListSender()
    m = env.manager(sender)
    m.run_once(T0)
    r = Recorder(m, env.clock, sender)
    r.steps(3)
    # resend 1m < interval 3m: every evaluation re-sends, each valid for 4 intervals
    assert [(a.ends_at_ms - t) for t, b in r.sends for a in b] == [12 * M] * 3
