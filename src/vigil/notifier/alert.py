"""The alert as the notifier holds it: Alertmanager's `types.Alert`, with Vigil's integer-millisecond times.

One type travels from whoever raises an alert (the rule manager, an event rule, another Prometheus
posting to `/api/v2/alerts`) through the alert store, the dispatcher's aggregation groups and the
notification pipeline to the receiver integrations, so each of them agrees on identity and on what
"resolved" means:

- identity is the **fingerprint** of the label set, computed exactly as Alertmanager does (FNV-1a 64
  over the pairs sorted by name, each name and value followed by the byte 0xff), so the ids Vigil
  shows in its Alertmanager API are the ones `amtool` and Alertmanager show for the same labels;
- an alert is resolved at `now` when it has an end and the end is not after `now` (`Resolved()`);
  `timeout` says that end was not sent but set by the store from `resolve_timeout`.

Times are Unix milliseconds; 0 means "unset" (Go's zero `time.Time`), as Alertmanager leaves `EndsAt`
unset for an alert whose sender gave no end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Alert", "fingerprint", "fingerprint_hex"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = 0xFFFFFFFFFFFFFFFF


def fingerprint(labels: Mapping[str, str]) -> int:
    """Alertmanager's `model.LabelSet.Fingerprint()` of `labels` (an unsigned 64-bit integer).

    Empty values are kept, as Alertmanager keeps whatever pairs the sender gave; callers that treat
    `""` as absent drop those pairs before building the alert.
    """
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), labels[name].encode()):
            for b in part:
                h = ((h ^ b) * _FNV_PRIME) & _MASK
            h = ((h ^ 0xFF) * _FNV_PRIME) & _MASK
    return h


def fingerprint_hex(labels: Mapping[str, str]) -> str:
    """The fingerprint as Alertmanager prints it: 16 lowercase hex digits."""
    return f"{fingerprint(labels):016x}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert. Immutable: the store replaces an alert by a merged copy, never edits it."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at_ms: int = 0
    ends_at_ms: int = 0  # 0: no end given (firing until resolve_timeout or an explicit end)
    generator_url: str = ""
    updated_at_ms: int = 0  # when the store last received this alert
    timeout: bool = False  # ends_at_ms was set from resolve_timeout, not by the sender

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def fingerprint(self) -> int:
        return fingerprint(self.labels)

    def resolved_at(self, now_ms: int) -> bool:
        """Alertmanager's `Resolved()` evaluated at `now_ms`."""
        return self.ends_at_ms != 0 and self.ends_at_ms <= now_ms
