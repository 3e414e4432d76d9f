"""The contract between the notification pipeline and a receiver's integrations.

An integration is one item of a receiver's `slack_configs`, `email_configs`, `webhook_configs`, ...:
it formats one notification for one aggregation group and delivers it. Everything else — grouping,
waiting, silences, inhibition, dedup against the notification log, retries with backoff, metrics —
belongs to the pipeline (`vigil.notifier.pipeline`), so every integration gets them the same way.

`notify` is a blocking call made from one of the notifier's worker threads; it returns when the far
end accepted the message and raises `NotifyError` otherwise, with `retryable` set as Alertmanager
decides (network errors, timeouts, 5xx and 429 retry; other 4xx, a template that fails, a bad
configuration do not). It must bound its own time (connect and read timeouts) so that a hung peer
cannot hold a worker forever, and its error messages must never contain secrets (webhook URLs,
passwords, tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vigil.notifier.alert import Alert

__all__ = ["Integration", "NotifyContext", "NotifyError"]


class NotifyError(Exception):
    """A failed delivery. `retryable` says whether sending the same notification again can help;
    `reason` labels `alertmanager_notifications_failed_total` as Alertmanager does: "clientError"
    (a 4xx answer), "serverError" (5xx), "other" (anything else)."""

    def __init__(self, message: str, *, retryable: bool, reason: str = "other") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NotifyContext:
    """What an integration knows about the notification beyond its alerts.

    `group_key` is Alertmanager's (the route key, a colon, the group labels: `{}/{team="x"}:{alertname="A"}`);
    `now_ms` decides firing vs resolved for every alert of this notification, so one message never mixes
    two clocks; `external_url` is Vigil's `server.external_url`, the base of every link in a message.
    """

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    now_ms: int
    external_url: str
    repeat_interval_ms: int = 0


class Integration(Protocol):
    """One configured integration of a receiver."""

    @property
    def name(self) -> str:
        """The integration kind as Alertmanager labels its metrics: "email", "slack", "webhook",
        "msteams", "msteamsv2", "sms", "alertmanager"."""
        ...

    @property
    def index(self) -> int:
        """Position among the receiver's integrations of the same kind (Alertmanager's `idx`)."""
        ...

    @property
    def send_resolved(self) -> bool: ...

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None: ...
