"""Test doubles for the notifier core: a fake clock, a recording integration, a small silence table.

`SilenceTable` is a real (if minimal) `Muter` written for these tests: a silence is an id, equality
matchers and a time range; the project's `notifier/silence.py` is written separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from vigil.notifier.alert import Alert
from vigil.notifier.config import AlertmanagerConfig, alertmanager_config_from_yaml
from vigil.notifier.integration import Integration, NotifyContext, NotifyError
from vigil.notifier.notifier import Notifier, NotifierLimits

T0 = 1_796_637_600_000  # 2026-12-07 10:00:00 UTC, a Monday


class FakeClock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t

    def advance(self, ms: int) -> None:
        self.t += ms

    def wait(self, seconds: float) -> bool:
        """A retry wait that passes fake time instead of sleeping."""
        self.t += int(seconds * 1000)
        return False


@dataclass
class Sent:
    ctx: NotifyContext
    alerts: list[Alert]

    @property
    def names(self) -> list[str]:
        return [a.labels.get("instance", a.labels.get("alertname", "")) for a in self.alerts]

    def statuses(self) -> list[str]:
        return ["resolved" if a.resolved_at(self.ctx.now_ms) else "firing" for a in self.alerts]


@dataclass
class Recorder:
    """An Integration that records what it was asked to deliver; `failures` are raised first, in order."""

    name: str = "webhook"
    index: int = 0
    send_resolved: bool = True
    failures: list[NotifyError] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    attempts: int = 0

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(Sent(ctx, list(alerts)))


@dataclass
class Silence:
    id: str
    matchers: Mapping[str, str]
    starts_ms: int
    ends_ms: int


class SilenceTable:
    """A minimal Muter for these tests (equality matchers only)."""

    def __init__(self) -> None:
        self.silences: list[Silence] = []

    def mutes(self, labels: Mapping[str, str], now_ms: int) -> list[str]:
        return [
            s.id
            for s in self.silences
            if s.starts_ms <= now_ms < s.ends_ms
            and all(labels.get(k, "") == v for k, v in s.matchers.items())
        ]


def config(text: str) -> AlertmanagerConfig:
    return alertmanager_config_from_yaml(text)


def alert(name: str = "Down", ends: int = 0, starts: int = 0, **labels: str) -> Alert:
    return Alert(labels={"alertname": name, **labels}, starts_at_ms=starts, ends_at_ms=ends)


def make(
    cfg: AlertmanagerConfig,
    receivers: Mapping[str, Sequence[Integration]],
    clock: FakeClock,
    **kw: object,
) -> tuple[Notifier, CollectorRegistry]:
    reg = CollectorRegistry()
    limits = kw.pop("limits", NotifierLimits())
    assert isinstance(limits, NotifierLimits)
    n = Notifier(cfg, receivers, registry=reg, clock=clock, wait=clock.wait, limits=limits, **kw)  # type: ignore[arg-type]
    return n, reg


def run_until(n: Notifier, clock: FakeClock, until: int, step_ms: int = 1000) -> int:
    """Step the notifier every `step_ms` up to and including `until`; returns the flushes run."""
    flushes = 0
    while clock.t + step_ms <= until:
        clock.advance(step_ms)
        flushes += n.step(clock.t)
    if clock.t < until:
        clock.t = until
        flushes += n.step(clock.t)
    return flushes
