"""Inhibition: an alert is not notified while another alert that inhibits it is firing.

Alertmanager's semantics (inhibit/inhibit.go), as a pure function over the alerts passed in:
- a rule applies to a target alert when the target matches the rule's target matchers, and some
  source alert matches its source matchers, is not resolved (`ends_at` unset or after `now`), and
  has the same value as the target for every `equal` label, a label missing on both sides counting
  as equal (both are "");
- when the target itself also matches the source matchers, sources that also match the target
  matchers are skipped: an alert matching both sides of a rule never inhibits itself, nor one like it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vigil.notifier.config import InhibitRuleConfig
from vigil.notifier.matchers import Matchers

__all__ = ["AlertLike", "InhibitRule", "build_inhibit_rules", "inhibited_by"]


class AlertLike(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def ends_at(self) -> float | None:
        """Unix seconds; None when the sender gave no end."""
        ...


@dataclass(frozen=True, slots=True)
class InhibitRule:
    source: Matchers
    target: Matchers
    equal: frozenset[str]

    def inhibitor(
        self, target: Mapping[str, str], alerts: Iterable[AlertLike], now: float
    ) -> AlertLike | None:
        """The first alert among `alerts` that inhibits `target` under this rule, or None."""
        if not self.target.matches(target):
            return None
        two_sided = self.source.matches(target)
        for a in alerts:
            if a.ends_at is not None and a.ends_at <= now:
                continue  # resolved
            labels = a.labels
            if not self.source.matches(labels):
                continue
            if any(labels.get(n, "") != target.get(n, "") for n in self.equal):
                continue
            if two_sided and self.target.matches(labels):
                continue
            return a
        return None


def build_inhibit_rules(cfgs: Iterable[InhibitRuleConfig]) -> list[InhibitRule]:
    return [InhibitRule(c.source(), c.target(), frozenset(c.equal)) for c in cfgs]


def inhibited_by(
    rules: Sequence[InhibitRule], target: Mapping[str, str], alerts: Iterable[AlertLike], now: float
) -> AlertLike | None:
    """The alert inhibiting `target` under the first rule that has one, or None (not muted)."""
    pool = list(alerts)
    for rule in rules:
        found = rule.inhibitor(target, pool, now)
        if found is not None:
            return found
    return None
